import Foundation
import SequenceModel
import Server
import SQLiteNIO
import TestSupport
import Testing

/// A deployment survives a power cut (issue 15): the machine's own run, back with the token on
/// its disk, gets its deployment again at once with the run state it last sent; anything else
/// that claims to resume gets today's answer. Both databases, real HTTP.
@Suite("imprint-server resumes a deployment after a power cut", .serialized)
struct ResumeTests {
    static let mac = "52:54:00:15:00:01"

    /// A check-in of `mac`, claiming to resume `deployment` with `token` when given.
    static func checkIn(_ harness: ServerHarness, mac: String = ResumeTests.mac, resume: (deployment: String, token: String)? = nil)
        async throws -> ServerHarness.Answer {
        var body = try #require(try JSONSerialization.jsonObject(with: ServerHarness.facts(macs: [mac])) as? [String: Any])
        if let resume { body["resume"] = ["deployment": resume.deployment, "token": resume.token] }
        return try await harness.request("POST", "/api/v1/agents/checkin", body: try JSONSerialization.data(withJSONObject: body))
    }

    /// A run state as the agent writes it to the disk (with its token).
    static func state(_ deploymentID: String, token: String?, revision: Int, steps: [String: String] = ["1": "started"],
                      variables: [String: String] = ["Site": "lab"]) -> Data {
        var state: [String: Any] = ["format": 1, "deploymentID": deploymentID, "sequenceName": "Minimal", "sequenceVersion": "1",
                                    "sequenceDigest": String(repeating: "ab", count: 32), "revision": revision, "steps": steps,
                                    "variables": variables, "volumes": [:] as [String: Any], "driverPaths": [:] as [String: Any],
                                    "resumes": 0, "ended": false, "updated": "2026-12-05T11:00:00.000Z"]
        if let token { state["token"] = token }
        return (try? JSONSerialization.data(withJSONObject: state)) ?? Data()
    }

    static func putState(_ harness: ServerHarness, _ id: String, _ body: Data, token: String?) async throws -> ServerHarness.Answer {
        try await harness.request("PUT", "/api/v1/deployments/\(id)/state", body: body, token: token)
    }

    static func events(_ harness: ServerHarness, _ id: String) async throws -> [[String: Any]] {
        (try await harness.admin("GET", "/deployments/\(id)/events").json["events"] as? [[String: Any]] ?? []).compactMap { $0["event"] as? [String: Any] }
    }

