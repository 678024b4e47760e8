import TestSupport
import Testing
@testable import WIM

/// The LZX decoder against wimlib's compressor (every window order, levels 20/50/100, data on
/// both sides of the 32768-byte block size), against streams written by the small encoder below
/// (uncompressed blocks at every bit alignment, several blocks sharing delta-coded lengths, the
/// E8 rules at the chunk's end, hand-made corruption), and against thousands of corrupted chunks,
/// which must decode or throw, never trap.
///
/// Block types: wimlib's compressor writes verbatim and aligned offset blocks but never
/// uncompressed ones (it stores an incompressible chunk raw instead); the round-trip tests check
/// through `LZXDecompressor.blockCounts` that both of wimlib's kinds were decoded, and the
/// encoder tests produce and count the uncompressed ones.
@Suite struct LZXDecompressorTests {

    // MARK: - Round trips through wimlib's compressor

    @Test("wimlib chunks of every data kind at levels 20, 50 and 100, 32 and 64 KiB windows",
          arguments: [UInt32(20), 50, 100])
    func roundTripsWimlibChunks(level: UInt32) throws {
        var counts = LZXBlockCounts()
        for chunkSize in [32768, 65536] {
            var decoder = try LZXDecompressor(maxChunkSize: chunkSize)
            let sizes = [1, 2, 10, 11, 12, 100, 4097, 32767, 32768, 32769, 65535, 65536].filter { $0 <= chunkSize }
            for kind in LZXTestData.Kind.allCases {
                for size in sizes where kind != .random || size < 4096 || size == chunkSize {
                    let data = LZXTestData.make(kind, count: size, seed: UInt64(size &* 7 &+ chunkSize))
                    guard let compressed = WimlibReference.compress(
                        data, format: .lzx, maxBlockSize: chunkSize, level: level) else { continue }
                    let decoded = try decoder.decompress(compressed, outputSize: size)
                    #expect(lzxMismatch(decoded, data) == nil, "\(kind) size \(size) chunk \(chunkSize) level \(level)")
                }
            }
            counts.add(decoder.blockCounts)
        }
        #expect(counts.verbatim > 0, "no verbatim block decoded at level \(level)")
        #expect(counts.aligned > 0, "no aligned offset block decoded at level \(level)")
    }

    @Test("every window order from 2^15 to 2^21, full and partial chunks", arguments: Array(15...21))
    func roundTripsEveryWindowOrder(order: Int) throws {
        let chunkSize = 1 << order
        var decoder = try LZXDecompressor(maxChunkSize: chunkSize)
        #expect(decoder.windowOrder == order)
        // Only the top of a large window needs the big offsets; keep the debug-build run short
        // by repeating a 64 KiB pattern at long distances rather than coding 2 MiB of fresh data.
        for size in [chunkSize, order == 15 ? 30001 : chunkSize - 32769] {
            let data = LZXTestData.longDistance(count: size, seed: UInt64(order))
            let compressed = try #require(WimlibReference.compress(data, format: .lzx, maxBlockSize: chunkSize, level: 20))
            let decoded = try decoder.decompress(compressed, outputSize: size)
            #expect(lzxMismatch(decoded, data) == nil, "order \(order) size \(size)")
        }
        #expect(decoder.blockCounts.verbatim + decoder.blockCounts.aligned > 0)
    }

    @Test("the number of main-code symbols matches the window order (30, 32, 34, 36, 38, 42, 50 slots)")
    func mainSymbolCounts() throws {
        let slots = [30, 32, 34, 36, 38, 42, 50]
        for (index, order) in (15...21).enumerated() {
            let decoder = try LZXDecompressor(maxChunkSize: 1 << order)
            #expect(decoder.mainSymbolCount == 256 + 8 * slots[index])
        }
        #expect(LZX.slotBase[30] == 32768 && LZX.slotBase[36] == 262144 && LZX.slotBase[50] == 2097152)
    }

    @Test("a chunk size that is not a power of two uses the next window order, as wimlib does")
    func roundsWindowUp() throws {
        let decoder = try LZXDecompressor(maxChunkSize: 40000)
        #expect(decoder.windowOrder == 16)
        var copy = decoder
        let data = LZXTestData.make(.text, count: 40000, seed: 5)
        let compressed = try #require(WimlibReference.compress(data, format: .lzx, maxBlockSize: 40000))
        #expect(try lzxMismatch(copy.decompress(compressed, outputSize: 40000), data) == nil)
    }

