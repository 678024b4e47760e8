/// Compressor for LZMS as WIM files use it (`--compress=LZMS` resources, 64 MiB solid chunks).
///
/// Format facts (Microsoft published no specification; these follow wimlib's format
/// description as our `LZMSDecompressor` implements it, whose reading the output must satisfy;
/// wimlib's decoder is the interoperability check in the tests, no code comes from it):
///
/// - Each chunk is independent. Before anything else the x86 filter rewrites call/lea/mov
///   addresses (LZMSX86Encoder.swift); the decoder undoes it after decoding.
/// - The chunk is two streams of 16-bit little-endian words: range-coded decisions from the
///   front (LZMSRangeEncoder.swift) and Huffman codewords plus verbatim extra bits from the back
///   (LZMSBitWriter.swift). Every decision has its own adaptive probabilities, chosen by that
///   decision's recent outcomes; every Huffman code adapts by being rebuilt from symbol counts
///   (LZMSHuffmanEncoder.swift). Nothing is transmitted but the two streams.
/// - Items: a literal (decision "literal", then its codeword); an LZ match (decisions "match",
///   "LZ", then "explicit" with an offset slot codeword, offset extra bits, or "repeat" with one
///   or two decisions picking queue entry 0, 1 or 2; then a length slot codeword and extra
///   bits). Offsets are 1...position; lengths 1 and up.
/// - The repeat queue (LZMSRepeatQueue in LZMSDecompressor.swift) holds an offset back for one
///   item: a match directly after a match cannot repeat the previous offset.
/// - Delta matches (a third item kind) are valid LZMS, but this compressor does not produce them.
///
/// Parsing. Every position is put into a match finder over 4-byte prefixes sized to the chunk,
/// with the latest position of each 3-byte prefix kept aside for the near 3-byte matches.
/// `.fast` chains the prefixes (4 bytes per input byte plus the head table), scores the three
/// repeat offsets and a shallow search's candidates by estimated bits saved with the adaptive
/// codes' current codeword lengths, and takes a match unless the next position's is better.
/// `.normal` keeps the positions in binary trees (8 bytes per input byte; `LZMSParser.treeWalk`)
/// and runs the cost-based parse of LZMSOptimalParser.swift over the matches they give.
public struct LZMSCompressor {
    public enum Level: Sendable { case fast, normal }

    public let level: Level
    /// Solid WIM resources use 64 MiB LZMS chunks.
    public static var maxChunkSize: Int { 67_108_864 }

    private var workspace: LZMSCompressorWorkspace

    public init(level: Level = .normal) {
        self.level = level
        workspace = LZMSCompressorWorkspace(level: level)
    }

    /// Compresses one chunk. Returns nil when the result would not be smaller than the input
    /// (the WIM writer then stores the chunk raw). A chunk over 64 MiB is a caller's error and
    /// traps.
    public mutating func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        // The smallest stream is two words.
        guard input.count > 4 else { return nil }
        return encode(input, sizeLimit: input.count)
    }

    /// The compressed stream even when it is not smaller than the input (for tests: the stream
    /// must be right for every size). Empty input gives an empty result.
    mutating func compressAlways(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        encode(input, sizeLimit: nil) ?? []
    }

    /// Safe convenience for tests and tools.
    public mutating func compress(_ input: [UInt8]) -> [UInt8]? {
        input.withUnsafeBytes { compress($0) }
    }

    mutating func compressAlways(_ input: [UInt8]) -> [UInt8] {
        input.withUnsafeBytes { compressAlways($0) }
    }

    private mutating func encode(_ input: UnsafeRawBufferPointer, sizeLimit: Int?) -> [UInt8]? {
        precondition(input.count <= Self.maxChunkSize, "an LZMS chunk holds at most \(Self.maxChunkSize) bytes, not \(input.count)")
        guard input.count > 0 else { return nil }
        if !isKnownUniquelyReferenced(&workspace) {
            workspace = LZMSCompressorWorkspace(level: level)
        }
        return workspace.encode(input, sizeLimit: sizeLimit)
    }
}

/// Search settings per level.
struct LZMSSearchSettings {
    /// Chain candidates examined per position.
    let maxDepth: Int
    /// A match this long is taken at once.
    let niceLength: Int
    /// Keep comparing with the next position's match while that wins (else one step only).
    let keepLooking: Bool
    /// Cost-based parse (LZMSOptimalParser.swift) rather than lazy matching.
    let optimal: Bool

