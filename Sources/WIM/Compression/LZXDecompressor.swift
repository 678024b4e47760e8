/// LZX chunk decoder, for the LZX variant WIM files use.
///
/// Format notes (checked against [MS-PATCH] "LZX DELTA Compression and Decompression" §2, the
/// 1997 CAB LZX description, and wimlib, which is the reference the tests compare against):
///
/// - Every chunk is an independent LZX stream: no stream header (no E8 "translation size"
///   field), the window is the whole chunk, and the window size is the chunk size rounded up to a
///   power of two between 2^15 and 2^21. The window order fixes the number of offset slots and so
///   the size of the main code's alphabet (256 literals + 8 length headers per slot).
/// - State that starts fresh in every chunk: the recent-offset queue R0, R1, R2 = 1, 1, 1, and the
///   "previous" main and length codeword lengths (all 0) against which the pretree deltas apply.
///   Those previous lengths carry over between the blocks of one chunk.
/// - Block header: 3 bits of type (1 verbatim, 2 aligned offset, 3 uncompressed), then one bit
///   that, when set, means the block holds the default 32768 bytes; otherwise 16 bits of size
///   follow (24 bits when the window order is 16 or more, as wimlib writes and reads them).
/// - Bits come in 16-bit little-endian words, each read from its most significant bit down.
/// - An uncompressed block is padded with 1 to 16 bits to the next 16-bit boundary (16 when
///   already aligned), followed by R0, R1, R2 as little-endian 32-bit words, the raw bytes, and a
///   pad byte when the size is odd. Then the bit stream resumes.
/// - Matches never span blocks, and offsets reach back at most to the start of the chunk.
/// - After decoding, the x86 CALL translation is undone over the whole chunk with the fixed
///   "file size" 12000000: a 0xE8 byte at position i < size - 10 (and only when size > 10) has
///   the 32-bit value after it turned from an absolute into a relative target, and the 4 bytes of
///   that value are not themselves searched for 0xE8.
public struct LZXDecompressor: ChunkDecompressor {
    public var format: CompressionFormat { .lzx }

    /// The largest chunk (uncompressed) this decoder accepts; chosen by the resource's header.
    public let maxChunkSize: Int
    /// log2 of the LZX window: `maxChunkSize` rounded up to a power of two.
    let windowOrder: Int
    /// 256 literals plus 8 length headers for each offset slot the window needs.
    let mainSymbolCount: Int

    /// Tables reused across chunks. A class so they are allocated once; copied on write (see
    /// `decompress`) so two copies of one decoder never scribble on each other's tables.
    private var tables: LZXTables

    /// Blocks of each type decoded so far by this decoder, for tests and diagnostics (which
    /// block types an encoder produces).
    internal private(set) var blockCounts = LZXBlockCounts()

    public init(maxChunkSize: Int) throws(DecompressionError) {
        guard maxChunkSize >= LZX.minWindowSize, maxChunkSize <= LZX.maxWindowSize else {
            throw DecompressionError(
                .lzx,
                "the chunk size \(maxChunkSize) is outside the range LZX supports in WIM files (32768 to 2097152 bytes)",
                offset: 0)
        }
        var order = LZX.minWindowOrder
        while (1 << order) < maxChunkSize { order += 1 }
        self.maxChunkSize = maxChunkSize
        self.windowOrder = order
        self.mainSymbolCount = LZX.mainSymbolCount(windowOrder: order)
        self.tables = LZXTables(mainSymbolCount: mainSymbolCount)
    }

    public mutating func decompress(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
    ) throws(DecompressionError) {
        let outputCount = output.count
        guard outputCount <= maxChunkSize else {
            throw DecompressionError(
                .lzx,
                "the chunk would decompress to \(outputCount) bytes, more than the resource's chunk size of \(maxChunkSize)",
                offset: 0)
        }
        guard outputCount > 0, let outputBase = output.baseAddress else { return }
        guard input.count > 0, let inputBase = input.baseAddress else {
            throw DecompressionError(.lzx, "the compressed chunk is empty", offset: 0)
        }
        if !isKnownUniquelyReferenced(&tables) {
            tables = LZXTables(mainSymbolCount: mainSymbolCount)
        }
        var chunk = LZXChunkDecoder(
            tables: tables,
            mainSymbolCount: mainSymbolCount,
            windowOrder: windowOrder,
            reader: LZXBitReader(base: inputBase, count: input.count),
            output: outputBase.assumingMemoryBound(to: UInt8.self),
            outputCount: outputCount)
        try chunk.run()
        blockCounts.add(chunk.blockCounts)
    }
}

/// How many blocks of each type were decoded.
struct LZXBlockCounts: Equatable, Sendable {
    var verbatim = 0
    var aligned = 0
    var uncompressed = 0

    mutating func add(_ other: LZXBlockCounts) {
        verbatim += other.verbatim
        aligned += other.aligned
        uncompressed += other.uncompressed
    }
}

/// Constants of the format.
enum LZX {
    static let minWindowOrder = 15
    static let maxWindowOrder = 21
    static let minWindowSize = 1 << minWindowOrder
    static let maxWindowSize = 1 << maxWindowOrder

    static let literalCount = 256
    /// Low 3 bits of a match symbol: the match length minus 2, where 7 means "7 plus a symbol
    /// from the length code".
    static let lengthHeaderCount = 8
    static let primaryLengthCount = 7
    static let minMatchLength = 2
    static let lengthSymbolCount = 249
    static let pretreeSymbolCount = 20
    static let alignedSymbolCount = 8
    static let maxOffsetSlots = 50
    static let recentOffsetCount = 3
    /// Offsets are transmitted as `offset + 2` so that slots 0, 1, 2 can mean R0, R1, R2.
    static let offsetAdjustment = 2
    static let defaultBlockSize = 32768
    static let maxMatchLength = 257
    /// Match lengths there are (2...257).
    static let lengthCount = maxMatchLength - minMatchLength + 1
    /// See `LZXChunkDecoder.decodeFast`: the longest match plus what a copy may write past it
    /// (word stores, at most 15 bytes), and two 8-byte refills plus one spare.
    static let fastOutputMargin = maxMatchLength + 24
    static let fastInputMargin = 24
    static let e8FileSize: Int32 = 12_000_000

