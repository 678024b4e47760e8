// LZMS decompression: the format of WIM solid resources and of LZMS-compressed WIM/ESD
// resources.
//
// A chunk is read from both ends at once. From the front, a range decoder yields the binary
// decisions that say what each item is; from the back, a bit reader yields Huffman-coded
// literals, offset slots, length slots, delta powers and verbatim extra bits. Items are:
//
// - a literal byte;
// - an LZ match: copy `length` bytes from `offset` bytes back, offset explicit or one of
//   the three most recent;
// - a delta match: with span = 2^power, each byte is
//   out[i - offset] + out[i - span] - out[i - offset - span] (mod 256), i.e. the bytewise
//   differences at distance `span` repeat those `offset` bytes back; (power, raw offset)
//   explicit or one of the three most recent pairs, offset = raw offset << power.
//
// All five Huffman codes and all binary probabilities adapt as the chunk is decoded, and
// nothing carries over between chunks. After the items, the x86 filter is undone over the
// whole chunk (see LZMSX86Filter.swift).

/// Decodes LZMS chunks. Keeps its tables (about 430 KiB, 256 KiB of it the x86 filter's)
/// between calls, so a thread decoding many chunks allocates once; not for concurrent use.
public struct LZMSDecompressor: ChunkDecompressor {
    public var format: CompressionFormat { .lzms }

    private var workspace: LZMSWorkspace

    public init() {
        workspace = LZMSWorkspace()
    }

    public mutating func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(DecompressionError) {
        // Copies of this struct share the workspace; give a copy its own before writing.
        if !isKnownUniquelyReferenced(&workspace) {
            workspace = LZMSWorkspace()
        }
        try workspace.decompress(input, into: output)
    }
}

/// The offset queues of the LZ and delta repeat matches.
///
/// Using a queue entry removes it (the later ones move up). The offset just used, or just
/// decoded explicitly, does not enter the front of the queue at once but waits as `pending`
/// until the next match of the same kind: if items of other kinds came in between, it enters
/// before that match picks its offset; if the match directly follows, it enters after, so a
/// match cannot repeat the offset of the match right before it (it would have been coded as
/// one longer match). The queue has a fourth, unreachable slot so entries shifted out of the
/// third can move back up.
struct LZMSRepeatQueue {
    var slot0: Int
    var slot1: Int
    var slot2: Int
    var slot3: Int
    /// 0 when nothing is pending (real offsets and pairs are never 0).
    var pending: Int = 0
    /// Output position just after the last match of this kind; equal to the current position
    /// exactly when that match was the previous item.
    var lastMatchEnd: Int = -1

    init(_ slot0: Int, _ slot1: Int, _ slot2: Int, _ slot3: Int) {
        (self.slot0, self.slot1, self.slot2, self.slot3) = (slot0, slot1, slot2, slot3)
    }

    @inline(__always)
    mutating func pushFront(_ value: Int) {
        slot3 = slot2
        slot2 = slot1
        slot1 = slot0
        slot0 = value
    }

    /// Called at the start of a match: flushes the pending entry if other items intervened.
    @inline(__always)
    mutating func beginMatch(at position: Int) {
        if pending != 0 && position != lastMatchEnd {
            pushFront(pending)
            pending = 0
        }
    }

    /// Removes and returns entry `index` (0...2).
    @inline(__always)
    mutating func take(_ index: Int) -> Int {
        let value: Int
        switch index {
        case 0:
            value = slot0
            slot0 = slot1
            slot1 = slot2
            slot2 = slot3
        case 1:
            value = slot1
            slot1 = slot2
            slot2 = slot3
        default:
            value = slot2
            slot2 = slot3
        }
        return value
    }

    /// Called once the match's offset is known: the previous pending entry enters the queue
    /// (if the previous item was this kind of match) and this one waits.
    @inline(__always)
    mutating func settle(_ value: Int) {
        if pending != 0 { pushFront(pending) }
        pending = value
    }
}

