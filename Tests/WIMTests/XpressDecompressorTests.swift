import TestSupport
import Testing
@testable import WIM

/// The XPRESS decoder against wimlib's compressor (single-block chunks, as WIM files hold), against
/// a small encoder written here from [MS-XCA] (multi-block streams, every long-length form, codes
/// chosen to reach the subtables), and against corrupt input, which must throw, never trap.
@Suite struct XpressDecompressorTests {

    // MARK: - Round trips through wimlib's compressor

    static let chunkSizes = [4096, 8192, 16384, 32768, 65536]

    @Test("wimlib chunks of every data kind and chunk size, sizes around each boundary",
          arguments: XpressTestData.Kind.allCases)
    func roundTripsWimlibChunks(kind: XpressTestData.Kind) throws {
        var decoder = XpressDecompressor()
        var compressedAny = false
        for chunkSize in Self.chunkSizes {
            let sizes = Set([1, 2, 3, 4, 31, 255, 256, 257, 4095, 4096, 4097,
                             chunkSize / 2 + 1, chunkSize - 1, chunkSize].filter { $0 <= chunkSize })
            for size in sizes.sorted() {
                let data = XpressTestData.make(kind, count: size, seed: UInt64(size &* 31 &+ chunkSize))
                guard let compressed = WimlibReference.compress(data, format: .xpress, maxBlockSize: chunkSize) else {
                    continue // wimlib would store this chunk uncompressed
                }
                compressedAny = true
                let decoded = try decoder.decompress(compressed, outputSize: size)
                #expect(mismatch(decoded, data) == nil, "\(kind) size \(size) chunk \(chunkSize)")
            }
        }
        #expect(compressedAny || kind == .random)
    }

    @Test("one decoder reused across chunks gives the same bytes as fresh decoders")
    func reusesTablesAcrossChunks() throws {
        let inputs = XpressTestData.Kind.allCases.map { XpressTestData.make($0, count: 8192, seed: 7) }
        let chunks = inputs.compactMap { WimlibReference.compress($0, format: .xpress, maxBlockSize: 8192) }
        #expect(chunks.count >= 3)
        var shared = XpressDecompressor()
        for _ in 0..<2 {
            for chunk in chunks {
                var fresh = XpressDecompressor()
                #expect(try mismatch(shared.decompress(chunk, outputSize: 8192), fresh.decompress(chunk, outputSize: 8192)) == nil)
            }
        }
    }

    @Test("decoding into a raw buffer leaves the bytes around it alone")
    func writesOnlyTheOutput() throws {
        let data = XpressTestData.make(.text, count: 5000, seed: 3)
        let compressed = try #require(WimlibReference.compress(data, format: .xpress, maxBlockSize: 8192))
        var decoder = XpressDecompressor()
        var buffer = [UInt8](repeating: 0xA5, count: 5000 + 64)
        try compressed.withUnsafeBytes { input in
            try buffer.withUnsafeMutableBytes { whole in
                try decoder.decompress(input, into: UnsafeMutableRawBufferPointer(rebasing: whole[32..<(32 + 5000)]))
            }
        }
        #expect(mismatch(Array(buffer[32..<5032]), data) == nil)
        #expect(buffer[..<32].allSatisfy { $0 == 0xA5 } && buffer[5032...].allSatisfy { $0 == 0xA5 })
    }

    // MARK: - Streams from the encoder below: several blocks, long lengths, deep codes

    @Test("several 64 KiB blocks, sizes on both sides of each block boundary",
          arguments: [65535, 65536, 65537, 131071, 131072, 131073, 200_003])
    func roundTripsMultiBlockStreams(size: Int) throws {
        var decoder = XpressDecompressor()
        for kind in [XpressTestData.Kind.text, .repetitive, .zeros, .mixed] {
            let data = XpressTestData.make(kind, count: size, seed: UInt64(size))
            let compressed = XpressTestEncoder.encode(data)
            #expect(try mismatch(decoder.decompress(compressed, outputSize: size), data) == nil, "\(kind) \(size)")
        }
    }