    init(_ level: LZMSCompressor.Level) {
        switch level {
        case .fast:
            maxDepth = 12
            niceLength = 48
            keepLooking = false
            optimal = false
        case .normal:
            maxDepth = 32
            niceLength = 128
            keepLooking = true
            optimal = true
        }
    }
}

/// Offset and length slots for the encoder: value -> slot, slot -> (base, extra bits).
enum LZMSSlotTables {
    static let offsetSlots: [UInt32] = Array(LZMSFormat.packedSlots(LZMSFormat.offsetExtraBitRuns).prefix(LZMSFormat.maxOffsetSymbolCount))
    static let lengthSlots: [UInt32] = Array(LZMSFormat.packedSlots(LZMSFormat.lengthExtraBitRuns).prefix(LZMSFormat.lengthSymbolCount))
    /// Slot of every offset below `directOffsets`; larger ones are searched.
    static let directOffsets = 1 << 16
    static let offsetSlotOfSmall: [UInt16] = slotTable(offsetSlots, below: directOffsets)
    static let directLengths = 1 << 12
    static let lengthSlotOfSmall: [UInt8] = slotTable(lengthSlots, below: directLengths).map { UInt8(truncatingIfNeeded: $0) }

    private static func slotTable(_ slots: [UInt32], below limit: Int) -> [UInt16] {
        var table = [UInt16](repeating: 0, count: limit)
        var slot = 0
        for value in 1..<limit {
            while slot + 1 < slots.count && Int(slots[slot + 1] & LZMSFormat.slotBaseMask) <= value { slot += 1 }
            table[value] = UInt16(truncatingIfNeeded: slot)
        }
        return table
    }

    /// The last slot whose base is at most `value` (value >= 1).
    @inline(__always)
    static func slot(_ value: Int, _ slots: UnsafePointer<UInt32>, count: Int) -> Int {
        var low = 0, high = count - 1
        while low < high {
            let middle = (low + high + 1) >> 1
            if Int(slots[middle] & LZMSFormat.slotBaseMask) <= value { low = middle } else { high = middle - 1 }
        }
        return low
    }
}

/// Everything a compressor keeps between chunks: models, code tables, the x86 filter's table,
/// the match finder's arrays (grown to the largest chunk seen) and the output buffer.
final class LZMSCompressorWorkspace {
    let settings: LZMSSearchSettings
    // Fixed-size tables, allocated once; plain pointers keep the encode path's closures few.
    private let models: UnsafeMutablePointer<LZMSBitModel>
    private let frequencies: UnsafeMutablePointer<UInt32>
    private let codeLengths: UnsafeMutablePointer<UInt8>
    private let codewords: UnsafeMutablePointer<UInt32>
    private let offsetSlots: UnsafeMutablePointer<UInt32>
    private let lengthSlots: UnsafeMutablePointer<UInt32>
    private let offsetSlotOfSmall: UnsafeMutablePointer<UInt16>
    private let lengthSlotOfSmall: UnsafeMutablePointer<UInt8>
    private var builder = LZMSCodeLengthBuilder()
    private var x86 = LZMSX86Encoder()
    /// The filtered chunk, plus 8 bytes so word loads near the end stay inside.
    private var data: [UInt8] = []
    private var head: [Int32] = []
    private var head3 = [Int32](repeating: -1, count: 1 << MatchFinding.nearTableBits)
    /// Hash chains (lazy parsing) or binary trees (near-optimal parsing): see `LZMSParser`.
    private var previous: [Int32] = []
    private var smaller: [Int32] = []
    private var larger: [Int32] = []
    private var output: [UInt8] = []

