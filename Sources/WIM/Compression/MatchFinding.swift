/// What the encoders' match finders (XPRESS, LZX, LZMS) and `IncompressibleData` share: the
/// slots they file positions under, by the 4 bytes at a position (`word`, loaded little-endian),
/// and how many bytes two places have in common.
enum MatchFinding {
    /// Bits of the table of the latest position per 3-byte prefix (the near 3-byte matches):
    /// small enough for the first-level cache, as it is read and written at every position.
    static let nearTableBits = 12

    /// The slot of a 4-byte prefix in a table of `32 - shift` bits (multiplicative hashing).
    @inline(__always)
    static func slot4(_ word: UInt32, shift: UInt32) -> Int {
        Int(truncatingIfNeeded: (word &* 0x9E37_79B1) &>> shift)
    }

    /// The slot of the word's first 3 bytes in the near table.
    @inline(__always)
    static func slot3(_ word: UInt32) -> Int {
        Int(truncatingIfNeeded: ((word & 0xFF_FFFF) &* 0x2F0F_4B2B) &>> UInt32(32 &- nearTableBits))
    }

    /// How many bytes at `a` equal those at `b`, at most `limit`, counting from `start` (the
    /// bytes before it are taken as equal). Compares 8 bytes at a time while 8 remain before
    /// `limit`, so it reads nothing at or past `limit`.
    @inline(__always)
    static func commonLength(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, from start: Int, limit: Int) -> Int {
        var length = start
        while length &+ 8 <= limit {
            let x = UnsafeRawPointer(a + length).loadUnaligned(as: UInt64.self)
            let y = UnsafeRawPointer(b + length).loadUnaligned(as: UInt64.self)
            let difference = UInt64(littleEndian: x ^ y)
            if difference != 0 { return length &+ difference.trailingZeroBitCount &>> 3 }
            length &+= 8
        }
        while length < limit && a[length] == b[length] { length &+= 1 }
        return length
    }
}