    @Test("a match may run over a block boundary; the next block starts where it ends")
    func matchCrossesBlockBoundary() throws {
        // One literal, then a match of 70000 zeros: the first block ends 4465 bytes late.
        var data = [UInt8](repeating: 0, count: 70001)
        data += XpressTestData.make(.text, count: 3000, seed: 9)
        let items: [XpressTestEncoder.Item] = [.literal(0), .match(length: 70000, offset: 1)]
            + data[70001...].map { .literal($0) }
        let compressed = XpressTestEncoder.encode(items: items)
        var decoder = XpressDecompressor()
        #expect(try mismatch(decoder.decompress(compressed, outputSize: data.count), data) == nil)
    }

    @Test("long match lengths in their 8-, 16- and 32-bit forms",
          arguments: [XpressTestEncoder.LongLengthForm.shortest, .always16Bit, .always32Bit])
    func decodesEveryLongLengthForm(form: XpressTestEncoder.LongLengthForm) throws {
        var decoder = XpressDecompressor()
        for size in [300, 5000, 65536, 140_000] {
            let data = XpressTestData.make(.repetitive, count: size, seed: 11)
            let compressed = XpressTestEncoder.encode(data, longLengths: form)
            #expect(try mismatch(decoder.decompress(compressed, outputSize: size), data) == nil, "\(form) \(size)")
        }
    }

    @Test("codes up to 15 bits, through the subtables")
    func decodesLongestCodes() throws {
        // Symbol i < 15 gets length i + 1, symbol 15 length 15: a complete code reaching 15 bits.
        var lengths = [UInt8](repeating: 0, count: 512)
        for symbol in 0..<15 { lengths[symbol] = UInt8(symbol + 1) }
        lengths[15] = 15
        var rng = SplitMix64(seed: 5)
        let data = (0..<6000).map { _ in UInt8(truncatingIfNeeded: rng.next() % 16) }
        let compressed = XpressTestEncoder.encode(items: data.map { .literal($0) }, codeLengths: lengths)
        var decoder = XpressDecompressor()
        #expect(try mismatch(decoder.decompress(compressed, outputSize: data.count), data) == nil)
    }