    init(level: LZMSCompressor.Level) {
        settings = LZMSSearchSettings(level)
        let n = 3 * LZMSFormat.maxOffsetSymbolCount
        models = .allocate(capacity: LZMSDecision.modelCount)
        models.initialize(repeating: .initial, count: LZMSDecision.modelCount)
        frequencies = .allocate(capacity: n)
        frequencies.initialize(repeating: 0, count: n)
        codeLengths = .allocate(capacity: n)
        codeLengths.initialize(repeating: 0, count: n)
        codewords = .allocate(capacity: n)
        codewords.initialize(repeating: 0, count: n)
        func copy<T>(_ array: [T]) -> UnsafeMutablePointer<T> {
            let pointer = UnsafeMutablePointer<T>.allocate(capacity: array.count)
            pointer.initialize(from: array, count: array.count)
            return pointer
        }
        offsetSlots = copy(LZMSSlotTables.offsetSlots)
        lengthSlots = copy(LZMSSlotTables.lengthSlots)
        offsetSlotOfSmall = copy(LZMSSlotTables.offsetSlotOfSmall)
        lengthSlotOfSmall = copy(LZMSSlotTables.lengthSlotOfSmall)
    }

    deinit {
        // All trivial types: deallocating without deinitializing is fine.
        models.deallocate()
        frequencies.deallocate()
        codeLengths.deallocate()
        codewords.deallocate()
        offsetSlots.deallocate()
        lengthSlots.deallocate()
        offsetSlotOfSmall.deallocate()
        lengthSlotOfSmall.deallocate()
    }

    func encode(_ input: UnsafeRawBufferPointer, sizeLimit: Int?) -> [UInt8]? {
        let count = input.count
        guard count > 0, let inputBase = input.baseAddress else { return nil }
        // Output room: the limit (give up past it) or, with none, more than any stream needs
        // (a literal costs at most 15 bits plus a 6-bit decision).
        let bufferSize = ((sizeLimit ?? (count * 3)) + 256) & ~1
        if data.count < count + 8 { data = [UInt8](repeating: 0, count: count + 8) }
        if settings.optimal {
            if smaller.count < count {
                smaller = [Int32](repeating: -1, count: count)
                larger = [Int32](repeating: -1, count: count)
            }
            if previous.isEmpty { previous = [-1] }
        } else {
            if previous.count < count { previous = [Int32](repeating: 0, count: count) }
            if smaller.isEmpty { (smaller, larger) = ([-1], [-1]) }
        }
        let hashBits = min(max(Int.bitWidth - (count - 1).leadingZeroBitCount, 12), 22)
        if head.count != 1 << hashBits { head = [Int32](repeating: -1, count: 1 << hashBits) }
        if output.count < bufferSize { output = [UInt8](repeating: 0, count: bufferSize) }

        data.withUnsafeMutableBufferPointer { data in
            guard let bytes = data.baseAddress else { return }
            bytes.update(from: inputBase.assumingMemoryBound(to: UInt8.self), count: count)
            (bytes + count).update(repeating: 0, count: 8)
            x86.apply(bytes, count: count)
        }

        let size: Int? = data.withUnsafeBufferPointer { data in
            head3.withUnsafeMutableBufferPointer { head3 in
            head.withUnsafeMutableBufferPointer { head in
            previous.withUnsafeMutableBufferPointer { previous in
            smaller.withUnsafeMutableBufferPointer { smaller in
            larger.withUnsafeMutableBufferPointer { larger in
            output.withUnsafeMutableBufferPointer { output in
                head.update(repeating: -1)
                head3.update(repeating: -1)
                LZMSDecision.reset(models)
                let n = LZMSFormat.maxOffsetSymbolCount
                let (frequencies, codeLengths, codewords) = (self.frequencies, self.codeLengths, self.codewords)
                func code(_ index: Int, _ interval: Int) -> LZMSAdaptiveEncoderCode {
                    LZMSAdaptiveEncoderCode(rebuildInterval: interval, frequencies: frequencies + index * n,
                                            lengths: codeLengths + index * n, codewords: codewords + index * n)
                }
                var parser = LZMSParser(
                    data: data.baseAddress!, count: count, head: head.baseAddress!, head3: head3.baseAddress!, hashBits: hashBits,
                    previous: previous.baseAddress!, smaller: smaller.baseAddress!, larger: larger.baseAddress!, settings: settings,
                    items: LZMSItemEncoder(
                        output: output.baseAddress!, bufferSize: bufferSize, models: models,
                        literals: code(0, LZMSFormat.literalRebuildInterval),
                        lengths: code(1, LZMSFormat.lengthRebuildInterval),
                        offsets: code(2, LZMSFormat.lzOffsetRebuildInterval),
                        offsetSlots: offsetSlots, lengthSlots: lengthSlots,
                        offsetSlotOfSmall: offsetSlotOfSmall, lengthSlotOfSmall: lengthSlotOfSmall,
                        outputSize: count, builder: builder))
                let size = settings.optimal ? parser.runOptimal(sizeLimit: sizeLimit) : parser.run(sizeLimit: sizeLimit)
                builder = parser.items.builder
                return size
            }}}}}}}
        guard let size else { return nil }
        return Array(output[0..<size])
    }
}

