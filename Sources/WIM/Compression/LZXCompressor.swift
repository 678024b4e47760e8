/// Compressor for LZX as WIM files use it, the counterpart of `LZXDecompressor` (whose header
/// comment states the format; sources: [MS-PATCH] "LZX DELTA Compression and Decompression" §2,
/// the 1997 CAB LZX description, and wimlib's format notes; no code comes from wimlib, which is
/// only the interoperability check in the tests).
///
/// Format facts the encoder relies on:
///
/// - One chunk is one independent stream; the window order, and with it the number of offset
///   slots and the main alphabet, follows from the *resource's* chunk size (every chunk of a
///   resource, the short last one included, is decoded with the same window). Hence the
///   compressor is made for a chunk size.
/// - Before matching, the x86 CALL translation is applied (the decoder undoes it): for each
///   0xE8 byte at position i < size - 10, the 32-bit little-endian value v after it, when
///   -i <= v < 12000000, is replaced by v + i (if that is below 12000000) or v - 12000000; the
///   4 bytes are then skipped.
/// - Bits go out in 16-bit little-endian words, each filled from its most significant bit.
/// - Block header: 3 bits of type (1 verbatim, 2 aligned offset), 1 bit "size is 32768", else
///   the size in 16 bits (24 when the window order is 16 or more). An aligned block then has
///   8 aligned-code lengths of 3 bits. The main code's lengths follow in two parts (256 literals,
///   then the match symbols) and then the length code's, each part preceded by its own pretree
///   (20 lengths of 4 bits) and coded as changes against the previous block's lengths (all 0 at
///   the start of a chunk): symbols 0...16 give `(previous - new) mod 17`, 17 and 18 runs of
///   4...19 and 20...51 zeros, 19 a run of 4 or 5 copies of the length the next symbol gives.
/// - Main symbols: literals 0...255, then `256 + slot * 8 + min(length - 2, 7)`; a header of 7
///   is followed by a length symbol `length - 9`. Slots 0, 1, 2 reuse the recent offsets R0, R1,
///   R2 (R1 and R2 swap with R0); other slots carry `offset + 2` as slot base plus extra bits,
///   whose low 3 come from the aligned code in aligned blocks when there are 3 or more.
/// - Codes are canonical and complete (our decoder and wimlib reject other non-empty codes);
///   main and length codewords are at most 16 bits, pretree 15, aligned 7. An empty length code
///   (no long matches) is written as all zero lengths.
/// - Offsets stay within the chunk and below `windowSize - 2`; matches never cross blocks.
///
/// Parsing:
/// - `.fast` (wimlib levels below 35): hash chains over 3-byte prefixes and lazy matching, with
///   a check of the most recent offset first (a repeat match costs no offset bits).
/// - `.normal`: a near-optimal parse. Matches for every position of a block are found once
///   (hash chains, several candidates of increasing length per position) and cached; then a
///   forward minimum-cost pass over the block prices literals, repeat matches (tracking the R0,
///   R1, R2 queue of the cheapest path to each position) and explicit matches at every length
///   with the codeword lengths of the previous pass (the first pass of a chunk is priced from a
///   greedy parse of the block's cached matches, later blocks from the previous block's codes).
///   The last pass's parse is written, as an aligned-offset block when that is smaller.
///
/// Measured (release, 32 KiB chunks, 2 threads, against wimlib-imagex 1.13.5 --compress=LZX at its
/// default level): /usr/share/doc 1.0029x wimlib's size at 1.27x its time (level 60, two passes:
/// 1.0018x at 1.6x); /usr/lib/x86_64-linux-gnu/perl 1.031x at two passes, level 100 1.021x. The
/// gap is the parser's (no block splitting, hash chains rather than a binary tree, integer bit
/// costs).
public struct LZXCompressor {
    public enum Level: Sendable { case fast, normal }

    public static var maxChunkSize: Int { LZX.maxWindowSize }

    public let level: Level
    /// The resource's chunk size, which fixes the window; every chunk given is at most this.
    public let chunkSize: Int
    let windowOrder: Int
    let mainSymbolCount: Int
    let settings: LZXParseSettings

    private var state: LZXEncoderState

    /// `chunkSize` is the resource's (32768...2097152; smaller sizes use the 32 KiB window as
    /// the decoder does). `searchLevel` scales the search on wimlib's 1...100 scale.
    public init(chunkSize: Int = 32768, level: Level = .normal, searchLevel: Int = 50) {
        precondition(chunkSize >= 1 && chunkSize <= LZX.maxWindowSize, "LZX chunks hold 1 to 2097152 bytes, not \(chunkSize)")
        self.level = level
        self.chunkSize = chunkSize
        var order = LZX.minWindowOrder
        while (1 << order) < chunkSize { order += 1 }
        windowOrder = order
        mainSymbolCount = LZX.mainSymbolCount(windowOrder: order)
        settings = LZXParseSettings(level: level, searchLevel: searchLevel)
        state = LZXEncoderState(chunkCapacity: max(chunkSize, 1), mainSymbolCount: mainSymbolCount, settings: settings)
    }

