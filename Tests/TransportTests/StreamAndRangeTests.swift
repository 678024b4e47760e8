import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Transport

@Suite(.serialized) struct StreamAndRangeTests {
    @Test func streamDeliversEachByteOnceAcrossDrops() throws {
        let served = try Served()
        let data = try served.makeFile("s.bin", size: 3 << 20)
        var received = Data()
        let result = try HTTPClient(options: .fast).stream(served.url("/s.bin?drop=500000&times=2"), expectedSHA256: sha256(data),
                                                           progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(received == data)
        #expect(result.resumes == 2)
        #expect(result.bytes == UInt64(data.count))
    }

    @Test func streamWithoutRangesSkipsWhatWasDelivered() throws {
        let served = try Served()
        let data = try served.makeFile("s.bin", size: 1 << 20)
        var received = Data()
        _ = try HTTPClient(options: .fast).stream(served.url("/s.bin?drop=300000&times=1&noranges=1"), expectedSHA256: sha256(data),
                                                  progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(received == data)
    }

    @Test func streamChecksumMismatchThrows() throws {
        let served = try Served()
        let data = try served.makeFile("s.bin", size: 100_000)
        #expect {
            _ = try HTTPClient(options: .fast).stream(served.url("/s.bin?corrupt=99999"), expectedSHA256: sha256(data),
                                                      progress: { _ in }) { _ in }
        } throws: { error in
            if case TransportError.checksumMismatch = error { return true }
            return false
        }
    }

    @Test func streamSinkErrorNamesOffset() throws {
        struct Full: Error {}
        let served = try Served()
        try served.makeFile("s.bin", size: 100_000)
        #expect {
            _ = try HTTPClient(options: .fast).stream(served.url("/s.bin"), expectedSHA256: nil, progress: { _ in }) { _ in throw Full() }
        } throws: { error in
            guard case let TransportError.consumer(_, offset, _) = error else { return false }
            return offset == 0
        }
    }

