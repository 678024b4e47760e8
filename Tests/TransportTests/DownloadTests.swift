import Foundation
import Testing
import TestSupport
@testable import Transport

@Suite(.serialized) struct DownloadTests {
    @Test func downloadsLargeFileIntact() throws {
        let served = try Served()
        let data = try served.makeFile("big.bin", size: 20 << 20)
        let target = served.scratch.sub("big.bin")
        var reports = [TransferProgress]()
        let result = try HTTPClient(options: .fast).download(served.url("/big.bin"), to: target, expectedSHA256: sha256(data)) {
            reports.append($0)
        }
        #expect(result.bytes == UInt64(data.count))
        #expect(result.sha256 == sha256(data))
        #expect(result.resumes == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
        #expect(!FileManager.default.fileExists(atPath: target + ".partial"))
        #expect(reports.last?.bytes == UInt64(data.count))
        #expect(reports.last?.total == UInt64(data.count))
    }

    @Test func resumesAfterDrops() throws {
        let served = try Served()
        let data = try served.makeFile("f.bin", size: 3 << 20)
        let target = served.scratch.sub("f.bin")
        let result = try HTTPClient(options: .fast).download(served.url("/f.bin?drop=700000&times=2"), to: target,
                                                             expectedSHA256: sha256(data)) { _ in }
        #expect(result.resumes >= 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
        #expect((try served.stats(ranges: true))["/f.bin"] ?? 0 >= 1)
    }

    @Test func resumesLeftoverPartial() throws {
        let served = try Served()
        let data = try served.makeFile("f.bin", size: 1 << 20)
        let target = served.scratch.sub("f.bin")
        try data.prefix(300_000).write(to: URL(fileURLWithPath: target + ".partial"))
        let result = try HTTPClient(options: .fast).download(served.url("/f.bin"), to: target, expectedSHA256: sha256(data)) { _ in }
        #expect(result.resumes == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == data)
        #expect((try served.stats(ranges: true))["/f.bin"] == 1)
    }

    @Test func leftoverPartialOfAnotherVersionStartsOver() throws {
        let served = try Served()
        let data = try served.makeFile("f.bin", size: 1 << 20)
        let target = served.scratch.sub("f.bin")
        // An earlier run's partial of a different (older) file: garbage bytes, an ETag that no longer matches.
        var once = TransferOptions.fast
        once.retries = 0
        _ = try? HTTPClient(options: once).download(served.url("/f.bin?drop=200000"), to: target, expectedSHA256: nil) { _ in }
        let client = HTTPClient(options: .fast)
        #expect(FileManager.default.fileExists(atPath: target + ".partial"))
        let fresh = try served.makeFile("f.bin", size: 1 << 20)
        #expect(fresh != data)
        let result = try client.download(served.url("/f.bin"), to: target, expectedSHA256: sha256(fresh)) { _ in }
        #expect(result.sha256 == sha256(fresh))
    }