    @Test("x86-like data full of 0xE8 bytes, including in the last 10 bytes of the chunk")
    func undoesE8TranslationLikeWimlib() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        for size in [11, 12, 15, 16, 20, 100, 1000, 32768] {
            for seed in 0..<4 {
                var data = LZXTestData.make(.x86, count: size, seed: UInt64(seed))
                // Calls right at the edge: an E8 at size - 11 is translated, one at size - 10 not.
                for position in [size - 11, size - 10, size - 6, size - 5, size - 1] where position >= 0 {
                    data[position] = 0xE8
                }
                guard let compressed = WimlibReference.compress(data, format: .lzx, maxBlockSize: 32768) else { continue }
                #expect(try lzxMismatch(decoder.decompress(compressed, outputSize: size), data) == nil, "size \(size) seed \(seed)")
            }
        }
    }

    @Test("one decoder reused across chunks and copies of it give the same bytes as fresh decoders")
    func reusesTablesAcrossChunksAndCopies() throws {
        let inputs = LZXTestData.Kind.allCases.map { LZXTestData.make($0, count: 20000, seed: 11) }
        let chunks = inputs.compactMap { WimlibReference.compress($0, format: .lzx, maxBlockSize: 32768) }
        #expect(chunks.count >= 4)
        var shared = try LZXDecompressor(maxChunkSize: 32768)
        for _ in 0..<2 {
            for chunk in chunks {
                var copy = shared  // shares the tables until one of them decodes (copy on write)
                var fresh = try LZXDecompressor(maxChunkSize: 32768)
                let expected = try fresh.decompress(chunk, outputSize: 20000)
                #expect(try shared.decompress(chunk, outputSize: 20000) == expected)
                #expect(try copy.decompress(chunk, outputSize: 20000) == expected)
            }
        }
    }

    @Test("decoding into a raw buffer leaves the bytes around it alone")
    func writesOnlyTheOutput() throws {
        // Short matches near the end take the careful path; the word copies of the fast path
        // must never spill past the output either.
        for kind in [LZXTestData.Kind.text, .zeros, .x86] {
            for size in [300, 5000, 32768] {
                let data = LZXTestData.make(kind, count: size, seed: 3)
                let compressed = try #require(WimlibReference.compress(data, format: .lzx, maxBlockSize: 32768))
                var decoder = try LZXDecompressor(maxChunkSize: 32768)
                var buffer = [UInt8](repeating: 0xA5, count: size + 64)
                try compressed.withUnsafeBytes { input in
                    try buffer.withUnsafeMutableBytes { whole in
                        try decoder.decompress(input, into: UnsafeMutableRawBufferPointer(rebasing: whole[32..<(32 + size)]))
                    }
                }
                #expect(lzxMismatch(Array(buffer[32..<(32 + size)]), data) == nil)
                #expect(buffer[..<32].allSatisfy { $0 == 0xA5 } && buffer[(32 + size)...].allSatisfy { $0 == 0xA5 })
            }
        }
    }

    // MARK: - Streams from the encoder below

    @Test("an uncompressed block after a verbatim block, at every bit alignment (1 to 16 padding bits)")
    func uncompressedBlockAtEveryAlignment() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        var alignments = Set<Int>()
        // Literals cost 8 bits here except `0x41`, which costs 9: 0 to 15 of those move the
        // uncompressed block's header through every residue modulo 16.
        for literals in 0..<2 {
            for nineBitLiterals in 0..<16 {
                var encoder = LZXTestEncoder(windowOrder: 15)
                let prefix = (0..<(literals + 1)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 1) }
                    + [UInt8](repeating: 0x41, count: nineBitLiterals)
                encoder.verbatimBlock(prefix.map { .literal($0) }, nineBitSymbol: 0x41)
                alignments.insert(encoder.bitPosition % 16)
                let raw = LZXTestData.make(.text, count: 101 + literals, seed: UInt64(literals))
                encoder.uncompressedBlock(raw, recent: (7, 3, 1))
                // A repeat match with R0 = 7 proves the stored offsets were taken.
                encoder.verbatimBlock([.repeatMatch(slot: 0, length: 9), .literal(0x21)])
                let (stream, expected) = encoder.finish()
                let decoded = try decoder.decompress(stream, outputSize: expected.count)
                #expect(lzxMismatch(decoded, expected) == nil, "literals \(literals) nine \(nineBitLiterals)")
                #expect(WimlibReference.decompress(stream, format: .lzx, outputSize: expected.count, maxBlockSize: 32768) == expected)
            }
        }
        #expect(alignments.count == 16, "header bit positions reached: \(alignments.sorted())")
        #expect(decoder.blockCounts.uncompressed == 32)
    }

    @Test("an uncompressed first block, odd sizes with and without the final pad byte")
    func uncompressedFirstBlock() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        for size in [1, 2, 3, 255, 32767, 32768] {
            let raw = LZXTestData.make(.random, count: size, seed: UInt64(size))
            var encoder = LZXTestEncoder(windowOrder: 15)
            encoder.uncompressedBlock(raw)
            let (stream, expected) = encoder.finish()
            #expect(try lzxMismatch(decoder.decompress(stream, outputSize: size), expected) == nil, "size \(size)")
            #expect(WimlibReference.decompress(stream, format: .lzx, outputSize: size, maxBlockSize: 32768) == expected)
            if size % 2 == 1 {
                // The pad byte after an odd block may be missing at the very end of the input.
                #expect(try decoder.decompress(Array(stream.dropLast()), outputSize: size) == expected)
            }
        }
    }

    @Test("several blocks of all three types in one chunk share the delta-coded lengths and R0-R2",
          arguments: [15, 16, 17])
    func multiBlockChunks(order: Int) throws {
        var decoder = try LZXDecompressor(maxChunkSize: 1 << order)
        var encoder = LZXTestEncoder(windowOrder: order)
        // A verbatim block coded as literals and matches; of the default 32768 bytes (a 1-bit
        // size) when the window has room for more blocks after it.
        let text = LZXTestData.make(.text, count: order == 15 ? 20000 : 32768, seed: 1)
        encoder.verbatimBlock(LZXTestEncoder.greedyTokens(text))
        // An aligned block of the same text shifted by a distance using the aligned code.
        var tokens: [LZXTestEncoder.Token] = []
        var produced = 0
        while produced < 5000 {
            let length = min(257, 5000 - produced)
            tokens.append(length >= 2 ? .match(length: length, offset: 20000 + produced % 8) : .literal(1))
            produced += max(length, 1)
        }
        encoder.alignedBlock(tokens)
        encoder.uncompressedBlock(Array(text[100..<1101]), recent: (12345, 2, 3))
        encoder.verbatimBlock([.repeatMatch(slot: 0, length: 100), .repeatMatch(slot: 2, length: 20),
                               .repeatMatch(slot: 1, length: 257), .match(length: 3, offset: 25000)])
        let (stream, expected) = encoder.finish()
        #expect(try lzxMismatch(decoder.decompress(stream, outputSize: expected.count), expected) == nil)
        #expect(decoder.blockCounts == LZXBlockCounts(verbatim: 2, aligned: 1, uncompressed: 1))
        // wimlib reads the same stream the same way (24-bit block sizes from window order 16 on,
        // the padding before the uncompressed block, the stored R0-R2).
        #expect(WimlibReference.decompress(stream, format: .lzx, outputSize: expected.count, maxBlockSize: 1 << order) == expected)
    }

    @Test("E8 translation: only when the chunk exceeds 10 bytes, only before its last 10, skipping targets")
    func e8EdgeCases() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        var rng = SplitMix64(seed: 99)
        for size in [1, 9, 10, 11, 12, 16, 17, 64, 300] {
            for _ in 0..<20 {
                // Mostly E8 bytes, with targets both inside and outside the translated ranges.
                var data = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
                for index in data.indices where Int.random(in: 0..<3, using: &rng) == 0 { data[index] = 0xE8 }
                if size > 6, Bool.random(using: &rng) { data.replaceSubrange((size - 5)..., with: [0x00, 0x10, 0x00, 0x00, 0xE8]) }
                var encoder = LZXTestEncoder(windowOrder: 15)
                encoder.verbatimBlock(data.map { .literal($0) })
                let (stream, _) = encoder.finish()
                let expected = LZXTestData.referenceUndoE8(data)
                #expect(try lzxMismatch(decoder.decompress(stream, outputSize: size), expected) == nil, "size \(size)")
                #expect(WimlibReference.decompress(stream, format: .lzx, outputSize: size, maxBlockSize: 32768) == expected)
            }
        }
    }

    @Test("deep codes: 16-bit codewords in the main and length codes reach the subtables")
    func deepCodes() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 65536)
        var encoder = LZXTestEncoder(windowOrder: 16)
        var tokens: [LZXTestEncoder.Token] = (0..<256).map { .literal(UInt8($0)) }
        for length in 9...257 { tokens.append(.match(length: length, offset: 200 + length)) }
        encoder.verbatimBlock(tokens, skewed: true)
        let (stream, expected) = encoder.finish()
        #expect(encoder.longestMainCodeword == 16 && encoder.longestLengthCodeword == 16)
        #expect(try lzxMismatch(decoder.decompress(stream, outputSize: expected.count), expected) == nil)
        #expect(WimlibReference.decompress(stream, format: .lzx, outputSize: expected.count, maxBlockSize: 65536) == expected)
    }

    // MARK: - Corrupt input: specific cases

    @Test("a match reaching before the start of the chunk is rejected")
    func matchBeforeStart() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        // R0 starts at 1, so a repeat match at position 0 reaches one byte before the chunk.
        var encoder = LZXTestEncoder(windowOrder: 15)
        encoder.verbatimBlock([.repeatMatch(slot: 0, length: 5), .literal(1)], trustTokens: true)
        try expectLZXError(containing: "refers 1 bytes back but only 0", decoder: &decoder, encoder.finish().stream, outputSize: 6)

        encoder = LZXTestEncoder(windowOrder: 15)
        encoder.verbatimBlock([.literal(1), .literal(2), .match(length: 4, offset: 3), .literal(3)], trustTokens: true)
        try expectLZXError(containing: "refers 3 bytes back but only 2", decoder: &decoder, encoder.finish().stream, outputSize: 7)

        // Offsets stored by an uncompressed block are checked when used.
        encoder = LZXTestEncoder(windowOrder: 15)
        encoder.uncompressedBlock([1, 2, 3, 4], recent: (5, 1, 1))
        encoder.verbatimBlock([.repeatMatch(slot: 0, length: 2)], trustTokens: true)
        try expectLZXError(containing: "refers 5 bytes back", decoder: &decoder, encoder.finish().stream, outputSize: 6)
    }

    @Test("a match running past the end of its block is rejected")
    func matchPastBlockEnd() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        var encoder = LZXTestEncoder(windowOrder: 15)
        encoder.verbatimBlock([.literal(1), .match(length: 10, offset: 1)], size: 5, trustTokens: true)
        encoder.verbatimBlock([.literal(1)])
        try expectLZXError(containing: "runs past the end of its block", decoder: &decoder, encoder.finish().stream, outputSize: 12)
    }

    @Test("over-subscribed, incomplete and malformed code lengths are rejected")
    func invalidCodeLengths() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        // Pretree with every length 1: twenty 1-bit codewords.
        var writer = LZXBitWriter()
        writer.write(1, bits: 3)  // verbatim
        writer.write(1, bits: 1)  // 32768 bytes
        for _ in 0..<20 { writer.write(1, bits: 4) }
        writer.write(0, bits: 64)
        try expectLZXError(containing: "pretree (for the main code) code's codeword lengths are over-subscribed",
                           decoder: &decoder, writer.finish(), outputSize: 32768)

        // Main code with three 1-bit codewords (over-subscribed) or a single one (incomplete).
        for (lengths, message) in [([1, 1, 1], "over-subscribed"), ([1], "incomplete")] {
            var encoder = LZXTestEncoder(windowOrder: 15)
            var mainLengths = [Int](repeating: 0, count: 256 + 8 * 30)
            for (symbol, length) in lengths.enumerated() { mainLengths[symbol] = length }
            encoder.verbatimBlock([.literal(0)], mainLengths: mainLengths)
            try expectLZXError(containing: "main code's codeword lengths are \(message)", decoder: &decoder,
                               encoder.finish().stream, outputSize: 1)
        }

        // Pretree symbol 19 (a run of one length) must be followed by a symbol 0...17, not 18.
        writer = LZXBitWriter()
        writer.write(1, bits: 3)
        writer.write(1, bits: 1)
        let pretree = (0..<20).map { $0 < 12 ? 4 : 5 }
        for length in pretree { writer.write(length, bits: 4) }
        let codes = LZXTestEncoder.canonicalCodes(pretree)
        writer.write(codes[19], bits: 5)
        writer.write(0, bits: 1)
        writer.write(codes[18], bits: 5)
        writer.write(0, bits: 64)
        try expectLZXError(containing: "pretree symbol 18 cannot give the length of a run", decoder: &decoder,
                           writer.finish(), outputSize: 32768)
    }

    @Test("an empty length or aligned offset code that a match needs is rejected")
    func emptyCodesInUse() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        var encoder = LZXTestEncoder(windowOrder: 15)
        encoder.verbatimBlock([.literal(1), .literal(2), .repeatMatch(slot: 0, length: 20)],
                              trustTokens: true, emptyLengthCode: true)
        try expectLZXError(containing: "length code is empty", decoder: &decoder, encoder.finish().stream, outputSize: 22)

        encoder = LZXTestEncoder(windowOrder: 15)
        encoder.alignedBlock((0..<300).map { .literal(UInt8(truncatingIfNeeded: $0)) } + [.match(length: 5, offset: 200)],
                             trustTokens: true, emptyAlignedCode: true)
        try expectLZXError(containing: "aligned offset code is empty", decoder: &decoder, encoder.finish().stream, outputSize: 305)

        // A block with content needs a main code.
        var writer = LZXBitWriter()
        writer.write(1, bits: 3)
        writer.write(0, bits: 1)
        writer.write(10, bits: 16)
        LZXTestEncoder.writeLengths(&writer, [Int](repeating: 0, count: 256), previous: [Int](repeating: 0, count: 256))
        LZXTestEncoder.writeLengths(&writer, [Int](repeating: 0, count: 240), previous: [Int](repeating: 0, count: 240))
        LZXTestEncoder.writeLengths(&writer, [Int](repeating: 0, count: 249), previous: [Int](repeating: 0, count: 249))
        try expectLZXError(containing: "empty main code", decoder: &decoder, writer.finish(), outputSize: 10)
    }

    @Test("invalid block types and block sizes past the end of the chunk are rejected")
    func invalidBlockHeaders() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 65536)
        for type in [0, 4, 5, 6, 7] {
            var writer = LZXBitWriter()
            writer.write(type, bits: 3)
            writer.write(1, bits: 1)
            writer.write(0, bits: 60)
            try expectLZXError(containing: "block type \(type) is invalid", decoder: &decoder, writer.finish(), outputSize: 100, at: 0)
        }
        var encoder = LZXTestEncoder(windowOrder: 16)
        encoder.verbatimBlock((0..<50).map { .literal(UInt8($0)) })
        let (stream, _) = encoder.finish()
        try expectLZXError(containing: "claims 50 bytes but only 49", decoder: &decoder, stream, outputSize: 49)

        encoder = LZXTestEncoder(windowOrder: 16)
        encoder.uncompressedBlock([UInt8](repeating: 7, count: 50))
        try expectLZXError(containing: "claims 50 bytes but only 40", decoder: &decoder, encoder.finish().stream, outputSize: 40)
    }

    @Test("an uncompressed block storing offset 0, or running past the input, is rejected")
    func invalidUncompressedBlocks() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        var encoder = LZXTestEncoder(windowOrder: 15)
        encoder.uncompressedBlock([1, 2, 3, 4], recent: (1, 0, 1))
        try expectLZXError(containing: "stores 0 as recent offset R1", decoder: &decoder, encoder.finish().stream, outputSize: 4)

        encoder = LZXTestEncoder(windowOrder: 15)
        encoder.uncompressedBlock([UInt8](repeating: 9, count: 100))
        let stream = encoder.finish().stream
        for cut in [1, 2, 12, 14, 50, 100] {
            try expectLZXError(containing: nil, decoder: &decoder, Array(stream.dropLast(cut + 1)), outputSize: 100)
        }
    }

    @Test("truncated chunks are rejected, wherever they are cut")
    func truncatedInput() throws {
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        for kind in [LZXTestData.Kind.text, .x86, .zeros] {
            let data = LZXTestData.make(kind, count: 32768, seed: 4)
            let compressed = try #require(WimlibReference.compress(data, format: .lzx, maxBlockSize: 32768))
            #expect(try decoder.decompress(compressed, outputSize: 32768) == data)
            for keep in Set([0, 1, 2, 3, 10, compressed.count / 2, compressed.count - 4, compressed.count - 2]) {
                try expectLZXError(containing: nil, decoder: &decoder, Array(compressed.prefix(keep)), outputSize: 32768)
            }
        }
        try expectLZXError(containing: "empty", decoder: &decoder, [], outputSize: 10)
    }

    @Test("the decoder rejects chunk sizes outside 2^15...2^21 and outputs larger than its chunk size")
    func rejectsBadSizes() throws {
        for size in [-1, 0, 1, 4096, 32767, (1 << 21) + 1, 1 << 22] {
            #expect(throws: DecompressionError.self) { _ = try LZXDecompressor(maxChunkSize: size) }
        }
        var decoder = try LZXDecompressor(maxChunkSize: 32768)
        try expectLZXError(containing: "more than the resource's chunk size", decoder: &decoder, [0, 0], outputSize: 32769)
        #expect(try decoder.decompress([1, 2, 3], outputSize: 0) == [])
    }

    // MARK: - Corrupt input: thousands of mutations

    @Test("flipped bits, overwritten bytes and truncations decode or throw, never trap; agree with wimlib")
    func survivesCorruption() throws {
        var rng = SplitMix64(seed: 0x5EED)
        var bases: [(stream: [UInt8], size: Int, order: Int)] = []
        for (kind, level) in [(LZXTestData.Kind.text, UInt32(50)), (.x86, 50), (.mixed, 100), (.mixed, 20)] {
            let data = LZXTestData.make(kind, count: 3000, seed: UInt64(level))
            if let compressed = WimlibReference.compress(data, format: .lzx, maxBlockSize: 32768, level: level) {
                bases.append((compressed, 3000, 15))
            }
        }
        var encoder = LZXTestEncoder(windowOrder: 16)
        encoder.verbatimBlock(LZXTestEncoder.greedyTokens(LZXTestData.make(.text, count: 700, seed: 2)))
        encoder.uncompressedBlock(LZXTestData.make(.x86, count: 301, seed: 3), recent: (3, 2, 1))
        encoder.alignedBlock([.match(length: 200, offset: 500), .repeatMatch(slot: 1, length: 30)])
        let crafted = encoder.finish()
        bases.append((crafted.stream, crafted.expected.count, 16))

        var decoders = [15: try LZXDecompressor(maxChunkSize: 32768), 16: try LZXDecompressor(maxChunkSize: 65536)]
        var decodedCount = 0
        var rejectedCount = 0
        var comparedCount = 0
        var onlyWeAcceptedCount = 0
        for iteration in 0..<3000 {
            let base = bases[iteration % bases.count]
            var stream = base.stream
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let bit = Int.random(in: 0..<(stream.count * 8), using: &rng)
                    stream[bit / 8] ^= UInt8(1 << (bit % 8))
                }
            case 1:
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    stream[Int.random(in: 0..<stream.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 2:
                stream = Array(stream.prefix(Int.random(in: 0..<stream.count, using: &rng)))
            default:
                let bit = Int.random(in: 0..<(stream.count * 8), using: &rng)
                stream[bit / 8] ^= UInt8(1 << (bit % 8))
                stream = Array(stream.prefix(Int.random(in: (stream.count / 2)...stream.count, using: &rng)))
            }
            // Sometimes ask for a different size than the chunk held.
            let outputSize = Int.random(in: 0..<8, using: &rng) == 0
                ? Int.random(in: 1...(base.size + 100), using: &rng) : base.size
            let chunkSize = 1 << base.order
            do {
                let decoded = try decoders[base.order]?.decompress(stream, outputSize: outputSize)
                decodedCount += 1
                // wimlib must accept the stream too and produce the same bytes. (The converse
                // does not hold: wimlib reads missing input as zeros and decodes symbols of empty
                // codes, where this decoder reports truncation and corruption.)
                if let reference = WimlibReference.decompress(stream, format: .lzx, outputSize: outputSize, maxBlockSize: chunkSize) {
                    #expect(decoded == reference, "iteration \(iteration)")
                    comparedCount += 1
                } else {
                    onlyWeAcceptedCount += 1
                }
            } catch {
                rejectedCount += 1
                #expect(error.format == .lzx)
                #expect(error.offset >= 0 && error.offset <= max(stream.count, 0), "iteration \(iteration): \(error)")
            }
        }
        #expect(decodedCount > 100 && rejectedCount > 1000, "decoded \(decodedCount), rejected \(rejectedCount)")
        // This decoder is stricter than wimlib, never more lenient.
        #expect(onlyWeAcceptedCount == 0 && comparedCount == decodedCount)
    }

    // MARK: - Helpers

    private func expectLZXError(
        containing text: String?,
        decoder: inout LZXDecompressor,
        _ input: [UInt8],
        outputSize: Int,
        at offset: Int? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        do {
            let output = try decoder.decompress(input, outputSize: outputSize)
            Issue.record("decoded \(output.count) bytes instead of failing", sourceLocation: sourceLocation)
        } catch {
            #expect(error.format == .lzx, sourceLocation: sourceLocation)
            if let text {
                #expect(error.reason.contains(text), "\(error.reason)", sourceLocation: sourceLocation)
            }
            if let offset {
                #expect(error.offset == offset, sourceLocation: sourceLocation)
            }
            #expect(error.offset >= 0 && error.offset <= input.count, sourceLocation: sourceLocation)
        }
    }
}

