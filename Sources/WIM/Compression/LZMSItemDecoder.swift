// The item decoder: the state of one chunk's decoding and the decoding of each item kind.

/// Decodes the items of one chunk. Holds everything that changes while decoding: both bit
/// streams, the decision states, the adaptive codes, the repeat queues and the write cursor.
/// The tables it points to belong to the `LZMSWorkspace`.
struct LZMSItemDecoder {
    private typealias Decision = LZMSDecision
    private typealias Tables = LZMSWorkspace

    private var ranges: LZMSRangeDecoder
    private var bits: LZMSBitReader

    private let models: UnsafeMutablePointer<LZMSBitModel>
    private var mainState = 0
    private var matchState = 0
    private var lzState = 0
    private var deltaState = 0
    private var lzRepeatStates = (0, 0)
    private var deltaRepeatStates = (0, 0)

    private var literals: LZMSAdaptiveCode
    private var lengths: LZMSAdaptiveCode
    private var lzOffsets: LZMSAdaptiveCode
    private var deltaOffsets: LZMSAdaptiveCode
    private var deltaPowers: LZMSAdaptiveCode
    private let builder: LZMSCodeBuilder
    /// Packed slot words (base | extra bits << 27), see LZMSFormat.slotBaseMask.
    private let offsetSlots: UnsafePointer<UInt32>
    private let lengthSlots: UnsafePointer<UInt32>

    private var lzQueue = LZMSRepeatQueue(1, 2, 3, 4)
    /// Delta pairs packed as power << 32 | raw offset; the queue starts at (0, 1)...(0, 4).
    private var deltaQueue = LZMSRepeatQueue(1, 2, 3, 4)

    private let out: UnsafeMutablePointer<UInt8>
    /// The write cursor, a pointer so the literal loop has a single induction variable.
    private var next: UnsafeMutablePointer<UInt8>
    private let end: UnsafeMutablePointer<UInt8>

    /// The codes must be reset for this chunk and the models reset to their initial state.
    init(input: UnsafePointer<UInt8>, inputCount: Int, output: UnsafeMutablePointer<UInt8>, outputCount: Int,
         models: UnsafeMutablePointer<LZMSBitModel>, offsetSlots: UnsafePointer<UInt32>, lengthSlots: UnsafePointer<UInt32>,
         builder: LZMSCodeBuilder, literals: LZMSAdaptiveCode, lengths: LZMSAdaptiveCode, lzOffsets: LZMSAdaptiveCode,
         deltaOffsets: LZMSAdaptiveCode, deltaPowers: LZMSAdaptiveCode) {
        ranges = LZMSRangeDecoder(input: input, count: inputCount)
        bits = LZMSBitReader(input: input, count: inputCount)
        self.models = models
        self.offsetSlots = offsetSlots
        self.lengthSlots = lengthSlots
        self.builder = builder
        self.literals = literals
        self.lengths = lengths
        self.lzOffsets = lzOffsets
        self.deltaOffsets = deltaOffsets
        self.deltaPowers = deltaPowers
        out = output
        next = output
        end = output + outputCount
    }

    var isComplete: Bool { next == end }

    /// Decodes items while they are literals. Returns false once the output is full, true
    /// when the next item is a match (its first decision already taken).
    ///
    /// Literals are the most frequent item, so this loop is kept small, and it works on local
    /// copies of the state it touches: the optimizer then keeps exactly those in registers,
    /// rather than spreading the registers over the whole decoder's state.
    @inline(__always)
    mutating func decodeLiterals() -> Bool {
        var ranges = self.ranges, bits = self.bits, literals = self.literals
        var mainState = self.mainState, next = self.next
        let models = self.models, end = self.end, builder = self.builder
        defer {
            self.ranges = ranges
            self.bits = bits
            self.literals = literals
            self.mainState = mainState
            self.next = next
        }
        while next < end {
            if ranges.decodeBit(models + Decision.mainModels, &mainState, stateMask: Decision.mainStateMask) != 0 {
                return true
            }
            let literal = literals.decode(&bits, tableBits: Tables.literalTableBits, builder: builder)
            next.pointee = UInt8(truncatingIfNeeded: literal)
            next += 1
        }
        return false
    }

    /// Decodes and writes one match, whose "not a literal" decision was just taken.
    @inline(__always)
    mutating func decodeMatch() throws(DecompressionError) {
        let position = next - out
        // Every match reaches back at least one byte, so none can start the chunk (this
        // also keeps 1-byte chunks, which have no offset slots, from decoding an offset).
        if position == 0 {
            throw DecompressionError(.lzms, "the chunk starts with a match, which has nothing to copy from", offset: ranges.position)
        }
        if ranges.decodeBit(models + Decision.matchModels, &matchState, stateMask: Decision.matchStateMask) == 0 {
            try decodeLZMatch(at: position)
        } else {
            try decodeDeltaMatch(at: position)
        }
    }

    /// Base plus extra bits of the slot `word` (see LZMSFormat.slotBaseMask).
    @inline(__always)
    private mutating func slotValue(_ word: UInt32) -> Int {
        let extraBits = Int(truncatingIfNeeded: word &>> LZMSFormat.slotExtraBitsShift)
        bits.ensure(extraBits)
        return Int(truncatingIfNeeded: word & LZMSFormat.slotBaseMask) &+ bits.take(extraBits)
    }

    @inline(__always)
    private mutating func decodeLength() -> Int {
        let slot = lengths.decode(&bits, tableBits: Tables.lengthTableBits, builder: builder)
        return slotValue(lengthSlots[slot])
    }