    @Test func checksumMismatchLeavesNothing() throws {
        let served = try Served()
        let data = try served.makeFile("f.bin", size: 100_000)
        let target = served.scratch.sub("f.bin")
        #expect {
            _ = try HTTPClient(options: .fast).download(served.url("/f.bin?corrupt=5000"), to: target, expectedSHA256: sha256(data)) { _ in }
        } throws: { error in
            guard case let TransportError.checksumMismatch(url, expected, _) = error else { return false }
            return url.contains("corrupt") && expected == sha256(data)
        }
        #expect(!FileManager.default.fileExists(atPath: target))
        #expect(!FileManager.default.fileExists(atPath: target + ".partial"))
    }

    @Test func retriesServiceUnavailable() throws {
        let served = try Served()
        let data = try served.makeFile("f.bin", size: 10_000)
        let target = served.scratch.sub("f.bin")
        let result = try HTTPClient(options: .fast).download(served.url("/f.bin?status=503&times=2"), to: target,
                                                             expectedSHA256: sha256(data)) { _ in }
        #expect(result.bytes == 10_000)
        #expect((try served.stats())["/f.bin"] == 3)
    }

    @Test func notFoundIsHTTPErrorWithoutRetry() throws {
        let served = try Served()
        let target = served.scratch.sub("missing.bin")
        #expect {
            _ = try HTTPClient(options: .fast).download(served.url("/missing.bin"), to: target, expectedSHA256: nil) { _ in }
        } throws: { error in
            guard case let TransportError.http(_, status, message) = error else { return false }
            return status == 404 && message.contains("no such file")
        }
        #expect((try served.stats())["/missing.bin"] == 1)
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test func connectionRefusedIsNetworkErrorAfterRetries() throws {
        let scratch = ScratchDirectory()
        let started = Date()
        #expect {
            _ = try HTTPClient(options: .fast).download("http://127.0.0.1:1/x.bin", to: scratch.sub("x"), expectedSHA256: nil) { _ in }
        } throws: { error in
            guard case let TransportError.network(url, reason, attempts) = error else { return false }
            return url.hasSuffix("/x.bin") && attempts == 3 && !reason.isEmpty
        }
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func stallIsAbortedAndResumed() throws {
        let served = try Served()
        let data = try served.makeFile("f.bin", size: 1 << 20)
        let target = served.scratch.sub("f.bin")
        var options = TransferOptions.fast
        options.stallTimeout = 1
        let started = Date()
        let result = try HTTPClient(options: options).download(served.url("/f.bin?stall=5&times=1"), to: target,
                                                               expectedSHA256: sha256(data)) { _ in }
        #expect(result.resumes == 1)
        #expect(Date().timeIntervalSince(started) < 4.5)
    }

    @Test func refusesWhenDiskTooSmall() throws {
        let served = try Served()
        try served.makeFile("big.bin", size: 20 << 20)
        let target = served.scratch.sub("big.bin")
        let client = HTTPClient(options: .fast, freeSpace: { _ in 1 << 20 })
        #expect {
            _ = try client.download(served.url("/big.bin"), to: target, expectedSHA256: nil) { _ in }
        } throws: { error in
            guard case let TransportError.noSpace(_, needed, available) = error else { return false }
            return needed == 20 << 20 && available == 1 << 20
        }
        let partial = (try? FileManager.default.attributesOfItem(atPath: target + ".partial")[.size] as? Int) ?? 0
        #expect(partial == 0)
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test func cancellationStops() throws {
        let served = try Served()
        try served.makeFile("f.bin", size: 1 << 20)
        var options = TransferOptions.fast
        options.isCancelled = { true }
        #expect(throws: TransportError.cancelled(url: served.url("/f.bin"))) {
            _ = try HTTPClient(options: options).download(served.url("/f.bin"), to: served.scratch.sub("f"), expectedSHA256: nil) { _ in }
        }
    }

    @Test func rejectsBadURLs() {
        for url in ["ftp://x/y", "file:///etc/passwd", "http://host/a b", "http://host/\u{7}", "not a url"] {
            #expect(throws: TransportError.invalidURL(url)) { _ = try HTTPClient().fetch(url) }
        }
    }

    @Test func fetchHonoursLimit() throws {
        let served = try Served()
        let data = try served.makeFile("small.json", size: 5000)
        #expect(try HTTPClient(options: .fast).fetch(served.url("/small.json")) == data)
        #expect(throws: TransportError.tooLarge(url: served.url("/small.json"), limit: 1000)) {
            _ = try HTTPClient(options: .fast).fetch(served.url("/small.json"), limit: 1000)
        }
    }

    @Test func headReportsSizeAndRanges() throws {
        let served = try Served()
        try served.makeFile("f.bin", size: 12345)
        let remote = try HTTPClient(options: .fast).head(served.url("/f.bin"))
        #expect(remote.size == 12345)
        #expect(remote.acceptsRanges)
        #expect(remote.etag != nil)
        #expect(try HTTPClient(options: .fast).head(served.url("/f.bin?noranges=1")).acceptsRanges == false)
    }
}
