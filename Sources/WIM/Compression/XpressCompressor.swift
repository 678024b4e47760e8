/// Compressor for XPRESS as WIM files use it: the "LZ77+Huffman" algorithm of [MS-XCA].
///
/// Format facts (from [MS-XCA] 2.1 "LZ77+Huffman Compression Algorithm Details" and 2.2, and
/// from our `XpressDecompressor`, whose reading of the stream the output must satisfy; wimlib is
/// only the interoperability check in the tests, no code comes from it):
///
/// - A WIM chunk (at most 64 KiB) is an independent stream and one block: a 256-byte table of
///   512 four-bit code lengths (low nibble = even symbol), then a bit stream of 16-bit
///   little-endian words, each written most significant bit first.
/// - Symbols 0...255 are literals; 256...511 are match headers `256 + bits << 4 + min(L, 15)`,
///   where `L` is the match length minus 3 and `bits` = floor(log2(offset)). The offset's low
///   `bits` bits follow the symbol (after any length bytes), so offsets are 1...65535 and a
///   64 KiB chunk never needs more. Lengths are at least 3.
/// - When `L >= 15`, more length goes in plain bytes: one byte `L - 15` when that is below 255,
///   else 255 and `L` as a 16-bit little-endian value (the 32-bit form, announced by a 16-bit
///   0, is never needed: a chunk's matches are shorter than 65536 + 3).
/// - Those bytes sit where the reference decoder's byte cursor stands after the symbol. That
///   decoder loads two words at the block start and one more whenever fewer than 16 bits remain;
///   the writer below matches it by keeping up to 16 pending bits (a full word is stored only
///   when a 17th bit arrives) and reserving the slots of the pending word and of the one after
///   it, so a byte written "now" lands after both.
/// - The Huffman code must be complete (our decoder rejects anything else); codes are
///   canonical (shorter first, then by symbol) and at most 15 bits long.
/// - [MS-XCA] 2.1 ends the stream with the end-of-file symbol 256 (with its zero offset bits).
///   Decoders that know the output size (ours, wimlib's, WIM readers) stop before it; it is
///   written anyway as the specification asks, and it guarantees two used symbols.
///
/// Parsing: hash chains over 4-byte prefixes plus the latest position of each 3-byte prefix
/// (every position is inserted), with a bounded number of candidates per position; `.fast`
/// takes the longest match greedily, `.normal` also looks one byte ahead (lazy matching) and searches deeper. On 300 KB of
/// license text in 32 KiB chunks `.normal` comes out near wimlib's default ratio (3.08:1 against
/// 3.12:1; on /usr/share/doc within 0.1% of wimlib's WIM size) and `.fast` near its greedy
/// level's (2.96:1 against 3.05:1). `.normal` searches 16 candidates deep: 48 gained 0.1% of
/// size for 10% more capture time, 8 lost 0.3% and saved no time. Chaining 4-byte rather than
/// 3-byte prefixes made the text of /usr/share/doc 0.23% smaller (0.11% above wimlib's) for the
/// same time.
///
/// Before writing anything the exact output size is computed from the symbol frequencies, so a
/// chunk that would not shrink costs no encoding and the output is allocated once, exactly.
public struct XpressCompressor {
    public enum Level: Sendable { case fast, normal }

    public let level: Level

    @inline(__always) static var symbolCount: Int { 512 }
    @inline(__always) static var maxCodeLength: Int { 15 }
    public static var maxChunkSize: Int { 65536 }
    @inline(__always) static var minMatch: Int { 3 }
    @inline(__always) static var maxHashBits: Int { 15 }
    @inline(__always) static var endOfData: Int { 256 }
    /// The farthest offset a match of the minimum length is taken at.
    @inline(__always) static var farthestShortMatch: Int { 1024 }

    /// Candidates examined per position, and the length that ends the search at once.
    private let maxDepth: Int
    private let niceLength: Int
    /// (Lazy parsing) a match this long makes the look-ahead search a quarter as deep.
    private let goodLength: Int
    private let lazy: Bool

