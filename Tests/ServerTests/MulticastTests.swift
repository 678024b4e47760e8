import Foundation
import Multicast
import Primitives
import SequenceModel
import Server
import SQLiteNIO
import Synchronization
import TestSupport
import Testing

/// Multicast sessions on the server (issue 19), over real HTTP on SQLite and PostgreSQL:
/// sessions made by the admin API (and refused with the field at fault), machines checking in
/// handed the session in their image step with the manifest's URL and SHA-256, a rule's session
/// shared by its machines, cancel and delete; and a real sender started by the server heard on
/// the loopback interface by a receiver, the session finishing when its machine is done.
@Suite("imprint-server's multicast sessions", .serialized)
struct MulticastTests {
    /// 3 MiB and a few bytes (4 blocks of 1 MiB, the last short), the same bytes every time.
    static func writeImage(_ path: String, bytes: Int = 3 << 20 | 123) throws -> Data {
        var generator = SplitMix64(seed: 19)
        let data = Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
        chmod(path, 0o644)
        return data
    }

    static func sha256(_ path: String) throws -> String { String(try run(["sha256sum", path]).output.prefix(64)) }

    /// A sequence writing the image to the disk, and the rule list giving it to every machine.
    static func rawSequence(sha256: String) -> String {
        """
        {"name": "Raw", "steps": [
          {"type": "selectDisk"},
          {"type": "writeImage", "name": "Write", "source": "${ServerURL}/content/images/disk.img", "sha256": "\(sha256)"}
        ]}
        """
    }

    /// The harness's servers send from the loopback interface: nothing of the tests leaves the machine.
    static func loopback(_ configuration: inout ServerConfiguration) {
        configuration.multicastInterfaceAddress = "127.0.0.1"
    }

    /// The machine's deployment and the `multicast` of its writeImage step (nil when it has none).
    static func handed(_ harness: ServerHarness, mac: String) async throws -> (deployment: String, multicast: [String: Any]?, sequence: Data) {
        let answer = try await harness.checkIn(macs: [mac])
        let deployment = try #require(answer.json["deployment"] as? [String: Any], "\(answer.text)")
        let id = try #require(deployment["id"] as? String), token = try #require(deployment["token"] as? String)
        let sequence = try await harness.request("GET", "/api/v1/deployments/\(id)/sequence", token: token)
        #expect(sequence.status == 200, "\(sequence.text)")
        let step = (sequence.json["steps"] as? [[String: Any]])?.last ?? [:]
        return (id, step["multicast"] as? [String: Any], sequence.body)
    }

    static func session(_ harness: ServerHarness, _ id: String) async throws -> [String: Any] {
        let answer = try await harness.admin("GET", "/multicast/sessions/\(id)")
        #expect(answer.status == 200, "\(answer.text)")
        return answer.json
    }

