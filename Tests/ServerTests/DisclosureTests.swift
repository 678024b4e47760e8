import Foundation
import Logging
import Server
import SQLiteNIO
import Synchronization
import TestSupport
import Testing

/// What the server logs, kept for a test to read (notice and above, as an administrator sees them).
struct CapturedLogs: Sendable {
    private final class Store: Sendable {
        let lines = Mutex<[String]>([])
    }

    private struct Handler: LogHandler {
        let store: Store
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .notice

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            store.lines.withLock { $0.append("\(level): \(message)") }
        }
    }

    private let store = Store()

    var logger: Logger { Logger(label: "imprint-server-test") { [store] _ in Handler(store: store) } }
    var lines: [String] { store.lines.withLock { $0 } }
}

/// What anyone on the network can read (issue 13): only published files under `/content`, no
/// internal error text, and boot scripts that say nothing but what iPXE needs. Real HTTP.
@Suite("imprint-server discloses nothing: content, errors, boot scripts")
struct DisclosureTests {
    /// The one answer every refused or missing file gets: nothing about why, nor about the path.
    static let notFound = #"{"error":"file not found"}"#

    @Test func contentServesOnlyThePublishedSet() async throws {
        let logs = CapturedLogs()
        try await ServerHarness.with(logger: logs.logger) { harness in
            let content = harness.content, manager = FileManager.default
            func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
                let full = content + "/" + path
                try manager.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data(text.utf8).write(to: URL(fileURLWithPath: full))
                try manager.setAttributes([.posixPermissions: mode], ofItemAtPath: full)
            }
            try write("images/win.wim", "the image")
            try write(".env", "DB_PASSWORD=hunter2")
            try write(".git/config", "[remote \"origin\"] url = git@internal:secret.git")
            try write("images/.hidden", "hidden")
            try write("images/private.wim", "private 0600", mode: 0o600)
            try write("images/group.wim", "group 0640", mode: 0o640)
            try manager.createSymbolicLink(atPath: content + "/passwd", withDestinationPath: "/etc/passwd")
            try manager.createSymbolicLink(atPath: content + "/env-link", withDestinationPath: content + "/.env")
            try manager.createSymbolicLink(atPath: content + "/repo", withDestinationPath: ".git")
            try manager.createSymbolicLink(atPath: content + "/images/up", withDestinationPath: "..")
            // A FIFO must not hang the request at open.
            #expect(mkfifo(content + "/images/pipe", 0o644) == 0)

            #expect(try await harness.request("GET", "/content/images/win.wim").text == "the image")
            // Through a symlink to a published file (`up` is `..`, a real path without a dot name).
            #expect(try await harness.request("GET", "/content/images/up/images/win.wim").text == "the image")

            let refused = [
                "/content/.env", "/content/a/../.env", "/content/images/../.env", "/content/%2eenv", "/content/%2Eenv",
                "/content/%2e%2e/data/imprint.db", "/content/images/%2e%2e/.env", "/content/images/..%2f.env", "/content/.git/config",
                "/content/%2egit/config", "/content/repo/config", "/content/passwd", "/content/env-link", "/content/images/up/.env",
                "/content/images/.hidden", "/content/images/%2ehidden", "/content/images/private.wim", "/content/images/group.wim",
                "/content/images/pipe", "/content/images", "/content/.", "/content/images/./win.wim", "/content/images//win.wim",
                "/content/images/win.wim%00.txt", "/content/nothing",
            ]
            for path in refused {
                for method in ["GET", "HEAD"] {
                    let answer = try await harness.request(method, path)
                    #expect(answer.status == 404, "\(method) \(path): \(answer.status) \(answer.text)")
                    if method == "GET" { #expect(answer.text == Self.notFound, "\(path): \(answer.text)") }
                }
            }
            // Boot files follow the same rule.
            try Data("k".utf8).write(to: URL(fileURLWithPath: harness.boot + "/.vmlinuz"))
            #expect(try await harness.request("GET", "/boot/files/.vmlinuz").status == 404)
            #expect(try await harness.request("GET", "/boot/files/%2evmlinuz").text == Self.notFound)

            // Publishing is the mode: o+r serves the same file, taking it away hides it again.
            try manager.setAttributes([.posixPermissions: 0o644], ofItemAtPath: content + "/images/private.wim")
            #expect(try await harness.request("GET", "/content/images/private.wim").text == "private 0600")
            try manager.setAttributes([.posixPermissions: 0o600], ofItemAtPath: content + "/images/private.wim")
            #expect(try await harness.request("GET", "/content/images/private.wim").status == 404)
            // The administrator's log says why a real file was not served; the client never does.
            let notice = logs.lines.first { $0.contains("private.wim") }
            #expect(notice?.contains("mode 600") == true && notice?.contains("chmod o+r") == true, "\(logs.lines)")
        }
    }