    static let maxMainCodewordLength = 16
    static let maxLengthCodewordLength = 16
    static let maxPretreeCodewordLength = 15
    static let maxAlignedCodewordLength = 7

    /// Direct-table sizes: the frequent main and length symbols resolve in one load, the table
    /// rebuild per block stays cheap, and the tables stay in L1 next to the output window.
    static let mainTableBits = 11
    static let lengthTableBits = 10
    static let pretreeTableBits = 6
    /// Aligned codewords are at most 7 bits, so this table never needs subtables.
    static let alignedTableBits = 7

    /// Extra offset bits read after each offset slot: 0,0,0,0,1,1,2,2,... capped at 17.
    static func extraBits(slot: Int) -> Int {
        slot < 4 ? 0 : min((slot - 2) >> 1, 17)
    }

    /// First (adjusted) offset of each slot; slot `n + 1` starts where slot `n`'s extra bits end.
    static let slotBase: [Int] = {
        var bases = [0]
        for slot in 0..<maxOffsetSlots { bases.append(bases[slot] + (1 << extraBits(slot: slot))) }
        return bases
    }()

    /// Offset slots needed for the window: enough for the largest offset plus the adjustment of 2.
    /// The largest offset is `windowSize - 3`, not `windowSize - 2`: a match may not copy the
    /// chunk's first 2 bytes to its last 2. This gives the 30, 32, 34, 36, 38, 42, 50 slots of
    /// windows 2^15...2^21 that wimlib and Microsoft use.
    static func mainSymbolCount(windowOrder: Int) -> Int {
        let largestAdjustedOffset = (1 << windowOrder) - minMatchLength - 1 + offsetAdjustment
        var slots = 30
        while largestAdjustedOffset >= slotBase[slots] { slots += 1 }
        return literalCount + slots * lengthHeaderCount
    }
}

/// The parts of the Huffman tables the decode loop touches (see LZXHuffman.swift for the entry
/// layout and the builder). Kept in this file so that they inline into the loop even when files
/// are compiled separately rather than as one module.
extension LZXHuffman {
    static let lengthMask: UInt32 = 0x1F
    static let subtableFlag: UInt32 = 0x80

    /// The symbol stored in every entry of an empty code's table (a code with no codewords, which
    /// LZX allows, e.g. the length code of a block without long matches). It is far above every
    /// real symbol of every LZX alphabet, and its codeword length is 0, so decoding it consumes no
    /// bits and every use produces an out-of-range length or offset that the decoder rejects.
    static let emptyCodeSymbol: UInt32 = 0xFF_FFFF

    /// Looks up the entry for the codeword at the top of `bits` (left-justified, at least
    /// `maxCodewordLength` valid bits). Returns a leaf entry: `entry >> 8` is the symbol,
    /// `entry & lengthMask` the number of bits to consume.
    @inline(__always)
    static func decode(_ table: UnsafePointer<UInt32>, tableBits: Int, bits: UInt64) -> UInt32 {
        var entry = table[Int(truncatingIfNeeded: bits &>> UInt64(truncatingIfNeeded: 64 &- tableBits))]
        if entry & subtableFlag != 0 {
            let indexBits = UInt64(entry & lengthMask)  // 1...16, so the shift below is in range
            let index = Int(truncatingIfNeeded: (bits &<< UInt64(truncatingIfNeeded: tableBits)) &>> (64 &- indexBits))
            entry = table[Int(truncatingIfNeeded: entry &>> 8) &+ index]
        }
        return entry
    }
}

/// Decode tables and codeword lengths, allocated once per decoder. Only raw pointers are touched
/// while decoding, so the hot loop has no bounds checks, retains or exclusivity checks; every
/// index into them is bounded by construction (see the comments at each use).
final class LZXTables {
    let mainSymbolCount: Int
    let mainTable: UnsafeMutablePointer<UInt32>
    let mainTableCapacity: Int
    let lengthTable: UnsafeMutablePointer<UInt32>
    let lengthTableCapacity: Int
    let alignedTable: UnsafeMutablePointer<UInt32>
    let pretreeTable: UnsafeMutablePointer<UInt32>
    let pretreeTableCapacity: Int

    /// Codeword lengths. The main and length arrays have `lengthOverrunSlack` spare entries
    /// because a run in the pretree coding may end past the last symbol (see `readCodeLengths`).
    let mainLengths: UnsafeMutablePointer<UInt8>
    let lengthLengths: UnsafeMutablePointer<UInt8>
    let alignedLengths: UnsafeMutablePointer<UInt8>
    let pretreeLengths: UnsafeMutablePointer<UInt8>

    /// Table-builder scratch space.
    let counts: UnsafeMutablePointer<Int>
    let sortedSymbols: UnsafeMutablePointer<UInt16>

    /// Per offset slot: `extraBits << 24 | slotBase`, one load in the match path.
    let slotInfo: UnsafeMutablePointer<UInt32>

    /// A run starts at an entry that is still needed and writes up to 51 entries (symbol 18:
    /// 20 + 31 zeros), so it can end up to 50 entries past the array.
    static let lengthOverrunSlack = 64