/// The item encoder: both output streams, decision states, adaptive codes and the LZ repeat
/// queue, i.e. the decoder's state mirrored. Delta matches are never coded, so their codes and
/// decisions stay untouched.
struct LZMSItemEncoder {
    var ranges: LZMSRangeEncoder
    var bits: LZMSBitWriter
    let output: UnsafeMutablePointer<UInt8>
    let bufferSize: Int
    private let models: UnsafeMutablePointer<LZMSBitModel>
    private var mainState = 0
    private var matchState = 0
    private var lzState = 0
    private var lzRepeatStates = (0, 0)
    var literals: LZMSAdaptiveEncoderCode
    var lengths: LZMSAdaptiveEncoderCode
    var offsets: LZMSAdaptiveEncoderCode
    var builder: LZMSCodeLengthBuilder
    var queue = LZMSRepeatQueue(1, 2, 3, 4)
    let offsetSlots: UnsafePointer<UInt32>
    let lengthSlots: UnsafePointer<UInt32>
    let offsetSlotOfSmall: UnsafePointer<UInt16>
    let lengthSlotOfSmall: UnsafePointer<UInt8>
    let offsetSlotCount: Int
    /// Estimated cost of a literal in 1/16 bits (the code's average), refreshed at rebuilds.
    private(set) var literalCost = 8 * 16 + 8

    init(output: UnsafeMutablePointer<UInt8>, bufferSize: Int, models: UnsafeMutablePointer<LZMSBitModel>,
         literals: LZMSAdaptiveEncoderCode, lengths: LZMSAdaptiveEncoderCode, offsets: LZMSAdaptiveEncoderCode,
         offsetSlots: UnsafePointer<UInt32>, lengthSlots: UnsafePointer<UInt32>,
         offsetSlotOfSmall: UnsafePointer<UInt16>, lengthSlotOfSmall: UnsafePointer<UInt8>,
         outputSize: Int, builder: LZMSCodeLengthBuilder) {
        ranges = LZMSRangeEncoder(output: output)
        bits = LZMSBitWriter(output: output, end: bufferSize)
        self.output = output
        self.bufferSize = bufferSize
        self.models = models
        self.literals = literals
        self.lengths = lengths
        self.offsets = offsets
        self.builder = builder
        self.offsetSlots = offsetSlots
        self.lengthSlots = lengthSlots
        self.offsetSlotOfSmall = offsetSlotOfSmall
        self.lengthSlotOfSmall = lengthSlotOfSmall
        offsetSlotCount = LZMSFormat.offsetSlotCount(forOutputSize: outputSize, packedOffsetSlots: offsetSlots)
        self.literals.reset(symbolCount: LZMSFormat.literalSymbolCount, builder: &self.builder)
        self.lengths.reset(symbolCount: LZMSFormat.lengthSymbolCount, builder: &self.builder)
        self.offsets.reset(symbolCount: offsetSlotCount, builder: &self.builder)
    }

    /// Estimated costs (x16 bits) of each item kind's decisions with the models as they are
    /// now: literal, explicit LZ match, LZ repeat entries 0, 1, 2.
    func decisionCosts() -> (literal: Int, explicit: Int, repeats: (Int, Int, Int)) {
        func cost(_ bit: Int, _ model: Int, _ state: Int) -> Int {
            let zeros = Int(models[model &+ state].probability)
            return LZMSItemEncoder.bitCost[bit == 0 ? zeros : 64 &- zeros]
        }
        let match = cost(1, LZMSDecision.mainModels, mainState) &+ cost(0, LZMSDecision.matchModels, matchState)
        let repeatBase = match &+ cost(1, LZMSDecision.lzModels, lzState)
        let (r0, r1) = (LZMSDecision.lzRepeatModels.0, LZMSDecision.lzRepeatModels.1)
        return (cost(0, LZMSDecision.mainModels, mainState),
                match &+ cost(0, LZMSDecision.lzModels, lzState),
                (repeatBase &+ cost(0, r0, lzRepeatStates.0),
                 repeatBase &+ cost(1, r0, lzRepeatStates.0) &+ cost(0, r1, lzRepeatStates.1),
                 repeatBase &+ cost(1, r0, lzRepeatStates.0) &+ cost(1, r1, lzRepeatStates.1)))
    }