    /// A database damaged under a running server (a table renamed away): every kind of route
    /// answers 500 with an id and nothing of SQLite's message, which the log has under that id.
    @Test func internalErrorsTellClientsOnlyAnID() async throws {
        let logs = CapturedLogs()
        try await ServerHarness.with(logger: logs.logger) { harness in
            #expect(try await harness.checkIn(macs: ["52:54:00:1e:00:01"]).status == 200)
            let connection = try await SQLiteConnection.open(storage: .file(path: harness.server.configuration.databasePath))
            _ = try await connection.query("ALTER TABLE machines RENAME TO machines_damaged", [])
            try await connection.close()

            let attempts: [(String, String, Data?, String?)] = [
                ("GET", "/boot/52:54:00:1e:00:01.ipxe", nil, nil),
                ("POST", "/api/v1/agents/checkin", ServerHarness.facts(macs: ["52:54:00:1e:00:01"]), nil),
                ("GET", "/api/v1/admin/machines", nil, harness.adminToken),
                ("GET", "/dashboard", nil, harness.adminToken),
            ]
            var ids: Set<String> = []
            for (method, path, body, token) in attempts {
                let answer = try await harness.request(method, path, body: body, token: token)
                #expect(answer.status == 500, "\(path): \(answer.status) \(answer.text)")
                #expect(Set(answer.json.keys) == ["error", "id"] && answer.json["error"] as? String == "internal error", "\(path): \(answer.text)")
                for leak in ["machines", "SQLite", "sqlite", "no such table", "SELECT", harness.scratch.path] {
                    #expect(!answer.text.contains(leak), "\(path) leaks \(leak): \(answer.text)")
                }
                let id = answer.json["id"] as? String ?? ""
                #expect(id.count == 16 && id.allSatisfy(\.isHexDigit), "\(path): \(answer.text)")
                ids.insert(id)
                let logged = logs.lines.first { $0.contains("internal error \(id)") }
                #expect(logged?.contains(path) == true && logged?.contains("no such table") == true, "\(path): \(logs.lines)")
                if path == "/dashboard" { #expect(answer.headers["content-security-policy"] != nil, "the dashboard's error lost its headers") }
            }
            #expect(ids.count == attempts.count, "every error gets its own id")
        }
    }

    /// Anyone may ask for any MAC's script: a machine being deployed gets exactly what an unknown
    /// MAC gets, and a deployed one only the lines that send it to its disk; no names, ids or times.
    @Test func bootScriptsSayNothingButTheScript() async throws {
        try await ServerHarness.with(unknownMachines: .default) { harness in
            let sequenceName = "Finance-Laptops-2026"
            try await harness.putSequence(sequenceName)
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "\#(sequenceName)", "variables": {"Site": "HQ-Floor-3"}}]}"#)
            let mac = "52:54:00:1b:00:01"
            let checkIn = try await harness.checkIn(macs: [mac], serial: "SER-1B-01")
            let deployment = try #require(checkIn.json["deployment"] as? [String: Any])
            let id = try #require(deployment["id"] as? String), token = try #require(deployment["token"] as? String)
            let machineID = try #require(checkIn.json["machineId"] as? String)

            func expectNothingRevealed(_ script: String, sourceLocation: SourceLocation = #_sourceLocation) {
                for secret in [sequenceName, "HQ-Floor-3", id, machineID, "SER-1B-01", mac, "52-54-00", "2026-", "deployment", "sequence"] {
                    #expect(!script.lowercased().contains(secret.lowercased()), "the script reveals \(secret): \(script)", sourceLocation: sourceLocation)
                }
                let lines = script.split(separator: "\n")
                #expect(lines.first == "#!ipxe" && !lines.dropFirst().contains { $0.hasPrefix("#") }, "a comment: \(script)", sourceLocation: sourceLocation)
                #expect(script.range(of: #"\d{2}:\d{2}:\d{2}"#, options: .regularExpression) == nil, "a time: \(script)", sourceLocation: sourceLocation)
            }
            let unknown = try await harness.request("GET", "/boot/52:54:00:1b:99:99.ipxe")
            let running = try await harness.request("GET", "/boot/\(mac).ipxe")
            #expect(running.status == 200 && running.body == unknown.body, "a machine being deployed is told apart: \(running.text)")
            expectNothingRevealed(running.text)
            expectNothingRevealed(try await harness.request("GET", "/boot.ipxe").text)

            let done = try await harness.request("POST", "/api/v1/deployments/\(id)/events",
                                                 body: ServerHarness.batch([ServerHarness.event(1, "result", status: "success")]), token: token)
            #expect(done.json["state"] as? String == "succeeded", "\(done.text)")
            let deployed = try await harness.request("GET", "/boot/\(mac.replacingOccurrences(of: ":", with: "%3A")).ipxe")
            #expect(deployed.text.hasSuffix("exit 1\n") && !deployed.text.contains("kernel "), "\(deployed.text)")
            expectNothingRevealed(deployed.text)
            #expect(deployed.text.split(separator: "\n").dropFirst().allSatisfy { ["echo ", "sleep ", "exit"].contains(where: $0.hasPrefix) },
                    "\(deployed.text)")
        }
    }
}