    /// Compresses one chunk. Returns nil when the result would not be smaller than the input
    /// (the WIM writer then stores the chunk raw). A chunk larger than `chunkSize` is a caller's
    /// error and traps.
    public mutating func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        guard input.count > 0, let base = input.baseAddress else { return nil }
        if IncompressibleData.isLikely(base.assumingMemoryBound(to: UInt8.self), count: input.count) { return nil }
        let result = encode(input)
        return result.count < input.count ? result : nil
    }

    /// The compressed stream even when it is not smaller than the input (for tests and the fuzz
    /// target: the encoder must be right for every size). Empty input gives an empty result.
    mutating func compressAlways(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        input.count == 0 ? [] : encode(input)
    }

    public mutating func compress(_ input: [UInt8]) -> [UInt8]? {
        input.withUnsafeBytes { compress($0) }
    }

    mutating func compressAlways(_ input: [UInt8]) -> [UInt8] {
        input.withUnsafeBytes { compressAlways($0) }
    }

    private mutating func encode(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        precondition(input.count <= chunkSize, "this LZX compressor takes chunks of at most \(chunkSize) bytes, not \(input.count)")
        if !isKnownUniquelyReferenced(&state) {
            state = LZXEncoderState(chunkCapacity: max(chunkSize, 1), mainSymbolCount: mainSymbolCount, settings: settings)
        }
        var chunk = LZXChunkEncoder(state: state, windowOrder: windowOrder, mainSymbolCount: mainSymbolCount, settings: settings)
        let size = chunk.run(input)
        return Array(UnsafeBufferPointer(start: state.output, count: size))
    }
}

/// Search and parse settings derived from the level.
struct LZXParseSettings: Sendable {
    let optimal: Bool
    /// Hash-chain candidates examined per position.
    let searchDepth: Int
    /// A match this long is taken without looking further.
    let niceLength: Int
    /// Minimum-cost passes per block (optimal parsing).
    let passes: Int
    /// The first pass of a chunk is priced from a greedy parse's statistics, not fixed costs.
    let greedyStart: Bool
    /// A match is priced at every length up to this one, beyond it only at its full length
    /// (lengths past 16 differ by a length symbol whose cost changes little from one to the
    /// next): below level 60, 5-7% less CPU on the text of /usr/share/doc for 0.16% more size.
    let everyLengthUpTo: Int
    /// Most bytes per block: one block per 32 KiB chunk; larger chunks are cut so that codes
    /// follow the data's statistics.
    let blockSize: Int

    init(level: LZXCompressor.Level, searchLevel: Int) {
        let scale = max(1, min(100, searchLevel))
        switch level {
        case .fast:
            optimal = false
            searchDepth = max(4, 12 * scale / 34)
            niceLength = max(16, 48 * scale / 34)
            passes = 0
            greedyStart = false
            everyLengthUpTo = 0
        case .normal:
            optimal = true
            // The default (50): one minimum-cost pass priced from a greedy parse of the chunk's
            // own matches. On /usr/share/doc that is 0.1% larger than two passes (the second
            // priced from the first) for 70% of the CPU time; from level 60 two passes, from 80
            // three. Below 60 the search stops after 16 candidates: on the text of
            // /usr/share/doc 32 gave 0.24% less size for 8% more CPU.
            searchDepth = max(8, (scale >= 60 ? 32 : 16) * scale / 50)
            niceLength = min(LZX.maxMatchLength, max(24, 64 * scale / 50))
            passes = scale >= 80 ? 3 : scale >= 60 ? 2 : 1
            greedyStart = true
            everyLengthUpTo = scale >= 60 ? LZX.maxMatchLength : 16
        }
        blockSize = 65536
    }
}

/// Buffers of one compressor, allocated once (for the largest chunk) and reused for every chunk.
final class LZXEncoderState {
    let chunkCapacity: Int
    let blockCapacity: Int
    /// The chunk after E8 translation, with 8 spare bytes for word loads.
    let data: UnsafeMutablePointer<UInt8>
    let hashBits: Int
    /// Hash chains over 4-byte prefixes: the latest position per hash and, per position, the
    /// one before it with the same hash.
    let head: UnsafeMutablePointer<Int32>
    let previous: UnsafeMutablePointer<Int32>
    /// The latest position per hash of its 3-byte prefix (no chain): the nearest 3-byte match.
    let head3: UnsafeMutablePointer<Int32>