    @Test("a complete code with most symbols in subtables")
    func decodesSubtableHeavyCode() throws {
        // 480 codes of 15 bits fill 30 root prefixes (16-entry subtables); 32 shorter codes fill
        // the other 2018 of the 2048 root slots exactly.
        var lengths = [UInt8](repeating: 0, count: 512)
        for symbol in 0..<480 { lengths[symbol] = 15 }
        // Units of 2^-11 of the code space: binary decomposition of 2018, then halve the largest
        // piece until there are 32 (a piece of 2^k units is a code of length 11 - k).
        var units = (0..<11).reversed().compactMap { bit in 2018 & (1 << bit) != 0 ? 1 << bit : nil }
        while units.count < 32 {
            let largest = try #require(units.indices.max { units[$0] < units[$1] })
            let half = units[largest] / 2
            units[largest] = half
            units.append(half)
        }
        for (i, unit) in units.enumerated() {
            lengths[480 + i] = UInt8(11 - unit.trailingZeroBitCount)
        }
        var rng = SplitMix64(seed: 6)
        let data = (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let compressed = XpressTestEncoder.encode(items: data.map { .literal($0) }, codeLengths: lengths)
        var decoder = XpressDecompressor()
        #expect(try mismatch(decoder.decompress(compressed, outputSize: data.count), data) == nil)
    }

    // MARK: - Invalid input: specific cases

    @Test("a match reaching before the start of the chunk throws")
    func rejectsMatchBeforeStart() {
        let compressed = XpressTestEncoder.encode(items: [.literal(1), .literal(2), .match(length: 4, offset: 3)])
        var decoder = XpressDecompressor()
        expectXpressError(containing: "reaches 3 bytes back", input: compressed) {
            _ = try decoder.decompress(compressed, outputSize: 6)
        }
    }

    @Test("a match running past the end of the output throws")
    func rejectsMatchPastEnd() {
        let compressed = XpressTestEncoder.encode(items: [.literal(1), .match(length: 10, offset: 1)])
        var decoder = XpressDecompressor()
        expectXpressError(containing: "runs past the end", input: compressed) {
            _ = try decoder.decompress(compressed, outputSize: 6)
        }
    }

    @Test("Huffman tables that are not a complete prefix code throw",
          arguments: [
            ("over-subscribe", [UInt8](repeating: 0x11, count: 256)),
            ("no symbol", [UInt8](repeating: 0, count: 256)),
            ("complete", [0x22] + [UInt8](repeating: 0, count: 255)), // two codes of length 2
            ("complete", [0x01] + [UInt8](repeating: 0, count: 255)), // a single 1-bit code
          ])
    func rejectsInvalidTables(reason: String, table: [UInt8]) {
        let compressed = table + [UInt8](repeating: 0, count: 64)
        var decoder = XpressDecompressor()
        expectXpressError(containing: reason, input: compressed, at: 0) {
            _ = try decoder.decompress(compressed, outputSize: 100)
        }
    }

    @Test("an invalid table in a later block throws with that table's offset")
    func rejectsInvalidSecondTable() throws {
        let data = XpressTestData.make(.text, count: 70000, seed: 2)
        var compressed = XpressTestEncoder.encode(data)
        let secondTable = try #require(XpressTestEncoder.blockOffsets(of: data).dropFirst().first)
        for i in 0..<256 { compressed[secondTable + i] = 0x11 } // 512 one-bit codes
        var decoder = XpressDecompressor()
        expectXpressError(containing: "over-subscribe", input: compressed, at: secondTable) {
            _ = try decoder.decompress(compressed, outputSize: data.count)
        }
    }

    @Test("truncated input throws", arguments: [0, 1, 100, 255, 256, 257, 300, 1000, 2000])
    func rejectsTruncatedInput(keep: Int) throws {
        let data = XpressTestData.make(.text, count: 16384, seed: 4)
        let compressed = try #require(WimlibReference.compress(data, format: .xpress, maxBlockSize: 16384))
        #expect(keep < compressed.count - 16)
        var decoder = XpressDecompressor()
        expectXpressError(input: Array(compressed.prefix(keep))) {
            _ = try decoder.decompress(Array(compressed.prefix(keep)), outputSize: data.count)
        }
    }

    @Test("input that ends before the next block's table, or inside a long length, throws")
    func rejectsTruncationAtStructureBoundaries() throws {
        let data = XpressTestData.make(.text, count: 66000, seed: 8)
        let compressed = XpressTestEncoder.encode(data)
        let secondTable = try #require(XpressTestEncoder.blockOffsets(of: data).dropFirst().first)
        var decoder = XpressDecompressor()
        expectXpressError(containing: "before the Huffman table", input: Array(compressed.prefix(secondTable + 100))) {
            _ = try decoder.decompress(Array(compressed.prefix(secondTable + 100)), outputSize: data.count)
        }

        // A lone match with a 16-bit length: cutting the stream inside those bytes must throw.
        let long = XpressTestEncoder.encode(items: [.literal(7), .match(length: 1000, offset: 1)])
        for cut in (256 + 4)..<long.count {
            expectXpressError(input: Array(long.prefix(cut))) {
                _ = try decoder.decompress(Array(long.prefix(cut)), outputSize: 1001)
            }
        }
        #expect(try decoder.decompress(long, outputSize: 1001) == [UInt8](repeating: 7, count: 1001))
    }

    @Test("a 16-bit match length below 15 is rejected")
    func rejectsShortExtendedLength() {
        var items: [XpressTestEncoder.Item] = [.literal(7), .match(length: 1000, offset: 1)]
        items += [.literal(8)]
        let compressed = XpressTestEncoder.encode(items: items, forcedExtendedLength: 3)
        var decoder = XpressDecompressor()
        expectXpressError(containing: "below the minimum", input: compressed) {
            _ = try decoder.decompress(compressed, outputSize: 1002)
        }
    }

    @Test("empty output needs no input; any other output needs the 256-byte table")
    func handlesTinyBuffers() throws {
        var decoder = XpressDecompressor()
        #expect(try decoder.decompress([], outputSize: 0) == [])
        expectXpressError(containing: "shorter than the 256-byte", input: [], at: 0) {
            _ = try decoder.decompress([UInt8](repeating: 0x99, count: 255), outputSize: 1)
        }
    }

    // MARK: - Invalid input: random corruption

    @Test("thousands of corrupted chunks decode or throw, never trap, and agree with wimlib")
    func survivesCorruptedInput() throws {
        var rng = SplitMix64(seed: 0x5EED)
        var seeds: [(data: [UInt8], compressed: [UInt8])] = []
        for (i, kind) in [XpressTestData.Kind.text, .repetitive, .mixed, .zeros].enumerated() {
            let data = XpressTestData.make(kind, count: 1024 + 1000 * i, seed: UInt64(i))
            let compressed = try #require(WimlibReference.compress(data, format: .xpress, maxBlockSize: 4096))
            seeds.append((data, compressed))
        }
        var decoder = XpressDecompressor()
        var outcomes = (decoded: 0, threw: 0, agreedWithWimlib: 0)
        for round in 0..<10_000 {
            let seed = seeds[round % seeds.count]
            var input = seed.compressed
            var outputSize = seed.data.count
            switch rng.next() % 8 {
            case 0: // truncate
                input.removeLast(Int(rng.next() % UInt64(input.count)))
            case 1: // change the expected size
                outputSize = Int(rng.next() % 4096) + 1
            case 2: // damage the Huffman table
                for _ in 0...(rng.next() % 4) { input[Int(rng.next() % 256)] = UInt8(truncatingIfNeeded: rng.next()) }
            case 3: // random bytes over a stretch of the stream
                let start = 256 + Int(rng.next() % UInt64(input.count - 256))
                for i in start..<min(input.count, start + Int(rng.next() % 16) + 1) {
                    input[i] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 4: // insert or delete a byte
                let at = Int(rng.next() % UInt64(input.count))
                if rng.next() % 2 == 0 { input.remove(at: at) } else { input.insert(UInt8(truncatingIfNeeded: rng.next()), at: at) }
            default: // flip a few bits anywhere
                for _ in 0...(rng.next() % 3) {
                    let bit = Int(rng.next() % UInt64(input.count * 8))
                    input[bit / 8] ^= 1 << (bit % 8)
                }
            }
            do {
                let output = try decoder.decompress(input, outputSize: outputSize)
                #expect(output.count == outputSize)
                outcomes.decoded += 1
                // wimlib is more lenient in places (it lets a 16-bit length be below 15, reads
                // zeros past the end), but where both accept the input they must agree.
                if let reference = WimlibReference.decompress(input, format: .xpress, outputSize: outputSize, maxBlockSize: 4096) {
                    #expect(mismatch(output, reference) == nil, "round \(round)")
                    outcomes.agreedWithWimlib += 1
                }
            } catch {
                #expect(error.format == .xpress)
                #expect((0...input.count).contains(error.offset), "\(error)")
                #expect(!error.reason.isEmpty)
                outcomes.threw += 1
            }
        }
        #expect(outcomes.decoded > 100 && outcomes.threw > 100, "\(outcomes)")
    }

    @Test("corrupted multi-block streams with long lengths decode or throw, never trap")
    func survivesCorruptedMultiBlockStreams() {
        var rng = SplitMix64(seed: 0xB10C)
        let data = XpressTestData.make(.mixed, count: 140_000, seed: 12)
        let streams = [XpressTestEncoder.encode(data), XpressTestEncoder.encode(data, longLengths: .always32Bit)]
        var decoder = XpressDecompressor()
        var outcomes = (decoded: 0, threw: 0)
        for round in 0..<200 {
            var input = streams[round % 2]
            for _ in 0...(rng.next() % 4) {
                let at = Int(rng.next() % UInt64(input.count))
                switch rng.next() % 3 {
                case 0: input[at] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8))
                case 1: input[at] = UInt8(truncatingIfNeeded: rng.next())
                default: input.removeLast(min(input.count - 1, Int(rng.next() % 64)))
                }
            }
            do {
                #expect(try decoder.decompress(input, outputSize: data.count).count == data.count)
                outcomes.decoded += 1
            } catch {
                #expect((0...input.count).contains(error.offset), "\(error)")
                outcomes.threw += 1
            }
        }
        #expect(outcomes.threw > 50, "\(outcomes)")
    }

