/// Marvin32, the keyed 64-bit hash Windows checks every transaction log entry with (its Hash-1
/// over the entry after its header, Hash-2 over the header's first 32 bytes): an entry whose
/// hashes do not match was torn by a crash while being written, and recovery stops before it.
enum Marvin32 {
    /// The registry's seed. The format specification lists it as the bytes 82 EF 4D 88 7A 4E 55 C5,
    /// meaning the 64-bit number 0x82EF4D887A4E55C5: its low half (0x7A4E55C5) starts the first
    /// state word. Read the other way round no entry of a log Windows wrote checks out.
    static let registrySeed: UInt64 = 0x82EF_4D88_7A4E_55C5

    /// The hash of `bytes`: the low state word in the low 32 bits, as log entries store it.
    static func hash(_ bytes: ArraySlice<UInt8>, seed: UInt64 = registrySeed) -> UInt64 {
        var low = UInt32(truncatingIfNeeded: seed)
        var high = UInt32(truncatingIfNeeded: seed >> 32)
        func mix(_ word: UInt32) {
            low &+= word
            high ^= low
            low = rotate(low, 20) &+ high
            high = rotate(high, 9) ^ low
            low = rotate(low, 27) &+ high
            high = rotate(high, 19)
        }
        var index = bytes.startIndex
        while bytes.endIndex - index >= 4 {
            mix(UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16 | UInt32(bytes[index + 3]) << 24)
            index += 4
        }
        // The last 0-3 bytes, then the byte 0x80, as one little-endian word; then a word of zeros.
        var final: UInt32 = 0x80
        for byte in bytes[index...].reversed() { final = final << 8 | UInt32(byte) }
        mix(final)
        mix(0)
        return UInt64(high) << 32 | UInt64(low)
    }

    private static func rotate(_ value: UInt32, _ count: UInt32) -> UInt32 {
        value << count | value >> (32 - count)
    }
}
