import CWimlibReference
import Foundation
import TestSupport
import Testing
@testable import WIM

/// The LZMS compressor: its output must decode, with our decoder and with wimlib's, to the chunk
/// for every size and kind of data at both levels, and be refused (nil) when it would not be
/// smaller. Test data comes from the decoder's tests (text, real x86 code, runs, random, ...).
@Suite struct LZMSCompressorTests {
    typealias Content = LZMSDecompressorTests.Content
    static let levels: [LZMSCompressor.Level] = [.fast, .normal]

    /// Compresses `data` both ways and checks the stream with both decoders; returns the size
    /// `compress` gave (nil: refused).
    @discardableResult
    static func check(_ data: [UInt8], _ compressor: inout LZMSCompressor, _ decoder: inout LZMSDecompressor,
                      _ what: String, wimlib: Bool = true) throws -> Int? {
        let always = compressor.compressAlways(data)
        if data.isEmpty {
            #expect(always.isEmpty)
            return nil
        }
        #expect(always.count >= 4 && always.count % 2 == 0, "\(what): \(always.count) bytes")
        let ours = LZMSDecompressorTests.decode(always, outputSize: data.count, with: &decoder)
        switch ours {
        case .success(let output): #expect(output == data, "\(what): our decoder gives other bytes")
        case .failure(let error): Issue.record("\(what): our decoder rejects the stream: \(error)")
        }
        // wimlib's decoder is only trusted from 15 bytes up here (the decoder tests use the
        // same floor); tinier chunks are checked by our decoder alone.
        if wimlib && data.count >= 15 {
            #expect(LZMSDecompressorTests.referenceDecode(always, outputSize: data.count) == data, "\(what): wimlib's decoder disagrees")
        }
        let compressed = compressor.compress(data)
        if let compressed {
            #expect(compressed.count < data.count, "\(what)")
            #expect(compressed == always, "\(what): compress and compressAlways differ")
        } else {
            #expect(always.count >= data.count, "\(what): nil although it shrinks to \(always.count)")
        }
        return compressed?.count
    }

    @Test("round trips of every content kind at sizes from 1 byte to 32 KiB", arguments: levels)
    func roundTripsEveryKindAndSize(level: LZMSCompressor.Level) throws {
        var shrunk = 0
        for content in Content.allCases {
            shrunk += try Self.roundTrips(content, level: level)
        }
        #expect(shrunk > 40)
    }

    /// Round trips of one content kind at every size; returns how many shrank.
    static func roundTrips(_ content: Content, level: LZMSCompressor.Level) throws -> Int {
        var compressor = LZMSCompressor(level: level)
        var decoder = LZMSDecompressor()
        var shrunk = 0
        for size in [1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18, 19, 33, 100, 1000, 4095, 4096, 32_768] {
            let data = content.bytes(size, seed: UInt64(size))
            if try check(data, &compressor, &decoder, "\(content) \(size) \(level)") != nil { shrunk += 1 }
        }
        return shrunk
    }

    @Test("every size from 0 to 300 bytes, text, runs and random", arguments: levels)
    func roundTripsSmallSizes(level: LZMSCompressor.Level) throws {
        var compressor = LZMSCompressor(level: level)
        var decoder = LZMSDecompressor()
        for size in 0...300 {
            for content in [Content.text, .random, .zeros, .x86] {
                try Self.check(content.bytes(size, seed: UInt64(size)), &compressor, &decoder, "\(content) \(size)", wimlib: size % 7 == 0)
            }
        }
    }

    @Test("512 KiB chunks: text, x86 code, long runs (lengths in the 30-bit slot), mixed", arguments: levels)
    func roundTripsLargeChunks(level: LZMSCompressor.Level) throws {
        var compressor = LZMSCompressor(level: level)
        var decoder = LZMSDecompressor()
        let size = 1 << 19
        var mixed = Content.text.bytes(size / 3) + Content.x86.bytes(size / 3) + Content.random.bytes(size / 6)
        mixed += Content.zeros.bytes(size - mixed.count)
        for (name, data) in [("mixed", mixed), ("zeros", Content.zeros.bytes(size + 5)), ("x86", Content.x86.bytes(size))] {
            try Self.check(data, &compressor, &decoder, "\(name) \(data.count) \(level)")
        }
    }