    @Test("fuzz-target inputs: past crashers and edge cases", arguments: XpressFuzzFindings.inputs)
    func fuzzFindings(finding: XpressFuzzFindings.Input) {
        // The fuzz target's convention: two bytes of output size, then the compressed chunk.
        let input = finding.bytes
        guard input.count >= 2 else { return }
        let outputSize = (Int(input[0]) | Int(input[1]) << 8) + 1
        var decoder = XpressDecompressor()
        do {
            let output = try decoder.decompress(Array(input.dropFirst(2)), outputSize: outputSize)
            #expect(output.count == outputSize)
        } catch {
            #expect(error.format == .xpress)
        }
    }

    // MARK: - Helpers

    /// Where two byte arrays first differ, or nil if they are equal (a short message instead of
    /// two 64 KiB arrays in a failure).
    private func mismatch(_ actual: [UInt8], _ expected: [UInt8]) -> String? {
        if actual == expected { return nil }
        guard actual.count == expected.count else { return "\(actual.count) bytes instead of \(expected.count)" }
        let at = actual.indices.first { actual[$0] != expected[$0] } ?? 0
        return "first difference at byte \(at) of \(actual.count): \(actual[at]) instead of \(expected[at])"
    }

    private func expectXpressError(
        containing text: String? = nil,
        input: [UInt8],
        at offset: Int? = nil,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected a DecompressionError", sourceLocation: sourceLocation)
        } catch let error as DecompressionError {
            #expect(error.format == .xpress, sourceLocation: sourceLocation)
            if let text {
                #expect(error.reason.contains(text), "\(error)", sourceLocation: sourceLocation)
            }
            if let offset {
                #expect(error.offset == offset, "\(error)", sourceLocation: sourceLocation)
            }
            #expect(error.offset >= 0, sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected a DecompressionError, got \(error)", sourceLocation: sourceLocation)
        }
    }
}