    @Test func rangeReaderRandomAndSequentialReads() throws {
        let served = try Served()
        let data = try served.makeFile("image.wim", size: 10 << 20 + 12345)
        let reader = try HTTPRangeReader(url: served.url("/image.wim"), client: HTTPClient(options: .fast))
        #expect(reader.size == UInt64(data.count))
        // Sequential 64 KiB chunks: one request per 4 MiB block.
        var buffer = [UInt8](repeating: 0, count: 65536)
        var offset = 0
        while offset < data.count {
            let count = min(buffer.count, data.count - offset)
            try buffer.withUnsafeMutableBytes { try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<count]), at: UInt64(offset)) }
            #expect(Data(buffer[0..<count]) == data[offset..<(offset + count)])
            offset += count
        }
        #expect(reader.requestCount == 3)
        // Random reads, some across block boundaries, all from the cache now.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let count = Int.random(in: 1...200_000, using: &generator)
            let at = Int.random(in: 0...(data.count - count), using: &generator)
            try reader.expectBytes(count, at: at, of: data)
        }
        #expect(reader.requestCount == 3)
        var tail = [UInt8](repeating: 0, count: 10)
        #expect {
            try tail.withUnsafeMutableBytes { try reader.read(into: $0, at: UInt64(data.count - 5)) }
        } throws: { error in
            if case TransportError.truncated = error { return true }
            return false
        }
    }

    /// A forward run of reads has the next blocks fetched ahead (more as the run goes on), each
    /// once: blocks read after that send no request, and none is asked for twice.
    @Test func rangeReaderFetchesAheadOfAForwardRun() throws {
        let served = try Served()
        let data = try served.makeFile("image.wim", size: 24 << 20)
        let reader = try HTTPRangeReader(url: served.url("/image.wim"), client: HTTPClient(options: .fast))
        func read(block: Int) throws { try reader.expectBytes(1000, at: block * (4 << 20) + 123, of: data) }
        // Blocks 0 to 3 in order: by then the read-ahead has claimed 4 and 5, the last two.
        // The first read stands alone (nothing came before it): sent as it is, not as block 0.
        for block in 0...3 { try read(block: block) }
        let deadline = Date().addingTimeInterval(20)
        while reader.requestCount < 6, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(reader.requestCount == 6, "the first read, then blocks 1 to 5, each fetched once")
        for block in 4...5 { try read(block: block) }
        #expect(reader.requestCount == 6, "blocks 4 and 5 were there before they were read")
    }

    /// A small read away from the others (a WIM's header, a small file of a partial extract) is
    /// sent as it is, not as the 4 MiB around it; a second read near it goes through the block.
    @Test func rangeReaderSendsAStandaloneSmallReadAsItIs() throws {
        let served = try Served()
        let data = try served.makeFile("image.wim", size: 24 << 20)
        let reader = try HTTPRangeReader(url: served.url("/image.wim"), client: HTTPClient(options: .fast))
        func read(at: Int) throws { try reader.expectBytes(300, at: at, of: data) }
        for block in [0, 3, 5] { try read(at: block * (4 << 20) + 1000) }
        #expect(reader.requestCount == 3, "three reads far apart, three small requests")
        try read(at: 5 * (4 << 20) + 9000)
        try read(at: 5 * (4 << 20) + 20000)
        #expect(reader.requestCount == 4, "reads staying in block 5 fetch it once")
        try reader.expectBytes(HTTPRangeReader.isolatedReadLimit + 1, at: 1 << 20, of: data)
        #expect(reader.requestCount == 5, "a larger read goes through its block")
    }

    /// Reads the caller marks as standing alone (a WIM's chunk tables while an apply plans) are
    /// sent as they are even one block after another, and leave the run of reads alone; from
    /// a block already held they cost no request.
    @Test func standaloneReadsAreSentAsTheyAre() throws {
        let served = try Served()
        let data = try served.makeFile("image.wim", size: 24 << 20)
        let reader = try HTTPRangeReader(url: served.url("/image.wim"), client: HTTPClient(options: .fast))
        for block in 0..<5 { try reader.expectBytes(2000, at: block * (4 << 20) + 100, of: data, standalone: true) }
        #expect(reader.requestCount == 5, "one small request each, no block and nothing read ahead")
        try reader.expectBytes(1 << 20, at: 5 << 20, of: data)
        #expect(reader.requestCount == 6, "a large read fetches its block")
        try reader.expectBytes(3000, at: (5 << 20) + 7, of: data, standalone: true)
        #expect(reader.requestCount == 6, "a standalone read from a held block is copied from it")
    }

    /// A client's requests to one server share a connection (HTTP keep-alive, checked against
    /// real nginx): a WIM read in place asks for a block at a time, and opening a connection for
    /// each, over https a TLS handshake, cost more than the block.
    @Test func rangeReadsShareOneConnection() throws {
        let scratch = ScratchDirectory()
        let root = scratch.sub("root")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var random = SplitMix64(seed: 19)
        let data = Data((0..<(14 << 20)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        try data.write(to: URL(fileURLWithPath: root + "/image.wim"))
        let port = try Loopback.freePort()
        let accessLog = scratch.sub("access.log")
        let nginx = try Nginx(scratch, port: port, server: "root \(root); access_log \(accessLog) connections;",
                              http: "log_format connections '$connection $connection_requests $status';")
        let client = HTTPClient(options: .fast)
        let reader = try HTTPRangeReader(url: "http://127.0.0.1:\(port)/image.wim", client: client)
        for at in stride(from: 0, to: data.count, by: 1 << 20) { try reader.expectBytes(1 << 20, at: at, of: data) }
        let lines = try String(contentsOfFile: accessLog, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == reader.requestCount + 1, "the HEAD, then one request a block: \(lines)")
        #expect(Set(lines.map { $0.split(separator: " ")[0] }).count == 1, "one connection: \(lines)")
        #expect(lines.allSatisfy { $0.hasSuffix(" 206") || $0.hasSuffix(" 200") }, "\(lines)")
        withExtendedLifetime(nginx) {}
    }

    @Test func rangeReaderConcurrentReads() throws {
        let served = try Served()
        let data = try served.makeFile("image.wim", size: 9 << 20)
        let reader = try HTTPRangeReader(url: served.url("/image.wim"), client: HTTPClient(options: .fast))
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<20 {
                // Larger than a read sent as it is (`isolatedReadLimit`): these go through blocks.
                let length = HTTPRangeReader.isolatedReadLimit + 4096
                let at = (worker * 1_000_003 + i * 77_777) % (data.count - length)
                var piece = [UInt8](repeating: 0, count: length)
                do {
                    try piece.withUnsafeMutableBytes { try reader.read(into: $0, at: UInt64(at)) }
                    if Data(piece) != data[at..<(at + length)] { failures.add() }
                } catch { failures.add() }
            }
        }
        #expect(failures.value == 0)
        #expect(reader.requestCount == 3)
    }

    @Test func rangeReaderNeedsRanges() throws {
        let served = try Served()
        try served.makeFile("image.wim", size: 1000)
        #expect {
            _ = try HTTPRangeReader(url: served.url("/image.wim?noranges=1"), client: HTTPClient(options: .fast))
        } throws: { error in
            "\(error)".contains("cannot serve byte ranges")
        }
    }

    @Test func rangeReaderNoticesChangedFile() throws {
        let served = try Served()
        try served.makeFile("image.wim", size: 9 << 20)
        let reader = try HTTPRangeReader(url: served.url("/image.wim"), client: HTTPClient(options: .fast))
        var piece = [UInt8](repeating: 0, count: 100)
        try piece.withUnsafeMutableBytes { try reader.read(into: $0, at: 0) }
        try served.makeFile("image.wim", size: 9 << 20)
        #expect {
            try piece.withUnsafeMutableBytes { try reader.read(into: $0, at: 5 << 20) }
        } throws: { error in
            if case TransportError.remoteChanged = error { return true }
            return false
        }
    }

    @Test func postRecordsBodyAndToken() throws {
        let served = try Served()
        var options = TransferOptions.fast
        options.bearerToken = BearerToken("s3cret", for: served.url("/"))
        let client = HTTPClient(options: options)
        let json = Data(#"{"event":"started","step":3}"#.utf8)
        let answer = try client.post(served.url("/post/events?status=503&times=1"), json: json)
        #expect(answer.status == 200)
        #expect(String(decoding: answer.body, as: UTF8.self).contains("true"))
        let lines = try String(contentsOfFile: served.root + "/posts.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1)
        let record = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        let headers = record?["headers"] as? [String: String]
        #expect(headers?["authorization"] == "Bearer s3cret")
        #expect(headers?["content-type"] == "application/json")
        #expect((record?["body"] as? [String: Any])?["event"] as? String == "started")
        // A 4xx is the caller's to handle: returned at once, never retried.
        let rejected = try client.post(served.url("/post/bad?status=422"), json: json)
        #expect(rejected.status == 422)
        #expect((try served.stats())["/post/bad"] == 1)
    }
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

extension HTTPRangeReader {
    /// Reads `count` bytes at `at` (with `readStandalone` when `standalone`) and expects them to
    /// be `data`'s there.
    func expectBytes(_ count: Int, at: Int, of data: Data, standalone: Bool = false,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        var piece = [UInt8](repeating: 0, count: count)
        try piece.withUnsafeMutableBytes { buffer in
            if standalone {
                try readStandalone(into: buffer, at: UInt64(at))
            } else {
                try read(into: buffer, at: UInt64(at))
            }
        }
        #expect(Data(piece) == data[at..<(at + count)], "\(count) bytes at \(at)", sourceLocation: sourceLocation)
    }
}
