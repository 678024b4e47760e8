import Foundation
import TestSupport
import Testing

/// The production setup for content at wire speed (issue 19): Debian's nginx in front of
/// imprint-server started with `--content-accel-redirect`. The server checks every /content
/// request as it always does and answers with X-Accel-Redirect; nginx sends the file (sendfile,
/// ranges). What the server refuses stays refused; nginx's internal location cannot be asked
/// for directly.
@Suite("nginx sends /content for imprint-server", .serialized)
struct ContentAccelTests {
    @Test func nginxServesWhatTheServerAllowsAndNothingElse() throws {
        let scratch = ScratchDirectory()
        let content = scratch.sub("content")
        try FileManager.default.createDirectory(atPath: content + "/images", withIntermediateDirectories: true)
        let image = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) })
        try image.write(to: URL(fileURLWithPath: content + "/images/x y.wim"))
        try Data("secret".utf8).write(to: URL(fileURLWithPath: content + "/images/.hidden"))
        // nginx's workers run as www-data: the folders and the file must be theirs to read (the
        // scratch folder's own, never its parents: /tmp must keep its sticky 1777).
        for folder in [scratch.path, content, content + "/images"] { chmod(folder, 0o755) }
        chmod(content + "/images/x y.wim", 0o644)
        chmod(content + "/images/.hidden", 0o644)

        let server = try ServerProcess(arguments: ["--data", scratch.sub("data"), "--content", content, "--boot", scratch.sub("boot"),
                                                   "--admin-token", "accel-admin", "--content-accel-redirect", "/protected-content/"])
        let port = try Loopback.freePort()
        let nginx = try Nginx(scratch, port: port, server: """
            location / { proxy_pass http://127.0.0.1:\(server.port); proxy_http_version 1.1; }
            location /protected-content/ { internal; alias \(content)/; }
            """)
        defer { withExtendedLifetime(nginx) {} }
        let front = "http://127.0.0.1:\(port)"
        func get(_ url: String, _ headers: [String] = []) throws -> (status: Int, body: Data) {
            let out = scratch.sub("out-\(UUID().uuidString.prefix(8))")
            var arguments = ["curl", "-sS", "--path-as-is", "-o", out, "-w", "%{http_code}"]
            for header in headers { arguments += ["-H", header] }
            let status = Int(try run(arguments + [url], allowFailure: true).output) ?? 0
            return (status, FileManager.default.contents(atPath: out) ?? Data())
        }
        // Through nginx: the whole file, and a range.
        let whole = try get(front + "/content/images/x%20y.wim")
        #expect(whole.status == 200 && whole.body == image, "\(whole.status), \(whole.body.count) bytes")
        let range = try get(front + "/content/images/x%20y.wim", ["Range: bytes=1000000-1000999"])
        #expect(range.status == 206 && range.body == image.subdata(in: 1_000_000..<1_001_000))
        // The server's refusals stand; nginx's internal location is not reachable from outside.
        #expect(try get(front + "/content/images/.hidden").status == 404)
        #expect(try get(front + "/content/images/%2e%2e/%2e%2e/etc/passwd").status == 404)
        #expect(try get(front + "/protected-content/images/x%20y.wim").status == 404)
        // Asked directly, the server names the location and sends no body.
        let direct = try run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "http://127.0.0.1:\(server.port)/content/images/x%20y.wim"]).output
        #expect(direct.lowercased().contains("x-accel-redirect: /protected-content/images/x%20y.wim"), "\(direct)")
    }
}