/// Inputs in the fuzz target's layout (two bytes of output size minus one, then the chunk). A
/// crasher the fuzzer finds goes here as a byte array literal once fixed. Runs so far (about
/// 2 million executions, plus a differential run against wimlib) found none, so this holds edge
/// cases the fuzzer reached early: no input at all, an empty code for the largest chunk, a
/// valid code with no bit stream, and the stream cut at each word of the reference's read-ahead.
enum XpressFuzzFindings {
    struct Input: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var testDescription: String { name }
    }

    static let inputs: [Input] = {
        let twoOneBitCodes: [UInt8] = [0x11] + [UInt8](repeating: 0, count: 255) // symbols 0 and 1
        return [
            Input(name: "no chunk", bytes: [0x00, 0x00]),
            Input(name: "empty code, 64 KiB", bytes: [0xFF, 0xFF] + [UInt8](repeating: 0, count: 256)),
            Input(name: "no bit stream", bytes: [0xFF, 0xFF] + twoOneBitCodes),
            Input(name: "half a word", bytes: [0x0F, 0x00] + twoOneBitCodes + [0x55]),
            Input(name: "one word", bytes: [0x0F, 0x00] + twoOneBitCodes + [0x55, 0xAA]),
            Input(name: "a word and a half", bytes: [0x1F, 0x00] + twoOneBitCodes + [0x55, 0xAA, 0x0F]),
            Input(name: "two words", bytes: [0x1F, 0x00] + twoOneBitCodes + [0x55, 0xAA, 0x0F, 0xF0]),
        ]
    }()
}

