// The forward half of an LZMS chunk, written: the range encoder for the binary decisions that
// choose item types. The mirror of `LZMSRangeDecoder` (see there for the model update rule).
//
// Format facts (from our decoder, which follows wimlib's format description): the stream is
// 16-bit little-endian words from the front of the chunk; the decoder starts with a 32-bit code
// of the first two words and a range of 0xFFFFFFFF, and before each decision widens a range of
// 0xFFFF or less by one word. A 0 takes the low part of the interval, of size
// (range >> 6) * probability.
//
// The encoder is the classic carry-propagating range encoder (as in LZMA) at 16-bit units:
// `low` is the bottom of the interval in the decoder's 32-bit window plus a carry bit; the unit
// that leaves the window is held back (`cache`, followed by `pendingFFFF` units of 0xFFFF)
// until it is known that no carry can reach it any more.

/// Writes range-coded decisions as 16-bit words to the front of an output buffer.
struct LZMSRangeEncoder {
    private let output: UnsafeMutablePointer<UInt8>
    /// Bytes written so far (the held-back units are not counted).
    private(set) var byteCount = 0
    private var low: UInt64 = 0
    private var range: UInt32 = 0xFFFF_FFFF
    private var cache: UInt16 = 0
    /// Units of 0xFFFF waiting behind `cache`, plus one for `cache` itself.
    private var heldBack = 1
    /// The first unit to leave is a placeholder (the window starts full), never written.
    private var placeholderPending = true
    /// Words that left the window (written or held back); bounds the bytes this stream can
    /// still take, see `worstCaseBytes`.
    private(set) var shifts = 0

    /// `output` must have room for `worstCaseBytes` bytes at every point of use; the caller
    /// checks this between items.
    init(output: UnsafeMutablePointer<UInt8>) {
        self.output = output
    }

    /// The most bytes the stream can occupy once flushed: every word that left the window
    /// plus the two still in it.
    var worstCaseBytes: Int { (shifts &+ 3) &* 2 }

    @inline(__always)
    private mutating func write(_ word: UInt16) {
        if placeholderPending {
            placeholderPending = false
            return
        }
        UnsafeMutableRawPointer(output + byteCount).storeBytes(of: word.littleEndian, as: UInt16.self)
        byteCount &+= 2
    }

    /// Moves the top unit of the window out, resolving held-back units once a carry can no
    /// longer change them.
    @inline(__always)
    private mutating func shiftLow() {
        shifts &+= 1
        if low < 0xFFFF_0000 || low > 0xFFFF_FFFF {
            let carry = UInt16(truncatingIfNeeded: low &>> 32)
            var unit = cache &+ carry
            repeat {
                write(unit)
                unit = 0xFFFF &+ carry
                heldBack &-= 1
            } while heldBack != 0
            cache = UInt16(truncatingIfNeeded: low &>> 16)
        }
        heldBack &+= 1
        low = (low & 0xFFFF) &<< 16
    }

    /// Encodes `bit` with the model `models[state]`, updates the model like the decoder does
    /// and shifts `bit` into `state`.
    @inline(__always)
    mutating func encode(_ bit: Int, _ models: UnsafeMutablePointer<LZMSBitModel>, _ state: inout Int, stateMask: Int) {
        let model = models + state
        if range <= 0xFFFF {
            range &<<= 16
            shiftLow()
        }
        let bound = (range &>> UInt32(truncatingIfNeeded: LZMSFormat.probabilityBits)) &* model.pointee.probability
        if bit == 0 {
            range = bound
        } else {
            low &+= UInt64(bound)
            range &-= bound
        }
        let history = model.pointee.history
        let zeroCount = model.pointee.zeroCount &+ UInt32(truncatingIfNeeded: history &>> 63) &- UInt32(truncatingIfNeeded: bit)
        model.pointee.zeroCount = zeroCount
        model.pointee.probability = (zeroCount &- (zeroCount &>> 6)) | (zeroCount == 0 ? 1 : 0)
        model.pointee.history = history &<< 1 | UInt64(truncatingIfNeeded: bit)
        state = (state &<< 1 | bit) & stateMask
    }

    /// Writes out the whole window, so the decoder's 32-bit code ends exactly at `low`, which
    /// lies inside every interval chosen; returns the bytes written.
    mutating func finish() -> Int {
        for _ in 0..<3 { shiftLow() }
        return byteCount
    }
}
