import Foundation
import Testing
import TestSupport
@testable import Transport

/// The server (the origin: `Served`) and mirrors of its `/content/` tree, each a test server
/// of its own with a folder of its own and a way of failing of its own.
final class Mirrored {
    let origin: Served
    private(set) var mirrors: [TestHTTPServer] = []
    /// Mirror URLs that no server answers (connection refused).
    private(set) var alternatives: [String] = []

    init(_ label: String = #function) throws {
        origin = try Served(label)
        try FileManager.default.createDirectory(atPath: origin.root + "/content", withIntermediateDirectories: true)
    }

    /// `content/name` of `size` random bytes at the origin; returns them.
    func makeFile(_ name: String, size: Int) throws -> Data { try origin.makeFile("content/" + name, size: size) }

    /// A mirror holding `files` (name → bytes) under its own `/content/`, misbehaving as the
    /// test server's query says (`drop=N`, `exit=N`, `stall=S`, `status=C`).
    @discardableResult
    func addMirror(_ files: [String: Data], misbehave: String? = nil) throws -> TestHTTPServer {
        let root = origin.scratch.sub("mirror\(alternatives.count)")
        try FileManager.default.createDirectory(atPath: root + "/content", withIntermediateDirectories: true)
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: root + "/content/" + name)) }
        let server = try TestHTTPServer(root: root, misbehave: misbehave)
        mirrors.append(server)
        alternatives.append(server.url("/content/"))
        return server
    }

    /// A mirror no one answers at.
    func addDeadMirror() { alternatives.append("http://127.0.0.1:1/content/") }

    func url(_ name: String) -> String { origin.url("/content/" + name) }
    func mirrorURL(_ index: Int, _ name: String) -> String { alternatives[index] + name }

    func options(_ base: TransferOptions = .fast) -> TransferOptions {
        var options = base
        options.mirrors = [ContentMirrors(prefix: origin.url("/content/"), alternatives: alternatives)]
        return options
    }

    /// Requests per path a mirror received (`ranges`: only those with a Range header).
    func stats(_ server: TestHTTPServer, ranges: Bool = false) throws -> [String: Int] {
        let data = try HTTPClient(options: .fast).fetch(server.url(ranges ? "/_stats?ranges=1" : "/_stats"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Int]) ?? [:]
    }
}