// MARK: - Test data


enum XpressTestData {
    enum Kind: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case zeros, random, text, repetitive, mixed
        var testDescription: String { rawValue }
    }

    static func make(_ kind: Kind, count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed &+ 0x1234)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 64)
        switch kind {
        case .zeros:
            bytes = [UInt8](repeating: 0, count: count)
        case .random:
            while bytes.count < count { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
        case .text:
            appendText(&bytes, count: count, rng: &rng)
        case .repetitive:
            // Short periods (1...12, offsets below 8 included) and long repeats of a motif.
            let motif = (0..<300).map { _ in UInt8(truncatingIfNeeded: rng.next() % 7) }
            while bytes.count < count {
                switch rng.next() % 3 {
                case 0:
                    let period = Int(rng.next() % 12) + 1
                    let unit = (0..<period).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    for i in 0..<(Int(rng.next() % 2000) + 20) { bytes.append(unit[i % period]) }
                case 1:
                    bytes += motif
                default:
                    bytes += [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: Int(rng.next() % 600) + 1)
                }
            }
        case .mixed:
            while bytes.count < count {
                let stretch = Int(rng.next() % 3000) + 1
                switch rng.next() % 3 {
                case 0: bytes += make(.random, count: stretch, seed: rng.next())
                case 1: bytes += make(.text, count: stretch, seed: rng.next())
                default: bytes += make(.repetitive, count: stretch, seed: rng.next())
                }
            }
        }
        return Array(bytes.prefix(count))
    }

    private static let words = [
        "the", "image", "file", "resource", "chunk", "of", "and", "WIM", "Windows", "compression",
        "header", "table", "blob", "stream", "metadata", "directory", "entry", "security", "data",
        "to", "is", "a", "in", "for", "with", "XPRESS", "Huffman", "match", "literal", "offset",
    ]

    private static func appendText(_ bytes: inout [UInt8], count: Int, rng: inout SplitMix64) {
        while bytes.count < count {
            let word = words[Int(rng.next() % UInt64(words.count))]
            bytes += Array(word.utf8)
            bytes.append(rng.next() % 11 == 0 ? 0x0A : 0x20)
            if rng.next() % 40 == 0 { bytes += Array(String(rng.next() % 100_000).utf8) }
        }
    }
}

// MARK: - A small XPRESS encoder, from [MS-XCA] 2.1

/// Writes LZ77+Huffman streams the way [MS-XCA] lays them out, to reach what wimlib's compressor
/// never produces: several 64 KiB blocks, 16- and 32-bit match lengths, chosen codes. It is plain
/// and slow on purpose; its output is only as trustworthy as its agreement with wimlib-made chunks,
/// which the round-trip tests above also check through the same decoder.
enum XpressTestEncoder {
    enum Item: Sendable {
        case literal(UInt8)
        case match(length: Int, offset: Int)

        var outputLength: Int {
            switch self {
            case .literal: return 1
            case .match(let length, _): return length
            }
        }
    }

    enum LongLengthForm: Sendable { case shortest, always16Bit, always32Bit }

    /// Greedy LZ77 parse: the longest match at the last position with the same 3 bytes.
    static func parse(_ data: [UInt8]) -> [Item] {
        var items: [Item] = []
        var lastSeen = [Int](repeating: -1, count: 1 << 16) // by a hash of 3 bytes
        func hash(_ at: Int) -> Int {
            let key = UInt32(data[at]) | UInt32(data[at + 1]) << 8 | UInt32(data[at + 2]) << 16
            return Int((key &* 2_654_435_761) >> 16)
        }
        var i = 0
        while i < data.count {
            var length = 0
            var offset = 0
            if i + 3 <= data.count {
                let slot = hash(i)
                let candidate = lastSeen[slot]
                if candidate >= 0 && i - candidate <= 65535 {
                    while i + length < data.count && data[candidate + length] == data[i + length] { length += 1 }
                    offset = i - candidate
                }
                lastSeen[slot] = i
            }
            if length >= 3 {
                // Record the positions inside the match too, so later data finds recent copies.
                for j in (i + 1)..<max(i + 1, min(i + length, data.count - 2)) { lastSeen[hash(j)] = j }
                items.append(.match(length: length, offset: offset))
                i += length
            } else {
                items.append(.literal(data[i]))
                i += 1
            }
        }
        return items
    }

