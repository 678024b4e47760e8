import Foundation
import TestSupport
import Testing
@testable import WIM

/// The quick test that lets XPRESS and LZX leave a chunk raw without searching it: it must say
/// yes only for data no encoder could shrink by more than a fraction of a percent.
@Suite struct IncompressibleDataTests {
    private func isLikely(_ data: [UInt8]) -> Bool {
        data.withUnsafeBufferPointer { IncompressibleData.isLikely($0.baseAddress!, count: $0.count) }
    }

    @Test("random bytes are incompressible at every chunk size from 4 KiB to 2 MiB")
    func randomIsIncompressible() {
        for (seed, size) in [4096, 32768, 65536, 2 << 20].enumerated() {
            let judged = isLikely(LZXTestData.make(.random, count: size, seed: UInt64(seed)))
            #expect(judged, "size \(size)")
        }
    }

    @Test("text, machine code, records and zeros are not")
    func structuredDataIsNot() {
        for kind in [LZXTestData.Kind.zeros, .text, .x86, .records, .mixed] {
            let judged = isLikely(LZXTestData.make(kind, count: 32768, seed: 3))
            #expect(!judged, "\(kind)")
        }
    }

    @Test("random bytes from 200 values (7.6 bits per byte) are not: Huffman codes shrink them")
    func lowEntropyRandomIsNot() {
        var rng = SplitMix64(seed: 5)
        let data = (0..<32768).map { _ in UInt8.random(in: 0..<200, using: &rng) }
        let judged = isLikely(data)
        #expect(!judged)
        var xpress = XpressCompressor()
        let compressed = xpress.compress(data)
        #expect(compressed != nil)
    }

    @Test("random bytes holding a repeated 1 KiB stretch are not: the repeat is a match")
    func repeatsAreNot() {
        var data = LZXTestData.make(.random, count: 32768, seed: 7)
        data.replaceSubrange(20000..<21024, with: data[1000..<2024])
        let judged = isLikely(data)
        #expect(!judged)
        var lzx = LZXCompressor(chunkSize: 32768)
        let compressed = lzx.compress(data)
        #expect(compressed != nil)
    }

    @Test("chunks under 4 KiB are never judged: the encoders try them")
    func smallChunksAreTried() {
        let judged = isLikely(LZXTestData.make(.random, count: 4095, seed: 9))
        #expect(!judged)
    }
}
