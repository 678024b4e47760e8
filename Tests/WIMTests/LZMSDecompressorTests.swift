import CWimlibReference
import Foundation
import TestSupport
import Testing
@testable import WIM

/// LZMS decoder tests. The oracle is wimlib: its compressor makes the chunks and, for corrupted
/// chunks, its decompressor says what the data must decode to.
@Suite struct LZMSDecompressorTests {

    // MARK: Test data

    /// The kinds of content a WIM holds, each exercising different parts of the format.
    enum Content: String, CaseIterable, CustomTestStringConvertible {
        case zeros          // long runs: offset-1 matches, repeat offsets
        case random         // incompressible: literals, worst case for the literal code
        case text           // ordinary LZ matches and repeat offsets
        case x86            // real machine code: the x86 filter
        case increasing32   // arrays of growing 32-bit integers: delta matches
        case increasing16   // arrays of growing 16-bit integers: delta matches, other power
        case bitmap24       // 24-bit pixels brightening row by row: delta matches of one row

        var testDescription: String { rawValue }

        /// `count` bytes of this content; deterministic for a given `seed`.
        func bytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
            var rng = SplitMix64(seed: seed)
            switch self {
            case .zeros:
                return [UInt8](repeating: 0, count: count)
            case .random:
                return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case .text:
                return Self.repeated(Self.realText, count: count)
            case .x86:
                return Self.repeated(Self.machineCode, count: count)
            case .increasing32:
                let start = UInt32(truncatingIfNeeded: rng.next())
                return (0..<count).map { i in
                    let value = start &+ UInt32(truncatingIfNeeded: i / 4) &* 3
                    return UInt8(truncatingIfNeeded: value >> (8 * UInt32(i % 4)))
                }
            case .increasing16:
                return (0..<count).map { i in
                    let value = UInt16(truncatingIfNeeded: (i / 2) &* 5 &+ 100)
                    return UInt8(truncatingIfNeeded: value >> (8 * UInt16(i % 2)))
                }
            case .bitmap24:
                // 200 pixels a row; every channel one brighter than the pixel above, so each
                // row repeats the previous one's byte-to-byte differences.
                return (0..<count).map { i in
                    let pixel = i / 3, x = pixel % 200, y = pixel / 200
                    let channel = [x * 2, x * 3, x * 5 / 3][i % 3]
                    return UInt8(truncatingIfNeeded: channel + y)
                }
            }
        }

        private static func repeated(_ source: [UInt8], count: Int) -> [UInt8] {
            guard !source.isEmpty else { return [UInt8](repeating: 0x41, count: count) }
            var result: [UInt8] = []
            result.reserveCapacity(count)
            while result.count < count {
                result.append(contentsOf: source.prefix(count - result.count))
            }
            return result
        }