    static func encode(_ data: [UInt8], longLengths: LongLengthForm = .shortest) -> [UInt8] {
        encode(items: parse(data), longLengths: longLengths)
    }

    /// Input offsets of each block's Huffman table for `data` encoded with defaults.
    static func blockOffsets(of data: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        _ = encode(items: parse(data), tableOffsets: &offsets)
        return offsets
    }

    static func encode(
        items: [Item],
        codeLengths fixedLengths: [UInt8]? = nil,
        longLengths: LongLengthForm = .shortest,
        forcedExtendedLength: Int? = nil
    ) -> [UInt8] {
        var offsets: [Int] = []
        return encode(items: items, codeLengths: fixedLengths, longLengths: longLengths,
                      forcedExtendedLength: forcedExtendedLength, tableOffsets: &offsets)
    }

    static func encode(
        items: [Item],
        codeLengths fixedLengths: [UInt8]? = nil,
        longLengths: LongLengthForm = .shortest,
        forcedExtendedLength: Int? = nil,
        tableOffsets: inout [Int]
    ) -> [UInt8] {
        // Split into blocks: a block ends once 65536 bytes are out; a match may overrun it.
        var blocks: [[Item]] = [[]]
        var produced = 0
        var blockStart = 0
        for item in items {
            if produced - blockStart >= 65536 {
                blocks.append([])
                blockStart = produced
            }
            blocks[blocks.count - 1].append(item)
            produced += item.outputLength
        }

        var writer = BitWriter()
        for block in blocks {
            let symbols = block.map(symbol(of:))
            let lengths = fixedLengths ?? huffmanLengths(for: symbols)
            let codes = canonicalCodes(lengths)
            tableOffsets.append(writer.bytes.count)
            writer.bytes += (0..<256).map { lengths[2 * $0] | lengths[2 * $0 + 1] << 4 }
            writer.startBlock()
            for (item, symbol) in zip(block, symbols) {
                writer.write(codes[symbol], count: Int(lengths[symbol]))
                guard case .match(let length, let offset) = item else { continue }
                let extra = length - 3
                if extra >= 15 {
                    // The length bytes go where the decoder's byte cursor is right now.
                    if let forced = forcedExtendedLength {
                        writer.bytes += [255, UInt8(forced & 0xFF), UInt8(forced >> 8)]
                    } else if extra - 15 < 255 && longLengths == .shortest {
                        writer.bytes.append(UInt8(extra - 15))
                    } else if extra <= 0xFFFF && longLengths != .always32Bit {
                        writer.bytes += [255, UInt8(extra & 0xFF), UInt8(extra >> 8)]
                    } else {
                        writer.bytes += [255, 0, 0] + (0..<4).map { UInt8(truncatingIfNeeded: extra >> (8 * $0)) }
                    }
                }
                let offsetBits = Int.bitWidth - 1 - offset.leadingZeroBitCount
                writer.write(UInt32(offset - (1 << offsetBits)), count: offsetBits)
            }
            writer.finishBlock()
        }
        return writer.bytes
    }

    private static func symbol(of item: Item) -> Int {
        switch item {
        case .literal(let byte):
            return Int(byte)
        case .match(let length, let offset):
            precondition(length >= 3 && (1...65535).contains(offset))
            let offsetBits = Int.bitWidth - 1 - offset.leadingZeroBitCount
            return 256 + offsetBits << 4 + min(length - 3, 15)
        }
    }

