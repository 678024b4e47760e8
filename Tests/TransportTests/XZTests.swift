import Foundation
import Testing
import TestSupport
@testable import Transport

@Suite struct XZTests {
    private func decode(_ file: String) throws -> Data {
        let input = try Data(contentsOf: URL(fileURLWithPath: file))
        let decoder = try XZDecoder()
        var output = Data()
        // Small pieces, as they would arrive from the network.
        var offset = 0
        while offset < input.count {
            let piece = input[offset..<min(input.count, offset + 7919)]
            try piece.withUnsafeBytes { try decoder.decode($0) { output.append(contentsOf: $0) } }
            offset += piece.count
        }
        try decoder.finish { output.append(contentsOf: $0) }
        return output
    }

    private func sample(_ scratch: ScratchDirectory, _ name: String, size: Int) throws -> Data {
        // Compressible yet not trivial: repeated random lines.
        var generator = SystemRandomNumberGenerator()
        let lines = (0..<64).map { _ in (0..<40).map { _ in String(UInt8.random(in: 97...122, using: &generator)) }.joined() }
        var text = ""
        while text.utf8.count < size { text += lines[Int.random(in: 0..<lines.count, using: &generator)] + "\n" }
        let data = Data(text.utf8)
        try data.write(to: URL(fileURLWithPath: scratch.sub(name)))
        return data
    }

    @Test func decodesMultithreadedAndConcatenatedStreams() throws {
        let scratch = ScratchDirectory()
        let a = try sample(scratch, "a", size: 3 << 20)
        let b = try sample(scratch, "b", size: 100_000)
        try run(["xz", "-T2", "--block-size=1MiB", "-k", scratch.sub("a"), scratch.sub("b")])
        #expect(try decode(scratch.sub("a.xz")) == a)
        let joined = try Data(contentsOf: URL(fileURLWithPath: scratch.sub("a.xz"))) + Data(contentsOf: URL(fileURLWithPath: scratch.sub("b.xz")))
        try joined.write(to: URL(fileURLWithPath: scratch.sub("ab.xz")))
        #expect(try decode(scratch.sub("ab.xz")) == a + b)
    }

    @Test func reportsTruncationAndCorruption() throws {
        let scratch = ScratchDirectory()
        _ = try sample(scratch, "a", size: 500_000)
        try run(["xz", "-k", scratch.sub("a")])
        let whole = try Data(contentsOf: URL(fileURLWithPath: scratch.sub("a.xz")))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: scratch.sub("short.xz")))
        #expect(throws: XZDecoder.Failure.self) { _ = try decode(scratch.sub("short.xz")) }
        do {
            _ = try decode(scratch.sub("short.xz"))
        } catch let failure as XZDecoder.Failure {
            guard case .truncated = failure else { Issue.record("expected truncated, got \(failure)"); return }
        }
        var bad = whole
        bad[bad.count / 2] ^= 0x55
        try bad.write(to: URL(fileURLWithPath: scratch.sub("bad.xz")))
        do {
            _ = try decode(scratch.sub("bad.xz"))
            Issue.record("corrupt data decoded")
        } catch let failure as XZDecoder.Failure {
            guard case .corrupt = failure else { Issue.record("expected corrupt, got \(failure)"); return }
        }
    }

    /// The decoder's memory need is the stream's dictionary size, which whoever made the file
    /// chose: 512 MiB on a 100 KB file is refused under a lower limit, with both numbers.
    @Test func aDictionaryLargerThanTheMemoryLimitIsRefused() throws {
        let scratch = ScratchDirectory()
        let data = try sample(scratch, "small", size: 100_000)
        // hc3 and one thread: the encoder touches only what the small input needs.
        try run(["xz", "-T1", "-k", "--lzma2=dict=512MiB,mf=hc3", scratch.sub("small")])
        let input = try Data(contentsOf: URL(fileURLWithPath: scratch.sub("small.xz")))
        for limit: UInt64 in [64 << 20, XZDecoder.defaultMemoryLimit] {
            let decoder = try XZDecoder(memoryLimit: limit)
            var produced = 0
            #expect {
                try input.withUnsafeBytes { try decoder.decode($0) { produced += $0.count } }
                try decoder.finish { produced += $0.count }
            } throws: { error in
                guard case let XZDecoder.Failure.memoryLimit(needed, reported) = error else { return false }
                let text = "\(error)"
                return needed >= 512 << 20 && reported == limit && text.contains("needs 513 MiB")
                    && text.contains("limit of \(limit >> 20) MiB")
            }
            #expect(produced == 0)
        }
        // The data itself is fine: a limit above its need decodes it.
        let decoder = try XZDecoder(memoryLimit: 1 << 30)
        var output = Data()
        try input.withUnsafeBytes { try decoder.decode($0) { output.append(contentsOf: $0) } }
        try decoder.finish { output.append(contentsOf: $0) }
        #expect(output == data)
    }
}