/// The memory a decompressor reuses from chunk to chunk: probability models, code tables,
/// symbol counts, Huffman scratch and the x86 filter's table. One allocation, freed on deinit.
final class LZMSWorkspace {
    private let memory: UnsafeMutableRawPointer

    private let models: UnsafeMutablePointer<LZMSBitModel>
    /// Packed slot words (base | extra bits << 27), see LZMSFormat.slotBaseMask.
    private let offsetSlots: UnsafeMutablePointer<UInt32>
    private let lengthSlots: UnsafeMutablePointer<UInt32>

    private var literalCode: LZMSAdaptiveCode
    private var lengthCode: LZMSAdaptiveCode
    private var lzOffsetCode: LZMSAdaptiveCode
    private var deltaOffsetCode: LZMSAdaptiveCode
    private var deltaPowerCode: LZMSAdaptiveCode
    private let builder: LZMSCodeBuilder
    private var x86Filter: LZMSX86Filter

    // Index widths of the first-level decode tables: wide enough that nearly every symbol
    // decodes in one lookup, small enough that rebuilding every 512-1024 symbols stays cheap.
    static let literalTableBits = 10
    static let lengthTableBits = 10
    static let offsetTableBits = 10
    static let powerTableBits = 7

    init() {
        typealias Code = LZMSAdaptiveCode
        let codeSpecs: [(symbols: Int, tableBits: Int)] = [
            (LZMSFormat.literalSymbolCount, LZMSWorkspace.literalTableBits),
            (LZMSFormat.lengthSymbolCount, LZMSWorkspace.lengthTableBits),
            (LZMSFormat.maxOffsetSymbolCount, LZMSWorkspace.offsetTableBits),
            (LZMSFormat.maxOffsetSymbolCount, LZMSWorkspace.offsetTableBits),
            (LZMSFormat.deltaPowerSymbolCount, LZMSWorkspace.powerTableBits),
        ]
        // Lay everything out in one block, each part 64-byte aligned.
        func roundUp(_ n: Int) -> Int { (n + 63) & ~63 }
        var size = roundUp(LZMSDecision.modelCount * MemoryLayout<LZMSBitModel>.stride)
        size += roundUp(LZMSFormat.maxOffsetSymbolCount * 4) + roundUp(LZMSFormat.lengthSymbolCount * 4)
        for spec in codeSpecs {
            size += roundUp(spec.symbols * 4)
            size += 2 * roundUp(Code.tableCapacity(maxSymbolCount: spec.symbols, tableBits: spec.tableBits) * 4)
        }
        size += roundUp(LZMSCodeBuilder.scratchByteCount)
        size += roundUp(LZMSX86Filter.tableEntries * 4)

        memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        var cursor = memory
        func carve<T>(_ type: T.Type, _ count: Int) -> UnsafeMutablePointer<T> {
            let pointer = cursor.bindMemory(to: T.self, capacity: count)
            cursor += roundUp(count * MemoryLayout<T>.stride)
            return pointer
        }

        models = carve(LZMSBitModel.self, LZMSDecision.modelCount)
        offsetSlots = carve(UInt32.self, LZMSFormat.maxOffsetSymbolCount)
        lengthSlots = carve(UInt32.self, LZMSFormat.lengthSymbolCount)
        let packedOffsets = LZMSFormat.packedSlots(LZMSFormat.offsetExtraBitRuns)
        let packedLengths = LZMSFormat.packedSlots(LZMSFormat.lengthExtraBitRuns)
        for (i, word) in packedOffsets.prefix(LZMSFormat.maxOffsetSymbolCount).enumerated() { offsetSlots[i] = word }
        for (i, word) in packedLengths.prefix(LZMSFormat.lengthSymbolCount).enumerated() { lengthSlots[i] = word }

        func makeCode(_ index: Int, rebuildInterval: Int) -> Code {
            let spec = codeSpecs[index]
            let frequencies = carve(UInt32.self, spec.symbols)
            let capacity = Code.tableCapacity(maxSymbolCount: spec.symbols, tableBits: spec.tableBits)
            let table = carve(UInt32.self, capacity)
            let pristine = carve(UInt32.self, capacity)
            return Code(maxSymbolCount: spec.symbols, tableBits: spec.tableBits, rebuildInterval: rebuildInterval,
                        frequencies: frequencies, table: table, pristine: pristine)
        }
        literalCode = makeCode(0, rebuildInterval: LZMSFormat.literalRebuildInterval)
        lengthCode = makeCode(1, rebuildInterval: LZMSFormat.lengthRebuildInterval)
        lzOffsetCode = makeCode(2, rebuildInterval: LZMSFormat.lzOffsetRebuildInterval)
        deltaOffsetCode = makeCode(3, rebuildInterval: LZMSFormat.deltaOffsetRebuildInterval)
        deltaPowerCode = makeCode(4, rebuildInterval: LZMSFormat.deltaPowerRebuildInterval)
        let scratch = cursor
        cursor += roundUp(LZMSCodeBuilder.scratchByteCount)
        builder = LZMSCodeBuilder(scratch: scratch)
        x86Filter = LZMSX86Filter(table: carve(Int32.self, LZMSX86Filter.tableEntries))
    }