    init(mainSymbolCount: Int) {
        self.mainSymbolCount = mainSymbolCount
        mainTableCapacity = LZXHuffman.capacity(
            tableBits: LZX.mainTableBits, symbolCount: mainSymbolCount,
            maxCodewordLength: LZX.maxMainCodewordLength)
        mainTable = .allocate(capacity: mainTableCapacity)
        lengthTableCapacity = LZXHuffman.capacity(
            tableBits: LZX.lengthTableBits, symbolCount: LZX.lengthSymbolCount,
            maxCodewordLength: LZX.maxLengthCodewordLength)
        lengthTable = .allocate(capacity: lengthTableCapacity)
        alignedTable = .allocate(capacity: 1 << LZX.alignedTableBits)
        pretreeTableCapacity = LZXHuffman.capacity(
            tableBits: LZX.pretreeTableBits, symbolCount: LZX.pretreeSymbolCount,
            maxCodewordLength: LZX.maxPretreeCodewordLength)
        pretreeTable = .allocate(capacity: pretreeTableCapacity)

        mainLengths = .allocate(capacity: mainSymbolCount + Self.lengthOverrunSlack)
        mainLengths.initialize(repeating: 0, count: mainSymbolCount + Self.lengthOverrunSlack)
        lengthLengths = .allocate(capacity: LZX.lengthSymbolCount + Self.lengthOverrunSlack)
        lengthLengths.initialize(repeating: 0, count: LZX.lengthSymbolCount + Self.lengthOverrunSlack)
        alignedLengths = .allocate(capacity: LZX.alignedSymbolCount)
        alignedLengths.initialize(repeating: 0, count: LZX.alignedSymbolCount)
        pretreeLengths = .allocate(capacity: LZX.pretreeSymbolCount)
        pretreeLengths.initialize(repeating: 0, count: LZX.pretreeSymbolCount)

        counts = .allocate(capacity: 2 * (LZX.maxMainCodewordLength + 1))
        counts.initialize(repeating: 0, count: 2 * (LZX.maxMainCodewordLength + 1))
        sortedSymbols = .allocate(capacity: mainSymbolCount)
        sortedSymbols.initialize(repeating: 0, count: mainSymbolCount)

        slotInfo = .allocate(capacity: LZX.maxOffsetSlots)
        for slot in 0..<LZX.maxOffsetSlots {
            slotInfo[slot] = UInt32(LZX.extraBits(slot: slot)) << 24 | UInt32(LZX.slotBase[slot])
        }
        // Tables start empty so that nothing ever reads uninitialized memory, even before the
        // first block has built them.
        mainTable.initialize(repeating: LZXHuffman.emptyCodeSymbol << 8, count: mainTableCapacity)
        lengthTable.initialize(repeating: LZXHuffman.emptyCodeSymbol << 8, count: lengthTableCapacity)
        alignedTable.initialize(repeating: LZXHuffman.emptyCodeSymbol << 8, count: 1 << LZX.alignedTableBits)
        pretreeTable.initialize(repeating: LZXHuffman.emptyCodeSymbol << 8, count: pretreeTableCapacity)
    }

    deinit {
        mainTable.deallocate()
        lengthTable.deallocate()
        alignedTable.deallocate()
        pretreeTable.deallocate()
        mainLengths.deallocate()
        lengthLengths.deallocate()
        alignedLengths.deallocate()
        pretreeLengths.deallocate()
        counts.deallocate()
        sortedSymbols.deallocate()
        slotInfo.deallocate()
    }
}

/// Reads the LZX bit stream: 16-bit little-endian words, each consumed from its top bit.
///
/// `buffer` holds the next bits left-justified; `available` of them are counted. Refills load 8
/// input bytes at once and OR in as many whole words as fit; the low bits may then also hold part
/// of the following word, which is harmless because the next refill ORs the same stream bits in
/// at the same place. Past the end of the input, words read as zero (as in wimlib) and only
/// `position` keeps advancing; the decoder checks `isOverrun` at block boundaries and rejects a
/// stream that actually consumed such missing bits.
struct LZXBitReader {
    let base: UnsafeRawPointer
    let count: Int
    /// Largest `position` at which an 8-byte load stays inside the input.
    let fastLimit: Int
    /// Byte offset of the first word not yet counted in `available`.
    var position: Int
    var buffer: UInt64
    var available: Int

    init(base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
        self.fastLimit = count - 8
        self.position = 0
        self.buffer = 0
        self.available = 0
    }

    /// Bits consumed so far.
    var consumedBits: Int { position * 8 - available }

    /// Byte offset for error messages: where the consumed bits end, within the input.
    var errorOffset: Int { min(max(0, consumedBits / 8), count) }

    /// True when bits beyond the end of the input were consumed, not just looked ahead at. When
    /// `position <= count` every counted word came from the input.
    var isOverrun: Bool { position > count && consumedBits > (count & ~1) * 8 }

    /// Brings `available` to at least 49 bits. Must only be called with `available < 48`, which
    /// keeps every shift below in range.
    @inline(__always)
    mutating func refill() {
        if position <= fastLimit {
            let raw = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
            // Words w0 w1 w2 w3 sit at bits 0, 16, 32, 48; the stream wants w0 on top.
            let swappedPairs = ((raw & 0x0000_FFFF_0000_FFFF) &<< 16) | ((raw &>> 16) & 0x0000_FFFF_0000_FFFF)
            let streamOrder = (swappedPairs &<< 32) | (swappedPairs &>> 32)
            buffer |= streamOrder &>> UInt64(truncatingIfNeeded: available)
            let wholeWords = (64 &- available) &>> 4
            position &+= wholeWords &<< 1
            available &+= wholeWords &<< 4
        } else {
            (buffer, available, position) = Self.refilledNearEnd(
                base: base, count: count, position: position, buffer: buffer, available: available)
        }
    }

    /// The word-at-a-time refill for the last 8 bytes of input and beyond. Takes and returns
    /// values (rather than `inout self`) so the reader's fields can stay in registers in the
    /// decode loop.
    @inline(never)
    static func refilledNearEnd(
        base: UnsafeRawPointer, count: Int, position: Int, buffer: UInt64, available: Int
    ) -> (buffer: UInt64, available: Int, position: Int) {
        var buffer = buffer
        var available = available
        var position = position
        while available <= 48 {
            var word: UInt64 = 0
            if position + 2 <= count {
                word = UInt64(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt16.self)))
            }
            buffer |= word &<< UInt64(truncatingIfNeeded: 48 &- available)
            position &+= 2
            available &+= 16
        }
        return (buffer, available, position)
    }

    /// Makes at least `bits` (at most 48) bits available.
    @inline(__always)
    mutating func ensure(_ bits: Int) {
        if available < bits { refill() }
    }

    /// The next `bits` bits (0...32) without consuming them; the double shift makes 0 bits give 0.
    @inline(__always)
    func peek(_ bits: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: (buffer &>> 1) &>> UInt64(truncatingIfNeeded: 63 &- bits))
    }

    @inline(__always)
    mutating func consume(_ bits: Int) {
        buffer &<<= UInt64(truncatingIfNeeded: bits)
        available &-= bits
    }

    /// Reads `bits` (0...32) bits.
    @inline(__always)
    mutating func read(_ bits: Int) -> UInt32 {
        ensure(bits)
        let value = peek(bits)
        consume(bits)
        return value
    }

    /// Where the byte-oriented part of an uncompressed block starts: after 1 to 16 bits of
    /// padding up to the next 16-bit boundary ([MS-PATCH] 2.3.2.1). This is computed from the
    /// consumed position, not from what happens to be buffered.
    var uncompressedBlockStart: Int {
        (consumedBits / 16 + 1) * 2
    }

    /// Resumes bit reading at byte offset `byteOffset`, after an uncompressed block.
    mutating func restart(at byteOffset: Int) {
        position = byteOffset
        buffer = 0
        available = 0
    }
}