    /// -log2(k / 64) in 1/16 bits, for k = 0...64 (0 is never a probability; priced high).
    static let bitCost: [Int] = [
        128, 96, 80, 71, 64, 59, 55, 51, 48, 45, 43, 41, 39, 37, 35, 33, 32, 31, 29, 28, 27, 26,
        25, 24, 23, 22, 21, 20, 19, 18, 17, 17, 16, 15, 15, 14, 13, 13, 12, 11, 11, 10, 10, 9, 9,
        8, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 3, 2, 2, 1, 1, 1, 0, 0,
    ]

    /// True while both streams plus one more item of the largest size fit in the buffer.
    var hasRoom: Bool { ranges.worstCaseBytes &+ 64 <= bits.worstCaseLowestOffset }

    /// Bytes the two streams take so far.
    var bytesSoFar: Int { ranges.byteCount &+ (bufferSize &- bits.position) }

    @inline(__always)
    func offsetSlot(_ offset: Int) -> Int {
        offset < LZMSSlotTables.directOffsets ? Int(offsetSlotOfSmall[offset])
            : LZMSSlotTables.slot(offset, offsetSlots, count: offsetSlotCount)
    }

    @inline(__always)
    func lengthSlot(_ length: Int) -> Int {
        length < LZMSSlotTables.directLengths ? Int(lengthSlotOfSmall[length])
            : LZMSSlotTables.slot(length, lengthSlots, count: LZMSFormat.lengthSymbolCount)
    }

    /// Estimated bits (x16) of a length.
    @inline(__always)
    func lengthCost(_ length: Int) -> Int {
        let slot = lengthSlot(length)
        return (Int(lengths.lengths[slot]) &+ Int(lengthSlots[slot] &>> LZMSFormat.slotExtraBitsShift)) &<< 4
    }

    /// Estimated bits (x16) of an explicit offset, its decisions included.
    @inline(__always)
    func offsetCost(_ offset: Int) -> Int {
        let slot = offsetSlot(offset)
        return (Int(offsets.lengths[slot]) &+ Int(offsetSlots[slot] &>> LZMSFormat.slotExtraBitsShift)) &<< 4 &+ 40
    }

    /// Estimated bits (x16) of repeat queue entry `index`'s decisions.
    @inline(__always)
    static func repeatCost(_ index: Int) -> Int { index == 0 ? 36 : 56 }

    mutating func literal(_ byte: UInt8) {
        ranges.encode(0, models + LZMSDecision.mainModels, &mainState, stateMask: LZMSDecision.mainStateMask)
        if literals.encode(Int(byte), &bits, builder: &builder) {
            // The counts were just halved; their weighted average length is the estimate.
            var total = 0, weighted = 0
            for symbol in 0..<LZMSFormat.literalSymbolCount {
                let frequency = Int(literals.frequencies[symbol])
                total &+= frequency
                weighted &+= frequency &* Int(literals.lengths[symbol])
            }
            literalCost = weighted &* 16 / max(total, 1) &+ 8
        }
    }

