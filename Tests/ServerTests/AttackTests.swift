import Foundation
import SequenceModel
import Server
import SQLiteNIO
import TestSupport
import Testing

/// The attacks of issue 13 on machine identity, tokens and trust, replayed over real HTTP
/// against both databases: each once took over, re-imaged or misdirected a machine.
/// One test at a time: on two cores, thirty servers and PostgreSQL pools starting together
/// time out connecting, which would hide what these tests are for.
@Suite("imprint-server under attack: identity, tokens, trust", .serialized)
struct AttackTests {
    static let victimMAC = "52:54:00:a7:00:01"
    static let victimUUID = "4c4c4544-0042-4d10-8052-b4c04f4e3232"
    static let victimSerial = "VICTIM-0001"
    static let secretSequence = """
        {"name": "Join the domain", "variables": {"DomainJoinPassword": "hunter2"}, "secrets": ["DomainJoinPassword"],
         "steps": [{"type": "setVariable", "name": "Mark", "variable": "Done", "value": "yes"}]}
        """

    /// A machine with an active deployment, known by a rule on its MAC, in a server where
    /// unknown machines wait for approval (the default policy).
    static func victim(_ harness: ServerHarness) async throws -> (machineID: String, deploymentID: String, token: String) {
        try await harness.putSequence("base")
        try await harness.putRules("""
            {"rules": [{"match": "mac", "pattern": "\(victimMAC)", "sequence": "base", "variables": {"Site": "victim-site"}}]}
            """)
        let answer = try await harness.checkIn(macs: [victimMAC], uuid: victimUUID, serial: victimSerial, model: "Latitude 7450")
        #expect(answer.status == 200 && answer.json["status"] as? String == "assigned", "\(answer.text)")
        let deployment = try #require(answer.json["deployment"] as? [String: Any])
        return (try #require(answer.json["machineId"] as? String), try #require(deployment["id"] as? String),
                try #require(deployment["token"] as? String))
    }

    static func machines(_ harness: ServerHarness) async throws -> [[String: Any]] {
        try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
    }

    static func machine(_ harness: ServerHarness, _ id: String) async throws -> [String: Any]? {
        try await machines(harness).first { $0["id"] as? String == id }
    }

    static func events(_ harness: ServerHarness, _ deploymentID: String) async throws -> [[String: Any]] {
        (try await harness.admin("GET", "/deployments/\(deploymentID)/events").json["events"] as? [[String: Any]] ?? [])
            .compactMap { $0["event"] as? [String: Any] }
    }

    /// The victim as the database has it: unchanged by anything an attacker sent.
    static func expectVictimUntouched(_ harness: ServerHarness, _ id: String, token: String, deploymentID: String,
                                      sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let record = try #require(try await machine(harness, id), sourceLocation: sourceLocation)
        #expect(record["macs"] as? [String] == [victimMAC], sourceLocation: sourceLocation)
        #expect(record["uuid"] as? String == victimUUID && record["serial"] as? String == victimSerial, sourceLocation: sourceLocation)
        #expect(record["model"] as? String == "Latitude 7450", "\(record)", sourceLocation: sourceLocation)
        // The real agent's token still opens its deployment.
        let sequence = try await harness.request("GET", "/api/v1/deployments/\(deploymentID)/sequence", token: token)
        #expect(sequence.status == 200, "\(sequence.text)", sourceLocation: sourceLocation)
    }

    // MARK: - Check-in matching is exact

    @Test(arguments: StorageKind.allCases) func likeMetacharactersInAMACMatchNothing(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (victimID, deploymentID, token) = try await Self.victim(harness)
            for payload in ["%", "_", "\\", "%%", "*", "?", "[a-f]", "52:54:00:%", "52:54:00:a7:00:0_", "__:__:__:__:__:__",
                            "52%54%00%a7%00%01", "' OR '1'='1", "52:54:00:a7:00:01%", ",52:54:00:a7:00:01,", ""] {
                let alone = try await harness.checkIn(macs: [payload])
                #expect(alone.status == 422 && alone.json["field"] as? String == "facts.macAddresses[0]", "\(payload): \(alone.text)")
                #expect(alone.json["deployment"] == nil && !alone.text.contains(deploymentID))
                let second = try await harness.checkIn(macs: ["52:54:00:a7:99:01", payload], uuid: Self.victimUUID)
                #expect(second.status == 422 && second.json["field"] as? String == "facts.macAddresses[1]", "\(payload): \(second.text)")
                // The same characters as a boot script's MAC: refused, never a lookup.
                let encoded = payload.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                if !encoded.isEmpty {
                    let script = try await harness.request("GET", "/boot/\(encoded).ipxe")
                    #expect(script.status == 400 && !script.text.contains("exit"), "\(payload): \(script.text)")
                }
            }
            // And in the UUID: only 8-4-4-4-12 hex digits.
            for payload in ["%", "4c4c4544-%", "4c4c4544-0042-4d10-8052-b4c04f4e323_", "' OR 1=1 --"] {
                let answer = try await harness.checkIn(macs: ["52:54:00:a7:99:02"], uuid: payload)
                #expect(answer.status == 422 && answer.json["field"] as? String == "facts.uuid", "\(payload): \(answer.text)")
            }
            // A serial is compared whole: `%` is just a (strange) serial, another machine's.
            let percentSerial = try await harness.checkIn(macs: ["52:54:00:a7:99:03"], serial: "%")
            #expect(percentSerial.status == 200 && percentSerial.json["status"] as? String == "pending", "\(percentSerial.text)")
            for payload in ["VICTIM\n0001", String(repeating: "x", count: 65), " VICTIM-0001"] {
                let answer = try await harness.checkIn(macs: ["52:54:00:a7:99:04"], serial: payload)
                #expect(answer.status == 422 && answer.json["field"] as? String == "facts.serialNumber", "\(answer.text)")
            }
            try await Self.expectVictimUntouched(harness, victimID, token: token, deploymentID: deploymentID)
            let all = try await Self.machines(harness)
            #expect(all.count == 2, "only the victim and the machine with serial %: \(all)")
            #expect((try await harness.admin("GET", "/deployments").json["deployments"] as? [Any])?.count == 1)
        }
    }