/// The state of one chunk being decoded.
struct LZXChunkDecoder {
    let tables: LZXTables
    let mainSymbolCount: Int
    let windowOrder: Int
    var reader: LZXBitReader
    let output: UnsafeMutablePointer<UInt8>
    let outputCount: Int

    var r0 = 1
    var r1 = 1
    var r2 = 1
    /// Whether the main code of some block could emit a literal 0xE8, or an uncompressed block
    /// was seen. Every output byte comes from a literal or an uncompressed block, so when this
    /// stays false the E8 pass would find nothing and is skipped, as wimlib does.
    var mayContainE8 = false
    var blockCounts = LZXBlockCounts()

    init(tables: LZXTables, mainSymbolCount: Int, windowOrder: Int, reader: LZXBitReader,
         output: UnsafeMutablePointer<UInt8>, outputCount: Int) {
        self.tables = tables
        self.mainSymbolCount = mainSymbolCount
        self.windowOrder = windowOrder
        self.reader = reader
        self.output = output
        self.outputCount = outputCount
    }

    private func failure(_ reason: String) -> DecompressionError {
        DecompressionError(.lzx, reason, offset: reader.errorOffset)
    }

    private var truncated: DecompressionError {
        DecompressionError(.lzx, "the compressed data ends before the chunk is complete", offset: reader.count)
    }

    mutating func run() throws(DecompressionError) {
        tables.mainLengths.update(repeating: 0, count: mainSymbolCount)
        tables.lengthLengths.update(repeating: 0, count: LZX.lengthSymbolCount)

        var outputPosition = 0
        while outputPosition < outputCount {
            if reader.isOverrun { throw truncated }
            let blockStart = reader.errorOffset
            let blockType = reader.read(3)
            var blockSize = LZX.defaultBlockSize
            if reader.read(1) == 0 {
                blockSize = Int(reader.read(16))
                if windowOrder >= 16 { blockSize = blockSize << 8 | Int(reader.read(8)) }
            }
            // A header made of bits past the end of the input means truncation, whatever it says.
            if reader.isOverrun { throw truncated }
            let remaining = outputCount - outputPosition
            switch blockType {
            case 1, 2:
                let aligned = blockType == 2
                try readCompressedBlockHeader(aligned: aligned)
                guard blockSize <= remaining else {
                    throw DecompressionError(
                        .lzx,
                        "a block claims \(blockSize) bytes but only \(remaining) bytes of the chunk remain",
                        offset: blockStart)
                }
                if blockSize > 0 && isMainCodeEmpty {
                    throw failure("a block of \(blockSize) bytes has an empty main code")
                }
                if aligned {
                    blockCounts.aligned += 1
                    try decodeAlignedBlock(from: outputPosition, to: outputPosition + blockSize)
                } else {
                    blockCounts.verbatim += 1
                    try decodeVerbatimBlock(from: outputPosition, to: outputPosition + blockSize)
                }
                if tables.mainLengths[0xE8] != 0 { mayContainE8 = true }
            case 3:
                guard blockSize <= remaining else {
                    throw DecompressionError(
                        .lzx,
                        "an uncompressed block claims \(blockSize) bytes but only \(remaining) bytes of the chunk remain",
                        offset: blockStart)
                }
                try copyUncompressedBlock(to: outputPosition, size: blockSize)
                blockCounts.uncompressed += 1
                mayContainE8 = true
            default:
                throw DecompressionError(
                    .lzx,
                    "block type \(blockType) is invalid (1 is verbatim, 2 aligned offset, 3 uncompressed)",
                    offset: blockStart)
            }
            outputPosition += blockSize
        }
        if reader.isOverrun { throw truncated }
        if mayContainE8 { LZXChunkDecoder.undoE8Translation(output, count: outputCount) }
    }

    private var isMainCodeEmpty = false

    // MARK: Block headers

    private mutating func readCompressedBlockHeader(aligned: Bool) throws(DecompressionError) {
        let t = tables
        if aligned {
            for symbol in 0..<LZX.alignedSymbolCount {
                t.alignedLengths[symbol] = UInt8(truncatingIfNeeded: reader.read(3))
            }
            try build(t.alignedTable, capacity: 1 << LZX.alignedTableBits, tableBits: LZX.alignedTableBits,
                      lengths: t.alignedLengths, symbolCount: LZX.alignedSymbolCount,
                      maxLength: LZX.maxAlignedCodewordLength, name: "aligned offset")
        }
        // The main code's lengths come in two runs, each with its own pretree: literals, then
        // match symbols.
        try readCodeLengths(into: t.mainLengths, count: LZX.literalCount, name: "main")
        try readCodeLengths(into: t.mainLengths + LZX.literalCount,
                            count: mainSymbolCount - LZX.literalCount, name: "main")
        let mainResult = try build(t.mainTable, capacity: t.mainTableCapacity, tableBits: LZX.mainTableBits,
                                   lengths: t.mainLengths, symbolCount: mainSymbolCount,
                                   maxLength: LZX.maxMainCodewordLength, name: "main")
        isMainCodeEmpty = mainResult == .empty
        try readCodeLengths(into: t.lengthLengths, count: LZX.lengthSymbolCount, name: "length")
        try build(t.lengthTable, capacity: t.lengthTableCapacity, tableBits: LZX.lengthTableBits,
                  lengths: t.lengthLengths, symbolCount: LZX.lengthSymbolCount,
                  maxLength: LZX.maxLengthCodewordLength, name: "length")
    }