    /// Codes an LZ match at `position`: an explicit offset when `repeatIndex` is negative, else
    /// the queue entry `repeatIndex` (which must hold `offset`).
    mutating func match(at position: Int, length: Int, offset: Int, repeatIndex: Int) {
        ranges.encode(1, models + LZMSDecision.mainModels, &mainState, stateMask: LZMSDecision.mainStateMask)
        ranges.encode(0, models + LZMSDecision.matchModels, &matchState, stateMask: LZMSDecision.matchStateMask)
        queue.beginMatch(at: position)
        if repeatIndex < 0 {
            ranges.encode(0, models + LZMSDecision.lzModels, &lzState, stateMask: LZMSDecision.lzStateMask)
            let slot = offsetSlot(offset)
            offsets.encode(slot, &bits, builder: &builder)
            let word = offsetSlots[slot]
            bits.write(UInt32(truncatingIfNeeded: offset &- Int(word & LZMSFormat.slotBaseMask)),
                       count: Int(word &>> LZMSFormat.slotExtraBitsShift))
        } else {
            ranges.encode(1, models + LZMSDecision.lzModels, &lzState, stateMask: LZMSDecision.lzStateMask)
            ranges.encode(repeatIndex == 0 ? 0 : 1, models + LZMSDecision.lzRepeatModels.0, &lzRepeatStates.0,
                          stateMask: LZMSDecision.lzRepeatStateMask)
            if repeatIndex != 0 {
                ranges.encode(repeatIndex == 1 ? 0 : 1, models + LZMSDecision.lzRepeatModels.1, &lzRepeatStates.1,
                              stateMask: LZMSDecision.lzRepeatStateMask)
            }
            _ = queue.take(repeatIndex)
        }
        queue.settle(offset)
        let slot = lengthSlot(length)
        lengths.encode(slot, &bits, builder: &builder)
        let word = lengthSlots[slot]
        bits.write(UInt32(truncatingIfNeeded: length &- Int(word & LZMSFormat.slotBaseMask)),
                   count: Int(word &>> LZMSFormat.slotExtraBitsShift))
        queue.lastMatchEnd = position &+ length
    }

    /// Ends both streams and moves the backward one down behind the forward one; returns the
    /// chunk's size.
    mutating func finish() -> Int {
        bits.finish()
        let forward = ranges.finish()
        let backward = bufferSize - bits.position
        // Moving down over a possibly overlapping range: front to back is safe.
        let source = bits.position
        for i in 0..<backward { output[forward &+ i] = output[source &+ i] }
        return forward + backward
    }
}

/// A candidate match: its length, offset, queue entry (-1: explicit) and estimated bits saved
/// (x16) against coding its bytes as literals.
struct LZMSMatchChoice {
    var length = 0
    var offset = 0
    var repeatIndex = -1
    var benefit = 0
}

/// Finds matches and decides items, feeding them to the item encoder.
struct LZMSParser {
    let data: UnsafePointer<UInt8>
    let count: Int
    /// Chains over 4-byte prefixes: the latest position per hash, and per position the one
    /// before it with the same hash.
    let head: UnsafeMutablePointer<Int32>
    /// The latest position per hash of its 3-byte prefix (no chain).
    let head3: UnsafeMutablePointer<Int32>
    let hashShift: UInt32
    let previous: UnsafeMutablePointer<Int32>
    /// Near-optimal parsing: binary trees instead of chains, rooted in `head`. Per position, its
    /// subtrees of earlier positions whose bytes sort before and after its own.
    let smaller: UnsafeMutablePointer<Int32>
    let larger: UnsafeMutablePointer<Int32>
    let settings: LZMSSearchSettings
    var items: LZMSItemEncoder
    /// Positions below this are in the hash chains.
    var inserted = 0

    init(data: UnsafePointer<UInt8>, count: Int, head: UnsafeMutablePointer<Int32>, head3: UnsafeMutablePointer<Int32>, hashBits: Int,
         previous: UnsafeMutablePointer<Int32>, smaller: UnsafeMutablePointer<Int32>, larger: UnsafeMutablePointer<Int32>,
         settings: LZMSSearchSettings, items: LZMSItemEncoder) {
        self.data = data
        self.count = count
        self.head = head
        self.head3 = head3
        self.hashShift = UInt32(32 - hashBits)
        self.previous = previous
        self.smaller = smaller
        self.larger = larger
        self.settings = settings
        self.items = items
    }

    /// The 4 bytes at `position` (the chunk is followed by 8 zero bytes).
    @inline(__always)
    func prefix(_ position: Int) -> UInt32 {
        UInt32(littleEndian: UnsafeRawPointer(data + position).loadUnaligned(as: UInt32.self))
    }

    /// Makes `position` the latest in both head tables; returns what they held: the previous
    /// position with its 3-byte hash and the previous one with its 4-byte hash (or -1).
    @inline(__always)
    func takeHeads(_ position: Int) -> (near3: Int, latest: Int) {
        let word = prefix(position)
        let slot3 = MatchFinding.slot3(word)
        let near3 = Int(head3[slot3])
        head3[slot3] = Int32(truncatingIfNeeded: position)
        let h = MatchFinding.slot4(word, shift: hashShift)
        let latest = Int(head[h])
        head[h] = Int32(truncatingIfNeeded: position)
        return (near3, latest)
    }

