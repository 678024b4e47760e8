import Foundation
import TestSupport
import Testing
@testable import WIM

/// The XPRESS compressor: its output must decode (with our decoder, and with wimlib's) to the
/// chunk for every size and kind of data, shrink real text about as well as wimlib's default,
/// and be refused (nil) when it would not be smaller. Also the Huffman code builder it uses.
@Suite struct XpressCompressorTests {
    static let levels: [XpressCompressor.Level] = [.fast, .normal]

    // MARK: - Round trips

    @Test("round trips of every data kind at sizes from 1 to 65536 bytes", arguments: levels)
    func roundTripsEveryKindAndSize(level: XpressCompressor.Level) throws {
        var compressor = XpressCompressor(level: level)
        var decoder = XpressDecompressor()
        let sizes = Array(1...40) + [63, 64, 255, 256, 257, 259, 260, 261, 262, 300, 511, 1000, 4095, 4096,
                                      4097, 12_345, 32_767, 32_768, 32_769, 50_001, 65_535, 65_536]
        var shrunk = 0
        for kind in XpressTestData.Kind.allCases {
            for size in sizes {
                let data = XpressTestData.make(kind, count: size, seed: UInt64(size &* 7 &+ kind.rawValue.count))
                let always = compressor.compressAlways(data)
                #expect(try mismatch(decoder.decompress(always, outputSize: size), data) == nil, "\(kind) \(size) (always)")
                if let compressed = compressor.compress(data) {
                    shrunk += 1
                    #expect(compressed.count < size, "\(kind) \(size)")
                    #expect(compressed == always, "\(kind) \(size): compress and compressAlways differ")
                } else {
                    #expect(always.count >= size, "\(kind) \(size): nil although it shrinks to \(always.count)")
                }
            }
        }
        #expect(shrunk > 40)
    }

    @Test("every size from 1 to 600 bytes, text and random", arguments: levels)
    func roundTripsSmallSizes(level: XpressCompressor.Level) throws {
        var compressor = XpressCompressor(level: level)
        var decoder = XpressDecompressor()
        for size in 1...600 {
            for kind in [XpressTestData.Kind.text, .random, .repetitive] {
                let data = XpressTestData.make(kind, count: size, seed: UInt64(size))
                let always = compressor.compressAlways(data)
                #expect(try mismatch(decoder.decompress(always, outputSize: size), data) == nil, "\(kind) \(size)")
            }
        }
    }

    @Test("match lengths at each long-length boundary, offsets up to the chunk's end", arguments: levels)
    func roundTripsLengthAndOffsetBoundaries(level: XpressCompressor.Level) throws {
        var compressor = XpressCompressor(level: level)
        var decoder = XpressDecompressor()
        var rng = SplitMix64(seed: 21)
        func random(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }

        // A random stretch, then a copy of its start of the given length, then random bytes:
        // one match of exactly that length (17/18: the 4-bit field's end; 272/273: the one-byte
        // form's end; 65533: the longest in a chunk that has 3 bytes before it).
        for length in [3, 4, 17, 18, 19, 269, 270, 271, 272, 273, 274, 1000, 20_000] {
            let source = random(max(length, 64))
            let data = source + source.prefix(length) + random(100)
            let always = compressor.compressAlways(data)
            #expect(try mismatch(decoder.decompress(always, outputSize: data.count), data) == nil, "length \(length)")
        }
        var inputs: [(String, [UInt8])] = []
        inputs.append(("65536 zeros", [UInt8](repeating: 0, count: 65_536)))
        inputs.append(("a byte, then 65535 equal bytes (a 65534-byte match)", random(1) + [UInt8](repeating: 9, count: 65_535)))
        var far = random(65_536)
        far.replaceSubrange(65_000..<65_536, with: far[0..<536])       // offset 65000
        inputs.append(("offset 65000", far))
        var farthest = random(65_536)
        farthest.replaceSubrange(65_533..<65_536, with: farthest[0..<3]) // offset 65533, the largest possible
        inputs.append(("offset 65533", farthest))
        for period in 1...12 {
            let unit = random(period)
            inputs.append(("period \(period)", (0..<40_000).map { unit[$0 % period] }))
        }
        for (name, data) in inputs {
            let always = compressor.compressAlways(data)
            #expect(try mismatch(decoder.decompress(always, outputSize: data.count), data) == nil, "\(name)")
        }
    }