    /// Most recent position (or -1) for each hash of 4 bytes: the heads of the chains.
    private var head: [Int32]
    /// Most recent position (or -1) for each hash of 3 bytes: the nearest 3-byte match.
    private var head3: [Int32]
    /// For each position, the distance back to the previous one with the same hash (0: none).
    private var previous: [UInt16]
    /// The parse: a literal byte as itself, a match as `offset << 16 | (length - 3)`.
    private var items: [UInt32]
    private var frequencies: [UInt32]
    private var lengths: [UInt8]
    private var codes: [UInt32]
    private var codeBuilder = HuffmanCodeBuilder()

    public init(level: Level = .normal) {
        self.level = level
        switch level {
        case .fast:
            maxDepth = 8
            niceLength = 32
            goodLength = 32
            lazy = false
        case .normal:
            maxDepth = 16
            niceLength = 128
            goodLength = 16
            lazy = true
        }
        head = [Int32](repeating: -1, count: 1 << Self.maxHashBits)
        head3 = [Int32](repeating: -1, count: 1 << MatchFinding.nearTableBits)
        previous = [UInt16](repeating: 0, count: Self.maxChunkSize)
        items = [UInt32](repeating: 0, count: Self.maxChunkSize)
        frequencies = [UInt32](repeating: 0, count: Self.symbolCount)
        lengths = [UInt8](repeating: 0, count: Self.symbolCount)
        codes = [UInt32](repeating: 0, count: Self.symbolCount)
    }

