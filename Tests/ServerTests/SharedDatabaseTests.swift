import Foundation
import Server
import TestSupport
import Testing

/// The database behind the server: `--database` parsing, the dashboard's live feed on both
/// storages, and several instances sharing one PostgreSQL database as behind a load balancer.
@Suite("imprint-server on SQLite and PostgreSQL")
struct SharedDatabaseTests {
    /// `/dashboard/live` read with curl until its output holds `until` (or `seconds` pass): the
    /// server-sent events it wrote. Ending on the awaited update, not after a fixed time, keeps
    /// the test quick when all is well and patient on a loaded machine.
    static func readLiveFeed(_ harness: ServerHarness, until: String, seconds: Int = 120, since: Int? = nil) -> Task<String, Error> {
        let url = harness.base + "/dashboard/live" + (since.map { "?since=\($0)" } ?? ""), token = harness.adminToken
        let output = harness.scratch.sub("live-\(UUID().uuidString)")
        return Task {
            try await ServerHarness.offload {
                _ = FileManager.default.createFile(atPath: output, contents: nil)
                let curl = Process()
                curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                curl.arguments = ["curl", "-sN", "--max-time", "\(seconds)", "-o", output, "-H", "Authorization: Bearer \(token)", url]
                try curl.run()
                while curl.isRunning {
                    if let text = try? String(contentsOfFile: output, encoding: .utf8), text.contains(until) { break }
                    Thread.sleep(forTimeInterval: 0.1)
                }
                // SIGKILL: the test process may hold SIGTERM blocked (the agent's stop handling),
                // and a child inherits that mask, so curl would run on to its --max-time.
                if curl.isRunning { kill(curl.processIdentifier, SIGKILL) }
                curl.waitUntilExit()
                return (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            }
        }
    }

    static func liveUpdates(_ text: String) -> [[String: Any]] {
        text.components(separatedBy: "\n").filter { $0.hasPrefix("data: ") }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.dropFirst(6).utf8))) as? [String: Any]
        }
    }

    @Test func databaseOptionChoosesTheStorage() throws {
        #expect(try DatabaseLocation(parsing: nil) == .sqlite(path: nil))
        #expect(try DatabaseLocation(parsing: "sqlite:/var/lib/x.db") == .sqlite(path: "/var/lib/x.db"))
        guard case let .postgres(location) = try DatabaseLocation(parsing: "postgres://imprint:s%40cret@db.example:6432/deploy?sslmode=require&pool_max=8&connect_timeout=40") else {
            Issue.record("not PostgreSQL")
            return
        }
        #expect(location.host == "db.example" && location.port == 6432 && location.username == "imprint")
        #expect(location.password == "s@cret" && location.database == "deploy" && location.tls == .require && location.maximumConnections == 8)
        #expect(location.connectTimeoutSeconds == 40)
        #expect(try PostgresLocation(url: "postgres://h/db").connectTimeoutSeconds == 15)
        #expect(throws: (any Error).self) { try DatabaseLocation(parsing: "postgres://h/db?connect_timeout=0") }
        #expect(throws: (any Error).self) { try DatabaseLocation(parsing: "postgres://h/db?connect_timeout=soon") }
        #expect(!location.redacted.contains("cret"))
        #expect(throws: (any Error).self) { try DatabaseLocation(parsing: "mysql://x/y") }
        #expect(throws: (any Error).self) { try DatabaseLocation(parsing: "postgres://host") }
        #expect(throws: (any Error).self) { try DatabaseLocation(parsing: "postgres://host/db?colour=blue") }
        #expect(SQLPlaceholders.numbered("SELECT '?' AS q, a FROM t WHERE b = ? AND \"c?\" = ? LIMIT ?")
            == "SELECT '?' AS q, a FROM t WHERE b = $1 AND \"c?\" = $2 LIMIT $3")
    }

    @Test(arguments: StorageKind.allCases) func dashboardLiveFeedShowsNewEvents(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:1e:00:01")
            // From the change before these events: however late curl connects, it sees them.
            let before = try await harness.server.storage.latestChangeID()
            let feed = Self.readLiveFeed(harness, until: "\"percent\":37.5", since: before)
            try await Task.sleep(nanoseconds: 1_500_000_000)
            let posted = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "stepStarted", step: "1"),
                ServerHarness.event(3, "progress", percent: 37.5, step: "1"),
            ]), token: token)
            #expect(posted.status == 200, "\(posted.text)")
            let text = try await feed.value
            #expect(text.hasPrefix("retry: "), "not a live feed: \(text)")
            let updates = Self.liveUpdates(text).filter { $0["id"] as? String == id }
            #expect(updates.contains { ($0["percent"] as? Double) == 37.5 && $0["state"] as? String == "running" },
                    "the live feed did not show 37.5%: \(text)")
        }
    }

    /// Two instances on one PostgreSQL database: a machine checks in through A, reports through
    /// B, and A's admin API and live feed show it; check-ins of one machine through both at once
    /// make one deployment.
    @Test func twoInstancesShareOnePostgreSQLDatabase() async throws {
        let url = try await PostgresCluster.shared.newDatabase()
        // Both start (and migrate) at once: the advisory lock makes them take turns.
        async let startA = ServerHarness(storage: .postgres, database: url, adminToken: "shared-admin", unknownMachines: .default, label: "instanceA")
        async let startB = ServerHarness(storage: .postgres, database: url, adminToken: "shared-admin", unknownMachines: .default, label: "instanceB")
        let a = try await startA, b = try await startB
        do {
            #expect(try await PostgresCluster.shared.psql(url, "SELECT count(*) FROM schema_migrations") == "\(Migrations.all.count)\n")
            try await a.putSequence("base")
            try await b.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)

            let checkIn = try await a.checkIn(macs: ["52:54:00:ab:00:01"], serial: "SHARED-1")
            let deployment = checkIn.json["deployment"] as? [String: Any]
            let id = try #require(deployment?["id"] as? String), token = try #require(deployment?["token"] as? String)

            // A's live feed is open while B stores the events.
            let feed = Self.readLiveFeed(a, until: "\"percent\":61", since: try await a.server.storage.latestChangeID())
            try await Task.sleep(nanoseconds: 1_500_000_000)
            let posted = try await b.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "stepStarted", step: "1"),
                ServerHarness.event(3, "progress", percent: 61, step: "1"),
            ]), token: token)
            #expect(posted.status == 200, "\(posted.text)")
            #expect(posted.json["acknowledged"] as? Int == 3)
            // The same batch again through A (a retry the balancer sent elsewhere): stored once.
            let again = try await a.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(3, "progress", percent: 61, step: "1"),
            ]), token: token)
            #expect(again.json["stored"] as? Int == 0 && again.json["acknowledged"] as? Int == 3)

            let events = try await a.admin("GET", "/deployments/\(id)/events").json["events"] as? [[String: Any]] ?? []
            #expect(events.count == 3)
            let detail = try await a.admin("GET", "/deployments/\(id)").json
            let summary = detail["deployment"] as? [String: Any] ?? detail
            #expect(summary["state"] as? String == "running" && summary["percent"] as? Double == 61, "\(detail)")
            let text = try await feed.value
            #expect(Self.liveUpdates(text).contains { $0["id"] as? String == id && ($0["percent"] as? Double) == 61 },
                    "A's live feed did not show what B stored: \(text)")

            // Each machine checks in through A and B at the same moment: one deployment each;
            // one answer carries it and its token, the other is refused (409: a token is issued
            // once), whichever instance came first.
            for n in 1...4 {
                let mac = "52:54:00:cc:00:0\(n)"
                async let viaA = a.checkIn(macs: [mac])
                async let viaB = b.checkIn(macs: [mac])
                let (answerA, answerB) = try await (viaA, viaB)
                let ids = [answerA, answerB].compactMap { ($0.json["deployment"] as? [String: Any])?["id"] as? String }
                #expect(ids.count == 1 && [answerA.status, answerB.status].sorted() == [200, 409],
                        "machine \(mac): \(answerA.text) / \(answerB.text)")
            }
            let machines = try await PostgresCluster.shared.psql(url, "SELECT count(*) FROM machines WHERE macs LIKE '%,52:54:00:cc:%'")
            let deployments = try await PostgresCluster.shared.psql(url, """
                SELECT count(*) FROM deployments d JOIN machines m ON m.id = d.machine_id WHERE m.macs LIKE '%,52:54:00:cc:%'
                """)
            #expect(machines == "4\n" && deployments == "4\n", "machines \(machines), deployments \(deployments)")
            #expect((try await b.admin("GET", "/deployments").json["deployments"] as? [Any])?.count == 5)
        } catch {
            await a.stop()
            await b.stop()
            throw error
        }
        await a.stop()
        await b.stop()
    }
}