    @discardableResult
    private func build(
        _ table: UnsafeMutablePointer<UInt32>, capacity: Int, tableBits: Int,
        lengths: UnsafeMutablePointer<UInt8>, symbolCount: Int, maxLength: Int, name: String
    ) throws(DecompressionError) -> LZXHuffman.BuildResult {
        let result = LZXHuffman.build(
            table: table, capacity: capacity, tableBits: tableBits, lengths: lengths,
            symbolCount: symbolCount, maxCodewordLength: maxLength,
            counts: tables.counts, sortedSymbols: tables.sortedSymbols)
        switch result {
        case .complete, .empty:
            return result
        case .overSubscribed:
            throw failure("the \(name) code's codeword lengths are over-subscribed (more codewords than bit patterns)")
        case .incomplete:
            throw failure("the \(name) code's codeword lengths are incomplete (some bit patterns decode to nothing)")
        }
    }

    /// Reads a pretree, then `count` codeword lengths coded with it as changes to the previous
    /// lengths at `lengths`.
    ///
    /// Pretree symbols: 0...16 set the length to `(previous - symbol) mod 17`; 17 writes 4 + (4
    /// bits) zeros; 18 writes 20 + (5 bits) zeros; 19 writes 4 + (1 bit) copies of the length
    /// given by the next pretree symbol (0...17, where 17 leaves the previous length; 18 and 19
    /// are invalid there). A run may end past `count`; like wimlib (and so like the data it
    /// accepts), the excess is written into the following entries, which for the literal half of
    /// the main code are the previous lengths of the match half. The arrays have room for it.
    private mutating func readCodeLengths(
        into lengths: UnsafeMutablePointer<UInt8>, count: Int, name: String
    ) throws(DecompressionError) {
        let t = tables
        for symbol in 0..<LZX.pretreeSymbolCount {
            t.pretreeLengths[symbol] = UInt8(truncatingIfNeeded: reader.read(4))
        }
        let result = try build(t.pretreeTable, capacity: t.pretreeTableCapacity, tableBits: LZX.pretreeTableBits,
                               lengths: t.pretreeLengths, symbolCount: LZX.pretreeSymbolCount,
                               maxLength: LZX.maxPretreeCodewordLength, name: "pretree (for the \(name) code)")
        if result == .empty {
            throw failure("the pretree for the \(name) code has no codewords")
        }
        let pretree = UnsafePointer(t.pretreeTable)

        var index = 0
        while index < count {
            // One symbol (<= 15 bits), a run bit, and a second symbol fit in 31 bits.
            reader.ensure(32)
            let entry = LZXHuffman.decode(pretree, tableBits: LZX.pretreeTableBits, bits: reader.buffer)
            reader.consume(Int(entry & LZXHuffman.lengthMask))
            let symbol = Int(entry >> 8)
            switch symbol {
            case 0...16:
                lengths[index] = Self.applyDelta(lengths[index], symbol)
                index += 1
            case 17, 18:
                let run = symbol == 17 ? 4 + Int(reader.read(4)) : 20 + Int(reader.read(5))
                (lengths + index).update(repeating: 0, count: run)
                index += run
            default:  // 19
                let run = 4 + Int(reader.read(1))
                let valueEntry = LZXHuffman.decode(pretree, tableBits: LZX.pretreeTableBits, bits: reader.buffer)
                reader.consume(Int(valueEntry & LZXHuffman.lengthMask))
                let valueSymbol = Int(valueEntry >> 8)
                guard valueSymbol <= 17 else {
                    throw failure("pretree symbol \(valueSymbol) cannot give the length of a run (in the \(name) code's lengths)")
                }
                (lengths + index).update(repeating: Self.applyDelta(lengths[index], valueSymbol), count: run)
                index += run
            }
        }
    }

    @inline(__always)
    private static func applyDelta(_ previous: UInt8, _ symbol: Int) -> UInt8 {
        let value = Int(previous) - symbol
        return UInt8(truncatingIfNeeded: value < 0 ? value + 17 : value)
    }

    // MARK: Uncompressed blocks

    private mutating func copyUncompressedBlock(to outputPosition: Int, size: Int) throws(DecompressionError) {
        let start = reader.uncompressedBlockStart
        let inputCount = reader.count
        guard start <= inputCount - 12 else { throw truncated }
        var stored = (0, 0, 0)
        for index in 0..<3 {
            let value = Int(UInt32(littleEndian: reader.base.loadUnaligned(fromByteOffset: start + 4 * index, as: UInt32.self)))
            if value == 0 {
                throw DecompressionError(
                    .lzx, "an uncompressed block stores 0 as recent offset R\(index); offsets start at 1",
                    offset: start + 4 * index)
            }
            switch index {
            case 0: stored.0 = value
            case 1: stored.1 = value
            default: stored.2 = value
            }
        }
        (r0, r1, r2) = stored
        let dataStart = start + 12
        guard size <= inputCount - dataStart else {
            throw DecompressionError(
                .lzx,
                "an uncompressed block of \(size) bytes needs more input than the \(inputCount - dataStart) bytes left",
                offset: dataStart)
        }
        UnsafeMutableRawPointer(output + outputPosition).copyMemory(from: reader.base + dataStart, byteCount: size)
        var next = dataStart + size
        // Odd sizes are padded back to a 16-bit boundary; tolerate the pad missing at the very
        // end of the input, as wimlib does.
        if size & 1 == 1 && next < inputCount { next += 1 }
        reader.restart(at: next)
    }

    // MARK: Compressed blocks

    @inline(never)
    private mutating func decodeVerbatimBlock(from start: Int, to end: Int) throws(DecompressionError) {
        try decodeBlock(aligned: false, from: start, to: end)
    }

    @inline(never)
    private mutating func decodeAlignedBlock(from start: Int, to end: Int) throws(DecompressionError) {
        try decodeBlock(aligned: true, from: start, to: end)
    }

    /// Loads the next 8 input bytes into the bit buffer without an end-of-input check; the fast
    /// loop guarantees they exist. Adds as many whole words as fit, so afterwards 49 to 64 bits
    /// are available. Requires `available < 64` (a shift by 64 would be masked to 0).
    @inline(__always)
    static func refillUnchecked(_ next: inout UnsafeRawPointer, _ buffer: inout UInt64, _ available: inout Int) {
        let raw = UInt64(littleEndian: next.loadUnaligned(as: UInt64.self))
        let swappedPairs = ((raw & 0x0000_FFFF_0000_FFFF) &<< 16) | ((raw &>> 16) & 0x0000_FFFF_0000_FFFF)
        let streamOrder = (swappedPairs &<< 32) | (swappedPairs &>> 32)
        buffer |= streamOrder &>> UInt64(truncatingIfNeeded: available)
        let wholeWords = (64 &- available) &>> 4
        next += wholeWords &<< 1
        available &+= wholeWords &<< 4
    }

