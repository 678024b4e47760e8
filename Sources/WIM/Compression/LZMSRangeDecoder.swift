// The forward half of an LZMS chunk: a binary range coder whose bits choose the item types
// (literal or match, LZ or delta, explicit or repeat offset).

/// One adaptive probability: how often 0 came out of the last 64 decisions made in this
/// context. The count is kept beside the history (no population count per bit), and the
/// clamped probability beside the count, so the decoder's critical path is a single load.
struct LZMSBitModel {
    /// `zeroCount` limited to 1...63: the format never uses 0/64 or 64/64, since a certain
    /// outcome would leave the other one no code space.
    var probability: UInt32
    var zeroCount: UInt32
    var history: UInt64

    static let initial = LZMSBitModel(probability: LZMSFormat.initialZeroCount,
                                      zeroCount: LZMSFormat.initialZeroCount,
                                      history: LZMSFormat.initialHistory)
}

/// Where each decision's models sit in the one model array, and how many recent outcomes
/// select among them. Each decision indexes its models with its own recent outcomes: 4 for
/// literal-or-match, 5 for LZ-or-delta, 6 for the others.
enum LZMSDecision {
    static let mainModels = 0, mainStateMask = 15
    static let matchModels = 16, matchStateMask = 31
    static let lzModels = 48, lzStateMask = 63
    static let deltaModels = 112, deltaStateMask = 63
    /// Two decisions pick one of three repeat offsets (0, 10, 11), each with its own models.
    static let lzRepeatModels = (176, 240), lzRepeatStateMask = 63
    static let deltaRepeatModels = (304, 368), deltaRepeatStateMask = 63
    static let modelCount = 432

    /// Puts every model back to its initial 48/64.
    static func reset(_ models: UnsafeMutablePointer<LZMSBitModel>) {
        models.update(repeating: .initial, count: modelCount)
    }
}

/// Reads the range-coded bit stream: 16-bit little-endian words from the front of the chunk.
///
/// Past the end of the input the decoder shifts in zeros, as the reference decoder does; a
/// corrupt chunk then decodes to garbage that the item checks reject, and every item writes at
/// least one byte, so decoding always ends.
struct LZMSRangeDecoder {
    private let input: UnsafePointer<UInt8>
    private let inputCount: Int
    /// Byte offset of the next unread word.
    private(set) var position: Int
    /// Width of the current interval; kept above 0xFFFF so a bound never rounds to 0.
    private var range: UInt32 = 0xFFFF_FFFF
    /// Where the encoded value lies inside the interval.
    private var code: UInt32

    /// `input` must hold at least 4 bytes (the decoder checks this before starting).
    init(input: UnsafePointer<UInt8>, count: Int) {
        self.input = input
        self.inputCount = count
        let high = UInt32(UnsafeRawPointer(input).loadUnaligned(as: UInt16.self).littleEndian)
        let low = UInt32(UnsafeRawPointer(input + 2).loadUnaligned(as: UInt16.self).littleEndian)
        self.code = high << 16 | low
        self.position = 4
    }

    /// Decodes one decision with the model `models[state]`, updates that model, shifts the
    /// outcome into `state` (keeping `stateMask` bits) and returns it (0 or 1).
    @inline(__always)
    mutating func decodeBit(_ models: UnsafeMutablePointer<LZMSBitModel>, _ state: inout Int, stateMask: Int) -> Int {
        let model = models + state

        // Keep enough precision: once the interval is 16 bits wide, widen it by one word.
        if range <= 0xFFFF {
            range &<<= 16
            code &<<= 16
            if position &+ 2 <= inputCount {
                code |= UInt32(UnsafeRawPointer(input + position).loadUnaligned(as: UInt16.self).littleEndian)
                position &+= 2
            }
        }

        // range > 0xFFFF and probability <= 63, so the product fits and is at least 1024.
        let bound = (range &>> UInt32(truncatingIfNeeded: LZMSFormat.probabilityBits)) &* model.pointee.probability
        let bit: Int
        if code < bound {
            range = bound
            bit = 0
        } else {
            range &-= bound
            code &-= bound
            bit = 1
        }

        // Slide the 64-bit window: the oldest outcome leaves, the new one enters. The count
        // stays in 0...64 because it always equals the zeros in the window.
        let history = model.pointee.history
        let zeroCount = model.pointee.zeroCount &+ UInt32(truncatingIfNeeded: history &>> 63) &- UInt32(truncatingIfNeeded: bit)
        model.pointee.zeroCount = zeroCount
        // 64 -> 63 by subtracting bit 6; 0 -> 1 by or-ing in "is zero". No branches.
        model.pointee.probability = (zeroCount &- (zeroCount &>> 6)) | (zeroCount == 0 ? 1 : 0)
        model.pointee.history = history &<< 1 | UInt64(truncatingIfNeeded: bit)
        state = (state &<< 1 | bit) & stateMask
        return bit
    }
}
