import Foundation
import TestSupport
import Testing

/// The `imprint-server` executable, started as an administrator would, on a random port.
final class ServerProcess {
    let port: Int
    private let process = Process()
    /// The server's output, for the failure message.
    let output = Pipe()

    static var binary: String {
        for configuration in ["debug", "release"] {
            let candidate = packageRoot.appendingPathComponent(".build/\(configuration)/imprint-server").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "imprint-server"
    }

    /// `--bind` and `--public-url` are added: a free port, chosen first because the public URL
    /// (which the server requires) names it; https when the arguments turn TLS on.
    init(arguments: [String]) throws {
        let port = try Loopback.freePort()
        let scheme = arguments.contains("--tls-certificate") ? "https" : "http"
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--bind", "127.0.0.1:\(port)", "--public-url", "\(scheme)://127.0.0.1:\(port)"] + arguments
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Byte by byte up to the line that names the port (a buffered read could wait for more).
        var line = Data()
        let reader = output.fileHandleForReading
        while true {
            let byte = reader.readData(ofLength: 1)
            if byte.isEmpty || byte.first == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("imprint-server listening on "), let port = text.split(separator: ":").last.flatMap({ Int($0) }) else {
            process.terminate()
            throw POSIXError(.ECONNREFUSED)
        }
        self.port = port
    }

    /// An admin API call (`path` after /api/v1/admin) with curl: the answer's JSON object.
    func admin(_ method: String, _ path: String, json body: String? = nil, token: String) throws -> [String: Any] {
        var arguments = ["curl", "-sS", "-X", method, "-H", "Authorization: Bearer \(token)"]
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        let output = try run(arguments + ["http://127.0.0.1:\(port)/api/v1/admin" + path]).stdout
        return (try? JSONSerialization.jsonObject(with: output)) as? [String: Any] ?? [:]
    }

    /// The image library's job `id` once it is in one of `states` (polled every 0.1 s, 60 s at most).
    func libraryJob(_ id: String, token: String, until states: Set<String> = ["succeeded", "failed"]) throws -> [String: Any] {
        for _ in 0..<600 {
            let job = try admin("GET", "/library/jobs/\(id)", token: token)
            if states.contains(job["state"] as? String ?? "") { return job }
            usleep(100_000)
        }
        return [:]
    }

    /// SIGKILL, as a power cut or the OOM killer would stop it: nothing runs on the way out.
    func kill() throws {
        guard Glibc.kill(process.processIdentifier, SIGKILL) == 0 else { throw POSIXError(.ESRCH) }
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

@Suite(.serialized)
struct EndToEndTests {
    /// The real agent against the real server: check-in, the sequence, the WIM streamed from
    /// /content with Range reads, every event stored and the deployment ended succeeded.
    @Test func agentDeploysAWIMFromTheServerOntoALoopDisk() throws {
        let scratch = ScratchDirectory()
        let content = scratch.sub("content")
        try FileManager.default.createDirectory(atPath: content + "/images", withIntermediateDirectories: true)
        let tree = scratch.sub("tree")
        try FileManager.default.createDirectory(atPath: tree + "/Windows/System32", withIntermediateDirectories: true)
        let explorer = Data((0..<(512 * 1024)).map { _ in UInt8.random(in: 0...255) })
        try explorer.write(to: URL(fileURLWithPath: tree + "/Windows/explorer.exe"))
        try Data("regf".utf8).write(to: URL(fileURLWithPath: tree + "/Windows/System32/SYSTEM"))
        try run(["wimlib-imagex", "capture", tree, content + "/images/x.wim", "Windows Test", "--compress=LZX"])
        let disk = try LoopDisk(scratch, "target", size: 512 << 20)

        let admin = "e2e-admin-token"
        let server = try ServerProcess(arguments: ["--data", scratch.sub("data"), "--content", content, "--boot", scratch.sub("boot"),
                                                   "--admin-token", admin, "--unknown-machines", "default"])
        let base = "http://127.0.0.1:\(server.port)"
        func curl(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
            var arguments = ["curl", "-sS", "-X", method, "-H", "Authorization: Bearer \(admin)"]
            if let body {
                let file = scratch.sub("body-\(UUID().uuidString)")
                try body.write(toFile: file, atomically: true, encoding: .utf8)
                arguments += ["-H", "Content-Type: application/json", "--data-binary", "@" + file]
            }
            let output = try run(arguments + [base + path]).stdout
            return (try? JSONSerialization.jsonObject(with: output)) as? [String: Any] ?? [:]
        }
        let sequence = """
            {"name": "End to end", "steps": [
              {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "partition", "name": "Layout", "layout": {"table": "gpt", "partitions": [
                {"id": "windows", "role": "basic", "size": "rest", "format": {"filesystem": "ntfs", "label": "Windows"}}]}},
              {"type": "applyImage", "name": "Apply", "source": "${ServerURL}/content/images/x.wim", "image": 1,
               "target": "windows", "mode": "stream"}]}
            """
        let saved = try curl("PUT", "/api/v1/admin/sequences/e2e", sequence)
        #expect(saved["name"] as? String == "e2e", "\(saved)")
        let rules = try curl("PUT", "/api/v1/admin/rules", #"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "e2e", "variables": {"Site": "e2e"}}]}"#)
        #expect((rules["rules"] as? [Any])?.count == 1, "\(rules)")

        let agent = try run([imprintBinary, "agent", "--server", base, "--spool", scratch.sub("spool"), "--log", scratch.sub("agent.log")],
                            allowFailure: true)
        #expect(agent.status == 0, "agent: \(agent.stderr)\n\((try? String(contentsOfFile: scratch.sub("agent.log"), encoding: .utf8)) ?? "")")

        let deployments = try curl("GET", "/api/v1/admin/deployments")["deployments"] as? [[String: Any]] ?? []
        #expect(deployments.count == 1)
        let deployment = try #require(deployments.first)
        let id = try #require(deployment["id"] as? String)
        #expect(deployment["state"] as? String == "succeeded", "\(deployment)")
        let events = try curl("GET", "/api/v1/admin/deployments/\(id)/events")["events"] as? [[String: Any]] ?? []
        let numbers = events.compactMap { ($0["event"] as? [String: Any])?["sequence"] as? Int }
        #expect(!numbers.isEmpty && numbers == Array(1...numbers.count), "every event stored once, in order")
        #expect(deployment["acknowledged"] as? Int == numbers.count)
        #expect((events.last?["event"] as? [String: Any])?["kind"] as? String == "result")
        // What the agent spooled is exactly what the server stored.
        let spooled = (try? String(contentsOfFile: scratch.sub("spool") + "/\(id)/events.jsonl", encoding: .utf8))?
            .split(separator: "\n").count
        #expect(spooled == numbers.count)

        let metrics = String(decoding: try run(["curl", "-sS", base + "/metrics"]).stdout, as: UTF8.self)
        #expect(metrics.contains("imprint_deployments{state=\"succeeded\"} 1"))
        #expect(metrics.contains("imprint_events_ingested_total \(numbers.count)\n"))
        let served = metrics.split(separator: "\n").first { $0.hasPrefix("imprint_content_bytes_served_total ") }
            .flatMap { $0.split(separator: " ").last }.flatMap { Int($0) } ?? 0
        #expect(served > 0)

        // The image really landed on the disk.
        let mountPoint = scratch.sub("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run(["ntfs-3g", "-o", "ro", disk.device + "p1", mountPoint])
        defer { _ = try? run(["umount", mountPoint], allowFailure: true) }
        #expect(FileManager.default.contents(atPath: mountPoint + "/Windows/explorer.exe") == explorer)
    }
}