    @Test("one compressor reused across chunks gives the same bytes as fresh ones", arguments: levels)
    func reuseGivesSameOutput(level: XpressCompressor.Level) {
        var shared = XpressCompressor(level: level)
        // Large chunks first, so the small ones meet stale hash chains and tables.
        for size in [65_536, 32_768, 5000, 300] {
            for kind in XpressTestData.Kind.allCases {
                let data = XpressTestData.make(kind, count: size, seed: 99)
                var fresh = XpressCompressor(level: level)
                #expect(shared.compressAlways(data) == fresh.compressAlways(data), "\(kind) \(size)")
            }
        }
    }

    // MARK: - Ratio and refusal

    @Test("random data is refused (nil): it would not shrink", arguments: levels)
    func refusesRandomData(level: XpressCompressor.Level) {
        var compressor = XpressCompressor(level: level)
        for size in [1, 100, 261, 4096, 32_768, 65_536] {
            #expect(compressor.compress(XpressTestData.make(.random, count: size, seed: UInt64(size))) == nil, "\(size)")
        }
        #expect(compressor.compress([UInt8]()) == nil)
    }

    @Test("real text in 32 KiB chunks: better than 2.5:1, within a few percent of wimlib's default")
    func ratioOnText() throws {
        let text = Self.licenseText()
        try #require(text.count >= 100_000)
        var totals: [String: Int] = [:]
        for level in Self.levels {
            var compressor = XpressCompressor(level: level)
            var decoder = XpressDecompressor()
            var total = 0
            for start in stride(from: 0, to: text.count, by: 32_768) {
                let chunk = Array(text[start..<min(start + 32_768, text.count)])
                if let compressed = compressor.compress(chunk) {
                    #expect(try decoder.decompress(compressed, outputSize: chunk.count) == chunk)
                    total += compressed.count
                } else {
                    total += chunk.count
                }
            }
            totals["\(level)"] = total
        }
        var wimlibTotal = 0
        for start in stride(from: 0, to: text.count, by: 32_768) {
            let chunk = Array(text[start..<min(start + 32_768, text.count)])
            wimlibTotal += WimlibReference.compress(chunk, format: .xpress, maxBlockSize: 32_768)?.count ?? chunk.count
        }
        let normal = try #require(totals["normal"]), fast = try #require(totals["fast"])
        let ratio = { (total: Int) in Double(text.count) / Double(total) }
        print("XPRESS on \(text.count) bytes of license text: normal \(ratio(normal)):1, fast \(ratio(fast)):1, wimlib default \(ratio(wimlibTotal)):1")
        #expect(ratio(normal) > 2.5 && ratio(fast) > 2.5)
        #expect(Double(normal) <= Double(wimlibTotal) * 1.03)
        #expect(Double(fast) <= Double(wimlibTotal) * 1.12)
    }

    // MARK: - Interoperability

    @Test("wimlib's decompressor reads our chunks", arguments: levels)
    func wimlibDecodesOurChunks(level: XpressCompressor.Level) throws {
        var compressor = XpressCompressor(level: level)
        var checked = 0
        for kind in XpressTestData.Kind.allCases {
            for size in [300, 4096, 9999, 32_768, 65_536] {
                let data = XpressTestData.make(kind, count: size, seed: UInt64(size) &+ 5)
                guard let compressed = compressor.compress(data) else { continue }
                let decoded = WimlibReference.decompress(compressed, format: .xpress, outputSize: size, maxBlockSize: 65_536)
                #expect(decoded.map { mismatch($0, data) == nil } == true, "\(kind) \(size)")
                checked += 1
            }
        }
        let text = Array(Self.licenseText().prefix(65_536))
        if let compressed = compressor.compress(text) {
            #expect(WimlibReference.decompress(compressed, format: .xpress, outputSize: text.count, maxBlockSize: 65_536) == text)
            checked += 1
        }
        #expect(checked >= 15)
    }

    // MARK: - The Huffman code builder