    @Test(arguments: StorageKind.allCases) func theRunsOwnTokenResumesAtOnce(storage: StorageKind) async throws {
        // The default quiet period (600 s): a resumed run must not wait for it.
        try await ServerHarness.with(storage: storage) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: Self.mac)
            #expect(try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "stepStarted", step: "1"),
            ]), token: token).status == 200)
            let put = try await Self.putState(harness, id, Self.state(id, token: token, revision: 2), token: token)
            #expect(put.status == 204, "\(put.text)")

            // The power comes back: the agent finds the state and checks in with it.
            let answer = try await Self.checkIn(harness, resume: (id, token))
            #expect(answer.status == 200 && answer.json["status"] as? String == "assigned", "\(answer.text)")
            let deployment = try #require(answer.json["deployment"] as? [String: Any], "\(answer.text)")
            #expect(deployment["id"] as? String == id && deployment["resumed"] as? Bool == true, "\(deployment)")
            #expect(deployment["eventsAfter"] as? Int == 3, "\(deployment)")
            let newToken = try #require(deployment["token"] as? String)
            #expect(newToken != token)
            let runState = try #require(deployment["runState"] as? [String: Any], "\(deployment)")
            #expect(runState["revision"] as? Int == 2 && runState["token"] == nil && runState["deploymentID"] as? String == id, "\(runState)")
            #expect((runState["steps"] as? [String: String]) == ["1": "started"] && (runState["variables"] as? [String: String]) == ["Site": "lab"])

            // The new token works, the old one no longer does.
            #expect(try await harness.request("GET", "/api/v1/deployments/\(id)/sequence", token: newToken).status == 200)
            #expect(try await harness.request("GET", "/api/v1/deployments/\(id)/sequence", token: token).status == 403)
            #expect(try await Self.putState(harness, id, Self.state(id, token: nil, revision: 3), token: token).status == 403)
            let notice = try #require(try await Self.events(harness, id).last)
            #expect(notice["sequence"] as? Int == 3 && notice["kind"] as? String == "log" && notice["level"] as? String == "warning")
            let message = notice["message"] as? String ?? ""
            #expect(message.hasPrefix("resumed after an interruption: machine ") && message.contains("checked in again from 127.0.0.1 with its run's token"),
                    "\(message)")
            #expect(try await harness.admin("GET", "/deployments/\(id)").json["resumes"] as? Int == 1)

            // The dashboard says so, on the list and the deployment's page (with where the run state is).
            let list = try await harness.request("GET", "/dashboard", token: harness.adminToken)
            #expect(list.text.contains("<div class=\"resumed\">resumed after an interruption</div>"), "\(list.text)")
            let page = try await harness.request("GET", "/dashboard/deployments/\(id)", token: harness.adminToken)
            #expect(page.text.contains("resumed after an interruption</div>") && page.text.contains("at step 1 &quot;Mark&quot; (begun, not ended; revision 2"),
                    "\(page.text)")

            // Cut again, with no state sent in between: resumed with the current token, without a run state.
            let again = try await Self.checkIn(harness, resume: (id, newToken))
            let second = try #require(again.json["deployment"] as? [String: Any], "\(again.text)")
            #expect(second["resumed"] as? Bool == true && (second["runState"] as? [String: Any])?["revision"] as? Int == 2, "\(second)")
            #expect(try await harness.admin("GET", "/deployments/\(id)").json["resumes"] as? Int == 2)
            #expect(try await harness.request("GET", "/dashboard", token: harness.adminToken).text.contains("resumed after an interruption (2 times)"))
        }
    }

    /// A deployment that never had a state sent: resumed, and the answer has no runState.
    @Test(arguments: StorageKind.allCases) func aResumeWithoutAStateHasNone(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: Self.mac)
            let answer = try await Self.checkIn(harness, resume: (id, token))
            let deployment = try #require(answer.json["deployment"] as? [String: Any], "\(answer.text)")
            #expect(deployment["resumed"] as? Bool == true && deployment["runState"] == nil && deployment["eventsAfter"] as? Int == 1, "\(deployment)")
        }
    }

    @Test(arguments: StorageKind.allCases) func aResumeThatProvesNothingIsAnOrdinaryCheckIn(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: Self.mac)
            #expect(try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"),
            ]), token: token).status == 200)
            let plain = try await Self.checkIn(harness)
            #expect(plain.status == 409, "\(plain.text)")
            func expectToday(_ answer: ServerHarness.Answer, _ what: String) throws {
                #expect(answer.status == 409 && answer.json["deployment"] == nil, "\(what): \(answer.text)")
                let retryAfter = try #require(answer.json["retryAfter"] as? Int, "\(what): \(answer.text)")
                #expect((1...600).contains(retryAfter) && answer.headers["retry-after"] == String(retryAfter), "\(what)")
                // The same words as a check-in claiming nothing (but the wait): nothing says which part was wrong.
                let words = { (text: String) in text.replacingOccurrences(of: #"in \d+ s"#, with: "in N s", options: .regularExpression) }
                #expect(words(answer.json["error"] as? String ?? "") == words(plain.json["error"] as? String ?? ""), "\(what): \(answer.text)")
            }
            try expectToday(try await Self.checkIn(harness, resume: (id, String(token.dropLast()) + (token.hasSuffix("0") ? "1" : "0"))), "a wrong token")
            try expectToday(try await Self.checkIn(harness, resume: (UUID().uuidString.lowercased(), token)), "another deployment")
            try expectToday(try await Self.checkIn(harness, resume: (id, "")), "an empty token")
            // Another machine claiming this deployment with its token: a check-in of that machine, nothing of this deployment.
            let other = try await Self.checkIn(harness, mac: "52:54:00:15:00:02", resume: (id, token))
            #expect((other.json["deployment"] as? [String: Any])?["id"] as? String != id, "\(other.text)")
            #expect(try await Self.events(harness, id).count == 1, "a refused resume wrote nothing")
            #expect(try await harness.admin("GET", "/deployments/\(id)").json["resumes"] as? Int == 0)

            // A stale token: the one before a resume.
            let resumed = try #require(try await Self.checkIn(harness, resume: (id, token)).json["deployment"] as? [String: Any])
            let current = try #require(resumed["token"] as? String)
            try expectToday(try await Self.checkIn(harness, resume: (id, token)), "a stale token")
            #expect(try await harness.admin("GET", "/deployments/\(id)").json["resumes"] as? Int == 1)

            // An ended deployment is never resumed: the machine gets today's "deployed".
            #expect(try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(3, "result", status: "success"),
            ]), token: current).status == 200)
            let ended = try await Self.checkIn(harness, resume: (id, current))
            #expect(ended.status == 200 && ended.json["status"] as? String == "deployed" && ended.json["deployment"] == nil, "\(ended.text)")
            #expect(try await Self.putState(harness, id, Self.state(id, token: nil, revision: 9), token: current).status == 403)
        }
    }

    @Test(arguments: StorageKind.allCases) func runStateIsStoredWithoutTokenOrSecretsAndOnlyWhenNewer(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: { $0.allowSecretsOverHTTP = true }) { harness in
            try await harness.putSequence("join", SecretsTests.sequence)
            try await harness.putRules(SecretsTests.rules)
            let deployment = try await SecretsTests.assigned(harness, mac: Self.mac)
            let (id, token) = (deployment.id, deployment.token)
            // What an agent that redacts nothing would send: secret values, a secret by name, its token.
            let variables = ["Site": "lab", "Note": "joined with \(SecretsTests.joinPassword)", "LocalAdminPassword": SecretsTests.localPassword,
                             "RuntimeApiKey": "made-while-running-7f3a", "Pin": SecretsTests.pin]
            #expect(try await Self.putState(harness, id, Self.state(id, token: token, revision: 5, variables: variables), token: token).status == 204)
            // An older revision (a late retry) is ignored, and answered the same.
            let older = try await Self.putState(harness, id, Self.state(id, token: token, revision: 4, variables: ["Site": "older"]), token: token)
            #expect(older.status == 204, "\(older.text)")

            // Authorized as events are.
            #expect(try await Self.putState(harness, id, Self.state(id, token: nil, revision: 6), token: nil).status == 401)
            let another = try await SecretsTests.assigned(harness, mac: "52:54:00:15:00:09")
            let foreign = try await Self.putState(harness, id, Self.state(id, token: nil, revision: 6), token: another.token)
            #expect(foreign.status == 403 && foreign.json["field"] as? String == "Authorization", "\(foreign.text)")
            // Its own token, another deployment's state.
            let misfiled = try await Self.putState(harness, another.id, Self.state(id, token: nil, revision: 6), token: another.token)
            #expect(misfiled.status == 422 && misfiled.json["field"] as? String == "deploymentID", "\(misfiled.text)")
            // Too large, and not a run state.
            let padding = String(repeating: "x", count: RunState.sizeLimit)
            let large = try await Self.putState(harness, id, Self.state(id, token: nil, revision: 7, variables: ["Padding": padding]), token: token)
            #expect(large.status == 413 && (large.json["error"] as? String ?? "").contains("a run state is at most 64 KiB"), "\(large.text)")
            let badStep = Self.state(id, token: nil, revision: 7, steps: ["2.1": "halfway"])
            let refused = try await Self.putState(harness, id, badStep, token: token)
            #expect(refused.status == 422 && refused.json["field"] as? String == "steps.2.1", "\(refused.text)")
            let notJSON = try await Self.putState(harness, id, Data("{\"revision\": ".utf8), token: token)
            #expect(notJSON.status == 422 && notJSON.json["error"] as? String == "the body is not valid JSON", "\(notJSON.text)")
            var withoutName = try #require(try JSONSerialization.jsonObject(with: Self.state(id, token: nil, revision: 7)) as? [String: Any])
            withoutName["sequenceName"] = nil
            let missing = try await Self.putState(harness, id, try JSONSerialization.data(withJSONObject: withoutName), token: token)
            #expect(missing.status == 422 && missing.json["field"] as? String == "sequenceName", "\(missing.text)")

            // What a resumed run gets back: revision 5, redacted, without the token.
            let answer = try await Self.checkIn(harness, resume: (id, token))
            let runState = try #require((answer.json["deployment"] as? [String: Any])?["runState"] as? [String: Any], "\(answer.text)")
            #expect(runState["revision"] as? Int == 5 && runState["token"] == nil, "\(runState)")
            #expect((runState["variables"] as? [String: String]) == ["Site": "lab", "Note": "joined with ********", "LocalAdminPassword": "********",
                                                                     "RuntimeApiKey": "********", "Pin": "********"], "\(runState)")
            let raw = try await SecretsTests.rawDatabase(harness)
            SecretsTests.expectNoSecret(in: raw, "the database")
            #expect(!raw.contains(token) && !raw.contains("made-while-running-7f3a"), "the token or a secret by name is in the database")
        }
    }

    /// A database from before migration 7: its deployments are there with no resumes, and take run states.
    @Test(arguments: StorageKind.allCases) func migrationAddsResumesAndRunStates(storage: StorageKind) async throws {
        let scratch = ScratchDirectory()
        let before = Migrations.all.filter { $0.version < 7 }
        var statements = before.flatMap(\.statements)
        statements += before.map { "INSERT INTO schema_migrations (version, applied) VALUES (\($0.version), '2026-01-01T00:00:00.000Z')" }
        statements += [
            "INSERT INTO machines (id, macs, facts, state, first_seen, last_seen) VALUES ('m1', ',52:54:00:00:00:01,', 'null', 'approved', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            "INSERT INTO deployments (id, machine_id, sequence_name, sequence_body, variables, token_hash, state, created) VALUES "
                + "('d1', 'm1', 'base', '{\"name\": \"base\", \"steps\": []}', '{}', 'x', 'running', '2026-01-01T00:00:00.000Z')",
        ]
        let location = try await ServerHarness.oldDatabase(storage, statements: statements, scratch: scratch).location
        var configuration = ServerConfiguration(dataDirectory: scratch.sub("data"), contentDirectory: scratch.sub("content"),
                                                bootDirectory: scratch.sub("boot"), adminToken: "x", publicURL: "http://127.0.0.1:1")
        configuration.secretsKey = ServerHarness.secretsKey
        let server = try await ImprintServer.open(configuration: configuration, database: location)
        do {
            let storage = server.storage
            #expect(try await storage.deployment(id: "d1")?.resumes == 0)
            #expect(try await storage.runState(deploymentID: "d1") == nil)
            var state = RunState(deploymentID: "d1", sequenceName: "base", sequenceVersion: "1", sequenceDigest: "00")
            state.revision = 2
            state.token = "on-the-disk-only"
            #expect(try await storage.storeRunState(state, deploymentID: "d1"))
            state.revision = 1
            #expect(try await storage.storeRunState(state, deploymentID: "d1") == false, "an older revision replaced a newer one")
            let kept = try await storage.runState(deploymentID: "d1")
            #expect(kept?.revision == 2 && kept?.token == nil, "\(String(describing: kept))")
        } catch {
            await server.close()
            throw error
        }
        await server.close()
    }
}