    /// Match cache of one block: for block position i, matches `cacheStart[i]..<cacheStart[i+1]`
    /// in increasing length.
    let cacheCapacity: Int
    let cacheStart: UnsafeMutablePointer<Int32>
    let cacheLength: UnsafeMutablePointer<UInt16>
    let cacheOffset: UnsafeMutablePointer<UInt32>

    /// Minimum-cost pass: per block position, the cheapest cost found, the item arriving there
    /// (see `LZXItem`) and the recent-offset queue after it.
    let pathCost: UnsafeMutablePointer<UInt32>
    let pathItem: UnsafeMutablePointer<UInt32>
    let pathQueue: UnsafeMutablePointer<Int32>

    /// The block's parse, in order.
    let items: UnsafeMutablePointer<UInt32>

    let output: UnsafeMutablePointer<UInt8>
    let outputCapacity: Int

    var mainFrequencies: [UInt32]
    var lengthFrequencies: [UInt32]
    var alignedFrequencies: [UInt32]
    var mainLengths: [UInt8]
    var lengthLengths: [UInt8]
    var alignedLengths: [UInt8]
    var mainCodes: [UInt32]
    var lengthCodes: [UInt32]
    var alignedCodes: [UInt32]
    /// The previous block's lengths, against which the next block's are delta coded.
    var previousMainLengths: [UInt8]
    var previousLengthLengths: [UInt8]
    /// Bit costs for the parser (from the previous pass's or block's codes).
    var mainCost: [UInt32]
    /// Per offset slot and match length (2...257), the cost of its main and length symbols.
    let matchCost: UnsafeMutablePointer<UInt32>
    var lengthCost: [UInt32]
    var alignedCost: [UInt32]
    var codeBuilder = HuffmanCodeBuilder()
    /// Pretree scratch: symbols with their extra bits.
    var pretreeItems: [UInt32] = []
    var pretreeFrequencies = [UInt32](repeating: 0, count: LZX.pretreeSymbolCount)
    var pretreeLengths = [UInt8](repeating: 0, count: LZX.pretreeSymbolCount)
    var pretreeCodes = [UInt32](repeating: 0, count: LZX.pretreeSymbolCount)

    static let maxMatchesPerPosition = 16

    init(chunkCapacity: Int, mainSymbolCount: Int, settings: LZXParseSettings) {
        self.chunkCapacity = chunkCapacity
        blockCapacity = min(chunkCapacity, settings.blockSize)
        data = .allocate(capacity: chunkCapacity + 8)
        data.initialize(repeating: 0, count: chunkCapacity + 8)
        var bits = 12
        while bits < 16 && (1 << bits) < chunkCapacity { bits += 1 }
        hashBits = bits
        head = .allocate(capacity: 1 << bits)
        head.initialize(repeating: -1, count: 1 << bits)
        previous = .allocate(capacity: chunkCapacity)
        previous.initialize(repeating: -1, count: chunkCapacity)
        head3 = .allocate(capacity: 1 << MatchFinding.nearTableBits)
        head3.initialize(repeating: -1, count: 1 << MatchFinding.nearTableBits)

        cacheCapacity = settings.optimal ? blockCapacity * 6 + Self.maxMatchesPerPosition : 0
        cacheStart = .allocate(capacity: blockCapacity + 1)
        cacheStart.initialize(repeating: 0, count: blockCapacity + 1)
        cacheLength = .allocate(capacity: max(cacheCapacity, 1))
        cacheLength.initialize(repeating: 0, count: max(cacheCapacity, 1))
        cacheOffset = .allocate(capacity: max(cacheCapacity, 1))
        cacheOffset.initialize(repeating: 0, count: max(cacheCapacity, 1))

        let pathCapacity = settings.optimal ? blockCapacity + 1 : 1
        pathCost = .allocate(capacity: pathCapacity)
        pathCost.initialize(repeating: 0, count: pathCapacity)
        pathItem = .allocate(capacity: pathCapacity)
        pathItem.initialize(repeating: 0, count: pathCapacity)
        pathQueue = .allocate(capacity: 3 * pathCapacity)
        pathQueue.initialize(repeating: 1, count: 3 * pathCapacity)

        items = .allocate(capacity: blockCapacity)
        items.initialize(repeating: 0, count: blockCapacity)

        // Worst case: 16-bit literals, plus block headers (trees) for each block.
        outputCapacity = 2 * chunkCapacity + (chunkCapacity / max(1, blockCapacity) + 1) * 4096
        output = .allocate(capacity: outputCapacity)
        output.initialize(repeating: 0, count: outputCapacity)

        mainFrequencies = [UInt32](repeating: 0, count: mainSymbolCount)
        lengthFrequencies = [UInt32](repeating: 0, count: LZX.lengthSymbolCount)
        alignedFrequencies = [UInt32](repeating: 0, count: LZX.alignedSymbolCount)
        mainLengths = [UInt8](repeating: 0, count: mainSymbolCount)
        lengthLengths = [UInt8](repeating: 0, count: LZX.lengthSymbolCount)
        alignedLengths = [UInt8](repeating: 0, count: LZX.alignedSymbolCount)
        mainCodes = [UInt32](repeating: 0, count: mainSymbolCount)
        lengthCodes = [UInt32](repeating: 0, count: LZX.lengthSymbolCount)
        alignedCodes = [UInt32](repeating: 0, count: LZX.alignedSymbolCount)
        previousMainLengths = [UInt8](repeating: 0, count: mainSymbolCount)
        previousLengthLengths = [UInt8](repeating: 0, count: LZX.lengthSymbolCount)
        mainCost = [UInt32](repeating: 0, count: mainSymbolCount)
        let matchCostCount = (mainSymbolCount - LZX.literalCount) / 8 * LZX.lengthCount
        matchCost = .allocate(capacity: matchCostCount)
        matchCost.initialize(repeating: 0, count: matchCostCount)
        lengthCost = [UInt32](repeating: 0, count: LZX.lengthSymbolCount)
        alignedCost = [UInt32](repeating: 3, count: LZX.alignedSymbolCount)
    }

