import Digests
import Foundation
import TestSupport
import Testing
import WIM

/// A pipable WIM read from a stream, decoded on several threads: the same blobs, in the same
/// order, as the one-thread reader; blobs not needed read past; a corrupt chunk, a truncated
/// stream and a failing sink end the read with an error naming the place, never a hang.
@Suite("pipable streams decoded on every core")
struct PipableStreamTests {
    /// Records each blob delivered: its hash, its data's SHA-1, the order.
    final class Recorder: BlobSink {
        var blobs: [(SHA1Digest, SHA1Digest)] = []
        var failAt: Int?
        private let hasher = SHA1Hasher()
        func beginBlob(_ blob: BlobDescriptor) throws {
            if let failAt, blobs.count == failAt { throw WIMError.pipable(offset: 0, reason: "the sink refused blob \(failAt)") }
        }
        func blobData(_ data: UnsafeRawBufferPointer) throws { hasher.update(data) }
        func endBlob(_ blob: BlobDescriptor) throws { blobs.append((blob.hash, hasher.finish())) }
    }

    static func wim(_ scratch: ScratchDirectory, compress: String) throws -> String {
        let first = scratch.sub("first"), second = scratch.sub("second")
        for i in 0..<12 {
            try write(testBytes(150_000 + i * 40_000, seed: UInt64(i), compressible: i % 2 == 0), to: first + "/file\(i).bin")
        }
        try write(testBytes(3_000_000, seed: 99, compressible: true), to: second + "/big.txt")
        try write(testBytes(70_000, seed: 5), to: second + "/small.bin")
        let wim = scratch.sub("stream-\(compress).wim")
        try run(["wimlib-imagex", "capture", first, wim, "One", "--pipable", "--compress=\(compress)"])
        try run(["wimlib-imagex", "append", second, wim, "Two", "--pipable"])
        return wim
    }

    /// The blobs image `image` needs, read from the file with `threads` decoding threads.
    static func read(_ wim: String, image: Int, threads: Int, sink: Recorder = Recorder(), bytes: [UInt8]? = nil) throws -> Recorder {
        let path = bytes == nil ? wim : wim + ".changed"
        if let bytes { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let stream = try PipableStream(descriptor: fd, name: path)
        let metadata = try stream.readMetadata(image: image)
        var needed: [SHA1Digest: UInt64] = [:]
        for entry in metadata.entries where !entry.dataHash.isZero { needed[entry.dataHash] = 1 }
        try stream.readBlobs(needed, into: sink, threads: threads)
        return sink
    }

    @Test(arguments: ["LZX", "XPRESS", "LZMS"])
    func severalThreadsDeliverWhatOneDoes(compress: String) throws {
        let scratch = ScratchDirectory()
        let wim = try Self.wim(scratch, compress: compress)
        for image in [1, 2] {
            let one = try Self.read(wim, image: image, threads: 1)
            let four = try Self.read(wim, image: image, threads: 4)
            #expect(!one.blobs.isEmpty)
            #expect(one.blobs.map(\.0) == four.blobs.map(\.0))
            #expect(four.blobs.allSatisfy { $0.0 == $0.1 }, "a blob's data does not hash to its name")
        }
    }

    @Test func aCorruptChunkIsNamedAndNothingHangs() throws {
        let scratch = ScratchDirectory()
        let wim = try Self.wim(scratch, compress: "LZX")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: wim)))
        // Damage the data of image 1 (its blobs come after the metadata, well into the file).
        for i in stride(from: bytes.count / 3, to: bytes.count / 3 + 4000, by: 3) { bytes[i] ^= 0x5A }
        #expect(throws: WIMError.self) { _ = try Self.read(wim, image: 1, threads: 3, bytes: bytes) }
        // Cut short: the stream ends early.
        do {
            _ = try Self.read(wim, image: 1, threads: 3, bytes: Array(bytes.prefix(bytes.count / 2)))
            Issue.record("a truncated stream was read whole")
        } catch {
            #expect("\(error)".contains("ended early") || "\(error)".contains("corrupt") || "\(error)".contains("SHA-1"), "\(error)")
        }
    }

    @Test func aFailingSinkStopsTheRead() throws {
        let scratch = ScratchDirectory()
        let wim = try Self.wim(scratch, compress: "LZX")
        let sink = Recorder()
        sink.failAt = 3
        #expect(throws: WIMError.self) { _ = try Self.read(wim, image: 1, threads: 2, sink: sink) }
        #expect(sink.blobs.count == 3)
    }
}