    /// The fast loop, for the bulk of a block: it runs while at least `fastOutputMargin` bytes of
    /// the block and `fastInputMargin` bytes of input remain, so that no step needs an end check:
    /// every match fits in the block, the first 16 bytes of a copy may be written as two words
    /// (still inside the block), and an iteration's refills stay inside the input. Returns the
    /// position reached; `decodeBlock` finishes the block.
    ///
    /// Bits: at least 32 are available whenever a main-code entry is looked up (a codeword needs
    /// 16). The lookup happens as soon as the previous symbol's bits are consumed, before any
    /// refill, so the table load does not wait for the refill (which only adds bits below those
    /// already there). A match then has at least 16 bits for its length symbol, tops up to 49 or
    /// more before explicit offset bits (at most 17, or 14 plus a 7-bit aligned symbol), and back
    /// to 32 at its end. So an iteration refills at most twice, reading 16 input bytes.
    @inline(__always)
    private mutating func decodeFast(aligned: Bool, from start: Int, to end: Int) throws(DecompressionError) -> Int {
        guard start < end &- LZX.fastOutputMargin && reader.position <= reader.count &- LZX.fastInputMargin else {
            return start
        }
        let t = tables
        let mainTable = UnsafePointer(t.mainTable)
        let lengthTable = UnsafePointer(t.lengthTable)
        let alignedTable = UnsafePointer(t.alignedTable)
        let slotInfo = UnsafePointer(t.slotInfo)
        let outBase = output
        let fastEnd = output + (end &- LZX.fastOutputMargin)
        let inputBase = reader.base
        let inputLimit = reader.base + (reader.count &- LZX.fastInputMargin)
        var inNext = reader.base + reader.position
        var buffer = reader.buffer
        var available = reader.available
        var recent0 = r0
        var recent1 = r1
        var recent2 = r2
        var outNext = output + start

        // Invariant at the top of each iteration: `inNext <= inputLimit`, so the iteration's
        // refills read inside the input. Every refill that could break it is followed by a check
        // that leaves the loop.
        if available < 32 {
            Self.refillUnchecked(&inNext, &buffer, &available)
            if inNext > inputLimit {
                reader.buffer = buffer
                reader.available = available
                reader.position = inNext - inputBase
                return start
            }
        }
        var entry = LZXHuffman.decode(mainTable, tableBits: LZX.mainTableBits, bits: buffer)
        while outNext < fastEnd {
            // A leaf's low 6 bits are exactly its length (bits 5 to 7 are clear), and a masking
            // shift uses only the low 6 bits of its count, so the shift needs no mask of its own
            // and one instruction less sits on the symbol-to-symbol dependency chain.
            buffer &<<= UInt64(truncatingIfNeeded: entry)
            available &-= Int(entry & LZXHuffman.lengthMask)
            // The main code is not empty here (checked per block), so symbol < mainSymbolCount.
            let symbol = Int(truncatingIfNeeded: entry &>> 8)
            if symbol < LZX.literalCount {
                outNext.pointee = UInt8(truncatingIfNeeded: symbol)
                outNext += 1
                entry = LZXHuffman.decode(mainTable, tableBits: LZX.mainTableBits, bits: buffer)
                // Refilling every time (adding nothing when 49+ bits are there) is cheaper than
                // a branch whose outcome depends on the codeword lengths.
                Self.refillUnchecked(&inNext, &buffer, &available)
                if inNext > inputLimit { break }
                continue
            }

            // At least 16 bits remain: enough for the length symbol. The offset's bits get their
            // own refill below.
            let matchSymbol = symbol &- LZX.literalCount
            let slot = matchSymbol &>> 3  // < 50 because symbol < mainSymbolCount
            var length = matchSymbol & 7
            if length == LZX.primaryLengthCount {
                let lengthEntry = LZXHuffman.decode(lengthTable, tableBits: LZX.lengthTableBits, bits: buffer)
                let lengthBits = lengthEntry & LZXHuffman.lengthMask
                buffer &<<= UInt64(lengthBits)
                available &-= Int(lengthBits)
                // An empty length code yields emptyCodeSymbol; caught below.
                length &+= Int(truncatingIfNeeded: lengthEntry &>> 8)
            }
            length &+= LZX.minMatchLength

            var offset: Int
            if slot < LZX.recentOffsetCount {
                // Using R1 or R2 swaps it with R0 (the queue is not a true LRU for R2). Written
                // as selects so that it compiles to conditional moves, not unpredictable jumps.
                let isR1 = slot == 1
                let isR2 = slot == 2
                offset = isR2 ? recent2 : (isR1 ? recent1 : recent0)
                recent2 = isR2 ? recent0 : recent2
                recent1 = isR1 ? recent0 : recent1
                recent0 = offset
            } else {
                Self.refillUnchecked(&inNext, &buffer, &available)  // unconditionally, as above
                let info = slotInfo[slot]
                let extraBits = Int(truncatingIfNeeded: info &>> 24)
                offset = Int(truncatingIfNeeded: info & 0xFF_FFFF)
                if aligned && extraBits >= 3 {
                    let verbatimBits = extraBits &- 3
                    offset &+= Int(truncatingIfNeeded: (buffer &>> 1) &>> UInt64(truncatingIfNeeded: 63 &- verbatimBits)) &<< 3
                    buffer &<<= UInt64(truncatingIfNeeded: verbatimBits)
                    available &-= verbatimBits
                    let alignedEntry = alignedTable[Int(truncatingIfNeeded: buffer &>> UInt64(64 - LZX.alignedTableBits))]
                    let alignedBits = alignedEntry & LZXHuffman.lengthMask
                    buffer &<<= UInt64(alignedBits)
                    available &-= Int(alignedBits)
                    // An empty aligned code yields emptyCodeSymbol; caught below.
                    offset &+= Int(truncatingIfNeeded: alignedEntry &>> 8)
                } else {
                    offset &+= Int(truncatingIfNeeded: (buffer &>> 1) &>> UInt64(truncatingIfNeeded: 63 &- extraBits))
                    buffer &<<= UInt64(truncatingIfNeeded: extraBits)
                    available &-= extraBits
                }
                offset &-= LZX.offsetAdjustment
                recent2 = recent1
                recent1 = recent0
                recent0 = offset
            }

            // Lengths above 257 only come from an empty length code.
            guard offset <= outNext - outBase, length <= LZX.maxMatchLength else {
                let position = outNext - outBase
                reader.buffer = buffer
                reader.available = available
                reader.position = inNext - inputBase
                throw matchFailure(length: length, offset: offset, position: position, end: end, aligned: aligned)
            }
            if available < 32 { Self.refillUnchecked(&inNext, &buffer, &available) }
            entry = LZXHuffman.decode(mainTable, tableBits: LZX.mainTableBits, bits: buffer)

            let source = outNext + (0 &- offset)  // offset <= position was checked above
            if offset >= 8 {
                // Two words cover most matches; for offsets below 16 the second source word
                // overlaps the first destination word, which the sequential order handles.
                let from = UnsafeRawPointer(source)
                let to = UnsafeMutableRawPointer(outNext)
                to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                (to + 8).storeBytes(of: (from + 8).loadUnaligned(as: UInt64.self), as: UInt64.self)
                if length > 16 { Self.copyWords(from: source + 16, to: outNext + 16, count: length &- 16) }
            } else if offset == 1 {
                let pattern = UInt64(source.pointee) &* 0x0101_0101_0101_0101
                let to = UnsafeMutableRawPointer(outNext)
                to.storeBytes(of: pattern, as: UInt64.self)
                (to + 8).storeBytes(of: pattern, as: UInt64.self)
                if length > 16 { Self.fillWords(pattern, to: outNext + 16, count: length &- 16) }
            } else {
                Self.copyBytes(from: source, to: outNext, count: length)
            }
            outNext += length
            if inNext > inputLimit { break }
        }
        reader.buffer = buffer
        reader.available = available
        reader.position = inNext - inputBase
        r0 = recent0
        r1 = recent1
        r2 = recent2
        return outNext - outBase
    }