    /// Links `position` (with 3 bytes ahead) into both tables; returns the previous position
    /// with its 3-byte hash and the previous head of its chain (or -1).
    @inline(__always)
    func link(_ position: Int) -> (near3: Int, chain: Int) {
        let (near3, chain) = takeHeads(position)
        previous[position] = Int32(truncatingIfNeeded: chain)
        return (near3, chain)
    }

    /// Puts every position up to `end` (exclusive) into the tables: the chains, or (near-optimal
    /// parsing) the trees, by a walk that finds nothing.
    @inline(__always)
    mutating func insert(upTo end: Int) {
        let last = min(end, count &- 2)
        if settings.optimal {
            while inserted < last {
                _ = treeWalk(inserted, limit: count &- inserted, record: false, into: nil)
                inserted &+= 1
            }
        } else {
            while inserted < last {
                _ = link(inserted)
                inserted &+= 1
            }
        }
        if inserted < end { inserted = end }
    }

    /// The near-optimal parser's match finder: binary trees over 4-byte prefixes. Each tree
    /// holds the earlier positions with one hash, ordered by the bytes that follow them; the new
    /// position becomes the root, and the walk down from the old root both finds the matches
    /// (the nodes visited share ever longer prefixes with it) and splits the tree into the new
    /// root's two subtrees. A walk ends after `maxDepth` nodes or at a match of the nice length,
    /// whose node's subtrees become the new root's. In a 64 MiB solid chunk chains spent their
    /// depth on candidates sharing a few bytes, each a cache miss; the tree visits only nodes
    /// that could be longer. On 64 MiB of text the tree's output is 6% smaller than 32-deep
    /// chains' for 8% more time (0.6% above wimlib's); a solid capture of /usr/share/doc went
    /// from 1.77% larger than wimlib's to 0.5% smaller in the same time.
    ///
    /// Links `position` (with 3 bytes ahead) and, when `record`, stores into `matches` each
    /// match longer than every earlier one (so in increasing length), of 3 to `limit` bytes: the
    /// nearest 3-byte match first, then the tree's. Returns how many were stored.
    @inline(__always)
    func treeWalk(_ position: Int, limit: Int, record: Bool,
                  into matches: UnsafeMutablePointer<(length: Int, offset: Int)>?) -> Int {
        let (near3, root) = takeHeads(position)
        var node = root
        let here = data + position
        var found = 0
        var best = 2
        if record, let matches, near3 >= 0 {
            let there = data + near3
            if there[0] == here[0] && there[1] == here[1] && there[2] == here[2] {
                best = LZMSParser.matchLength(data, position, near3, limit: limit)
                matches[0] = (best, position &- near3)
                found = 1
            }
        }
        // Where the next node found to sort before (after) `here` is to be linked.
        var pendingSmaller = smaller + position
        var pendingLarger = larger + position
        // Prefix lengths shared with the nearest nodes seen on each side: every node between
        // them in the tree's order shares at least the shorter of the two.
        var smallerLength = 0, largerLength = 0
        let nice = min(settings.niceLength, limit)
        var remaining = settings.maxDepth
        while node >= 0 {
            let there = data + node
            var length = min(smallerLength, largerLength)
            if there[length] == here[length] {
                // Compared up to the nice length only: in repetitive data (runs of zeros, copies
                // of a file) a match can be megabytes long, and extending it at every node
                // visited made the walk quadratic.
                length = MatchFinding.commonLength(here, there, from: length &+ 1, limit: nice)
                // The prefix taken as shared is checked before a match is reported: after a
                // nice-length cut the tree's order holds for the first `nice` bytes only.
                if record, let matches, length > best, LZMSParser.matchLength(data, position, node, limit: length) == length {
                    best = length >= nice ? MatchFinding.commonLength(here, there, from: length, limit: limit) : length
                    matches[found] = (best, position &- node)
                    found &+= 1
                }
                if length >= nice {
                    pendingSmaller.pointee = smaller[node]
                    pendingLarger.pointee = larger[node]
                    return found
                }
            }
            if there[length] < here[length] {
                pendingSmaller.pointee = Int32(truncatingIfNeeded: node)
                pendingSmaller = larger + node
                node = Int(larger[node])
                smallerLength = length
            } else {
                pendingLarger.pointee = Int32(truncatingIfNeeded: node)
                pendingLarger = smaller + node
                node = Int(smaller[node])
                largerLength = length
            }
            remaining &-= 1
            if remaining == 0 { break }
        }
        pendingSmaller.pointee = -1
        pendingLarger.pointee = -1
        return found
    }