    /// Compresses one chunk (1...65536 bytes). Returns nil when the result would not be smaller
    /// than the input (the WIM writer then stores the chunk raw), else the compressed bytes.
    /// A chunk over 65536 bytes is a caller's error (XPRESS chunks are at most 64 KiB) and traps.
    public mutating func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        // Table (256) + two words (4) is the least any stream takes.
        guard input.count > 260, let base = input.baseAddress else { return nil }
        if IncompressibleData.isLikely(base.assumingMemoryBound(to: UInt8.self), count: input.count) { return nil }
        return encode(input, sizeLimit: input.count)
    }

    /// The compressed stream even when it is not smaller than the input (for tests: the encoder
    /// must be right for every size, 1 byte included). Empty input gives an empty result.
    mutating func compressAlways(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        encode(input, sizeLimit: nil) ?? []
    }

    /// Safe convenience for tests and tools.
    public mutating func compress(_ input: [UInt8]) -> [UInt8]? {
        input.withUnsafeBytes { compress($0) }
    }

    private mutating func encode(_ input: UnsafeRawBufferPointer, sizeLimit: Int?) -> [UInt8]? {
        let count = input.count
        precondition(count <= Self.maxChunkSize, "an XPRESS chunk holds at most 65536 bytes, not \(count)")
        guard count > 0, let base = input.baseAddress else { return nil }
        let bytes = base.assumingMemoryBound(to: UInt8.self)

        for i in 0..<Self.symbolCount { frequencies[i] = 0 }
        let parse = parseChunk(bytes, count: count)
        frequencies[Self.endOfData] &+= 1
        codeBuilder.buildLengths(frequencies: frequencies, maxLength: Self.maxCodeLength, into: &lengths)

        // Exact size: with at most 16 bits left pending at the end, `T` bits make ceil(T/16)
        // words, and the slot reserved after the last one is written (zero) as well.
        var totalBits = parse.offsetBits
        for symbol in 0..<Self.symbolCount {
            totalBits &+= Int(frequencies[symbol]) &* Int(lengths[symbol])
        }
        let size = XpressHuffman.lengthTableBytes + 2 + 2 * ((totalBits + 15) / 16) + parse.lengthBytes
        if let sizeLimit, size >= sizeLimit { return nil }

        HuffmanCodeBuilder.assignCodes(lengths: lengths, maxLength: Self.maxCodeLength, into: &codes)
        var output = [UInt8](repeating: 0, count: size)
        let written = output.withUnsafeMutableBufferPointer { out -> Int in
            guard let outBase = out.baseAddress else { return 0 }
            return items.withUnsafeBufferPointer { items in
                codes.withUnsafeBufferPointer { codes in
                    lengths.withUnsafeBufferPointer { lengths in
                        Self.writeStream(
                            items: items.baseAddress!, itemCount: parse.itemCount,
                            codes: codes.baseAddress!, lengths: lengths.baseAddress!,
                            into: outBase)
                    }
                }
            }
        }
        precondition(written == size, "XPRESS encoder wrote \(written) bytes, computed \(size)")
        return output
    }

    // MARK: - Parsing

    private struct Parse {
        var itemCount = 0
        var offsetBits = 0
        var lengthBytes = 0
    }

    private mutating func parseChunk(_ bytes: UnsafePointer<UInt8>, count: Int) -> Parse {
        var hashBits = 8
        while hashBits < Self.maxHashBits && (1 << hashBits) < count { hashBits += 1 }
        let maxDepth = self.maxDepth, niceLength = self.niceLength, goodLength = self.goodLength, lazy = self.lazy
        return head.withUnsafeMutableBufferPointer { head in
          head3.withUnsafeMutableBufferPointer { head3 in
            previous.withUnsafeMutableBufferPointer { previous in
                items.withUnsafeMutableBufferPointer { items in
                    frequencies.withUnsafeMutableBufferPointer { frequencies in
                        var finder = MatchFinder(
                            bytes: bytes, count: count, hashShift: 32 - hashBits,
                            head: head.baseAddress!, head3: head3.baseAddress!, previous: previous.baseAddress!,
                            maxDepth: maxDepth, niceLength: niceLength)
                        finder.head.update(repeating: -1, count: 1 << hashBits)
                        finder.head3.update(repeating: -1, count: 1 << MatchFinding.nearTableBits)
                        return Self.parse(
                            finder: &finder, lazy: lazy, niceLength: niceLength, goodLength: goodLength,
                            items: items.baseAddress!, frequencies: frequencies.baseAddress!)
                    }
                }
            }
          }
        }
    }

    private static func parse(
        finder: inout MatchFinder,
        lazy: Bool,
        niceLength: Int,
        goodLength: Int,
        items: UnsafeMutablePointer<UInt32>,
        frequencies: UnsafeMutablePointer<UInt32>
    ) -> Parse {
        let bytes = finder.bytes
        let count = finder.count
        var result = Parse()
        var itemCount = 0
        @inline(__always) func literal(_ byte: UInt8) {
            items[itemCount] = UInt32(byte)
            itemCount &+= 1
            frequencies[Int(byte)] &+= 1
        }
        @inline(__always) func match(length: Int, offset: Int) {
            let extra = length &- 3
            items[itemCount] = UInt32(truncatingIfNeeded: offset &<< 16 | extra)
            itemCount &+= 1
            let offsetBits = Int.bitWidth &- 1 &- offset.leadingZeroBitCount
            frequencies[256 &+ offsetBits &<< 4 &+ min(extra, 15)] &+= 1
            result.offsetBits &+= offsetBits
            if extra >= 15 { result.lengthBytes &+= extra &- 15 < 255 ? 1 : 3 }
        }

        // Positions with 3 bytes ahead can be hashed; the last two are always literals.
        let lastHashable = count &- Self.minMatch
        var position = 0
        while position <= lastHashable {
            var (length, offset) = finder.insertAndFind(position, depth: finder.maxDepth)
            // A 3-byte match far back costs a symbol and 10+ offset bits, about what three
            // literals cost: not worth it, and leaving it out keeps those symbols' codes short.
            if length < Self.minMatch || (length == Self.minMatch && offset > Self.farthestShortMatch) {
                literal(bytes[position])
                position &+= 1
                continue
            }
            if lazy {
                // While the next position has a longer match, this byte goes as a literal.
                while length < niceLength && position &+ 1 <= lastHashable {
                    // A good match already in hand needs a shallower search to be beaten.
                    let depth = length >= goodLength ? finder.maxDepth &>> 2 : finder.maxDepth
                    let (nextLength, nextOffset) = finder.insertAndFind(position &+ 1, depth: depth)
                    guard nextLength > length else { break }
                    literal(bytes[position])
                    position &+= 1
                    length = nextLength
                    offset = nextOffset
                }
            }
            match(length: length, offset: offset)
            let end = position &+ length
            finder.insertUpTo(min(end, lastHashable &+ 1))
            position = end
        }
        while position < count {
            literal(bytes[position])
            position &+= 1
        }
        result.itemCount = itemCount
        return result
    }

    /// Hash chains over the chunk's 4-byte prefixes, and the latest position of each 3-byte
    /// prefix (a 3-byte match pays only when near; chains over 3-byte prefixes spent most of
    /// their depth on candidates matching 3 bytes and no more). Positions are inserted in order;
    /// `nextInsert` is the first not yet inserted. The chunk is read up to 4 bytes past a
    /// position with 3 bytes ahead only through `prefix`, which pads with zeros.
    private struct MatchFinder {
        let bytes: UnsafePointer<UInt8>
        let count: Int
        let hashShift: Int
        let head: UnsafeMutablePointer<Int32>
        let head3: UnsafeMutablePointer<Int32>
        let previous: UnsafeMutablePointer<UInt16>
        let maxDepth: Int
        let niceLength: Int
        var nextInsert = 0

        /// The 4 bytes at `position` as one little-endian word; past the chunk's end, zeros.
        @inline(__always)
        func prefix(_ position: Int) -> UInt32 {
            if position &+ 4 <= count { return UInt32(littleEndian: UnsafeRawPointer(bytes + position).loadUnaligned(as: UInt32.self)) }
            var word: UInt32 = 0
            var i = 0
            while position &+ i < count && i < 4 {
                word |= UInt32(bytes[position &+ i]) &<< UInt32(8 &* i)
                i &+= 1
            }
            return word
        }

        /// Links `position` into both tables; returns the previous position with its 3-byte
        /// hash and the previous head of its chain (or -1).
        @inline(__always)
        mutating func insert(_ position: Int) -> (near3: Int, chain: Int) {
            let key = prefix(position)
            let slot3 = MatchFinding.slot3(key)
            let near3 = Int(head3[slot3])
            head3[slot3] = Int32(truncatingIfNeeded: position)
            let slot = MatchFinding.slot4(key, shift: UInt32(truncatingIfNeeded: hashShift))
            let candidate = Int(head[slot])
            head[slot] = Int32(truncatingIfNeeded: position)
            // A chunk is at most 64 KiB, so the distance fits; 0 marks the end of the chain.
            previous[position] = candidate >= 0 ? UInt16(truncatingIfNeeded: position &- candidate) : 0
            nextInsert = position &+ 1
            return (near3, candidate)
        }

        /// Inserts every position before `end` not yet inserted (positions inside a match).
        @inline(__always)
        mutating func insertUpTo(_ end: Int) {
            var position = nextInsert
            while position < end {
                _ = insert(position)
                position &+= 1
            }
        }

        /// Inserts `position` (which must be `nextInsert`, with 3 bytes ahead) and returns the
        /// longest earlier match, nearest first among equals: (length, offset), length 0 if none.
        @inline(__always)
        mutating func insertAndFind(_ position: Int, depth maxDepth: Int) -> (Int, Int) {
            let (near3, chainHead) = insert(position)
            var candidate = chainHead
            let maxLength = count &- position
            let here = bytes + position
            var bestLength = Self.minMatch &- 1
            var bestOffset = 0
            if near3 >= 0 {
                let there = bytes + near3
                if there[0] == here[0] && there[1] == here[1] && there[2] == here[2] {
                    bestLength = MatchFinding.commonLength(here, there, from: Self.minMatch, limit: maxLength)
                    bestOffset = position &- near3
                    if bestLength >= niceLength || bestLength == maxLength { return (bestLength, bestOffset) }
                }
            }
            // The chain only holds 4-byte matches.
            guard maxLength >= 4 else { return bestOffset == 0 ? (0, 0) : (bestLength, bestOffset) }
            let word = UnsafeRawPointer(here).loadUnaligned(as: UInt32.self)
            var depth = maxDepth
            while candidate >= 0 {
                let there = bytes + candidate
                // The byte that would make this candidate better, then the first four.
                if there[bestLength] == here[bestLength] && UnsafeRawPointer(there).loadUnaligned(as: UInt32.self) == word {
                    let length = MatchFinding.commonLength(here, there, from: Self.minMatch, limit: maxLength)
                    if length > bestLength {
                        bestLength = length
                        bestOffset = position &- candidate
                        if length >= niceLength || length == maxLength { break }
                    }
                }
                depth &-= 1
                let back = Int(previous[candidate])
                if depth == 0 || back == 0 { break }
                candidate &-= back
            }
            return bestOffset == 0 ? (0, 0) : (bestLength, bestOffset)
        }

        @inline(__always) static var minMatch: Int { 3 }
    }

    // MARK: - Writing

    /// Writes the table and the bit stream; returns the bytes written.
    private static func writeStream(
        items: UnsafePointer<UInt32>,
        itemCount: Int,
        codes: UnsafePointer<UInt32>,
        lengths: UnsafePointer<UInt8>,
        into output: UnsafeMutablePointer<UInt8>
    ) -> Int {
        for i in 0..<XpressHuffman.lengthTableBytes {
            output[i] = lengths[2 &* i] | lengths[2 &* i &+ 1] &<< 4
        }
        var writer = XpressBitWriter(output: output, start: XpressHuffman.lengthTableBytes)
        for i in 0..<itemCount {
            let item = items[i]
            if item < 0x1_0000 {
                writer.write(codes[Int(item)], count: Int(lengths[Int(item)]))
                continue
            }
            let offset = Int(item &>> 16)
            let extra = Int(item & 0xFFFF)
            let offsetBits = Int.bitWidth &- 1 &- offset.leadingZeroBitCount
            let symbol = 256 &+ offsetBits &<< 4 &+ min(extra, 15)
            writer.write(codes[symbol], count: Int(lengths[symbol]))
            if extra >= 15 {
                if extra &- 15 < 255 {
                    writer.writeByte(UInt8(truncatingIfNeeded: extra &- 15))
                } else {
                    writer.writeByte(255)
                    writer.writeByte(UInt8(truncatingIfNeeded: extra))
                    writer.writeByte(UInt8(truncatingIfNeeded: extra &>> 8))
                }
            }
            writer.write(UInt32(truncatingIfNeeded: offset) & ((1 &<< UInt32(offsetBits)) &- 1), count: offsetBits)
        }
        writer.write(codes[endOfData], count: Int(lengths[endOfData]))
        return writer.finish()
    }
}