    @Test("code lengths are complete, limited, and canonical codes are prefix-free")
    func huffmanCodesAreCompleteAndLimited() {
        var builder = HuffmanCodeBuilder()
        var rng = SplitMix64(seed: 3)
        var fibonacci: [UInt32] = [1, 1]
        while fibonacci.count < 30 { fibonacci.append(fibonacci[fibonacci.count - 1] + fibonacci[fibonacci.count - 2]) }
        var cases: [(String, [UInt32], Int)] = [
            ("none used", [UInt32](repeating: 0, count: 512), 15),
            ("one used", [0, 0, 0, 5] + [UInt32](repeating: 0, count: 508), 15),
            ("symbol 0 only", [7] + [UInt32](repeating: 0, count: 511), 15),
            ("two used", [UInt32](repeating: 0, count: 300) + [1] + [UInt32](repeating: 0, count: 200) + [100_000] + [UInt32](repeating: 0, count: 10), 15),
            ("all equal", [UInt32](repeating: 3, count: 512), 15),
            ("Fibonacci, wants 29 bits", fibonacci + [UInt32](repeating: 0, count: 482), 15),
            ("Fibonacci, LZX-sized", fibonacci + [UInt32](repeating: 1, count: 626), 16),
            ("aligned-offset-sized", [1, 2, 3, 4, 5, 6, 7, 1000], 7),
        ]
        for i in 0..<20 {
            cases.append(("random \(i)", (0..<512).map { _ in rng.next() % 3 == 0 ? 0 : UInt32(rng.next() % (1 << (rng.next() % 16))) + 1 }, 15))
        }
        for (name, frequencies, limit) in cases {
            var lengths = [UInt8](repeating: 0, count: frequencies.count)
            builder.buildLengths(frequencies: frequencies, maxLength: limit, into: &lengths)
            // Every used symbol has a code, no code is too long, and the code is complete.
            #expect(zip(frequencies, lengths).allSatisfy { $0 == 0 || $1 > 0 }, "\(name)")
            #expect(lengths.allSatisfy { Int($0) <= limit }, "\(name)")
            let kraft = lengths.reduce(UInt64(0)) { $1 == 0 ? $0 : $0 + (UInt64(1) << (limit - Int($1))) }
            #expect(kraft == UInt64(1) << limit, "\(name): Kraft sum \(kraft) of \(UInt64(1) << limit)")
            // Canonical codes: no code is a prefix of another (sorted by their left-aligned
            // value, each must end before the next starts).
            var codes = [UInt32](repeating: 0, count: lengths.count)
            HuffmanCodeBuilder.assignCodes(lengths: lengths, maxLength: limit, into: &codes)
            let intervals = lengths.indices.filter { lengths[$0] > 0 }.map { symbol -> (UInt64, UInt64) in
                let start = UInt64(codes[symbol]) << (limit - Int(lengths[symbol]))
                return (start, start + (UInt64(1) << (limit - Int(lengths[symbol]))))
            }.sorted { $0.0 < $1.0 }
            #expect(zip(intervals, intervals.dropFirst()).allSatisfy { $0.1 == $1.0 }, "\(name): codes overlap or leave gaps")
        }
        // Where no limit binds, the lengths are optimal: total cost of a small known case.
        var lengths = [UInt8](repeating: 0, count: 6)
        builder.buildLengths(frequencies: [5, 9, 12, 13, 16, 45], maxLength: 15, into: &lengths)
        #expect(zip([5, 9, 12, 13, 16, 45], lengths).reduce(0) { $0 + $1.0 * Int($1.1) } == 224)
    }

    // MARK: - Helpers

    /// The license texts Debian ships, concatenated (about 300 KB of English prose and legalese).
    static func licenseText() -> [UInt8] {
        let folder = "/usr/share/common-licenses"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.sorted() ?? []
        var text: [UInt8] = []
        for name in names {
            if let data = FileManager.default.contents(atPath: folder + "/" + name) { text += data }
        }
        return text
    }

    private func mismatch(_ actual: [UInt8], _ expected: [UInt8]) -> String? {
        if actual == expected { return nil }
        guard actual.count == expected.count else { return "\(actual.count) bytes instead of \(expected.count)" }
        let at = actual.indices.first { actual[$0] != expected[$0] } ?? 0
        return "first difference at byte \(at) of \(actual.count): \(actual[at]) instead of \(expected[at])"
    }
}

extension XpressCompressor {
    /// `compressAlways` for an array.
    mutating func compressAlways(_ input: [UInt8]) -> [UInt8] {
        input.withUnsafeBytes { compressAlways($0) }
    }
}