    /// Copies `count` bytes a word at a time, possibly writing up to 7 bytes more. The source
    /// must be at least 8 bytes before the destination. Kept out of line (long matches are the
    /// minority) so the fast loop stays small.
    @inline(never)
    static func copyWords(from source: UnsafePointer<UInt8>, to destination: UnsafeMutablePointer<UInt8>, count: Int) {
        var from = UnsafeRawPointer(source)
        var to = UnsafeMutableRawPointer(destination)
        let stop = to + count
        repeat {
            to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
            from += 8
            to += 8
        } while to < stop
    }

    /// Writes `count` bytes of `pattern`, possibly up to 7 more.
    @inline(never)
    static func fillWords(_ pattern: UInt64, to destination: UnsafeMutablePointer<UInt8>, count: Int) {
        var to = UnsafeMutableRawPointer(destination)
        let stop = to + count
        repeat {
            to.storeBytes(of: pattern, as: UInt64.self)
            to += 8
        } while to < stop
    }

    /// Copies exactly `count` bytes forward one at a time, which repeats the pattern when the
    /// source overlaps the destination (offsets below 8).
    @inline(never)
    static func copyBytes(from source: UnsafePointer<UInt8>, to destination: UnsafeMutablePointer<UInt8>, count: Int) {
        var index = 0
        repeat {
            destination[index] = source[index]
            index &+= 1
        } while index < count
    }