    /// Same UUID with another MAC, the victim's MAC with another UUID, the victim's MAC alone:
    /// each becomes a new pending machine with the conflict listed, and gets nothing.
    @Test(arguments: StorageKind.allCases) func uuidAndMACSpoofingMakeNewPendingMachines(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (victimID, deploymentID, token) = try await Self.victim(harness)
            // The MAC alone comes last: a record holding nothing else matches any later claim of it.
            let attempts: [(macs: [String], uuid: String?, serial: String?, differs: String)] = [
                (["52:54:00:ee:00:01"], Self.victimUUID, Self.victimSerial, "MAC differs"),
                ([Self.victimMAC], "4c4c4544-0000-0000-0000-00000000beef", Self.victimSerial, "UUID differs"),
                ([Self.victimMAC], Self.victimUUID, "OTHER-0001", "serial differs"),
                ([Self.victimMAC.uppercased().replacingOccurrences(of: ":", with: "-")], nil, nil, "UUID missing"),
            ]
            var pendingIDs: Set<String> = []
            for attempt in attempts {
                // A MAC rule names the victim's MAC: an impostor claiming it must wait all the same.
                let answer = try await harness.checkIn(macs: attempt.macs, uuid: attempt.uuid, serial: attempt.serial)
                #expect(answer.status == 200 && answer.json["status"] as? String == "pending", "\(attempt): \(answer.text)")
                #expect(answer.json["deployment"] == nil && !answer.text.contains(deploymentID) && !answer.text.contains("victim-site"))
                let id = try #require(answer.json["machineId"] as? String)
                #expect(id != victimID)
                pendingIDs.insert(id)
                let record = try #require(try await Self.machine(harness, id))
                #expect(record["state"] as? String == "pending")
                // Earlier impostors share identifiers too and are listed as well; the victim always.
                let conflicts = record["conflicts"] as? [[String: Any]] ?? []
                let withVictim = try #require(conflicts.first { $0["machineID"] as? String == victimID }, "\(record)")
                let description = withVictim["description"] as? String ?? ""
                #expect(description.hasPrefix("conflicts with machine \(victimID): ") && description.contains(attempt.differs), "\(description)")
                // Asking again is the same pending machine, not one more.
                let again = try await harness.checkIn(macs: attempt.macs, uuid: attempt.uuid, serial: attempt.serial)
                #expect(again.json["machineId"] as? String == id && again.json["status"] as? String == "pending", "\(again.text)")
            }
            #expect(pendingIDs.count == attempts.count)
            try await Self.expectVictimUntouched(harness, victimID, token: token, deploymentID: deploymentID)
            // The victim's MAC still belongs to the victim alone.
            #expect(try await harness.server.storage.machine(mac: Self.victimMAC)?.id == victimID)
            #expect((try await harness.admin("GET", "/deployments").json["deployments"] as? [Any])?.count == 1)

            // Approving an impostor is the administrator's decision: then it is a machine of its own,
            // and gets a deployment of its own, never the victim's.
            let impostor = try #require(pendingIDs.first)
            #expect(try await harness.admin("POST", "/machines/\(impostor)/approve").status == 200)
        }
    }

    /// The forced re-image: a deployed machine's serial with another MAC once stripped the real
    /// MAC from its record, so its next network boot ran the agent again.
    @Test(arguments: StorageKind.allCases) func serialSpoofingNeverStripsTheRealMAC(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (victimID, deploymentID, token) = try await Self.victim(harness)
            let done = try await harness.request("POST", "/api/v1/deployments/\(deploymentID)/events", body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "result", status: "success"),
            ]), token: token)
            #expect(done.json["state"] as? String == "succeeded", "\(done.text)")
            let diskBoot = try await harness.request("GET", "/boot/\(Self.victimMAC).ipxe")
            #expect(diskBoot.text.hasSuffix("exit 1\n"), "\(diskBoot.text)")
            // Nothing but the script: not the sequence, not when.
            #expect(!diskBoot.text.contains("base") && !diskBoot.text.contains("20"), "\(diskBoot.text)")

            let spoof = try await harness.checkIn(macs: ["52:54:00:ee:00:02"], serial: Self.victimSerial, model: "Latitude 7450")
            #expect(spoof.json["status"] as? String == "pending", "\(spoof.text)")
            let record = try #require(try await Self.machine(harness, victimID))
            #expect(record["macs"] as? [String] == [Self.victimMAC] && record["uuid"] as? String == Self.victimUUID)
            let still = try await harness.request("GET", "/boot/\(Self.victimMAC.replacingOccurrences(of: ":", with: "%3A")).ipxe")
            #expect(still.text.hasSuffix("exit 1\n") && !still.text.contains("kernel "), "the real machine would be re-imaged: \(still.text)")
            // The impostor's own MAC boots the agent, which will wait for approval.
            #expect(try await harness.request("GET", "/boot/52:54:00:ee:00:02.ipxe").text.contains("kernel "))
            // The real machine checking in (a USB boot) is told it is deployed; nothing changes.
            let real = try await harness.checkIn(macs: [Self.victimMAC], uuid: Self.victimUUID, serial: Self.victimSerial)
            #expect(real.json["status"] as? String == "deployed", "\(real.text)")
        }
    }

    // MARK: - Tokens are issued once

    @Test(arguments: StorageKind.allCases) func secondCheckInGetsNoTokenAndTheFirstKeepsWorking(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (victimID, deploymentID, token) = try await Self.victim(harness)
            let path = "/api/v1/deployments/\(deploymentID)/events"
            #expect(try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(1, "sequenceStarted")]),
                                              token: token).status == 200)
            // Exactly the victim's identity, as someone who knows all of it would send.
            let second = try await harness.checkIn(macs: [Self.victimMAC], uuid: Self.victimUUID, serial: Self.victimSerial, model: "Latitude 7450")
            #expect(second.status == 409, "\(second.text)")
            #expect(second.json["deployment"] == nil && !second.text.contains("victim-site"))
            let message = second.json["error"] as? String ?? ""
            #expect(message.contains("deployment \(deploymentID) is running with a token already issued") && message.contains("reset-token"), "\(message)")
            let retryAfter = try #require(second.json["retryAfter"] as? Int)
            #expect((1...600).contains(retryAfter) && second.headers["retry-after"] == String(retryAfter))
            // The holder goes on: its events and its sequence, and no event was added for the refusal.
            let next = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(2, "stepStarted", step: "1")]), token: token)
            #expect(next.status == 200 && next.json["acknowledged"] as? Int == 2, "\(next.text)")
            #expect(try await Self.events(harness, deploymentID).count == 2)
            try await Self.expectVictimUntouched(harness, victimID, token: token, deploymentID: deploymentID)

            // A result is taken once: after it, nothing (a second result least of all).
            #expect(try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(3, "result", status: "success")]),
                                              token: token).json["state"] as? String == "succeeded")
            let forged = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(4, "result", status: "failed")]), token: token)
            #expect(forged.status == 403, "\(forged.text)")
            #expect(try await Self.events(harness, deploymentID).filter { $0["kind"] as? String == "result" }.count == 1)
            #expect(try await harness.admin("GET", "/deployments/\(deploymentID)").json["state"] as? String == "succeeded")
        }
    }

    /// Two batches each carrying a result, sent at once with the right token: one result is kept.
    @Test(arguments: StorageKind.allCases) func concurrentResultsAreAcceptedOnce(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (_, deploymentID, token) = try await Self.victim(harness)
            let path = "/api/v1/deployments/\(deploymentID)/events"
            async let first = harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(1, "result", status: "success")]), token: token)
            async let second = harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(2, "result", status: "failed")]), token: token)
            let answers = try await [first, second]
            #expect(answers.filter { $0.status == 200 }.count == 1, "\(answers.map(\.text))")
            #expect(answers.allSatisfy { [200, 403, 409].contains($0.status) }, "\(answers.map(\.text))")
            #expect(try await Self.events(harness, deploymentID).filter { $0["kind"] as? String == "result" }.count == 1)
        }
    }

    @Test(arguments: StorageKind.allCases) func tokenIsReissuedOnlyAfterQuietTimeOrAReset(storage: StorageKind) async throws {
        // Long enough that the check-in right after the events comes well inside it on a loaded machine.
        try await ServerHarness.with(storage: storage, configure: { $0.tokenReissueAfter = 5 }) { harness in
            let (_, deploymentID, token) = try await Self.victim(harness)
            let path = "/api/v1/deployments/\(deploymentID)/events"
            #expect(try await harness.request("POST", path, body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "stepStarted", step: "1"),
            ]), token: token).status == 200)
            // Heard from just now: refused.
            let heard = Date()
            let early = try await harness.checkIn(macs: [Self.victimMAC], uuid: Self.victimUUID, serial: Self.victimSerial)
            #expect(early.status == 409, "\(Date().timeIntervalSince(heard)) s after the events: \(early.text)")
            try await Task.sleep(nanoseconds: 5_600_000_000)

            // Quiet for longer than --token-reissue-after: the machine (rebooted) gets a new token.
            let again = try await harness.checkIn(macs: [Self.victimMAC], uuid: Self.victimUUID, serial: Self.victimSerial)
            #expect(again.status == 200 && again.json["status"] as? String == "assigned", "\(again.text)")
            let deployment = try #require(again.json["deployment"] as? [String: Any])
            #expect(deployment["id"] as? String == deploymentID)
            let newToken = try #require(deployment["token"] as? String)
            #expect(newToken != token && deployment["eventsAfter"] as? Int == 3)
            #expect(try await harness.request("GET", "/api/v1/deployments/\(deploymentID)/sequence", token: token).status == 403)
            #expect(try await harness.request("GET", "/api/v1/deployments/\(deploymentID)/sequence", token: newToken).status == 200)
            // The re-issue is a warning in the deployment's events and its message.
            let notice = try #require(try await Self.events(harness, deploymentID).last)
            #expect(notice["sequence"] as? Int == 3 && notice["kind"] as? String == "log" && notice["level"] as? String == "warning")
            #expect((notice["message"] as? String ?? "").contains("token re-issued"), "\(notice)")
            let summary = try await harness.admin("GET", "/deployments/\(deploymentID)").json
            #expect((summary["message"] as? String ?? "").contains("token re-issued") && summary["acknowledged"] as? Int == 3, "\(summary)")
            // The new agent numbers after it.
            let continued = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(4, "stepStarted", step: "1")]),
                                                      token: newToken)
            #expect(continued.json["acknowledged"] as? Int == 4, "\(continued.text)")

            // An administrator's reset: the token stops at once, the next check-in gets a new one
            // without waiting, and both are in the events.
            #expect(try await harness.admin("POST", "/deployments/no-such-deployment/reset-token").status == 404)
            let reset = try await harness.admin("POST", "/deployments/\(deploymentID)/reset-token")
            #expect(reset.status == 200, "\(reset.text)")
            #expect(try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(6, "log")]), token: newToken).status == 403)
            let afterReset = try await harness.checkIn(macs: [Self.victimMAC], uuid: Self.victimUUID, serial: Self.victimSerial)
            let third = try #require(afterReset.json["deployment"] as? [String: Any], "\(afterReset.text)")
            let thirdToken = try #require(third["token"] as? String)
            #expect(third["eventsAfter"] as? Int == 6)
            let messages = try await Self.events(harness, deploymentID).compactMap { $0["message"] as? String }
            #expect(messages.filter { $0.contains("token reset by an administrator") }.count == 1, "\(messages)")
            #expect(messages.filter { $0.contains("token re-issued") }.count == 2, "\(messages)")
            // No third token right after the reset's one is used: the rule holds again.
            #expect(try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(7, "result", status: "success")]),
                                              token: thirdToken).status == 200)
            let ended = try await harness.admin("POST", "/deployments/\(deploymentID)/reset-token")
            #expect(ended.status == 409, "\(ended.text)")
        }
    }

    // MARK: - Host header

    @Test(arguments: StorageKind.allCases) func hostHeaderNeverReachesScriptsOrServerURL(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, publicURL: "http://deploy.example:8080") { harness in
            try await harness.putSequence("base")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
            let forged = [["Host: evil.example"], ["Host: evil.example:666"], ["X-Forwarded-Host: evil.example"],
                          ["X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example"], ["Forwarded: host=evil.example;proto=https"],
                          ["X-Original-URL: http://evil.example/"], ["Host: evil.example", "X-Forwarded-Host: evil.example"]]
            for (index, headers) in forged.enumerated() {
                for path in ["/boot.ipxe", "/boot/52:54:00:b0:00:0\(index).ipxe"] {
                    let script = try await harness.request("GET", path, headers: headers)
                    #expect(script.status == 200 && !script.text.contains("evil"), "\(headers) \(path): \(script.text)")
                    #expect(script.text.contains("imprint.server=http://deploy.example:8080"), "\(script.text)")
                }
                let checkIn = try await harness.request("POST", "/api/v1/agents/checkin", headers: headers,
                                                        body: ServerHarness.facts(macs: ["52:54:00:b0:01:0\(index)"]))
                let variables = (checkIn.json["deployment"] as? [String: Any])?["variables"] as? [String: String]
                #expect(variables?["ServerURL"] == "http://deploy.example:8080", "\(headers): \(checkIn.text)")
            }
            // Absolute-form request targets (as sent to a proxy): the authority in them is ignored too.
            for target in ["http://evil.example/boot.ipxe", "http://evil.example:8080/boot.ipxe"] {
                let output = try await ServerHarness.offload { [base = harness.base] in
                    try run(["curl", "-sS", "--request-target", target, base + "/boot.ipxe"], allowFailure: true).output
                }
                #expect(!output.contains("evil") && output.contains("deploy.example:8080"), "\(target): \(output)")
            }
        }
    }

    @Test func serverRefusesToStartWithoutAPublicURL() throws {
        let scratch = ScratchDirectory()
        let missing = try run([ServerProcess.binary, "--bind", "127.0.0.1:0", "--data", scratch.sub("data"), "--admin-token", "x"],
                              allowFailure: true)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("--public-url") && missing.stderr.contains("ServerURL"), "\(missing.stderr)")
        for bad in ["evil.example", "ftp://x", "http://", "http://10.0.0.1:8080/?x=1"] {
            let refused = try run([ServerProcess.binary, "--bind", "127.0.0.1:0", "--data", scratch.sub("data"), "--admin-token", "x",
                                   "--public-url", bad], allowFailure: true)
            #expect(refused.status != 0 && refused.stderr.contains("--public-url"), "\(bad): \(refused.stderr)")
        }
    }

    // MARK: - Limits

    @Test(arguments: StorageKind.allCases) func oversizedFactsAreRefusedWith413(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let huge = ServerHarness.facts(macs: ["52:54:00:c0:00:01"], model: String(repeating: "M", count: 70 << 10))
            let answer = try await harness.request("POST", "/api/v1/agents/checkin", body: huge)
            #expect(answer.status == 413 && answer.json["field"] as? String == "facts", "\(answer.text)")
            #expect((answer.json["error"] as? String ?? "").contains("64 KiB"))
            // Chunked, so no Content-Length announces it: refused as it arrives.
            let chunked = try await harness.request("POST", "/api/v1/agents/checkin", headers: ["Transfer-Encoding: chunked"], body: huge)
            #expect(chunked.status == 413, "\(chunked.text)")
            let tooManyMACs = try await harness.checkIn(macs: (0..<40).map { String(format: "52:54:00:c1:00:%02x", $0) })
            #expect(tooManyMACs.status == 422 && tooManyMACs.json["field"] as? String == "facts.macAddresses")
            let controlModel = try await harness.checkIn(macs: ["52:54:00:c0:00:02"], model: "Latitude\u{1b}[2J")
            #expect(controlModel.status == 422 && controlModel.json["field"] as? String == "facts.model")
            #expect(try await Self.machines(harness).isEmpty)
        }
    }

    @Test(arguments: StorageKind.allCases) func checkInFloodIsRefusedWith429(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, configure: { $0.newMachinesPerMinute = 5 }) { harness in
            for n in 0..<5 {
                #expect(try await harness.checkIn(macs: [String(format: "52:54:00:f1:00:%02x", n)]).json["status"] as? String == "pending")
            }
            let flood = try await harness.checkIn(macs: ["52:54:00:f1:00:ff"])
            #expect(flood.status == 429, "\(flood.text)")
            let retryAfter = try #require(flood.json["retryAfter"] as? Int)
            #expect((1...60).contains(retryAfter) && flood.headers["retry-after"] == String(retryAfter))
            #expect((flood.json["error"] as? String ?? "").contains("127.0.0.1"))
            #expect(try await Self.machines(harness).count == 5)
            // Machines already known are not new: they are still answered.
            #expect(try await harness.checkIn(macs: ["52:54:00:f1:00:00"]).json["status"] as? String == "pending")
        }
    }

    // MARK: - Trust policy

    @Test(arguments: StorageKind.allCases) func agentsOnlyFromTheirSubnets(storage: StorageKind) async throws {
        let elsewhere = try IPSubnet.list(parsing: "10.99.0.0/16,fd00:99::/64")
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: { $0.agentSubnets = elsewhere }) { harness in
            for (method, path) in [("POST", "/api/v1/agents/checkin"), ("GET", "/boot.ipxe"), ("GET", "/boot/52:54:00:00:00:01.ipxe"),
                                   ("GET", "/boot/files/vmlinuz"), ("GET", "/content/x.wim"), ("GET", "/api/v1/deployments/x/sequence")] {
                let answer = try await harness.request(method, path, body: method == "POST" ? ServerHarness.facts(macs: ["52:54:00:d1:00:01"]) : nil)
                #expect(answer.status == 403 && (answer.json["error"] as? String ?? "").contains("127.0.0.1 is not in the networks"),
                        "\(path): \(answer.status) \(answer.text)")
            }
            // Forwarding headers change nothing: the connection's own address counts.
            let forwarded = try await harness.request("GET", "/boot.ipxe", headers: ["X-Forwarded-For: 10.99.0.5", "X-Real-IP: 10.99.0.5"])
            #expect(forwarded.status == 403)
            #expect(try await Self.machines(harness).isEmpty)
            // The administrator is not an agent.
            #expect(try await harness.admin("GET", "/machines").status == 200)
            #expect(try await harness.request("GET", "/metrics").status == 200)
        }
        let loopback = try IPSubnet.list(parsing: "127.0.0.0/8")
        try await ServerHarness.with(storage: storage, configure: { $0.agentSubnets = loopback }) { (harness: ServerHarness) async throws in
            #expect(try await harness.checkIn(macs: ["52:54:00:d1:00:02"]).status == 200)
            #expect(try await harness.request("GET", "/boot.ipxe").status == 200)
        }
    }

    @Test func subnetsParseAndMatch() throws {
        let subnets = try IPSubnet.list(parsing: "10.0.0.0/24, fd00::/64,192.168.1.7")
        #expect(subnets.map(\.description) == ["10.0.0.0/24", "fd00::/64", "192.168.1.7/32"])
        #expect(subnets[0].contains("10.0.0.200") && !subnets[0].contains("10.0.1.1") && subnets[0].contains("::ffff:10.0.0.5"))
        #expect(subnets[1].contains("fd00::5") && subnets[1].contains("fd00::1:2:3:4") && !subnets[1].contains("fd00:0:0:1::1"))
        #expect(subnets[2].contains("192.168.1.7") && !subnets[2].contains("192.168.1.8") && !subnets[2].contains("not an address"))
        #expect(try IPSubnet(parsing: "0.0.0.0/0").contains("203.0.113.9"))
        for bad in ["10.0.0.5/24", "10.0.0.0/33", "10.0.0/24", "evil.example", "fd00::/129", ""] {
            #expect(throws: ConfigurationError.self, "\(bad)") { _ = try IPSubnet.list(parsing: bad) }
        }
        #expect(throws: ConfigurationError.self) { _ = try ServerConfiguration.validatedPublicURL("http://10.0.0.1:8080/#x") }
        #expect(try ServerConfiguration.validatedPublicURL("https://deploy.example/") == "https://deploy.example")
    }

    @Test(arguments: StorageKind.allCases) func onlyRegisteredMachinesWhenRequired(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: { $0.requireRegistration = true }) { harness in
            try await harness.putSequence("base")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
            let stranger = try await harness.checkIn(macs: ["52:54:00:e1:00:01"], uuid: Self.victimUUID)
            #expect(stranger.status == 403 && stranger.json["field"] as? String == "facts", "\(stranger.text)")
            #expect((stranger.json["error"] as? String ?? "").contains("POST /api/v1/admin/machines"))
            #expect(try await Self.machines(harness).isEmpty, "a refused check-in stores nothing")

            let registered = try await harness.admin("POST", "/machines", json: #"{"macs": ["52-54-00-E1-00-01"], "serial": "REG-1"}"#)
            #expect(registered.status == 201 && registered.json["state"] as? String == "approved", "\(registered.text)")
            #expect(registered.json["macs"] as? [String] == ["52:54:00:e1:00:01"] && registered.json["registered"] != nil)
            let clash = try await harness.admin("POST", "/machines", json: #"{"macs": ["52:54:00:e1:00:02", "52:54:00:e1:00:01"]}"#)
            #expect(clash.status == 409 && clash.json["field"] as? String == "macs[1]", "\(clash.text)")
            let malformed = try await harness.admin("POST", "/machines", json: #"{"macs": ["%"]}"#)
            #expect(malformed.status == 422 && malformed.json["field"] as? String == "macs[0]", "\(malformed.text)")
            #expect(try await harness.admin("POST", "/machines", json: "{}").status == 422)
            #expect(try await harness.request("POST", "/api/v1/admin/machines", body: Data("{}".utf8)).status == 401)

            // The registered machine: its first check-in (telling its UUID too) gets the default rule.
            let known = try await harness.checkIn(macs: ["52:54:00:e1:00:01"], uuid: Self.victimUUID, serial: "REG-1")
            #expect(known.json["status"] as? String == "assigned" && known.json["machineId"] as? String == registered.json["id"] as? String,
                    "\(known.text)")
            // Its serial with another MAC is not it: refused, and the registered machine unchanged.
            let impostor = try await harness.checkIn(macs: ["52:54:00:e1:00:09"], serial: "REG-1")
            #expect(impostor.status == 403, "\(impostor.text)")
            #expect(try await Self.machines(harness).count == 1)
        }
    }

    @Test(arguments: StorageKind.allCases) func secretsOnlyOverTLSAndToApprovedMachines(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            try await harness.putSequence("join", Self.secretSequence)
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "join", "variables": {}}]}"#)
            let plain = try await harness.checkIn(macs: ["52:54:00:5e:00:01"])
            #expect(plain.status == 403 && !plain.text.contains("hunter2"), "\(plain.text)")
            let message = plain.json["error"] as? String ?? ""
            #expect(message.contains("DomainJoinPassword") && message.contains("HTTPS") && message.contains("--allow-secrets-over-http"), "\(message)")
            #expect((try await harness.admin("GET", "/deployments").json["deployments"] as? [Any])?.isEmpty == true)
        }
        // Allowed over HTTP (a lab): still only to a machine an administrator approved.
        try await ServerHarness.with(storage: storage, unknownMachines: .pending, configure: { $0.allowSecretsOverHTTP = true }) { harness in
            try await harness.putSequence("join", Self.secretSequence)
            #expect(try await harness.checkIn(macs: ["52:54:00:5e:00:02"]).json["status"] as? String == "pending")
            // A rule names it now; without secrets that would be enough, with them it is not.
            try await harness.putRules(#"{"rules": [{"match": "mac", "pattern": "52:54:00:5e:00:02", "sequence": "join", "variables": {}}]}"#)
            let waiting = try await harness.checkIn(macs: ["52:54:00:5e:00:02"])
            #expect(waiting.json["status"] as? String == "pending" && (waiting.json["message"] as? String ?? "").contains("approved"), "\(waiting.text)")
            let id = try #require(waiting.json["machineId"] as? String)
            #expect(try await harness.admin("POST", "/machines/\(id)/approve").status == 200)
            let assigned = try await harness.checkIn(macs: ["52:54:00:5e:00:02"])
            let deployment = try #require(assigned.json["deployment"] as? [String: Any], "\(assigned.text)")
            let sequence = try await harness.request("GET", "/api/v1/deployments/\(deployment["id"] as? String ?? "")/sequence",
                                                     token: deployment["token"] as? String)
            #expect(sequence.status == 200 && sequence.text.contains("DomainJoinPassword"))
        }
    }

    // MARK: - Migration 4

    /// A database from before migration 4 (MACs in one text column, one of them the LIKE
    /// attack's `%`, one MAC on two machines): the migration fills the MAC table on both
    /// databases, each MAC to the machine seen first, and drops what is not a MAC.
    @Test(arguments: StorageKind.allCases) func migrationFillsTheMACTable(storage: StorageKind) async throws {
        let scratch = ScratchDirectory()
        let before = Migrations.all.filter { $0.version <= 3 }
        var statements = before.flatMap(\.statements)
        statements += before.map { "INSERT INTO schema_migrations (version, applied) VALUES (\($0.version), '2026-01-01T00:00:00.000Z')" }
        let machines = [("m1", ",52:54:00:00:00:01,52:54:00:00:00:02,", "2026-01-01T00:00:01.000Z"),
                        ("m2", ",%,", "2026-01-01T00:00:02.000Z"),
                        ("m3", ",52:54:00:00:00:02,52:54:00:00:00:03,", "2026-01-01T00:00:03.000Z"),
                        ("m4", "", "2026-01-01T00:00:04.000Z")]
        statements += machines.map { id, macs, seen in
            "INSERT INTO machines (id, macs, facts, state, first_seen, last_seen) VALUES ('\(id)', '\(macs)', 'null', 'approved', '\(seen)', '\(seen)')"
        }
        let location = try await ServerHarness.oldDatabase(storage, statements: statements, scratch: scratch).location
        let configuration = ServerConfiguration(dataDirectory: scratch.sub("data"), contentDirectory: scratch.sub("content"),
                                                bootDirectory: scratch.sub("boot"), adminToken: "x", publicURL: "http://127.0.0.1:1")
        let server = try await ImprintServer.open(configuration: configuration, database: location)
        do {
            let storage = server.storage
            #expect(try await storage.machine(mac: "52:54:00:00:00:01")?.id == "m1")
            #expect(try await storage.machine(mac: "52:54:00:00:00:02")?.id == "m1", "the machine seen first keeps a shared MAC")
            #expect(try await storage.machine(mac: "52:54:00:00:00:03")?.id == "m3")
            #expect(try await storage.machine(mac: "%") == nil)
            // And a check-in of m3 (its whole list) is still m3.
            let claim = try MachineIdentity(macs: ["52:54:00:00:00:02", "52:54:00:00:00:03"], uuid: nil, serial: nil, prefix: "",
                                            macsField: "macs", uuidField: "uuid", serialField: "serial")
            let facts = Facts(macAddresses: claim.macs, uuid: nil, serialNumber: nil, manufacturer: nil, model: nil, firmware: "uefi",
                              memoryMiB: 1, cpuCount: 1, cpuModel: nil, architecture: "amd64", disks: [])
            let policy = CheckInPolicy(newState: .pending, mayCreate: true, sourceAddress: "127.0.0.1", newMachinesPerMinute: nil)
            guard case let .known(machine) = try await storage.identifyCheckIn(claim, facts: facts, policy: policy) else {
                Issue.record("m3 not recognised")
                await server.close()
                return
            }
            #expect(machine.id == "m3")
        } catch {
            await server.close()
            throw error
        }
        await server.close()
    }
}