    /// Huffman code lengths (at most 15) for the symbols' frequencies; always at least two codes,
    /// so the code is complete.
    private static func huffmanLengths(for symbols: [Int]) -> [UInt8] {
        var frequency = [Int](repeating: 0, count: 512)
        for symbol in symbols { frequency[symbol] += 1 }
        if frequency.filter({ $0 > 0 }).count < 2 {
            frequency[frequency[0] == 0 ? 0 : 1] += 1
        }
        while true {
            let lengths = unlimitedHuffmanLengths(frequency)
            if lengths.max() ?? 0 <= 15 { return lengths }
            frequency = frequency.map { $0 == 0 ? 0 : $0 / 2 + 1 } // flatten and retry
        }
    }

    private static func unlimitedHuffmanLengths(_ frequency: [Int]) -> [UInt8] {
        // Nodes 0..<512 are leaves; parents are appended. Two queues: the leaves by weight, and
        // the joined nodes, which come out in increasing weight; join the two lightest fronts.
        var weight = frequency
        var parent = [Int](repeating: -1, count: 512)
        let leaves = (0..<512).filter { frequency[$0] > 0 }.sorted { (weight[$0], $0) < (weight[$1], $1) }
        var nextLeaf = 0
        var joined: [Int] = []
        var nextJoined = 0
        func takeLightest() -> Int {
            if nextLeaf < leaves.count && (nextJoined == joined.count || weight[leaves[nextLeaf]] <= weight[joined[nextJoined]]) {
                nextLeaf += 1
                return leaves[nextLeaf - 1]
            }
            nextJoined += 1
            return joined[nextJoined - 1]
        }
        while (leaves.count - nextLeaf) + (joined.count - nextJoined) > 1 {
            let a = takeLightest()
            let b = takeLightest()
            weight.append(weight[a] + weight[b])
            parent.append(-1)
            parent[a] = weight.count - 1
            parent[b] = weight.count - 1
            joined.append(weight.count - 1)
        }
        return (0..<512).map { leaf in
            guard frequency[leaf] > 0 else { return 0 }
            var depth = 0
            var node = leaf
            while parent[node] >= 0 { node = parent[node]; depth += 1 }
            return UInt8(depth)
        }
    }

    private static func canonicalCodes(_ lengths: [UInt8]) -> [UInt32] {
        var codes = [UInt32](repeating: 0, count: 512)
        var next: UInt32 = 0
        for length in 1...15 {
            for symbol in 0..<512 where Int(lengths[symbol]) == length {
                codes[symbol] = next
                next += 1
            }
            next <<= 1
        }
        return codes
    }

    /// Bits go most significant first into 16-bit little-endian words. The decoder reads two words
    /// at a block's start and one more as soon as it starts on the last word it holds, and long
    /// lengths are read between those words: so the slot for word k + 1 is reserved in the byte
    /// stream when the first bit of word k is written.
    struct BitWriter {
        var bytes: [UInt8] = []
        private var slots: [Int] = []
        private var word: UInt32 = 0
        private var bitsInWord = 0
        private var wordIndex = 0

        mutating func startBlock() {
            slots = [bytes.count, bytes.count + 2]
            bytes += [0, 0, 0, 0]
            word = 0
            bitsInWord = 0
            wordIndex = 0
        }

        mutating func write(_ value: UInt32, count: Int) {
            for shift in stride(from: count - 1, through: 0, by: -1) {
                if bitsInWord == 0 && wordIndex >= 1 {
                    slots.append(bytes.count)
                    bytes += [0, 0]
                }
                word = word << 1 | (value >> UInt32(shift)) & 1
                bitsInWord += 1
                if bitsInWord == 16 { flushWord() }
            }
        }

        mutating func finishBlock() {
            if bitsInWord > 0 {
                word <<= UInt32(16 - bitsInWord)
                flushWord()
            }
        }

        private mutating func flushWord() {
            let slot = slots[wordIndex]
            bytes[slot] = UInt8(word & 0xFF)
            bytes[slot + 1] = UInt8(word >> 8)
            word = 0
            bitsInWord = 0
            wordIndex += 1
        }
    }
}
