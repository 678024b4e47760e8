import Foundation

/// A quick test that a chunk will not shrink, so that an encoder can leave it raw without the
/// match search and parse that would only prove it. Already-compressed files (.gz, .cab, .png,
/// .jpg, .zip) are a large share of what is captured: half of /usr/share/doc's bytes, many of a
/// Windows image's. On such chunks the full LZX parse cost about 20 ns per byte to find nothing.
///
/// A chunk counts as incompressible when both hold:
/// - its bytes' order-0 entropy is within 0.02 bits per byte of what uniformly random bytes
///   measure in a sample that size (never quite 8: the bias is about 255 / (2 n ln 2) bits, 0.006
///   in 32 KiB), so Huffman coding of literals can save at most about 0.3%, and
/// - fewer than one position in 1024 starts a 4 bytes also found at the latest earlier position
///   with their hash (16 Ki two-byte slots, 32 KiB: the test stays in the first-level cache and
///   still sees repeats from anywhere in a 64 KiB window): matches could then cover at most a few
///   tenths of a percent.
/// Together that leaves well under 1% to gain, and a chunk must shrink by more than its Huffman
/// tables (hundreds of bytes) for compressing it to pay at all. The test reads the chunk twice
/// at most (about 2 ns per byte) and is only made on chunks of 4 KiB or more.
enum IncompressibleData {
    static let minimumSize = 4096

    static func isLikely(_ bytes: UnsafePointer<UInt8>, count: Int) -> Bool {
        guard count >= minimumSize else { return false }
        let entropy = withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 256) { histogram -> Double in
            histogram.initialize(repeating: 0)
            for i in 0..<count { histogram[Int(bytes[i])] &+= 1 }
            var bits = 0.0
            let total = Double(count)
            for symbol in 0..<256 where histogram[symbol] != 0 {
                let frequency = Double(histogram[symbol])
                bits += frequency * log2(total / frequency)
            }
            return bits / total
        }
        let randomEntropy = 8 - 255 / (2 * Double(count) * M_LN2)
        guard entropy >= randomEntropy - 0.02 else { return false }
        let limit = count / 1024
        return repeatedSequences(bytes, count: count, limit: limit) < limit
    }

    /// Positions whose next 4 bytes equal those at the latest earlier position with the same
    /// hash (kept as its low 16 bits, so at most 65535 bytes back), counted up to `limit`.
    private static func repeatedSequences(_ bytes: UnsafePointer<UInt8>, count: Int, limit: Int) -> Int {
        let tableBits = 14
        return withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 1 << tableBits) { table -> Int in
            table.initialize(repeating: 0)
            let raw = UnsafeRawPointer(bytes)
            var repeats = 0
            for position in 0..<(count &- 3) {
                let key = raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)
                let slot = MatchFinding.slot4(key, shift: UInt32(32 &- tableBits))
                let distance = (position &- Int(table[slot])) & 0xFFFF
                table[slot] = UInt16(truncatingIfNeeded: position)
                let earlier = position &- distance
                if distance != 0 && earlier >= 0 && raw.loadUnaligned(fromByteOffset: earlier, as: UInt32.self) == key {
                    repeats &+= 1
                    if repeats >= limit { break }
                }
            }
            return repeats
        }
    }
}