    deinit {
        data.deallocate()
        head.deallocate()
        previous.deallocate()
        head3.deallocate()
        cacheStart.deallocate()
        cacheLength.deallocate()
        cacheOffset.deallocate()
        pathCost.deallocate()
        pathItem.deallocate()
        pathQueue.deallocate()
        items.deallocate()
        matchCost.deallocate()
        output.deallocate()
    }
}

/// One parse item in 32 bits: a literal is its byte (length field 0); a match is
/// `length << 22 | offsetCode`, where the offset code is 0, 1, 2 for R0, R1, R2 and otherwise
/// the offset plus 2 (below 2^21 + 2, so it fits in 22 bits).
enum LZXItem {
    @inline(__always) static func match(length: Int, code: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: length &<< 22 | code)
    }
    @inline(__always) static func length(_ item: UInt32) -> Int { Int(item &>> 22) }
    @inline(__always) static func code(_ item: UInt32) -> Int { Int(item & 0x3F_FFFF) }

    /// The offset slot of an adjusted offset (offset + 2, at least 3).
    @inline(__always)
    static func slot(adjustedOffset value: Int) -> Int {
        if value >= 262_144 { return 36 &+ (value &- 262_144) &>> 17 }
        let log = Int.bitWidth &- 1 &- value.leadingZeroBitCount
        return log &* 2 &+ (value &>> (log &- 1)) & 1
    }
}

/// Writes the LZX bit stream: 16-bit little-endian words, most significant bit first.
struct LZXBitWriter {
    let output: UnsafeMutablePointer<UInt8>
    let capacity: Int
    var position = 0
    var accumulator: UInt64 = 0
    var pendingBits = 0

    init(output: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.output = output
        self.capacity = capacity
    }

    /// Appends the low `count` (0...32) bits of `value`.
    @inline(__always)
    mutating func write(_ value: UInt32, _ count: Int) {
        accumulator = accumulator &<< UInt64(truncatingIfNeeded: count) | UInt64(value)
        pendingBits &+= count
        while pendingBits >= 16 {
            pendingBits &-= 16
            storeWord(UInt16(truncatingIfNeeded: accumulator &>> UInt64(truncatingIfNeeded: pendingBits)))
        }
    }

    @inline(__always)
    private mutating func storeWord(_ word: UInt16) {
        // The capacity covers the worst case of any parse; this guard only keeps a bug from
        // writing past the buffer.
        guard position &+ 2 <= capacity else { return }
        output[position] = UInt8(truncatingIfNeeded: word)
        output[position &+ 1] = UInt8(truncatingIfNeeded: word &>> 8)
        position &+= 2
    }

    /// Pads the last word with zero bits; returns the stream's size.
    mutating func finish() -> Int {
        if pendingBits > 0 {
            storeWord(UInt16(truncatingIfNeeded: accumulator &<< UInt64(truncatingIfNeeded: 16 &- pendingBits)))
            pendingBits = 0
        }
        return position
    }
}

extension LZXCompressor: ChunkCompressor {
    public var format: CompressionFormat { .lzx }

    /// Levels below 35 parse lazily (wimlib's fast range), the rest near-optimally; the level
    /// also scales the search depth and, from 80, adds a third cost pass.
    public init(level: CompressionLevel, chunkSize: Int) {
        self.init(chunkSize: chunkSize, level: level.value < 35 ? .fast : .normal, searchLevel: level.value)
    }
}