@Suite(.serialized) struct ContentMirrorTests {
    @Test func sourcesFollowTheLongestPrefixThenTheURLItself() {
        var options = TransferOptions()
        options.mirrors = [
            ContentMirrors(prefix: "http://server/content/", alternatives: ["http://10.1.0.5/content/", "not a url/", "http://10.2.0.5/c/"]),
            ContentMirrors(prefix: "http://server/content/drivers/", alternatives: ["http://10.9.0.9/drivers/"]),
        ]
        #expect(options.sources(for: "http://server/content/images/w.wim").urls
                == ["http://10.1.0.5/content/images/w.wim", "http://10.2.0.5/c/images/w.wim", "http://server/content/images/w.wim"])
        #expect(options.sources(for: "http://server/content/drivers/d.tar.xz").urls
                == ["http://10.9.0.9/drivers/d.tar.xz", "http://server/content/drivers/d.tar.xz"])
        #expect(options.sources(for: "http://elsewhere/content/w.wim").urls == ["http://elsewhere/content/w.wim"])
        #expect(!options.sources(for: "http://elsewhere/content/w.wim").hasCopies)
    }

    @Test func downloadMovesToTheNextMirrorAtTheSameByte() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 6 << 20)
        let first = try set.addMirror(["w.wim": data], misbehave: "drop=2000000")
        let second = try set.addMirror(["w.wim": data])
        let target = set.origin.scratch.sub("w.wim")
        let result = try HTTPClient(options: set.options()).download(set.url("w.wim"), to: target, expectedSHA256: sha256(data)) { _ in }
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
        #expect(result.sha256 == sha256(data))
        // The second mirror sent only what the first had not: one Range request, the remainder.
        #expect(result.sources == [ServedBytes(url: set.mirrorURL(0, "w.wim"), bytes: 2_000_000),
                                   ServedBytes(url: set.mirrorURL(1, "w.wim"), bytes: UInt64(data.count) - 2_000_000)])
        #expect(result.resumes == 1)
        #expect(try set.stats(first)["/content/w.wim"] == 1)
        #expect(try set.stats(second, ranges: true)["/content/w.wim"] == 1)
        #expect(try set.origin.stats()["/content/w.wim"] == nil)
        #expect(result.failures.map(\.url) == [set.mirrorURL(0, "w.wim")])
        #expect(result.failures.first?.passedOver == false)
        let summary = result.sourcesSummary
        #expect(summary.hasPrefix("served by \(set.mirrorURL(0, "w.wim")): 1.9 MiB; then \(set.mirrorURL(1, "w.wim")): 4.1 MiB"))
    }

    @Test func streamMovesOnWhenAMirrorDiesMidTransfer() throws {
        let set = try Mirrored()
        let data = try set.makeFile("s.wim", size: 5 << 20)
        // The first mirror's whole process ends after 1.5 MB: the connection breaks, and any
        // later one is refused.
        let first = try set.addMirror(["s.wim": data], misbehave: "exit=1500000")
        let second = try set.addMirror(["s.wim": data])
        var received = Data()
        let result = try HTTPClient(options: set.options()).stream(set.url("s.wim"), expectedSHA256: sha256(data), progress: { _ in }) {
            received.append(contentsOf: $0)
        }
        #expect(received == data)
        #expect(!first.isRunning)
        #expect(result.sources.map(\.url) == [set.mirrorURL(0, "s.wim"), set.mirrorURL(1, "s.wim")])
        let fromFirst = result.sources.first?.bytes ?? 0
        #expect(fromFirst > 0 && fromFirst <= 1_500_000)
        #expect(result.sources.last?.bytes == UInt64(data.count) - fromFirst)
        #expect(result.resumes == 1)
        #expect(try set.stats(second, ranges: true)["/content/s.wim"] == 1)
        #expect(try set.origin.stats()["/content/s.wim"] == nil)
    }

    @Test func rangeReaderMovesOnWhenAMirrorDies() throws {
        let set = try Mirrored()
        let data = try set.makeFile("r.wim", size: 10 << 20)
        let first = try set.addMirror(["r.wim": data], misbehave: "exit=1000000")
        try set.addMirror(["r.wim": data])
        let reader = try HTTPRangeReader(url: set.url("r.wim"), client: HTTPClient(options: set.options()))
        #expect(reader.size == UInt64(data.count))
        var read = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while read.count < data.count {
            let count = min(buffer.count, data.count - read.count)
            try buffer.withUnsafeMutableBytes { try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<count]), at: UInt64(read.count)) }
            read.append(contentsOf: buffer[0..<count])
        }
        #expect(read == data)
        #expect(!first.isRunning)
        // Once the first mirror died, every later block came from the second one.
        #expect(reader.sources.map(\.url) == [set.mirrorURL(0, "r.wim"), set.mirrorURL(1, "r.wim")])
        let fromFirst = reader.sources.first?.bytes ?? 0
        #expect(fromFirst > 0 && fromFirst <= 1_000_000)
        #expect(reader.sources.last?.bytes == UInt64(data.count) - fromFirst)
        #expect(try set.origin.stats()["/content/r.wim"] == nil)
    }

    @Test func mirrorWithoutTheFileIsPassedOver() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 1 << 20)
        let empty = try set.addMirror([:])
        try set.addMirror(["w.wim": data])
        let client = HTTPClient(options: set.options())
        let target = set.origin.scratch.sub("w.wim")
        let result = try client.download(set.url("w.wim"), to: target, expectedSHA256: sha256(data)) { _ in }
        #expect(result.sources == [ServedBytes(url: set.mirrorURL(1, "w.wim"), bytes: UInt64(data.count))])
        #expect(result.failures.count == 1)
        #expect(result.failures.first?.passedOver == true)
        #expect(result.failures.first?.reason.contains("HTTP 404") == true)
        // Asked once, never again for this file (a 404 is not retried).
        #expect(try set.stats(empty)["/content/w.wim"] == 1)
        var received = Data()
        let streamed = try client.stream(set.url("w.wim"), expectedSHA256: sha256(data), progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(received == data)
        #expect(streamed.sources.map(\.url) == [set.mirrorURL(1, "w.wim")])
        let reader = try HTTPRangeReader(url: set.url("w.wim"), client: client)
        var piece = [UInt8](repeating: 0, count: 1000)
        try piece.withUnsafeMutableBytes { try reader.read(into: $0, at: 5000) }
        #expect(Data(piece) == data[5000..<6000])
        #expect(reader.sources == [ServedBytes(url: set.mirrorURL(1, "w.wim"), bytes: 1000)], "a small read alone is sent as it is")
    }

    @Test func mirrorWithAnotherSizeIsPassedOver() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 4 << 20)
        var other = data
        other.append(contentsOf: [1, 2, 3])
        try set.addMirror(["w.wim": data], misbehave: "drop=1000000")
        try set.addMirror(["w.wim": other])
        let client = HTTPClient(options: set.options())
        let result = try client.download(set.url("w.wim"), to: set.origin.scratch.sub("w.wim"), expectedSHA256: sha256(data)) { _ in }
        #expect(result.sha256 == sha256(data))
        // The second mirror holds another version: the server itself continued at the same byte.
        #expect(result.sources == [ServedBytes(url: set.mirrorURL(0, "w.wim"), bytes: 1_000_000),
                                   ServedBytes(url: set.url("w.wim"), bytes: UInt64(data.count) - 1_000_000)])
        let passed = result.failures.first { $0.url == set.mirrorURL(1, "w.wim") }
        #expect(passed?.passedOver == true)
        #expect(passed?.reason.contains("another version") == true)
        #expect((try set.origin.stats(ranges: true))["/content/w.wim"] == 1)

        var received = Data()
        let streamed = try client.stream(set.url("w.wim"), expectedSHA256: sha256(data), progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(received == data)
        #expect(streamed.sources == [ServedBytes(url: set.mirrorURL(0, "w.wim"), bytes: 1_000_000),
                                     ServedBytes(url: set.url("w.wim"), bytes: UInt64(data.count) - 1_000_000)])
    }

    @Test func mirrorIgnoringRangesIsPassedOverOnceThereAreBytes() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 3 << 20)
        try set.addMirror(["w.wim": data], misbehave: "drop=1000000")
        try set.addMirror(["w.wim": data], misbehave: "noranges=1")
        let client = HTTPClient(options: set.options())
        // It could only send the whole file again: the server continues instead.
        let expected = [ServedBytes(url: set.mirrorURL(0, "w.wim"), bytes: 1_000_000),
                        ServedBytes(url: set.url("w.wim"), bytes: UInt64(data.count) - 1_000_000)]
        let result = try client.download(set.url("w.wim"), to: set.origin.scratch.sub("w.wim"), expectedSHA256: sha256(data)) { _ in }
        #expect(result.sources == expected)
        #expect(result.failures.contains { $0.url == set.mirrorURL(1, "w.wim") && $0.passedOver && $0.reason.contains("ignored the request for bytes from 1000000") })
        var received = Data()
        let streamed = try client.stream(set.url("w.wim"), expectedSHA256: sha256(data), progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(received == data)
        #expect(streamed.sources == expected)
        // A reader needs ranges from the start: the HEAD already tells, and the copy is passed over.
        var readerOptions = set.options()
        readerOptions.mirrors[0].alternatives.removeFirst()
        let reader = try HTTPRangeReader(url: set.url("w.wim"), client: HTTPClient(options: readerOptions))
        var piece = [UInt8](repeating: 0, count: 100)
        try piece.withUnsafeMutableBytes { try reader.read(into: $0, at: 0) }
        #expect(reader.sources.map(\.url) == [set.url("w.wim")])
        #expect(reader.failures.first?.reason.contains("cannot serve byte ranges") == true)
    }

    @Test func serverServesWhenEveryMirrorFails() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 2 << 20)
        set.addDeadMirror()
        try set.addMirror(["w.wim": data], misbehave: "status=503")
        let client = HTTPClient(options: set.options())
        let result = try client.download(set.url("w.wim"), to: set.origin.scratch.sub("w.wim"), expectedSHA256: sha256(data)) { _ in }
        #expect(result.sources == [ServedBytes(url: set.url("w.wim"), bytes: UInt64(data.count))])
        #expect(Set(result.failures.map(\.url)) == [set.mirrorURL(0, "w.wim"), set.mirrorURL(1, "w.wim")])
        #expect(result.failures.allSatisfy { !$0.passedOver })
        #expect(result.sourcesSummary.contains("served by \(set.url("w.wim")): 2.0 MiB"))
        #expect(result.sourcesSummary.contains("HTTP 503"))
        var received = Data()
        let streamed = try client.stream(set.url("w.wim"), expectedSHA256: sha256(data), progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(received == data)
        #expect(streamed.sources == [ServedBytes(url: set.url("w.wim"), bytes: UInt64(data.count))])
    }

    @Test func everySourceFailingIsRetriedInRoundsAfterAPause() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 1 << 20)
        set.addDeadMirror()
        let second = try set.addMirror(["w.wim": data])
        // The query travels with the path to every source: each answers 503 once.
        let url = set.url("w.wim?status=503&times=1")
        let result = try HTTPClient(options: set.options()).download(url, to: set.origin.scratch.sub("w.wim"),
                                                                      expectedSHA256: sha256(data)) { _ in }
        // Round one: refused, 503, 503 (the server too); round two: refused, then the mirror.
        #expect(result.sources == [ServedBytes(url: set.mirrorURL(1, "w.wim?status=503&times=1"), bytes: UInt64(data.count))])
        #expect(try set.stats(second)["/content/w.wim"] == 2)
        #expect(try set.origin.stats()["/content/w.wim"] == 1)

        // With no retries left after the first round, the last source's error is the answer.
        var once = set.options()
        once.retries = 0
        #expect {
            _ = try HTTPClient(options: once).download(set.url("w.wim?status=503"), to: set.origin.scratch.sub("x.wim"), expectedSHA256: nil) { _ in }
        } throws: { error in
            guard case let TransportError.http(failed, status, _) = error else { return false }
            return failed == set.url("w.wim?status=503") && status == 503
        }
    }

    @Test func stallMovesToTheNextSourceAfterTheStallTimeout() throws {
        let set = try Mirrored()
        let data = try set.makeFile("s.wim", size: 4 << 20)
        try set.addMirror(["s.wim": data], misbehave: "stall=30")
        try set.addMirror(["s.wim": data])
        var options = set.options()
        options.stallTimeout = 1
        let client = HTTPClient(options: options)
        var started = Date()
        var received = Data()
        let streamed = try client.stream(set.url("s.wim"), expectedSHA256: sha256(data), progress: { _ in }) { received.append(contentsOf: $0) }
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(received == data)
        // The stalled mirror sent half, the next one the other half.
        #expect(streamed.sources == [ServedBytes(url: set.mirrorURL(0, "s.wim"), bytes: UInt64(data.count / 2)),
                                     ServedBytes(url: set.mirrorURL(1, "s.wim"), bytes: UInt64(data.count - data.count / 2))])
        // Whichever notices first: our own silence check or curl's low-speed limit.
        let reason = streamed.failures.first?.reason ?? ""
        #expect(reason.contains("no data arrived") || reason.contains("too slow"))

        started = Date()
        let target = set.origin.scratch.sub("s.wim")
        let downloaded = try client.download(set.url("s.wim"), to: target, expectedSHA256: sha256(data)) { _ in }
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(downloaded.sources == streamed.sources)
    }

    @Test func partialFromOneMirrorIsContinuedByAnotherInTheNextRun() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 3 << 20)
        try set.addMirror(["w.wim": data], misbehave: "drop=1200000")
        try set.addMirror(["w.wim": data])
        let target = set.origin.scratch.sub("w.wim")
        // The first run only knows the dropping mirror and a server that does not answer: it
        // ends with 1.2 MB in the partial file.
        let deadServer = "http://127.0.0.1:1/content/"
        var firstRun = TransferOptions.fast
        firstRun.retries = 0
        firstRun.mirrors = [ContentMirrors(prefix: deadServer, alternatives: [set.alternatives[0]])]
        #expect(throws: TransportError.self) {
            _ = try HTTPClient(options: firstRun).download(deadServer + "w.wim", to: target, expectedSHA256: sha256(data)) { _ in }
        }
        let kept = (try? FileManager.default.attributesOfItem(atPath: target + ".partial")[.size] as? Int) ?? 0
        #expect(kept == 1_200_000)
        // The next run's first choice is another mirror (other ETags): it continues, no restart.
        var nextRun = TransferOptions.fast
        nextRun.mirrors = [ContentMirrors(prefix: deadServer, alternatives: [set.alternatives[1]])]
        let result = try HTTPClient(options: nextRun).download(deadServer + "w.wim", to: target, expectedSHA256: sha256(data)) { _ in }
        #expect(result.resumes == 1)
        #expect(result.sources == [ServedBytes(url: set.mirrorURL(1, "w.wim"), bytes: UInt64(data.count) - 1_200_000)])
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
    }

    @Test func wrongCopyOnAMirrorIsFetchedAgainFromTheServer() throws {
        let set = try Mirrored()
        let data = try set.makeFile("w.wim", size: 1 << 20)
        var wrong = data
        wrong[1000] ^= 0xFF
        try set.addMirror(["w.wim": wrong])
        let target = set.origin.scratch.sub("w.wim")
        let result = try HTTPClient(options: set.options()).download(set.url("w.wim"), to: target, expectedSHA256: sha256(data)) { _ in }
        #expect(result.refetchedFromOrigin)
        #expect(result.sources == [ServedBytes(url: set.url("w.wim"), bytes: UInt64(data.count))])
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
        #expect(result.sourcesSummary.contains("fetched again from the server"))
        // A stream cannot take back what it delivered: the wrong copy ends it, and the error
        // names the mirror that sent it.
        #expect {
            _ = try HTTPClient(options: set.options()).stream(set.url("w.wim"), expectedSHA256: sha256(data), progress: { _ in }) { _ in }
        } throws: { error in
            guard case let TransportError.checksumMismatch(url, _, _) = error else { return false }
            return url == set.mirrorURL(0, "w.wim")
        }
    }
}
