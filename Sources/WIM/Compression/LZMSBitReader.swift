// The backward half of an LZMS chunk: Huffman codewords and verbatim extra bits, stored in
// 16-bit little-endian words read from the end of the chunk towards its start, each word's
// bits from the most significant down.

/// Reads bits from the end of the chunk backwards.
///
/// Bits wait in `buffer` left-aligned, the next bit in bit 63. Because words are consumed from
/// high addresses to low and each word high bit first, the 8 bytes just below the read
/// position, loaded as one little-endian 64-bit integer, are exactly the next 64 bits in order;
/// a refill is one load and two shifts.
///
/// Past the start of the input the reader supplies zeros, as the reference decoder does
/// (decoding stays bounded because every item writes at least one byte).
struct LZMSBitReader {
    private let input: UnsafePointer<UInt8>
    /// Bytes not yet loaded: the words at offsets `0..<unread`.
    private(set) var unread: Int
    private var buffer: UInt64 = 0
    /// Valid bits in `buffer`, 0...64.
    private var available: Int = 0

    /// `count` must be even (the decoder checks this before starting).
    init(input: UnsafePointer<UInt8>, count: Int) {
        self.input = input
        self.unread = count
    }

    /// Makes at least `count` bits (at most 32) available; a codeword needs 15, extra bits
    /// at most 30.
    @inline(__always)
    mutating func ensure(_ count: Int) {
        if available < count { refill() }
    }

    /// Tops the buffer up to at least 49 bits with whole words.
    @inline(__always)
    private mutating func refill() {
        if unread >= 8 {
            // Called with fewer than 32 bits held, so two to four words fit.
            let next64 = UnsafeRawPointer(input + (unread &- 8)).loadUnaligned(as: UInt64.self).littleEndian
            let words = (64 &- available) &>> 4
            let newBits = words &<< 4
            buffer |= (next64 &>> UInt64(truncatingIfNeeded: 64 &- newBits))
                &<< UInt64(truncatingIfNeeded: 64 &- available &- newBits)
            available &+= newBits
            unread &-= words &<< 1
        } else {
            // Returns the new state rather than mutating `self`, so the reader's fields can
            // stay in registers in the decode loop.
            (buffer, available, unread) = LZMSBitReader.refillNearStart(input, buffer, available, unread)
        }
    }

    /// The last few words, then zeros.
    @inline(never)
    private static func refillNearStart(_ input: UnsafePointer<UInt8>, _ buffer: UInt64, _ available: Int,
                                        _ unread: Int) -> (UInt64, Int, Int) {
        var (buffer, available, unread) = (buffer, available, unread)
        while available <= 48 {
            var word: UInt64 = 0
            if unread >= 2 {
                unread &-= 2
                word = UInt64(UnsafeRawPointer(input + unread).loadUnaligned(as: UInt16.self).littleEndian)
            }
            buffer |= word &<< UInt64(truncatingIfNeeded: 48 &- available)
            available &+= 16
        }
        return (buffer, available, unread)
    }

    /// The next `count` bits (1...32) without consuming them; call `ensure` first.
    @inline(__always)
    func peek(_ count: Int) -> Int {
        Int(truncatingIfNeeded: buffer &>> UInt64(truncatingIfNeeded: 64 &- count))
    }

    /// Drops `count` bits (0...available).
    @inline(__always)
    mutating func consume(_ count: Int) {
        buffer &<<= UInt64(truncatingIfNeeded: count)
        available &-= count
    }

    /// Reads `count` verbatim bits, 0...30 (0 reads nothing); call `ensure(count)` first.
    @inline(__always)
    mutating func take(_ count: Int) -> Int {
        // Shifting in two steps makes count == 0 yield 0 without a branch.
        let value = Int(truncatingIfNeeded: (buffer &>> 1) &>> UInt64(truncatingIfNeeded: 63 &- count))
        consume(count)
        return value
    }
}