    @Test("an administrator's session: refused with the field at fault, then handed to the machines it takes, cancelled, deleted",
          arguments: StorageKind.allCases)
    func adminSession(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: Self.loopback) { harness in
            let image = harness.content + "/images/disk.img"
            _ = try Self.writeImage(image)
            let sha = try Self.sha256(image)
            try await harness.putSequence("raw", Self.rawSequence(sha256: sha))
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "raw", "variables": {}}]}"#)

            // What cannot work is refused, naming the field.
            for (body, field) in [(#"{"name": "lab", "file": "images/disk.img", "group": "10.0.0.1"}"#, "group"),
                                  (#"{"name": "lab", "file": "images/disk.img", "group": "239.1.2.300"}"#, "group"),
                                  (#"{"name": "lab", "file": "images/missing.img"}"#, "file"),
                                  (#"{"name": "lab", "file": "../data/imprint.db"}"#, "file"),
                                  (#"{"name": "lab"}"#, "file"),
                                  (#"{"name": "lab", "image": "No Such Image"}"#, "image"),
                                  (#"{"name": "", "file": "images/disk.img"}"#, "name"),
                                  (#"{"name": "lab", "file": "images/disk.img", "rateMbps": 0}"#, "rateMbps"),
                                  (#"{"name": "lab", "file": "images/disk.img", "machines": ["nobody"]}"#, "machines[0]"),
                                  (#"{"name": "lab", "file": "images/disk.img", "startAt": "Monday"}"#, "startAt")] {
                let refused = try await harness.admin("POST", "/multicast/sessions", json: body)
                #expect(refused.status == 422 && refused.json["field"] as? String == field, "\(body): \(refused.status) \(refused.text)")
            }

            // Two machines: the first gets the session in its writeImage step.
            let created = try await harness.admin("POST", "/multicast/sessions",
                                                  json: #"{"name": "Room 12", "file": "images/disk.img", "count": 2, "rateMbps": 50}"#)
            #expect(created.status == 201, "\(created.text)")
            let id = try #require(created.json["id"] as? String)
            #expect(parseSessionID(id) != nil, "\(id)")
            #expect(created.json["group"] as? String == "239.255.77.1" && created.json["port"] as? Int == 7701, "\(created.text)")
            #expect(created.json["state"] as? String == "waiting")
            #expect(try await harness.admin("POST", "/multicast/sessions", json: #"{"name": "Room 12", "file": "images/disk.img"}"#).status == 409)

            let first = try await Self.handed(harness, mac: "52:54:00:19:00:01")
            let multicast = try #require(first.multicast, "no multicast in \(String(decoding: first.sequence, as: UTF8.self))")
            #expect(multicast["session"] as? String == id)
            #expect(multicast["group"] as? String == "239.255.77.1" && multicast["port"] as? Int == 7701)
            #expect(multicast["source"] as? String == harness.base + "/content/images/disk.img", "\(multicast)")
            #expect(multicast["size"] as? Int == 3 << 20 | 123)
            let manifestURL = try #require(multicast["manifest"] as? String)
            #expect(manifestURL == harness.base + "/api/v1/multicast/sessions/\(id)/manifest")
            let receiver = try #require(multicast["receiver"] as? String)
            #expect(parseSessionID(receiver) != nil, "\(receiver)")

            // The manifest the URL serves: its SHA-256 is the one handed out, and it is the file's.
            let fetched = try await harness.request("GET", String(manifestURL.dropFirst(harness.base.count)))
            #expect(fetched.status == 200)
            let digest = harness.scratch.sub("manifest")
            try fetched.body.write(to: URL(fileURLWithPath: digest))
            #expect(multicast["manifestSHA256"] as? String == (try Self.sha256(digest)))
            let manifest = try BlockManifest(decoding: [UInt8](fetched.body), name: "the served manifest")
            #expect(manifest == (try BlockManifest.make(path: image)))
            #expect(manifest.blockCount == 4)

            // The agent's parser takes the step with its session, and the descriptor decodes.
            let (parsed, issues) = SequenceParser.parse(first.sequence, origin: "handed")
            #expect(!issues.contains { $0.severity == .error }, "\(issues)")
            guard case let .writeImage(write)? = parsed?.steps.last?.action else {
                Issue.record("no writeImage step in \(String(describing: parsed))")
                return
            }
            #expect(write.multicast?.session == id && write.multicast?.manifestSHA256 == multicast["manifestSHA256"] as? String)
            let stepJSON = try JSONSerialization.data(withJSONObject: multicast)
            let descriptor = try JSONDecoder().decode(MulticastSessionDescriptor.self, from: stepJSON)
            #expect(descriptor.problems.isEmpty, "\(descriptor.problems)")

            // The second machine joins with its own receiver id; the third finds the count reached.
            let second = try await Self.handed(harness, mac: "52:54:00:19:00:02")
            #expect(second.multicast?["session"] as? String == id)
            #expect(second.multicast?["receiver"] as? String != receiver)
            let third = try await Self.handed(harness, mac: "52:54:00:19:00:03")
            #expect(third.multicast == nil, "\(String(describing: third.multicast))")

            var detail = try await Self.session(harness, id)
            let members = detail["members"] as? [[String: Any]] ?? []
            #expect(members.count == 2 && Set(members.compactMap { $0["deploymentID"] as? String }) == [first.deployment, second.deployment], "\(members)")
            #expect(members.allSatisfy { $0["state"] as? String == "assigned" })
            #expect(detail["manifestSHA256"] as? String == multicast["manifestSHA256"] as? String)
            let list = try await harness.admin("GET", "/multicast/sessions").json["sessions"] as? [[String: Any]] ?? []
            #expect(list.count == 1 && (list.first?["memberCounts"] as? [String: Int])?["assigned"] == 2, "\(list)")

            // The dashboard lists it, with its cancel button; its API wants the session's CSRF token.
            let page = try await harness.request("GET", "/dashboard/multicast", token: harness.adminToken)
            #expect(page.status == 200 && page.text.contains("Room 12") && page.text.contains("data-action=\"cancel\""), "\(page.text)")

            // Cancelled: its members have left, a new machine is not put in it, cancelling again is 409.
            let cancelled = try await harness.admin("POST", "/multicast/sessions/\(id)/cancel")
            #expect(cancelled.status == 200 && cancelled.json["state"] as? String == "cancelled", "\(cancelled.text)")
            #expect(try await harness.admin("POST", "/multicast/sessions/\(id)/cancel").status == 409)
            detail = try await Self.session(harness, id)
            #expect((detail["members"] as? [[String: Any]] ?? []).allSatisfy { $0["state"] as? String == "left" }, "\(detail)")
            #expect(try await Self.handed(harness, mac: "52:54:00:19:00:04").multicast == nil)
            // Its group is free again: the next session gets it.
            let next = try await harness.admin("POST", "/multicast/sessions", json: #"{"name": "Room 13", "file": "images/disk.img"}"#)
            #expect(next.status == 201 && next.json["group"] as? String == "239.255.77.1", "\(next.text)")

            let deleted = try await harness.admin("DELETE", "/multicast/sessions/\(id)")
            #expect(deleted.status == 200, "\(deleted.text)")
            #expect(try await harness.admin("GET", "/multicast/sessions/\(id)").status == 404)
            #expect(try await harness.request("GET", "/api/v1/multicast/sessions/\(id)/manifest").status == 404)
        }
    }

    @Test("a rule's machines deploying the same file share one session", arguments: StorageKind.allCases)
    func ruleSession(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: Self.loopback) { harness in
            let image = harness.content + "/images/disk.img"
            _ = try Self.writeImage(image)
            try await harness.putSequence("raw", Self.rawSequence(sha256: try Self.sha256(image)))
            let bad = try await harness.admin("PUT", "/rules", json: #"{"rules": [{"name": "lab", "match": "any", "pattern": "*", "sequence": "raw", "variables": {}, "multicast": {"minMachines": 0}}]}"#)
            #expect(bad.status == 422 && bad.json["field"] as? String == "rules[0].multicast.minMachines", "\(bad.text)")
            try await harness.putRules(#"""
                {"rules": [{"name": "lab", "match": "any", "pattern": "*", "sequence": "raw", "variables": {},
                            "multicast": {"minMachines": 2, "waitSeconds": 300, "rateMbps": 20}}]}
                """#)
            let rules = try await harness.admin("GET", "/rules").json["rules"] as? [[String: Any]] ?? []
            #expect((rules.first?["multicast"] as? [String: Any])?["minMachines"] as? Int == 2, "\(rules)")

            let first = try await Self.handed(harness, mac: "52:54:00:19:01:01")
            let second = try await Self.handed(harness, mac: "52:54:00:19:01:02")
            let session = try #require(first.multicast?["session"] as? String, "\(String(decoding: first.sequence, as: UTF8.self))")
            #expect(second.multicast?["session"] as? String == session)
            #expect(first.multicast?["receiver"] as? String != second.multicast?["receiver"] as? String)

            let sessions = try await harness.admin("GET", "/multicast/sessions").json["sessions"] as? [[String: Any]] ?? []
            #expect(sessions.count == 1, "\(sessions)")
            let detail = try await Self.session(harness, session)
            #expect(detail["rule"] as? String == "lab" && detail["minMachines"] as? Int == 2 && detail["rateBitsPerSecond"] as? Int == 20_000_000, "\(detail)")
            #expect(detail["file"] as? String == "images/disk.img")
            #expect((detail["members"] as? [[String: Any]] ?? []).count == 2)
            // It starts when its two machines are heard (or 300 s after the first check-in).
            let startAt = try #require((detail["startAt"] as? String).flatMap { try? Date($0, strategy: .iso8601) })
            #expect(startAt.timeIntervalSinceNow > 200 && startAt.timeIntervalSinceNow <= 300)
        }
    }

    @Test("a source naming the sequence's and the rule's variables names the server's file; one naming a variable the server cannot know does not",
          arguments: StorageKind.allCases)
    func sourceWithVariables(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: Self.loopback) { harness in
            let image = harness.content + "/images/disk.img"
            _ = try Self.writeImage(image)
            let sha = try Self.sha256(image)
            // The sequence's default names another file; the rule's value wins, as on the agent.
            try await harness.putSequence("variables", #"""
                {"name": "Variables", "variables": {"Folder": "images", "ImageFile": "other.img"}, "steps": [
                  {"type": "selectDisk"},
                  {"type": "writeImage", "name": "Write", "source": "${ServerURL}/content/${Folder}/${ImageFile}", "sha256": "\#(sha)"}
                ]}
                """#)
            try await harness.putSequence("unknown", #"""
                {"name": "Unknown", "steps": [
                  {"type": "selectDisk"},
                  {"type": "writeImage", "name": "Write", "source": "${ServerURL}/content/images/${SetByAStep}", "sha256": "\#(sha)"}
                ]}
                """#)
            try await harness.putRules(#"""
                {"rules": [{"name": "known", "match": "mac", "pattern": "52:54:00:19:02:01", "sequence": "variables",
                            "variables": {"ImageFile": "disk.img"}, "multicast": {"minMachines": 1, "waitSeconds": 300}},
                           {"name": "unknown", "match": "mac", "pattern": "52:54:00:19:02:02", "sequence": "unknown",
                            "variables": {}, "multicast": {"minMachines": 1, "waitSeconds": 300}}]}
                """#)
            let known = try await Self.handed(harness, mac: "52:54:00:19:02:01")
            let multicast = try #require(known.multicast, "no multicast in \(String(decoding: known.sequence, as: UTF8.self))")
            #expect(multicast["source"] as? String == harness.base + "/content/images/disk.img", "\(multicast)")
            let session = try await Self.session(harness, try #require(multicast["session"] as? String))
            #expect(session["file"] as? String == "images/disk.img" && session["rule"] as? String == "known", "\(session)")
            let unknown = try await Self.handed(harness, mac: "52:54:00:19:02:02")
            #expect(unknown.multicast == nil, "\(String(decoding: unknown.sequence, as: UTF8.self))")
        }
    }

    /// The sequence format takes a step's session only whole and well formed: each fault named by its JSON path.
    @Test func theParserChecksAStepsMulticastFields() {
        func issues(_ multicast: String) -> [String] {
            let sequence = """
                {"name": "M", "steps": [{"type": "selectDisk"}, {"type": "writeImage", "source": "http://10.0.0.1/content/a.img",
                 "sha256": "\(String(repeating: "a", count: 64))", "multicast": \(multicast)}]}
                """
            return SequenceParser.parse(Data(sequence.utf8), origin: "test").1.filter { $0.severity == .error }.map(\.path)
        }
        let good = #"{"session": "00000000000000a1", "receiver": "1234567890abcdef", "group": "239.255.77.1", "port": 7701, "#
            + #""source": "http://10.0.0.1/content/a.img", "size": 5000000, "manifest": "http://10.0.0.1/api/v1/multicast/sessions/00000000000000a1/manifest", "#
            + #""manifestSHA256": "\#(String(repeating: "b", count: 64))"}"#
        #expect(issues(good).isEmpty, "\(issues(good))")
        #expect(issues(good.replacingOccurrences(of: "239.255.77.1", with: "10.1.1.1")) == ["$.steps[1].multicast.group"])
        #expect(issues(good.replacingOccurrences(of: "\"port\": 7701", with: "\"port\": 70000")) == ["$.steps[1].multicast.port"])
        #expect(issues(good.replacingOccurrences(of: "1234567890abcdef", with: "xyz")) == ["$.steps[1].multicast.receiver"])
        #expect(issues(good.replacingOccurrences(of: "\"size\": 5000000, ", with: "")) == ["$.steps[1].multicast.size"])
        #expect(issues(good.replacingOccurrences(of: "\"port\"", with: "\"porta\"")).contains("$.steps[1].multicast.porta"))
        #expect(issues("[]") == ["$.steps[1].multicast"])
    }

    @Test("a server that stops fails its open sessions; one killed finds them open at its next start and fails them then")
    func interruptedSessions() async throws {
        try await withTaskExecutorPreference(ServerHarness.ServerThreads.shared) {
            // Kept (its scratch folder with it) after it stops: the next servers open its database.
            let harness = try await ServerHarness(unknownMachines: .default, configure: Self.loopback)
            _ = try Self.writeImage(harness.content + "/images/disk.img")
            // It waits for machines that never come.
            let created = try await harness.admin("POST", "/multicast/sessions", json: #"{"name": "never", "file": "images/disk.img", "minMachines": 5}"#)
            let id = try #require(created.json["id"] as? String, "\(created.text)")
            for _ in 0..<100 where try await Self.session(harness, id)["sender"] == nil { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await Self.session(harness, id)["sender"] != nil, "the sender did not start")
            await harness.stop()
            let opening = harness.server.configuration
            var server = try await ImprintServer.open(configuration: opening, backgroundExecutor: ServerHarness.ServerThreads.shared)
            var session = try await server.storage.multicastSession(id: id)
            #expect(session?.state == .failed && session?.reason?.hasPrefix("interrupted: the server stopped") == true, "\(String(describing: session))")
            await server.close()

            // As a killed server leaves it: open in the database.
            let connection = try await SQLiteConnection.open(storage: .file(path: opening.databasePath))
            _ = try await connection.query("UPDATE multicast_sessions SET state = 'waiting', reason = NULL, ended = NULL WHERE id = '\(id)'", [])
            try await connection.close()
            server = try await ImprintServer.open(configuration: opening, backgroundExecutor: ServerHarness.ServerThreads.shared)
            session = try await server.storage.multicastSession(id: id)
            #expect(session?.state == .failed && session?.reason?.hasPrefix("interrupted: the server stopped while the session was waiting") == true,
                    "\(String(describing: session))")
            await server.close()
            withExtendedLifetime(harness) {}
        }
    }

    /// Collects the blocks in memory (the receiver calls it from one thread at a time).
    final class Collector: MulticastBlockConsumer, @unchecked Sendable {
        var data: [UInt8]
        let manifest: BlockManifest
        var finished = false
        init(_ manifest: BlockManifest) {
            self.manifest = manifest
            data = [UInt8](repeating: 0, count: Int(manifest.fileSize))
        }
        func neededBlocks(_ manifest: BlockManifest) throws -> [Bool] { Array(repeating: true, count: manifest.blockCount) }
        func take(_ block: Int, _ bytes: UnsafeRawBufferPointer) throws -> MulticastBlockTaken {
            let start = Int(manifest.range(of: block).lowerBound)
            data.replaceSubrange(start..<start + bytes.count, with: bytes)
            return MulticastBlockTaken(taken: true)
        }
        func finish() throws { finished = true }
    }

    @Test("the server's sender is heard on the loopback interface, and the session finishes when its machine is done")
    func senderHeardOnLoopback() async throws {
        try await ServerHarness.with(unknownMachines: .default, configure: Self.loopback) { harness in
            let image = harness.content + "/images/disk.img"
            let bytes = try Self.writeImage(image)
            try await harness.putSequence("raw", Self.rawSequence(sha256: try Self.sha256(image)))
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "raw", "variables": {}}]}"#)
            let created = try await harness.admin("POST", "/multicast/sessions", json: #"{"name": "loopback", "file": "images/disk.img", "count": 1}"#)
            #expect(created.status == 201, "\(created.text)")
            let id = try #require(created.json["id"] as? String)
            let handed = try await Self.handed(harness, mac: "52:54:00:19:02:01")
            let fields = try #require(handed.multicast)
            let descriptor = try JSONDecoder().decode(MulticastSessionDescriptor.self, from: try JSONSerialization.data(withJSONObject: fields))
            let served = try await harness.request("GET", String(descriptor.manifest.dropFirst(harness.base.count)))
            let manifest = try BlockManifest(decoding: [UInt8](served.body), name: "manifest")

            var options = MulticastReceiverOptions()
            options.interfaceAddress = "127.0.0.1"
            options.waitSeconds = 20
            let receiver = try MulticastReceiver(descriptor: descriptor, manifest: manifest, options: options)
            let collector = Collector(manifest)
            // No HTTP source: every block must come from the group.
            let summary = try await ServerHarness.offload { try receiver.run(into: collector, http: nil) }
            #expect(collector.finished)
            #expect(Data(collector.data) == bytes)
            #expect(summary.blocksByMulticast == 4 && summary.blocksByHTTP == 0 && !summary.fellBack, "\(summary)")

            // The sender heard it done: the session finishes, its member done.
            var detail: [String: Any] = [:]
            for _ in 0..<100 {
                detail = try await Self.session(harness, id)
                if detail["state"] as? String != "waiting" && detail["state"] as? String != "running" { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(detail["state"] as? String == "finished", "\(detail)")
            #expect((detail["members"] as? [[String: Any]])?.first?["state"] as? String == "done", "\(detail)")
            #expect((detail["passes"] as? Int ?? 0) >= 1 && (detail["bytesSent"] as? Int ?? 0) >= 3 << 20, "\(detail)")
            #expect(detail["started"] as? String != nil)
        }
    }
}