    /// How many bytes at `position` equal those at `source` (< position), up to `limit`.
    /// Static, so calling it does not make the optimizer copy the parser.
    @inline(__always)
    static func matchLength(_ data: UnsafePointer<UInt8>, _ position: Int, _ source: Int, limit: Int) -> Int {
        MatchFinding.commonLength(data + position, data + source, from: 0, limit: limit)
    }

    /// The best-scoring match at `position` (benefit 0 and length 0 when none pays), with the
    /// repeat queue as it would be after literals up to here. Inserts `position`. `matches`
    /// holds `settings.maxDepth + 1` entries.
    private mutating func bestMatch(at position: Int, _ matches: UnsafeMutablePointer<(length: Int, offset: Int)>) -> LZMSMatchChoice {
        var best = LZMSMatchChoice()
        let limit = count &- position
        if position == 0 || limit < 2 {
            insert(upTo: position &+ 1)
            return best
        }
        let literalCost = items.literalCost
        var queue = items.queue
        queue.beginMatch(at: position)
        let repeats = (queue.slot0, queue.slot1, queue.slot2)
        for index in 0..<3 {
            let offset = index == 0 ? repeats.0 : index == 1 ? repeats.1 : repeats.2
            if offset > position { continue }
            let length = LZMSParser.matchLength(data, position, position &- offset, limit: limit)
            if length < 2 { continue }
            let benefit = length &* literalCost &- LZMSItemEncoder.repeatCost(index) &- items.lengthCost(length)
            if benefit > best.benefit {
                best = LZMSMatchChoice(length: length, offset: offset, repeatIndex: index, benefit: benefit)
            }
        }
        if best.length >= settings.niceLength || limit < 3 {
            insert(upTo: position &+ 1)
            return best
        }

        // Explicit matches (the optimal parser's finder): each longer than every nearer one.
        let found = findMatches(at: position, limit: limit, into: matches)
        for m in 0..<found {
            let (length, offset) = matches[m]
            let benefit = length &* literalCost &- items.offsetCost(offset) &- items.lengthCost(length)
            if benefit > best.benefit {
                best = LZMSMatchChoice(length: length, offset: offset, repeatIndex: -1, benefit: benefit)
            }
        }
        return best
    }

    /// Parses and codes the whole chunk; returns the stream's size, or nil when it does not
    /// come in under `sizeLimit` (or its buffer).
    mutating func run(sizeLimit: Int?) -> Int? {
        let matches = UnsafeMutablePointer<(length: Int, offset: Int)>.allocate(capacity: settings.maxDepth + 1)
        defer { matches.deallocate() }
        let limit = sizeLimit ?? Int.max
        var position = 0
        var pending = LZMSMatchChoice()
        var havePending = false
        while position < count {
            guard items.hasRoom, items.bytesSoFar < limit else { return nil }
            var choice = havePending ? pending : bestMatch(at: position, matches)
            havePending = false
            if choice.benefit <= 0 {
                items.literal(data[position])
                position &+= 1
                continue
            }
            // Lazy matching: a better match at the next byte wins over this one.
            if choice.length < settings.niceLength && position &+ 1 < count {
                let next = bestMatch(at: position &+ 1, matches)
                if next.benefit > choice.benefit {
                    items.literal(data[position])
                    position &+= 1
                    if settings.keepLooking {
                        pending = next
                        havePending = true
                        continue
                    }
                    choice = next
                }
            }
            items.match(at: position, length: choice.length, offset: choice.offset, repeatIndex: choice.repeatIndex)
            position &+= choice.length
            insert(upTo: position)
        }
        let size = items.finish()
        return size < limit ? size : nil
    }
}

extension LZMSCompressor: ChunkCompressor {
    public var format: CompressionFormat { .lzms }

    /// Levels below 35 take the fast search (wimlib's fast range), the rest the normal one.
    public init(level: CompressionLevel) {
        self.init(level: level.value < 35 ? .fast : .normal)
    }
}
