import Digests
import Foundation
import TestSupport
@testable import Transport

/// A served folder with a test server, and helpers to make files and read server stats.
final class Served {
    let scratch: ScratchDirectory
    let root: String
    let server: TestHTTPServer

    init(_ label: String = #function) throws {
        scratch = ScratchDirectory(label)
        root = scratch.sub("www")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        server = try TestHTTPServer(root: root)
    }

    func url(_ path: String) -> String { server.url(path) }

    /// Random bytes written to `root/name`; returns them.
    @discardableResult
    func makeFile(_ name: String, size: Int) throws -> Data {
        var generator = SystemRandomNumberGenerator()
        var words = [UInt64](repeating: 0, count: (size + 7) / 8)
        for i in words.indices { words[i] = generator.next() }
        let data = words.withUnsafeBytes { Data($0.prefix(size)) }
        try data.write(to: URL(fileURLWithPath: root + "/" + name))
        return data
    }

    func stats(ranges: Bool = false) throws -> [String: Int] {
        let data = try HTTPClient(options: .fast).fetch(url(ranges ? "/_stats?ranges=1" : "/_stats"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Int]) ?? [:]
    }
}

func sha256(_ data: Data) -> String { SHA256Hasher.hex(of: data) }

extension TransferOptions {
    /// Short pauses so failing paths finish quickly.
    static var fast: TransferOptions {
        TransferOptions(connectTimeout: 2, stallTimeout: 5, retries: 2, retryDelay: 0.05)
    }
}