        /// Real text from the system, or made-up words when none is installed.
        static let realText: [UInt8] = {
            for path in ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GPL-2",
                         "/usr/share/dict/words", "/etc/services"] {
                if let data = FileManager.default.contents(atPath: path), data.count > 10_000 {
                    return [UInt8](data.prefix(2 << 20))
                }
            }
            var rng = SplitMix64(seed: 7)
            let words = ["the", "image", "file", "resource", "chunk", "of", "and", "Windows", "to", "data"]
            var text = ""
            while text.utf8.count < 300_000 { text += words[Int(rng.next() % UInt64(words.count))] + " " }
            return Array(text.utf8)
        }()

        /// The code of a real x86-64 program: the largest of a few that every Linux has.
        static let machineCode: [UInt8] = {
            let candidates = ["/usr/bin/bash", "/bin/bash", "/usr/bin/ls", "/usr/bin/perl", "/usr/bin/python3"]
            let programs = candidates.compactMap { FileManager.default.contents(atPath: $0) }
            if let largest = programs.max(by: { $0.count < $1.count }), largest.count > 100_000 {
                // Skip the ELF headers; take up to 12 MiB of code and data.
                return [UInt8](largest.dropFirst(4096).prefix(12 << 20))
            }
            // No program found: synthesize call-heavy "code" so the filter still has work.
            var rng = SplitMix64(seed: 11)
            var code: [UInt8] = []
            while code.count < 1 << 20 {
                code += [0xE8] + (0..<4).map { _ in UInt8(truncatingIfNeeded: rng.next() % 3) }
                code += [0x48, 0x8D, 0x05, UInt8(truncatingIfNeeded: rng.next()), 0x10, 0, 0, 0x90]
            }
            return code
        }()
    }


    /// Compresses one chunk with wimlib's LZMS compressor. Unlike `WimlibReference.compress`
    /// it leaves room for expansion, so incompressible data is compressed too (a WIM would
    /// store such a chunk raw, but the decoder must still handle the stream).
    static func compress(_ data: [UInt8]) throws -> [UInt8] {
        var compressor: OpaquePointer?
        try #require(wimlib_create_compressor(WIMLIB_COMPRESSION_TYPE_LZMS, max(data.count, 1), 0, &compressor) == 0)
        let handle = try #require(compressor)
        defer { wimlib_free_compressor(handle) }
        var out = [UInt8](repeating: 0, count: data.count + data.count / 2 + 1024)
        let count = data.withUnsafeBytes { inBuf in
            out.withUnsafeMutableBytes { outBuf in
                wimlib_compress(inBuf.baseAddress, inBuf.count, outBuf.baseAddress, outBuf.count, handle)
            }
        }
        try #require(count > 0, "wimlib did not compress \(data.count) bytes")
        return Array(out[0..<count])
    }

    /// What wimlib's decompressor makes of `chunk`: the output, or nil if it rejects it.
    static func referenceDecode(_ chunk: [UInt8], outputSize: Int) -> [UInt8]? {
        WimlibReference.decompress(chunk, format: .lzms, outputSize: outputSize, maxBlockSize: max(outputSize, 1))
    }

    static func decode(_ chunk: [UInt8], outputSize: Int, with decoder: inout LZMSDecompressor) -> Result<[UInt8], DecompressionError> {
        do { return .success(try decoder.decompress(chunk, outputSize: outputSize)) } catch { return .failure(error) }
    }

    // MARK: Round trips

    /// Sizes around the edges: tiny chunks (the x86 filter skips chunks of 17 bytes or
    /// less), the WIM chunk size 32 KiB and its neighbours, and larger chunks.
    static let sizes = [15, 16, 17, 18, 1000, 32767, 32768, 32769]

    @Test(arguments: Content.allCases, sizes)
    func roundTrip(_ content: Content, size: Int) throws {
        let data = content.bytes(size)
        let chunk = try Self.compress(data)
        var decoder = LZMSDecompressor()
        #expect(try decoder.decompress(chunk, outputSize: size) == data)
    }

    @Test(arguments: [Content.text, .x86, .random, .increasing32, .bitmap24])
    func roundTripOneMebibyte(_ content: Content) throws {
        let data = content.bytes(1 << 20, seed: 3)
        let chunk = try Self.compress(data)
        var decoder = LZMSDecompressor()
        #expect(try decoder.decompress(chunk, outputSize: data.count) == data)
    }

    /// One chunk as big as a solid resource's: long offsets, many code rebuilds, and the x86
    /// filter's position bookkeeping over a large buffer.
    @Test func roundTripEightMebibyteChunk() throws {
        var data = Content.x86.bytes(3 << 20)
        data += Content.text.bytes(3 << 20)
        data += Content.increasing32.bytes(1 << 20, seed: 5)
        data += Content.random.bytes(1 << 20, seed: 6)
        let chunk = try Self.compress(data)
        var decoder = LZMSDecompressor()
        #expect(try decoder.decompress(chunk, outputSize: data.count) == data)
    }

    /// wimlib will not compress fewer than 4 bytes, so 1- and 2-byte chunks are checked by
    /// decoding only the start of a longer chunk whose first items are literals: a chunk's
    /// first literals decode the same whatever its size.
    @Test func oneAndTwoByteChunks() throws {
        var decoder = LZMSDecompressor()
        for first in 0..<256 {
            let data = [UInt8(first), UInt8((first + 101) % 256)] + Content.text.bytes(30)
            let chunk = try Self.compress(data)
            #expect(try decoder.decompress(chunk, outputSize: 1) == [data[0]])
            #expect(try decoder.decompress(chunk, outputSize: 2) == Array(data[0..<2]))
        }
        // Four zero bytes: the range decoder's code is 0, so every decision says "literal",
        // and all-zero bits select the all-zero codeword of the initial literal code, byte 0.
        for size in [1, 2, 3, 17, 18, 1000] {
            #expect(try decoder.decompress([0, 0, 0, 0], outputSize: size) == [UInt8](repeating: 0, count: size))
        }
    }

    /// Data made for delta matches: wimlib codes it with them (an instrumented decoder counted
    /// hundreds per 64 KiB of the integer arrays, a few long ones per bitmap), so these
    /// exercise the delta path, its repeat queue and the power code.
    @Test(arguments: [Content.increasing32, .increasing16, .bitmap24])
    func deltaMatchContent(_ content: Content) throws {
        for (size, seed) in [(4096, 1), (65536, 2), (300_000, 3)] {
            let data = content.bytes(size, seed: UInt64(seed))
            let chunk = try Self.compress(data)
            // Delta matches code these far smaller than plain LZ could.
            if size >= 65536 { #expect(chunk.count < size / 20) }
            var decoder = LZMSDecompressor()
            #expect(try decoder.decompress(chunk, outputSize: size) == data)
        }
    }

    /// One decoder, many chunk sizes in a row: tables cached for one size must not leak into
    /// the next (the offset alphabets depend on the chunk size).
    @Test func decoderReuseAcrossSizes() throws {
        var decoder = LZMSDecompressor()
        var rng = SplitMix64(seed: 99)
        let sizes = [32768, 20, 1 << 16, 32768, 5000, 200_000, 18, 32768]
        let contents = Content.allCases
        for (i, size) in sizes.enumerated() {
            let data = contents[Int(rng.next() % UInt64(contents.count))].bytes(size, seed: UInt64(i))
            let chunk = try Self.compress(data)
            #expect(try decoder.decompress(chunk, outputSize: size) == data, "chunk \(i), \(size) bytes")
        }
    }

    /// Copies of a decoder share their tables until one decodes; each must then work alone.
    @Test func copiedDecodersAreIndependent() throws {
        let a = Content.text.bytes(10_000), b = Content.x86.bytes(12_000)
        let chunkA = try Self.compress(a), chunkB = try Self.compress(b)
        var first = LZMSDecompressor()
        var second = first
        #expect(try first.decompress(chunkA, outputSize: a.count) == a)
        #expect(try second.decompress(chunkB, outputSize: b.count) == b)
        #expect(try first.decompress(chunkA, outputSize: a.count) == a)
    }

    // MARK: Invalid input

    @Test func rejectsImpossibleInputSizes() {
        var decoder = LZMSDecompressor()
        for input in [[], [0], [0, 0], [0, 0, 0], [0, 0, 0, 0, 0]] as [[UInt8]] {
            #expect(throws: DecompressionError.self) { try decoder.decompress(input, outputSize: 10) }
        }
    }

    @Test func errorsNameTheFormat() throws {
        var decoder = LZMSDecompressor()
        // All ones: every decision says "delta match, repeat", which cannot start a chunk.
        let error = try #require(throws: DecompressionError.self) {
            try decoder.decompress([UInt8](repeating: 0xFF, count: 64), outputSize: 100)
        }
        #expect(error.format == .lzms)
        #expect(error.offset >= 0 && error.offset <= 64)
        #expect(!error.reason.isEmpty)
    }

    /// A chunk decoded with the wrong uncompressed size must fail or agree with wimlib, never
    /// read or write out of bounds.
    @Test func wrongOutputSizes() throws {
        let data = Content.text.bytes(5000)
        let chunk = try Self.compress(data)
        var decoder = LZMSDecompressor()
        for size in [3, 17, 18, 100, 4095, 4999, 5001, 6000, 40_000] {
            let ours = Self.decode(chunk, outputSize: size, with: &decoder)
            let reference = Self.referenceDecode(chunk, outputSize: size)
            switch ours {
            case .success(let output): #expect(output == reference, "size \(size)")
            case .failure: #expect(reference == nil, "size \(size)")
            }
        }
    }

    /// Flips, overwrites and truncates bytes of valid chunks thousands of times. Every result
    /// must match wimlib's decoder: the same bytes when it accepts, an error when it rejects.
    @Test func corruptedChunksMatchReference() throws {
        var rng = SplitMix64(seed: 2024)
        let originals: [(chunk: [UInt8], size: Int)] = try [
            (Content.text, 3000), (Content.x86, 6000), (Content.increasing32, 4000),
            (Content.bitmap24, 3000), (Content.random, 1500), (Content.zeros, 2000),
        ].map { content, size in (try Self.compress(content.bytes(size)), size) }

        var decoder = LZMSDecompressor()
        var accepted = 0, rejected = 0
        for iteration in 0..<3000 {
            let original = originals[Int(rng.next() % UInt64(originals.count))]
            var chunk = original.chunk
            var size = original.size
            switch rng.next() % 6 {
            case 0, 1:  // flip a few bits
                for _ in 0...(rng.next() % 4) {
                    chunk[Int(rng.next() % UInt64(chunk.count))] ^= UInt8(1) << (rng.next() % 8)
                }
            case 2:     // overwrite a run of bytes
                let start = Int(rng.next() % UInt64(chunk.count))
                for i in start..<min(chunk.count, start + 1 + Int(rng.next() % 16)) {
                    chunk[i] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 3:     // truncate (keeping an even length, or the decoder rejects it at once)
                chunk = Array(chunk.prefix(Int(rng.next() % UInt64(chunk.count)) & ~1))
            case 4:     // wrong uncompressed size, plus a flipped byte
                size = max(3, size + Int(rng.next() % 2001) - 1000)
                chunk[Int(rng.next() % UInt64(chunk.count))] ^= 0x5A
            default:    // garbage of the original's length
                chunk = (0..<chunk.count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            let ours = Self.decode(chunk, outputSize: size, with: &decoder)
            let reference = Self.referenceDecode(chunk, outputSize: size)
            switch ours {
            case .success(let output):
                accepted += 1
                #expect(output == reference, "iteration \(iteration)")
            case .failure:
                rejected += 1
                #expect(reference == nil, "iteration \(iteration)")
            }
        }
        // Both outcomes must actually occur for the test to mean anything.
        #expect(accepted > 100 && rejected > 100)
    }

    /// Short and hostile inputs against large outputs: both bit streams run dry almost at
    /// once and the decoder lives on the zeros it reads past the ends. It must stop with an
    /// error or a full output, agreeing with wimlib, never trap or run away. (Fuzzing found
    /// no crashing input; new ones would be added here.)
    @Test func exhaustedAndHostileInputs() {
        var rng = SplitMix64(seed: 77)
        var decoder = LZMSDecompressor()
        var inputs: [[UInt8]] = [[0, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF], [0xFF, 0xFF, 0, 0], [0, 0, 0xFF, 0xFF],
                                 [0x00, 0x80, 0x00, 0x00], [UInt8](repeating: 0xAA, count: 6)]
        for length in stride(from: 4, through: 64, by: 2) {
            inputs.append((0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        for input in inputs {
            for size in [3, 17, 18, 1000, 100_000] {
                let ours = Self.decode(input, outputSize: size, with: &decoder)
                let reference = Self.referenceDecode(input, outputSize: size)
                switch ours {
                case .success(let output): #expect(output == reference, "\(input.count)-byte input, size \(size)")
                case .failure(let error):
                    #expect(reference == nil, "\(input.count)-byte input, size \(size)")
                    #expect((0...input.count).contains(error.offset))
                }
            }
        }
    }
}