private func lzxMismatch(_ actual: [UInt8], _ expected: [UInt8]) -> String? {
    if actual == expected { return nil }
    guard actual.count == expected.count else { return "\(actual.count) bytes instead of \(expected.count)" }
    let at = actual.indices.first { actual[$0] != expected[$0] } ?? 0
    return "first difference at byte \(at) of \(actual.count): \(actual[at]) instead of \(expected[at])"
}


enum LZXTestData {
    enum Kind: CaseIterable { case zeros, random, text, x86, records, mixed }

    static func make(_ kind: Kind, count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        switch kind {
        case .zeros:
            return [UInt8](repeating: 0, count: count)
        case .random:
            return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case .text:
            let words = ["the", "image", "file", "resource", "chunk", "Windows", "header", "of", "and",
                         "compressed", "stream", "a", "table", "offset", "block", "to", "LZX", "data"]
            var out: [UInt8] = []
            out.reserveCapacity(count)
            while out.count < count {
                out += Array(words[Int.random(in: 0..<words.count, using: &rng)].utf8)
                out.append(Int.random(in: 0..<9, using: &rng) == 0 ? 0x0A : 0x20)
            }
            return Array(out.prefix(count))
        case .x86:
            // Instruction-like bytes: frequent CALLs (E8 + 32-bit displacement) to a few targets,
            // common prologue/epilogue sequences, and some noise.
            let snippets: [[UInt8]] = [[0x55, 0x48, 0x89, 0xE5], [0x48, 0x83, 0xEC, 0x20], [0xC3],
                                       [0x48, 0x8B, 0x45, 0xF8], [0x0F, 0x1F, 0x44, 0x00, 0x00], [0x31, 0xC0]]
            var out: [UInt8] = []
            out.reserveCapacity(count + 8)
            while out.count < count {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0...3:
                    let target = Int32(Int.random(in: -4000...4000, using: &rng)) &* 16 &- Int32(out.count)
                    out.append(0xE8)
                    withUnsafeBytes(of: target.littleEndian) { out += $0 }
                case 4...8:
                    out += snippets[Int.random(in: 0..<snippets.count, using: &rng)]
                default:
                    out.append(UInt8.random(in: 0...255, using: &rng))
                }
            }
            return Array(out.prefix(count))
        case .records:
            // A table of 24-byte records (small integers, flags, 64-bit addresses): matches sit
            // at multiples of 24 bytes, which is what makes wimlib choose aligned offset blocks.
            var out: [UInt8] = []
            out.reserveCapacity(count + 24)
            var address = UInt64(0x7FF6_1234_0000)
            while out.count < count {
                address &+= UInt64(Int.random(in: 1...4, using: &rng) * 64)
                let id = UInt32(out.count / 24)
                let flags = UInt32([0x10, 0x20, 0x80][Int.random(in: 0..<3, using: &rng)])
                withUnsafeBytes(of: id.littleEndian) { out += $0 }
                withUnsafeBytes(of: flags.littleEndian) { out += $0 }
                withUnsafeBytes(of: address.littleEndian) { out += $0 }
                withUnsafeBytes(of: UInt64(Int.random(in: 0..<4, using: &rng)).littleEndian) { out += $0 }
            }
            return Array(out.prefix(count))
        case .mixed:
            var out: [UInt8] = []
            var part = 0
            while out.count < count {
                let kinds: [Kind] = [.text, .x86, .records, .random, .zeros]
                out += make(kinds[part % 5], count: 1000 + part * 517 % 3000, seed: seed &+ UInt64(part))
                part += 1
            }
            return Array(out.prefix(count))
        }
    }

    /// Data whose matches reach across the whole window: a 64 KiB block of mixed data followed
    /// by slightly altered copies of itself, so a 2 MiB chunk still compresses quickly.
    static func longDistance(count: Int, seed: UInt64) -> [UInt8] {
        let unit = make(.mixed, count: min(count, 65536), seed: seed)
        var out = unit
        out.reserveCapacity(count)
        var rng = SplitMix64(seed: seed &+ 1)
        while out.count < count {
            var copy = unit
            for _ in 0..<64 { copy[Int.random(in: 0..<copy.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            out += copy
        }
        return Array(out.prefix(count))
    }

    /// Undoes the E8 translation the plain way, to check the decoder's word-at-a-time version.
    static func referenceUndoE8(_ input: [UInt8]) -> [UInt8] {
        var data = input
        guard data.count > 10 else { return data }
        var index = 0
        while index < data.count - 10 {
            guard data[index] == 0xE8 else {
                index += 1
                continue
            }
            let stored = Int32(bitPattern: UInt32(data[index + 1]) | UInt32(data[index + 2]) << 8
                | UInt32(data[index + 3]) << 16 | UInt32(data[index + 4]) << 24)
            var relative: Int32?
            if stored >= 0 {
                if stored < 12_000_000 { relative = stored - Int32(index) }
            } else if Int(stored) >= -index {
                relative = stored + 12_000_000
            }
            if let relative {
                let bits = UInt32(bitPattern: relative)
                for byte in 0..<4 { data[index + 1 + byte] = UInt8(truncatingIfNeeded: bits >> (8 * byte)) }
            }
            index += 5
        }
        return data
    }
}

/// Writes LZX bits: 16-bit little-endian words, filled from their top bit.
struct LZXBitWriter {
    private(set) var bytes: [UInt8] = []
    private var word: UInt32 = 0
    private(set) var pendingBits = 0

    var bitCount: Int { bytes.count * 8 + pendingBits }

    mutating func write(_ value: Int, bits: Int) {
        for bit in stride(from: bits - 1, through: 0, by: -1) {
            word = word << 1 | UInt32((value >> bit) & 1)
            pendingBits += 1
            if pendingBits == 16 {
                bytes += [UInt8(word & 0xFF), UInt8(word >> 8)]
                word = 0
                pendingBits = 0
            }
        }
    }

    /// The padding before an uncompressed block's byte part: 1 to 16 zero bits.
    mutating func padForUncompressedBlock() { write(0, bits: 16 - pendingBits) }

    mutating func appendBytes(_ raw: [UInt8]) {
        precondition(pendingBits == 0)
        bytes += raw
    }

    /// Pads to a whole word and returns the bytes.
    mutating func finish() -> [UInt8] {
        if pendingBits > 0 { write(0, bits: 16 - pendingBits) }
        return bytes
    }
}

/// A small LZX writer for streams wimlib never produces: uncompressed blocks, chosen block
/// sizes, chosen codes (including deliberately broken ones), and chosen match encodings. It
/// tracks the output the tokens describe (before E8 translation is undone) so tests can compare.
struct LZXTestEncoder {
    enum Token {
        case literal(UInt8)
        /// An explicit offset (coded through an offset slot and extra bits).
        case match(length: Int, offset: Int)
        /// A match using recent offset R0, R1 or R2.
        case repeatMatch(slot: Int, length: Int)
    }

    let windowOrder: Int
    let mainSymbolCount: Int
    var writer = LZXBitWriter()
    /// Previous code lengths, as the decoder keeps them for delta coding.
    var mainLengths: [Int]
    var lengthLengths = [Int](repeating: 0, count: 249)
    var recent = [1, 1, 1]
    /// The output so far, before the decoder undoes E8 translation.
    var output: [UInt8] = []
    var longestMainCodeword = 0
    var longestLengthCodeword = 0

    init(windowOrder: Int) {
        self.windowOrder = windowOrder
        let slots = [30, 32, 34, 36, 38, 42, 50][windowOrder - 15]
        mainSymbolCount = 256 + 8 * slots
        mainLengths = [Int](repeating: 0, count: mainSymbolCount)
    }

    var bitPosition: Int { writer.bitCount }

    /// First offset of each slot, written out independently of the decoder's table.
    static let slotBases: [Int] = {
        var bases = [0, 1, 2, 3]
        var slot = 4
        while bases.count <= 50 {
            bases.append(bases[slot - 1] + (1 << extraBits(slot - 1)))
            slot += 1
        }
        return bases
    }()

    static func extraBits(_ slot: Int) -> Int { slot < 4 ? 0 : min((slot - 2) / 2, 17) }

    static func canonicalCodes(_ lengths: [Int]) -> [Int] {
        var codes = [Int](repeating: 0, count: lengths.count)
        var code = 0
        for length in 1...16 {
            for symbol in lengths.indices where lengths[symbol] == length {
                codes[symbol] = code
                code += 1
            }
            code <<= 1
        }
        return codes
    }

    /// Lengths of a complete code over `used` (at least two symbols): all of length k or k - 1.
    static func balancedLengths(symbolCount: Int, used: Set<Int>) -> [Int] {
        let symbols = used.sorted()
        var k = 0
        while 1 << k < symbols.count { k += 1 }
        let shorter = (1 << k) - symbols.count
        var lengths = [Int](repeating: 0, count: symbolCount)
        for (index, symbol) in symbols.enumerated() { lengths[symbol] = index < shorter ? k - 1 : k }
        return lengths
    }

    /// A complete code over `used` where codeword lengths grow by one per symbol down to 16 bits
    /// (the last two share the longest length), so long codewords exist.
    static func skewedLengths(symbolCount: Int, used: Set<Int>) -> [Int] {
        let symbols = used.sorted()
        var lengths = [Int](repeating: 0, count: symbolCount)
        // Symbols beyond the chain share the 16-bit level with a balanced subtree.
        let chain = min(symbols.count - 2, 8)
        for index in 0..<chain { lengths[symbols[index]] = index + 1 }
        // The remaining code space is 2^-chain; fill it with the rest using lengths up to 16.
        let rest = Array(symbols[chain...])
        var k = 0
        while 1 << k < rest.count { k += 1 }
        let shorter = (1 << k) - rest.count
        for (index, symbol) in rest.enumerated() { lengths[symbol] = chain + (index < shorter ? k - 1 : k) }
        let deepest = rest.count > 1 ? chain + k : chain
        precondition(deepest <= 16)
        return lengths
    }

    /// Writes the pretree (12 codewords of 4 bits, 8 of 5) and then `lengths` as changes from
    /// `previous`.
    static func writeLengths(_ writer: inout LZXBitWriter, _ lengths: [Int], previous: [Int]) {
        let pretree = (0..<20).map { $0 < 12 ? 4 : 5 }
        for length in pretree { writer.write(length, bits: 4) }
        let codes = canonicalCodes(pretree)
        for (length, old) in zip(lengths, previous) {
            let symbol = (old - length + 17) % 17
            writer.write(codes[symbol], bits: pretree[symbol])
        }
    }

    mutating func header(type: Int, size: Int) {
        writer.write(type, bits: 3)
        if size == 32768 {
            writer.write(1, bits: 1)
        } else {
            writer.write(0, bits: 1)
            writer.write(size, bits: windowOrder >= 16 ? 24 : 16)
        }
    }

    mutating func verbatimBlock(_ tokens: [Token], size: Int? = nil, mainLengths forcedMain: [Int]? = nil,
                                nineBitSymbol: UInt8? = nil, skewed: Bool = false, trustTokens: Bool = false,
                                emptyLengthCode: Bool = false) {
        compressedBlock(tokens, aligned: false, size: size, forcedMain: forcedMain, nineBitSymbol: nineBitSymbol,
                        skewed: skewed, trustTokens: trustTokens, emptyLengthCode: emptyLengthCode, emptyAlignedCode: false)
    }

    mutating func alignedBlock(_ tokens: [Token], trustTokens: Bool = false, emptyAlignedCode: Bool = false) {
        compressedBlock(tokens, aligned: true, size: nil, forcedMain: nil, nineBitSymbol: nil, skewed: false,
                        trustTokens: trustTokens, emptyLengthCode: false, emptyAlignedCode: emptyAlignedCode)
    }

    /// Codes one block. Unless `trustTokens`, matches are applied to `output` (so they must be
    /// valid); with it, tokens are written as given and `output` is not maintained.
    private mutating func compressedBlock(
        _ tokens: [Token], aligned: Bool, size: Int?, forcedMain: [Int]?, nineBitSymbol: UInt8?,
        skewed: Bool, trustTokens: Bool, emptyLengthCode: Bool, emptyAlignedCode: Bool
    ) {
        struct Coded { var main: Int; var length: Int?; var extra: Int; var extraBits: Int }
        var coded: [Coded] = []
        var blockSize = 0
        for token in tokens {
            switch token {
            case .literal(let byte):
                coded.append(Coded(main: Int(byte), length: nil, extra: 0, extraBits: 0))
                blockSize += 1
                if !trustTokens { output.append(byte) }
            case .match(let length, let offset):
                let adjusted = offset + 2
                let slot = Self.slotBases.lastIndex { $0 <= adjusted } ?? 3
                let header = min(length - 2, 7)
                coded.append(Coded(main: 256 + slot * 8 + header, length: header == 7 ? length - 9 : nil,
                                   extra: adjusted - Self.slotBases[slot], extraBits: Self.extraBits(slot)))
                recent = [offset, recent[0], recent[1]]
                blockSize += length
                if !trustTokens { copyMatch(length: length, offset: offset) }
            case .repeatMatch(let slot, let length):
                let header = min(length - 2, 7)
                coded.append(Coded(main: 256 + slot * 8 + header, length: header == 7 ? length - 9 : nil,
                                   extra: 0, extraBits: 0))
                let offset = recent[slot]
                recent[slot] = recent[0]
                recent[0] = offset
                blockSize += length
                if !trustTokens { copyMatch(length: length, offset: offset) }
            }
        }

        var usedMain = Set(coded.map(\.main))
        var usedLength = Set(coded.compactMap(\.length))
        var usedAligned = Set(coded.filter { aligned && $0.extraBits >= 3 }.map { $0.extra & 7 })
        // Complete codes need two codewords at least; add harmless unused ones.
        for filler in [0x7F, 0x7E] where usedMain.count < 2 { usedMain.insert(filler) }
        if !usedLength.isEmpty { for filler in [247, 248] where usedLength.count < 2 { usedLength.insert(filler) } }
        if !usedAligned.isEmpty { for filler in [6, 7] where usedAligned.count < 2 { usedAligned.insert(filler) } }
        if aligned && usedAligned.isEmpty && !emptyAlignedCode { usedAligned = [0, 1] }

        var main = forcedMain ?? (skewed ? Self.skewedLengths(symbolCount: mainSymbolCount, used: usedMain)
                                         : Self.balancedLengths(symbolCount: mainSymbolCount, used: usedMain))
        if let nineBitSymbol, forcedMain == nil {
            // All 256 literals plus symbol 256: 255 codewords of 8 bits and 2 of 9 bits, one of
            // them `nineBitSymbol`'s. Only literals may be used in such a block.
            main = [Int](repeating: 0, count: mainSymbolCount)
            for symbol in 0...256 { main[symbol] = 8 }
            main[Int(nineBitSymbol)] = 9
            main[256] = 9
        }
        let length = emptyLengthCode || usedLength.isEmpty
            ? [Int](repeating: 0, count: 249)
            : (skewed ? Self.skewedLengths(symbolCount: 249, used: usedLength)
                      : Self.balancedLengths(symbolCount: 249, used: usedLength))
        let alignedLengths = emptyAlignedCode ? [Int](repeating: 0, count: 8)
            : Self.balancedLengths(symbolCount: 8, used: usedAligned)
        longestMainCodeword = max(longestMainCodeword, main.max() ?? 0)
        longestLengthCodeword = max(longestLengthCodeword, length.max() ?? 0)

        header(type: aligned ? 2 : 1, size: size ?? blockSize)
        if aligned { for value in alignedLengths { writer.write(value, bits: 3) } }
        Self.writeLengths(&writer, Array(main[..<256]), previous: Array(mainLengths[..<256]))
        Self.writeLengths(&writer, Array(main[256...]), previous: Array(mainLengths[256...]))
        Self.writeLengths(&writer, length, previous: lengthLengths)
        mainLengths = main
        lengthLengths = length

        let mainCodes = Self.canonicalCodes(main)
        let lengthCodes = Self.canonicalCodes(length)
        let alignedCodes = Self.canonicalCodes(alignedLengths)
        for item in coded {
            writer.write(mainCodes[item.main], bits: main[item.main])
            if let symbol = item.length {
                // With an empty length code there is nothing to write; the decoder must notice.
                if length[symbol] > 0 { writer.write(lengthCodes[symbol], bits: length[symbol]) }
            }
            if aligned && item.extraBits >= 3 {
                writer.write(item.extra >> 3, bits: item.extraBits - 3)
                let low = item.extra & 7
                if alignedLengths[low] > 0 { writer.write(alignedCodes[low], bits: alignedLengths[low]) }
            } else {
                writer.write(item.extra, bits: item.extraBits)
            }
        }
    }

    mutating func uncompressedBlock(_ raw: [UInt8], recent stored: (UInt32, UInt32, UInt32) = (1, 1, 1)) {
        header(type: 3, size: raw.count)
        writer.padForUncompressedBlock()
        var bytes: [UInt8] = []
        for value in [stored.0, stored.1, stored.2] { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        bytes += raw
        if raw.count % 2 == 1 { bytes.append(0) }
        writer.appendBytes(bytes)
        recent = [Int(stored.0), Int(stored.1), Int(stored.2)]
        output += raw
    }

    private mutating func copyMatch(length: Int, offset: Int) {
        for _ in 0..<length { output.append(output[output.count - offset]) }
    }

    /// The stream, and the chunk it decodes to (E8 translation undone as the decoder does).
    mutating func finish() -> (stream: [UInt8], expected: [UInt8]) {
        (writer.finish(), LZXTestData.referenceUndoE8(output))
    }

    /// Greedy matching with a small hash of 3-byte prefixes: enough to give real streams a mix
    /// of literals, short and long matches and all offset slots the data allows.
    static func greedyTokens(_ data: [UInt8]) -> [Token] {
        var tokens: [Token] = []
        var lastSeen: [Int: Int] = [:]
        var index = 0
        func key(_ at: Int) -> Int { Int(data[at]) << 16 | Int(data[at + 1]) << 8 | Int(data[at + 2]) }
        while index < data.count {
            if index + 3 <= data.count, let candidate = lastSeen[key(index)] {
                var length = 0
                while index + length < data.count && length < 257 && data[candidate + length] == data[index + length] {
                    length += 1
                }
                if length >= 3 {
                    tokens.append(.match(length: length, offset: index - candidate))
                    for position in index..<(index + length) where position + 3 <= data.count {
                        lastSeen[key(position)] = position
                    }
                    index += length
                    continue
                }
            }
            if index + 3 <= data.count { lastSeen[key(index)] = index }
            tokens.append(.literal(data[index]))
            index += 1
        }
        return tokens
    }
}