    @inline(__always)
    private mutating func decodeLZMatch(at position: Int) throws(DecompressionError) {
        lzQueue.beginMatch(at: position)
        let offset: Int
        if ranges.decodeBit(models + Decision.lzModels, &lzState, stateMask: Decision.lzStateMask) == 0 {
            let slot = lzOffsets.decode(&bits, tableBits: Tables.offsetTableBits, builder: builder)
            offset = slotValue(offsetSlots[slot])
        } else if ranges.decodeBit(models + Decision.lzRepeatModels.0, &lzRepeatStates.0,
                                   stateMask: Decision.lzRepeatStateMask) == 0 {
            offset = lzQueue.take(0)
        } else if ranges.decodeBit(models + Decision.lzRepeatModels.1, &lzRepeatStates.1,
                                   stateMask: Decision.lzRepeatStateMask) == 0 {
            offset = lzQueue.take(1)
        } else {
            offset = lzQueue.take(2)
        }
        lzQueue.settle(offset)
        let length = decodeLength()

        if offset > position {
            throw DecompressionError(.lzms, "a match at output byte \(position) copies from \(offset) bytes back, before the start of the chunk", offset: bits.unread)
        }
        if length > end - next {
            throw DecompressionError(.lzms, "a match of \(length) bytes at output byte \(position) runs past the end of the \(end - out)-byte chunk", offset: bits.unread)
        }
        LZMSItemDecoder.copyMatch(to: next, offset: offset, length: length, end: end)
        next += length
        lzQueue.lastMatchEnd = position &+ length
    }

    @inline(__always)
    private mutating func decodeDeltaMatch(at position: Int) throws(DecompressionError) {
        deltaQueue.beginMatch(at: position)
        let pair: Int
        if ranges.decodeBit(models + Decision.deltaModels, &deltaState, stateMask: Decision.deltaStateMask) == 0 {
            let power = deltaPowers.decode(&bits, tableBits: Tables.powerTableBits, builder: builder)
            let slot = deltaOffsets.decode(&bits, tableBits: Tables.offsetTableBits, builder: builder)
            pair = power &<< 32 | slotValue(offsetSlots[slot])
        } else if ranges.decodeBit(models + Decision.deltaRepeatModels.0, &deltaRepeatStates.0,
                                   stateMask: Decision.deltaRepeatStateMask) == 0 {
            pair = deltaQueue.take(0)
        } else if ranges.decodeBit(models + Decision.deltaRepeatModels.1, &deltaRepeatStates.1,
                                   stateMask: Decision.deltaRepeatStateMask) == 0 {
            pair = deltaQueue.take(1)
        } else {
            pair = deltaQueue.take(2)
        }
        deltaQueue.settle(pair)
        let length = decodeLength()

        // power <= 7 and the raw offset < 2^31, so the shifts cannot overflow.
        let power = pair &>> 32
        let span = 1 &<< power
        let offset = (pair & 0xFFFF_FFFF) &<< power
        if offset &+ span > position {
            throw DecompressionError(.lzms, "a delta match at output byte \(position) (offset \(offset), span \(span)) reaches before the start of the chunk", offset: bits.unread)
        }
        if length > end - next {
            throw DecompressionError(.lzms, "a delta match of \(length) bytes at output byte \(position) runs past the end of the \(end - out)-byte chunk", offset: bits.unread)
        }
        LZMSItemDecoder.copyDeltaMatch(to: next, offset: offset, span: span, length: length)
        next += length
        deltaQueue.lastMatchEnd = position &+ length
    }

    // The two copy routines stay out of line on purpose: inlined, their address arithmetic
    // makes the optimizer derive extra induction variables from the write cursor, which it
    // then updates (and spills) on every literal.

    /// Writes a delta match whose bounds were checked (`offset + span` no farther back than
    /// the start of the output, `length` >= 1 and within it). Byte by byte, since the sources
    /// may overlap the bytes being written.
    @inline(never)
    private static func copyDeltaMatch(to destination: UnsafeMutablePointer<UInt8>, offset: Int, span: Int, length: Int) {
        var target = destination
        let matchEnd = destination + length
        repeat {
            target.pointee = (target - offset).pointee &+ (target - span).pointee &- (target - offset - span).pointee
            target += 1
        } while target < matchEnd
    }

    /// Copies an LZ match whose bounds were checked: `offset` no farther back than the start
    /// of the output, `length` >= 1 and no farther than `end`.
    @inline(never)
    private static func copyMatch(to destination: UnsafeMutablePointer<UInt8>, offset: Int, length: Int,
                                  end: UnsafeMutablePointer<UInt8>) {
        var target = destination
        var source = target - offset
        let matchEnd = target + length
        if offset >= 8 && end - matchEnd >= 8 {
            // Eight bytes per step, possibly writing up to 7 bytes past the match, which
            // later items overwrite; `offset >= 8` means every load reads finished bytes.
            repeat {
                UnsafeMutableRawPointer(target).storeBytes(of: UnsafeRawPointer(source).loadUnaligned(as: UInt64.self), as: UInt64.self)
                target += 8
                source += 8
            } while target < matchEnd
            return
        }
        if offset == 1 {
            target.update(repeating: source.pointee, count: length)
            return
        }
        // Short offsets repeat a pattern that is still being written; near the end of the
        // chunk there is no room for whole words. Byte by byte is exact for both.
        repeat {
            target.pointee = source.pointee
            target += 1
            source += 1
        } while target < matchEnd
    }
}