    /// A solid-sized chunk with stretches of random bytes (which are coded as literals and
    /// copies of earlier random stretches, not searched) between text: the copies must be found
    /// and every stretch must decode, including copies that run past a block's end and into text.
    @Test func largeChunksWithCompressedLookingStretches() throws {
        var compressor = LZMSCompressor(level: .normal)
        var decoder = LZMSDecompressor()
        let random = Content.random.bytes(300_000, seed: 11)
        var data = Content.text.bytes(220_000, seed: 12) + random + Content.text.bytes(100_000, seed: 13)
        // Copies of the random stretch: whole, from an odd offset, a short one (under the
        // 32 bytes a copy must have) and one that ends inside text.
        data += random[..<150_000] + Content.text.bytes(50_001, seed: 14)
        data += random[77_777..<177_777] + Array(random[1_000..<1_020]) + Content.random.bytes(40_000, seed: 15)
        data += random[200_000..<260_003] + Content.text.bytes(30_000, seed: 16)
        #expect(data.count >= LZMSParser.noiseSearchMinimum)
        let size = try Self.check(data, &compressor, &decoder, "text and random stretches")
        // 400 KB of text, 340 KB of random bytes and 310 KB of copies: about 470 KB when the
        // copies are found, about 780 KB when they are not.
        #expect((size ?? .max) < 600_000, "\(size ?? 0) bytes")
    }

    @Test func incompressibleChunksAreRefused() throws {
        var compressor = LZMSCompressor()
        let random = Content.random.bytes(131_072, seed: 3)
        #expect(compressor.compress(random) == nil)
        #expect(compressor.compress([UInt8]()) == nil)
        #expect(compressor.compress([1, 2, 3, 4]) == nil)
        #expect(compressor.compress(Content.zeros.bytes(64)) != nil)
    }

    @Test func reuseAcrossChunksAndCopies() throws {
        var compressor = LZMSCompressor()
        var decoder = LZMSDecompressor()
        // Big, small, big again: the match finder's and x86 filter's tables carry over.
        for (i, size) in [200_000, 100, 50_000, 131_072, 17].enumerated() {
            try Self.check(Content.x86.bytes(size, seed: UInt64(i)), &compressor, &decoder, "chunk \(i)")
        }
        var copy = compressor
        let text = Content.text.bytes(40_000)
        #expect(copy.compress(text) == compressor.compress(text))
    }

    @Test func theFactoryMakesIt() throws {
        let fast = try #require(makeChunkCompressor(.lzms, level: CompressionLevel(20)!))
        let normal = try #require(makeChunkCompressor(.lzms))
        #expect(fast.format == .lzms && normal.format == .lzms)
        #expect((fast as? LZMSCompressor)?.level == .fast)
        #expect((normal as? LZMSCompressor)?.level == .normal)
        #expect(type(of: normal).maxChunkSize == 67_108_864)
    }

    /// Not a pass/fail criterion beyond a loose bound: prints the size against wimlib's default
    /// LZMS compressor per content kind for 128 KiB chunks (the WIM chunk size). Data made for
    /// delta matches (which this compressor does not produce) is printed only.
    @Test func ratioAgainstWimlib() throws {
        var compressor = LZMSCompressor()
        for content in [Content.text, .x86, .bitmap24, .increasing32] {
            var ours = 0, theirs = 0
            let data = content.bytes(2 * 131_072, seed: 9)
            for start in stride(from: 0, to: data.count, by: 131_072) {
                let chunk = Array(data[start..<min(start + 131_072, data.count)])
                ours += compressor.compress(chunk)?.count ?? chunk.count
                theirs += try LZMSDecompressorTests.compress(chunk).count
            }
            print("LZMS \(content): imprint \(ours), wimlib \(theirs), ratio \(String(format: "%.4f", Double(ours) / Double(theirs)))")
            if content == .text || content == .x86 {
                #expect(Double(ours) < Double(theirs) * 1.10 + 1000, "\(content)")
            }
        }
    }
}