/// The bit stream of one XPRESS block as the reference decoder reads it (see the top comment):
/// `pending` holds up to 16 bits not yet stored (a word is stored once a 17th bit arrives),
/// `wordSlot` is where the pending word goes, `nextWordSlot` the word after it, and `cursor`
/// where plain bytes (long match lengths) and further word slots go.
private struct XpressBitWriter {
    let output: UnsafeMutablePointer<UInt8>
    var pending: UInt64 = 0
    var pendingCount = 0
    var wordSlot: Int
    var nextWordSlot: Int
    var cursor: Int

    init(output: UnsafeMutablePointer<UInt8>, start: Int) {
        self.output = output
        wordSlot = start
        nextWordSlot = start &+ 2
        cursor = start &+ 4
    }

    /// Appends the low `count` (0...16) bits of `value`, most significant first.
    @inline(__always)
    mutating func write(_ value: UInt32, count: Int) {
        pending = pending &<< UInt64(truncatingIfNeeded: count) | UInt64(value)
        pendingCount &+= count
        if pendingCount > 16 {
            pendingCount &-= 16
            store(UInt16(truncatingIfNeeded: pending &>> UInt64(truncatingIfNeeded: pendingCount)))
        }
    }

    @inline(__always)
    mutating func writeByte(_ byte: UInt8) {
        output[cursor] = byte
        cursor &+= 1
    }

    @inline(__always)
    private mutating func store(_ word: UInt16) {
        output[wordSlot] = UInt8(truncatingIfNeeded: word)
        output[wordSlot &+ 1] = UInt8(truncatingIfNeeded: word &>> 8)
        wordSlot = nextWordSlot
        nextWordSlot = cursor
        cursor &+= 2
    }

    /// Stores the last, partial word (zero-padded); the reserved slot after it stays zero.
    /// Returns the stream's end.
    mutating func finish() -> Int {
        if pendingCount > 0 {
            let word = UInt16(truncatingIfNeeded: pending &<< UInt64(truncatingIfNeeded: 16 &- pendingCount))
            output[wordSlot] = UInt8(truncatingIfNeeded: word)
            output[wordSlot &+ 1] = UInt8(truncatingIfNeeded: word &>> 8)
        }
        return cursor
    }
}