    deinit {
        memory.deallocate()
    }

    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(DecompressionError) {
        // The format is 16-bit words, and the range decoder starts by reading two of them.
        guard input.count >= 4, let inputBase = input.baseAddress else {
            throw DecompressionError(.lzms, "the chunk is \(input.count) bytes long; LZMS data needs at least 4", offset: 0)
        }
        guard input.count % 2 == 0 else {
            throw DecompressionError(.lzms, "the chunk is \(input.count) bytes long; LZMS data is a sequence of 16-bit words, so its length must be even", offset: input.count - 1)
        }
        guard let outputBase = output.baseAddress, output.count > 0 else { return }
        guard output.count <= LZMSFormat.maxBufferSize else {
            throw DecompressionError(.lzms, "the chunk's uncompressed size \(output.count) exceeds the LZMS limit of \(LZMSFormat.maxBufferSize) bytes", offset: 0)
        }
        let inputBytes = inputBase.assumingMemoryBound(to: UInt8.self)
        let out = outputBase.assumingMemoryBound(to: UInt8.self)

        try decodeItems(inputBytes, inputCount: input.count, out, outputCount: output.count)
        x86Filter.undo(out, count: output.count)
    }

    /// Decodes literals and matches until `outputCount` bytes are written.
    private func decodeItems(_ input: UnsafePointer<UInt8>, inputCount: Int,
                             _ out: UnsafeMutablePointer<UInt8>, outputCount: Int) throws(DecompressionError) {
        LZMSDecision.reset(models)
        let offsetSlotCount = LZMSFormat.offsetSlotCount(forOutputSize: outputCount, packedOffsetSlots: offsetSlots)
        // Reset the stored codes (which keeps their cached first tables up to date); the item
        // decoder works on copies of them (they are pointers into this workspace plus a few
        // counters).
        literalCode.reset(symbolCount: LZMSFormat.literalSymbolCount, builder: builder)
        lengthCode.reset(symbolCount: LZMSFormat.lengthSymbolCount, builder: builder)
        lzOffsetCode.reset(symbolCount: offsetSlotCount, builder: builder)
        deltaOffsetCode.reset(symbolCount: offsetSlotCount, builder: builder)
        deltaPowerCode.reset(symbolCount: LZMSFormat.deltaPowerSymbolCount, builder: builder)

        var items = LZMSItemDecoder(
            input: input, inputCount: inputCount, output: out, outputCount: outputCount,
            models: models, offsetSlots: offsetSlots, lengthSlots: lengthSlots, builder: builder,
            literals: literalCode, lengths: lengthCode, lzOffsets: lzOffsetCode,
            deltaOffsets: deltaOffsetCode, deltaPowers: deltaPowerCode)
        while items.decodeLiterals() {
            try items.decodeMatch()
            if items.isComplete { break }
        }
    }
}