    /// The hot loop. Everything it touches is in locals so it stays in registers.
    ///
    /// Bit budget: the top of the loop guarantees 48 bits; a main symbol takes at most 16 and a
    /// length symbol 16, leaving 16; before the offset's extra bits (at most 17, or 14 verbatim
    /// plus a 7-bit aligned symbol) the buffer is topped up again when below 24.
    @inline(__always)
    private mutating func decodeBlock(aligned: Bool, from start: Int, to end: Int) throws(DecompressionError) {
        let t = tables
        let mainTable = UnsafePointer(t.mainTable)
        let lengthTable = UnsafePointer(t.lengthTable)
        let alignedTable = UnsafePointer(t.alignedTable)
        let slotInfo = UnsafePointer(t.slotInfo)
        let out = output
        let outRaw = UnsafeMutableRawPointer(output)
        // An 8-byte store at position p stays inside the output while p <= wordStoreLimit.
        let wordStoreLimit = outputCount &- 8
        var position = try decodeFast(aligned: aligned, from: start, to: end)
        var r = reader
        var recent0 = r0
        var recent1 = r1
        var recent2 = r2

        while position < end {
            if r.available < 48 {
                r.refill()
                // At most 64 bits are buffered, so once the words loaded run more than 8 bytes
                // past the input, bits past its end have certainly been consumed: stop now
                // rather than decode the rest of a large block from zeros.
                if r.position > r.count &+ 8 {
                    reader = r
                    throw truncated
                }
            }
            let mainEntry = LZXHuffman.decode(mainTable, tableBits: LZX.mainTableBits, bits: r.buffer)
            r.consume(Int(mainEntry & LZXHuffman.lengthMask))
            // The main code is not empty here (checked per block), so symbol < mainSymbolCount.
            let symbol = Int(truncatingIfNeeded: mainEntry &>> 8)
            if symbol < LZX.literalCount {
                out[position] = UInt8(truncatingIfNeeded: symbol)
                position &+= 1
                continue
            }

            let matchSymbol = symbol &- LZX.literalCount
            let slot = matchSymbol &>> 3  // < 50 because symbol < mainSymbolCount
            var length = matchSymbol & 7
            if length == LZX.primaryLengthCount {
                let lengthEntry = LZXHuffman.decode(lengthTable, tableBits: LZX.lengthTableBits, bits: r.buffer)
                r.consume(Int(lengthEntry & LZXHuffman.lengthMask))
                // An empty length code yields emptyCodeSymbol, which fails the check below.
                length &+= Int(truncatingIfNeeded: lengthEntry &>> 8)
            }
            length &+= LZX.minMatchLength

            var offset: Int
            if slot < LZX.recentOffsetCount {
                // Using R1 or R2 swaps it with R0 (the queue is not a true LRU for R2).
                if slot == 0 {
                    offset = recent0
                } else if slot == 1 {
                    offset = recent1
                    recent1 = recent0
                    recent0 = offset
                } else {
                    offset = recent2
                    recent2 = recent0
                    recent0 = offset
                }
            } else {
                if r.available < 24 { r.refill() }
                let info = slotInfo[slot]
                let extraBits = Int(truncatingIfNeeded: info &>> 24)
                offset = Int(truncatingIfNeeded: info & 0xFF_FFFF)
                if aligned && extraBits >= 3 {
                    // The low 3 bits come from the aligned offset code.
                    offset &+= Int(truncatingIfNeeded: r.peek(extraBits &- 3)) &<< 3
                    r.consume(extraBits &- 3)
                    let alignedEntry = alignedTable[Int(truncatingIfNeeded: r.buffer &>> UInt64(truncatingIfNeeded: 64 &- LZX.alignedTableBits))]
                    r.consume(Int(alignedEntry & LZXHuffman.lengthMask))
                    // An empty aligned code yields emptyCodeSymbol, which fails the check below.
                    offset &+= Int(truncatingIfNeeded: alignedEntry &>> 8)
                } else {
                    offset &+= Int(truncatingIfNeeded: r.peek(extraBits))
                    r.consume(extraBits)
                }
                offset &-= LZX.offsetAdjustment
                recent2 = recent1
                recent1 = recent0
                recent0 = offset
            }

            // offset >= 1 always: slot bases are >= 3 before the adjustment, and the recent
            // offsets start at 1 and are only ever replaced by such offsets or by nonzero stored
            // ones. So the source starts inside the output and before the destination.
            guard length <= end &- position, offset <= position else {
                reader = r
                throw matchFailure(length: length, offset: offset, position: position, end: end, aligned: aligned)
            }

            let destination = outRaw + position
            if offset >= 8 && position &+ length <= wordStoreLimit {
                // Source and destination words never overlap, and bytes written past the match
                // (at most 7) land in output that is decoded later.
                var source = UnsafeRawPointer(destination - offset)
                var target = destination
                let stop = destination + length
                repeat {
                    target.storeBytes(of: source.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    source += 8
                    target += 8
                } while target < stop
            } else if offset == 1 && position &+ length <= wordStoreLimit {
                // A run of the previous byte.
                let pattern = UInt64(out[position &- 1]) &* 0x0101_0101_0101_0101
                var target = destination
                let stop = destination + length
                repeat {
                    target.storeBytes(of: pattern, as: UInt64.self)
                    target += 8
                } while target < stop
            } else {
                // Short offsets repeat a pattern; copying forward one byte at a time does that.
                let source = out + (position &- offset)
                let target = out + position
                var index = 0
                repeat {
                    target[index] = source[index]
                    index &+= 1
                } while index < length
            }
            position &+= length
        }
        reader = r
        r0 = recent0
        r1 = recent1
        r2 = recent2
    }

    /// Explains a match that failed validation. Lengths above 257 only come from the sentinel of
    /// an empty length code, and offsets that large from an empty aligned code (or from huge
    /// offsets stored by an uncompressed block, hence the check of the table).
    @inline(never)
    private func matchFailure(length: Int, offset: Int, position: Int, end: Int, aligned: Bool) -> DecompressionError {
        if length > LZX.maxMatchLength {
            return failure("a match needs a length symbol but the block's length code is empty")
        }
        if aligned && offset >= Int(LZXHuffman.emptyCodeSymbol) - LZX.offsetAdjustment
            && tables.alignedTable[0] == LZXHuffman.emptyCodeSymbol << 8 {
            return failure("a match needs an aligned offset symbol but the block's aligned offset code is empty")
        }
        if length > end - position {
            return failure("a match of \(length) bytes runs past the end of its block (\(end - position) bytes left)")
        }
        return failure("a match refers \(offset) bytes back but only \(position) bytes of the chunk precede it")
    }

    // MARK: E8 translation

    /// Marks (with its top bit) each byte of `word` that is 0xE8, by the classic "has a zero
    /// byte" test on `word ^ E8E8...`. Bytes above the first mark may be marked wrongly (by the
    /// borrow), but the lowest mark, the only one used, is exact.
    @inline(__always)
    static func e8Marks(_ word: UInt64) -> UInt64 {
        let differences = word ^ 0xE8E8_E8E8_E8E8_E8E8
        return (differences &- 0x0101_0101_0101_0101) & ~differences & 0x8080_8080_8080_8080
    }

    /// Undoes the encoder's x86 CALL translation (see the type comment for the exact rules),
    /// scanning for 0xE8 bytes a word at a time.
    static func undoE8Translation(_ data: UnsafeMutablePointer<UInt8>, count: Int) {
        guard count > 10 else { return }
        let limit = count - 10  // an E8 byte must sit before this index to be translated
        let raw = UnsafeMutableRawPointer(data)
        var index = 0
        while true {
            var found = false
            // 16 bytes per step: most of a chunk has no 0xE8 at all.
            while index &+ 16 <= limit {
                let low = Self.e8Marks(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                let high = Self.e8Marks(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index &+ 8, as: UInt64.self)))
                if low | high != 0 {
                    index &+= low != 0 ? low.trailingZeroBitCount &>> 3 : 8 &+ (high.trailingZeroBitCount &>> 3)
                    found = true
                    break
                }
                index &+= 16
            }
            if !found {
                while index &+ 8 <= limit {
                    let marks = Self.e8Marks(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
                    if marks != 0 {
                        index &+= marks.trailingZeroBitCount &>> 3
                        found = true
                        break
                    }
                    index &+= 8
                }
            }
            if !found {
                while index < limit && data[index] != 0xE8 { index &+= 1 }
                if index >= limit { return }
            }
            // index < limit = count - 10, so the 4 target bytes are inside the chunk.
            let target = raw + (index &+ 1)
            let value = Int32(littleEndian: target.loadUnaligned(as: Int32.self))
            let position = Int32(truncatingIfNeeded: index)
            if value >= 0 {
                if value < LZX.e8FileSize {
                    target.storeBytes(of: (value &- position).littleEndian, as: Int32.self)
                }
            } else if value >= -position {
                target.storeBytes(of: (value &+ LZX.e8FileSize).littleEndian, as: Int32.self)
            }
            index &+= 5
        }
    }
}
