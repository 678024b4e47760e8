import Foundation
import Server
import SQLiteNIO
import TestSupport
import Testing

@Suite("imprint-server over real HTTP")
struct ServerTests {
    @Test func iPXEScriptsAndBootFiles() async throws {
        try await ServerHarness.with(publicURL: "http://deploy.example:8080/") { harness in
            let script = try await harness.request("GET", "/boot.ipxe")
            #expect(script.status == 200)
            let lines = script.text.split(separator: "\n").map(String.init)
            #expect(lines.first == "#!ipxe")
            #expect(lines.contains("kernel http://deploy.example:8080/boot/files/vmlinuz initrd=initrd console=ttyS0,115200 console=tty0 imprint.agent imprint.server=http://deploy.example:8080"))
            #expect(lines.contains("initrd http://deploy.example:8080/boot/files/initrd"))
            #expect(lines.last == "boot")
            let perMachine = try await harness.request("GET", "/boot/52:54:00:12:34:56.ipxe")
            #expect(perMachine.status == 200)
            #expect(perMachine.text.hasPrefix("#!ipxe\n"))
            #expect(perMachine.text.contains("imprint.server=http://deploy.example:8080"))

            try Data("kernel bytes".utf8).write(to: URL(fileURLWithPath: harness.boot + "/vmlinuz"))
            let kernel = try await harness.request("GET", "/boot/files/vmlinuz")
            #expect(kernel.status == 200 && kernel.text == "kernel bytes")
            #expect(try await harness.request("GET", "/boot/files/initrd").status == 404)
            #expect(try await harness.request("GET", "/boot/files/..%2fdata%2fimprint.db").status == 404)
        }
    }

    /// GRUB (the Secure Boot chain: shim, then Debian's signed GRUB) boots the same kernel, initrd
    /// and command line as iPXE, from paths on the device GRUB came from (it has no HTTP).
    @Test func grubScriptsBootWhatTheIPXEScriptsBoot() async throws {
        let kernelArguments = #"console=ttyS0 acpi_osi="Windows 2020" a$b;c it's"#
        try await ServerHarness.with(publicURL: "http://deploy.example:8080/", configure: { $0.kernelArguments = kernelArguments }) { harness in
            let generic = try await harness.request("GET", "/boot.grub")
            #expect(generic.status == 200 && generic.headers["content-type"]?.hasPrefix("text/plain") == true)
            let lines = generic.text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(lines.contains("source /boot/${net_default_mac}.grub"), "\(generic.text)")
            // Word by word as the kernel reads them, each quoted for GRUB's parser where needed.
            let words = #"console=ttyS0 'acpi_osi=Windows 2020' 'a$b;c' 'it'\''s' imprint.agent imprint.server=http://deploy.example:8080"#
            #expect(lines.contains("linux /boot/files/vmlinuz \(words)"), "\(generic.text)")
            #expect(lines.contains("initrd /boot/files/initrd"))
            // The agent is a menu entry, run once the scripts are read and closed: no `boot`
            // with a script still open (GRUB 2.12 would leave its connection open).
            #expect(lines.contains("menuentry \"Imprint agent\" {") && !lines.contains("boot"), "\(generic.text)")
            #expect(try grubScriptCheck(generic.text), "GRUB's own parser refuses: \(generic.text)")

            // iPXE's kernel line carries the same command line, as written.
            let ipxe = try await harness.request("GET", "/boot.ipxe").text.split(separator: "\n").map(String.init)
            #expect(ipxe.contains("kernel http://deploy.example:8080/boot/files/vmlinuz initrd=initrd \(kernelArguments) imprint.agent imprint.server=http://deploy.example:8080"))

            // A machine's own script, as GRUB asks for it (${net_default_mac}: lower case, colons).
            let perMachine = try await harness.request("GET", "/boot/52:54:00:12:34:56.grub")
            #expect(perMachine.status == 200)
            // Naming nothing of the machine: the same bytes as for a MAC the server never saw.
            #expect(perMachine.text.hasPrefix("# Imprint (GRUB)\n") && !perMachine.text.contains("52:54:00"), "\(perMachine.text)")
            #expect(perMachine.text.contains("\n  linux /boot/files/vmlinuz \(words)\n") && !perMachine.text.contains("source "))
            #expect(try grubScriptCheck(perMachine.text), "GRUB's own parser refuses: \(perMachine.text)")
            let bad = try await harness.request("GET", "/boot/not-a-mac.grub")
            #expect(bad.status == 400 && bad.text.contains("not a MAC address"), "\(bad.text)")

            // UEFI HTTP Boot: Debian's signed network GRUB, loaded from this server, reads
            // $prefix/grub.cfg (/grub/grub.cfg): the generic script. It asks for each file with
            // HEAD first and takes one without a 200 for missing, so HEAD answers with the size.
            let configured = try await harness.request("GET", "/grub/grub.cfg")
            #expect(configured.status == 200 && configured.body == generic.body, "\(configured.text)")
            for (path, full) in [("/grub/grub.cfg", generic), ("/boot.grub", generic), ("/boot/52:54:00:12:34:56.grub", perMachine)] {
                let head = try await harness.request("HEAD", path)
                #expect(head.status == 200, "HEAD \(path): \(head.status)")
                #expect(head.headers["content-length"] == String(full.body.count), "HEAD \(path): \(head.headers)")
            }
            #expect(try await harness.request("HEAD", "/boot/not-a-mac.grub").status == 400)
        }
    }

    /// A client that boots leaves its connections open, and GRUB numbers its TCP ports from
    /// 21550 at every start: a connection kept open forever would meet the machine's next GRUB
    /// on the same port (the lab's secureboot machine stopped at GRUB's prompt). An idle
    /// kept-alive connection is closed by the server, after a while, not after each answer.
    @Test func idleConnectionsAreClosedAfterAWhile() async throws {
        try await ServerHarness.with { harness in
            let port = harness.port
            let outcome = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(answered: Bool, closedAfter: Double?), any Error>) in
                Thread.detachNewThread {
                    continuation.resume(with: Result { try Self.keepAliveThenWaitForClose(port: port, limit: 60) })
                }
            }
            #expect(outcome.answered)
            let closedAfter = try #require(outcome.closedAfter, "the server never closed the idle connection")
            #expect(closedAfter >= 5 && closedAfter <= ImprintServer.idleConnectionTimeoutSeconds + 10, "closed after \(closedAfter) s")
        }
    }

    /// Whether `bytes` hold an HTTP response's head and as many body bytes as its Content-Length.
    private static func isWholeResponse(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let length = text[..<end.lowerBound].split(separator: "\r\n")
            .first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
        guard let length else { return false }
        return text.utf8.count - text.utf8.distance(from: text.utf8.startIndex, to: end.upperBound) >= length
    }

    /// Sends GRUB's request for /boot.grub on a plain socket, reads the answer, then waits (up
    /// to `limit` seconds) for the server to close the connection; nil when it did not.
    private static func keepAliveThenWaitForClose(port: Int, limit: Int) throws -> (answered: Bool, closedAfter: Double?) {
        var (descriptor, address) = try Loopback.socket(port: port)
        defer { close(descriptor) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let request = Array("GET /boot.grub HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: GRUB 2.12-9+deb13u4\r\n\r\n".utf8)
        guard send(descriptor, request, request.count, 0) == request.count else { throw POSIXError(.EPIPE) }
        var timeout = timeval(tv_sec: limit, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var answeredAt: Date?
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count > 0 {
                received += buffer[0..<count]
                if answeredAt == nil, Self.isWholeResponse(received) { answeredAt = Date() }
                continue
            }
            // 0: the server closed it; -1: the receive timeout (still open) or an error.
            let answered = String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 200")
            guard count == 0, let answeredAt else { return (answered, nil) }
            return (answered, Date().timeIntervalSince(answeredAt))
        }
    }

    @Test(arguments: StorageKind.allCases) func pendingMachineIsApprovedThenAssigned(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .pending) { harness in
            try await harness.putSequence("base")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {"Site": "Lab"}}]}"#)

            let first = try await harness.checkIn(macs: ["52:54:00:aa:00:01"], uuid: "4C4C4544-0000-1111-2222-333344445555")
            #expect(first.status == 200)
            #expect(first.json["status"] as? String == "pending")
            #expect(first.json["retryAfter"] as? Int == 30)
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            #expect(machines.count == 1)
            #expect(machines.first?["state"] as? String == "pending")
            let id = try #require(machines.first?["id"] as? String)

            // Still pending when it asks again, and still one machine (found by its UUID).
            #expect(try await harness.checkIn(macs: ["52:54:00:aa:00:01"], uuid: "4c4c4544-0000-1111-2222-333344445555").json["status"] as? String == "pending")
            #expect(try await harness.admin("POST", "/machines/no-such-machine/approve").status == 404)
            let approved = try await harness.admin("POST", "/machines/\(id)/approve")
            #expect(approved.status == 200 && approved.json["state"] as? String == "approved")

            let assigned = try await harness.checkIn(macs: ["52:54:00:aa:00:01"], uuid: "4c4c4544-0000-1111-2222-333344445555")
            #expect(assigned.json["status"] as? String == "assigned")
            let deployment = try #require(assigned.json["deployment"] as? [String: Any])
            let deploymentID = try #require(deployment["id"] as? String)
            let token = try #require(deployment["token"] as? String)
            #expect(token.count == 64 && token.allSatisfy(\.isHexDigit))
            #expect(deployment["sequenceUrl"] as? String == "/api/v1/deployments/\(deploymentID)/sequence")
            let variables = deployment["variables"] as? [String: String] ?? [:]
            #expect(variables["Site"] == "Lab")
            #expect(variables["DeploymentID"] == deploymentID)
            #expect(variables["ServerURL"] == harness.base)

            let sequence = try await harness.request("GET", "/api/v1/deployments/\(deploymentID)/sequence", token: token)
            #expect(sequence.status == 200)
            #expect(sequence.json["name"] as? String == "Minimal")

            // A second check-in while the deployment runs: its token was issued once; no second
            // one before --token-reissue-after of silence (AttackTests re-issues after it), and
            // the agent holding the first keeps it.
            let again = try await harness.checkIn(macs: ["52:54:00:aa:00:01"], uuid: "4c4c4544-0000-1111-2222-333344445555")
            #expect(again.status == 409, "\(again.text)")
            #expect(again.json["deployment"] == nil && (again.json["error"] as? String ?? "").contains(deploymentID))
            #expect(try await harness.request("GET", "/api/v1/deployments/\(deploymentID)/sequence", token: token).status == 200)
            #expect((try await harness.admin("GET", "/deployments").json["deployments"] as? [Any])?.count == 1)
        }
    }

    @Test(arguments: StorageKind.allCases) func rulesMatchByMACGlobAndModelInOrder(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .pending) { harness in
            try await harness.putSequence("lab")
            try await harness.putSequence("latitude")
            try await harness.putSequence("serial-one")
            try await harness.putRules("""
                {"rules": [
                  {"match": "mac", "pattern": "52:54:00:0A:*", "sequence": "lab", "variables": {"Room": "A"}},
                  {"match": "model", "pattern": "Latitude 7?50", "sequence": "latitude", "variables": {}},
                  {"match": "serial", "pattern": "ABC123", "sequence": "serial-one", "variables": {}}
                ]}
                """)
            let rules = try await harness.admin("GET", "/rules").json["rules"] as? [[String: Any]] ?? []
            #expect(rules.map { $0["sequence"] as? String } == ["lab", "latitude", "serial-one"])

            func sequenceName(_ answer: ServerHarness.Answer) async throws -> String? {
                guard let deployment = answer.json["deployment"] as? [String: Any], let id = deployment["id"] as? String else { return nil }
                let detail = try await harness.admin("GET", "/deployments/\(id)")
                return detail.json["sequence"] as? String
            }
            // A second MAC matches, written the Windows way; and the MAC rule wins over the model rule.
            let byMAC = try await harness.checkIn(macs: ["11:22:33:44:55:66", "52-54-00-0a-bc-de"], model: "Latitude 7450")
            #expect(byMAC.json["status"] as? String == "assigned")
            #expect(try await sequenceName(byMAC) == "lab")
            #expect((byMAC.json["deployment"] as? [String: Any])?["variables"].flatMap { $0 as? [String: String] }?["Room"] == "A")

            let byModel = try await harness.checkIn(macs: ["52:54:00:0b:00:01"], model: "LATITUDE 7350")
            #expect(try await sequenceName(byModel) == "latitude")
            let bySerial = try await harness.checkIn(macs: ["52:54:00:0c:00:01"], serial: "abc123")
            #expect(try await sequenceName(bySerial) == "serial-one")
            // Known by a rule: never listed as pending.
            let nothing = try await harness.checkIn(macs: ["52:54:00:0d:00:01"], model: "Latitude 74500")
            #expect(nothing.json["status"] as? String == "pending")
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            #expect(machines.filter { $0["state"] as? String == "pending" }.count == 1)
            #expect(machines.count == 4)
        }
    }

    @Test(arguments: StorageKind.allCases) func unknownMachinesGetTheDefaultRuleWhenConfigured(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            try await harness.putSequence("base")
            // No default rule yet: the machine waits.
            #expect(try await harness.checkIn(macs: ["52:54:00:0e:00:01"]).json["status"] as? String == "pending")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "", "sequence": "base", "variables": {}}]}"#)
            #expect(try await harness.checkIn(macs: ["52:54:00:0e:00:01"]).json["status"] as? String == "assigned")
        }
    }

    @Test(arguments: StorageKind.allCases) func tokenIsStoredOnlyAsItsHash(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let (id, token) = try await harness.assignedDeployment()
            #expect(!id.isEmpty && token.count == 64)
            let stored = try #require(try await harness.server.storage.deployment(id: id))
            #expect(stored.tokenHash.count == 64 && stored.tokenHash != token)
            if let url = harness.databaseURL {
                // The whole PostgreSQL database, as pg_dump writes it: the hash, never the token.
                let dump = try await PostgresCluster.shared.dump(url)
                #expect(dump.contains(stored.tokenHash))
                #expect(!dump.contains(token), "the raw token is in the database")
                return
            }
            // The database, its WAL and anything else in --data: the token appears in none of them.
            let data = harness.server.configuration.dataDirectory
            let files = try FileManager.default.contentsOfDirectory(atPath: data)
            #expect(files.contains("imprint.db"))
            var sawHash = false
            for file in files {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: data + "/" + file))
                #expect(bytes.range(of: Data(token.utf8)) == nil, "the raw token is in \(file)")
                if bytes.range(of: Data(stored.tokenHash.utf8)) != nil { sawHash = true }
            }
            #expect(sawHash)
            // And the journal is WAL, as the server promises.
            let connection = try await SQLiteConnection.open(storage: .file(path: data + "/imprint.db"))
            let mode = try await connection.query("PRAGMA journal_mode", []).first?.column("journal_mode")?.string
            try await connection.close()
            #expect(mode == "wal")
        }
    }

    /// Deploy once, as WDS does: after a successful deployment the machine's network boot goes
    /// back to its disk and its check-ins get no new deployment, until an administrator asks.
    @Test(arguments: StorageKind.allCases) func deployedMachineBootsFromItsDiskUntilRedeployed(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let mac = "52:54:00:de:00:01"
            let (id, token) = try await harness.assignedDeployment(mac: mac)
            let running = try await harness.request("GET", "/boot/\(mac).ipxe")
            #expect(running.text.contains("kernel ") && !running.text.contains("\nexit"), "\(running.text)")
            let runningGRUB = try await harness.request("GET", "/boot/\(mac).grub")
            #expect(runningGRUB.text.contains("\n  linux ") && !runningGRUB.text.contains("exit"), "\(runningGRUB.text)")
            let generic = try await harness.request("GET", "/boot.ipxe")
            #expect(generic.text.contains("chain --replace --autofree http://127.0.0.1:\(harness.port)/boot/${netX/mac}.ipxe"), "\(generic.text)")

            let done = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: ServerHarness.batch([
                ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "result", status: "success"),
            ]), token: token)
            #expect(done.json["state"] as? String == "succeeded", "\(done.text)")
            let again = try await harness.checkIn(macs: [mac])
            #expect(again.json["status"] as? String == "deployed" && again.json["deployment"] == nil, "\(again.text)")
            #expect((again.json["message"] as? String ?? "").contains(id))
            // As iPXE asks for it (colons percent-encoded), and in another spelling.
            for spelling in [mac.replacingOccurrences(of: ":", with: "%3A"), mac.uppercased().replacingOccurrences(of: ":", with: "-")] {
                let diskBoot = try await harness.request("GET", "/boot/\(spelling).ipxe")
                #expect(diskBoot.text.hasSuffix("exit 1\n") && !diskBoot.text.contains("kernel "), "\(spelling): \(diskBoot.text)")
            }
            // GRUB as well: it starts the disk's Windows Boot Manager (its `exit` would return
            // success, where UEFI's boot manager stops), and exits when there is none.
            let diskBootGRUB = try await harness.request("GET", "/boot/\(mac).grub")
            #expect(diskBootGRUB.text.contains("\n  exit\n") && diskBootGRUB.text.contains("\nset fallback=1\n") && !diskBootGRUB.text.contains("linux "),
                    "\(diskBootGRUB.text)")
            #expect(diskBootGRUB.text.contains("chainloader ($imprint_disk)/EFI/Microsoft/Boot/bootmgfw.efi"), "\(diskBootGRUB.text)")
            #expect(try grubScriptCheck(diskBootGRUB.text), "GRUB's own parser refuses: \(diskBootGRUB.text)")

            // Redeploy: unknown machine → 404; the machine → its next boot and check-in deploy again.
            #expect(try await harness.admin("POST", "/machines/no-such-machine/redeploy").status == 404)
            let machineID = try #require((again.json["message"] as? String)?.components(separatedBy: "/machines/").last?
                .components(separatedBy: "/redeploy").first)
            #expect(try await harness.admin("POST", "/machines/\(machineID)/redeploy").status == 200)
            let page = try await harness.request("GET", "/dashboard", token: harness.adminToken)
            #expect(page.text.contains("deploys again at its next network boot"), "the dashboard does not show the redeploy")
            #expect(try await harness.request("GET", "/boot/\(mac).ipxe").text.contains("kernel "))
            #expect(try await harness.request("GET", "/boot/\(mac).grub").text.contains("\n  linux "))
            let redeployed = try await harness.checkIn(macs: [mac])
            let newID = (redeployed.json["deployment"] as? [String: Any])?["id"] as? String
            #expect(redeployed.json["status"] as? String == "assigned" && newID != nil && newID != id, "\(redeployed.text)")
        }
    }

    @Test(arguments: StorageKind.allCases) func eventsAreStoredOnceAndAcknowledgedInOrder(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let (id, token) = try await harness.assignedDeployment()
            let path = "/api/v1/deployments/\(id)/events"
            let first = ServerHarness.batch([ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "stepStarted", step: "1"),
                                             ServerHarness.event(3, "progress", percent: 42.5, step: "1")])
            let once = try await harness.request("POST", path, body: first, token: token)
            #expect(once.status == 200)
            #expect(once.json["acknowledged"] as? Int == 3 && once.json["stored"] as? Int == 3)
            // The agent lost the answer and sends the same batch again.
            let twice = try await harness.request("POST", path, body: first, token: token)
            #expect(twice.status == 200)
            #expect(twice.json["acknowledged"] as? Int == 3 && twice.json["stored"] as? Int == 0)
            var events = try await harness.admin("GET", "/deployments/\(id)/events").json["events"] as? [[String: Any]] ?? []
            #expect(events.count == 3)
            let changes = events.compactMap { $0["changeID"] as? Int }
            #expect(changes.count == 3 && changes == changes.sorted() && Set(changes).count == 3)

            // A gap: 5 and 6 are stored but not acknowledged until 4 arrives.
            let gap = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(5, "stepEnded", status: "success", step: "1"),
                                                                                     ServerHarness.event(6, "log")]), token: token)
            #expect(gap.json["acknowledged"] as? Int == 3)
            let filled = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(4, "progress", percent: 99, step: "1")]), token: token)
            #expect(filled.json["acknowledged"] as? Int == 6)
            let running = try await harness.admin("GET", "/deployments/\(id)")
            #expect(running.json["state"] as? String == "running")
            #expect(running.json["currentStep"] as? String == "1 Step 1")
            events = try await harness.admin("GET", "/deployments/\(id)/events?after=4").json["events"] as? [[String: Any]] ?? []
            #expect(events.compactMap { ($0["event"] as? [String: Any])?["sequence"] as? Int } == [5, 6])

            let result = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(7, "result", status: "success")]), token: token)
            #expect(result.json["acknowledged"] as? Int == 7 && result.json["state"] as? String == "succeeded")
            let ended = try await harness.admin("GET", "/deployments/\(id)")
            #expect(ended.json["state"] as? String == "succeeded" && ended.json["percent"] as? Double == 100)
            // The result is stored: the token no longer opens anything.
            let late = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(8, "log")]), token: token)
            #expect(late.status == 403)
            #expect(late.json["field"] as? String == "Authorization")

            let metrics = try await harness.request("GET", "/metrics").text
            #expect(metrics.contains("imprint_events_ingested_total 7\n"))
            #expect(metrics.contains("imprint_deployments{state=\"succeeded\"} 1\n"))
            #expect(metrics.contains("imprint_deployments{state=\"running\"} 0\n"))
        }
    }

    @Test func refusalsHaveTheRightStatusAndSayWhy() async throws {
        try await ServerHarness.with(unknownMachines: .default) { harness in
            let (id, token) = try await harness.assignedDeployment()
            let path = "/api/v1/deployments/\(id)/events"
            let good = ServerHarness.batch([ServerHarness.event(1, "sequenceStarted")])

            let noToken = try await harness.request("POST", path, body: good)
            #expect(noToken.status == 401 && noToken.json["field"] as? String == "Authorization")
            #expect(noToken.headers["www-authenticate"] == "Bearer")
            #expect(try await harness.request("POST", path, body: good, token: String(repeating: "0", count: 64)).status == 403)
            #expect(try await harness.request("POST", "/api/v1/deployments/not-a-deployment/events", body: good, token: token).status == 403)
            #expect(try await harness.request("GET", "/api/v1/deployments/\(id)/sequence").status == 401)

            let huge = Data(#"{"events": [], "pad": ""#.utf8) + Data(repeating: UInt8(ascii: "x"), count: 1 << 20) + Data(#""}"#.utf8)
            let tooLarge = try await harness.request("POST", path, body: huge, token: token)
            #expect(tooLarge.status == 413)
            #expect(tooLarge.json["error"] != nil)

            let badKind = ServerHarness.batch([ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "explosion")])
            let unprocessable = try await harness.request("POST", path, body: badKind, token: token)
            #expect(unprocessable.status == 422)
            #expect(unprocessable.json["index"] as? Int == 1)
            #expect(unprocessable.json["field"] as? String == "events[1].kind")
            let zero = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(0, "log")]), token: token)
            #expect(zero.status == 422 && zero.json["field"] as? String == "events[0].sequence")
            let noStatus = try await harness.request("POST", path, body: ServerHarness.batch([ServerHarness.event(1, "result")]), token: token)
            #expect(noStatus.status == 422 && noStatus.json["field"] as? String == "events[0].status")
            // Nothing of the refused batches was stored.
            #expect((try await harness.admin("GET", "/deployments/\(id)/events").json["events"] as? [Any])?.count == 0)

            let checkIn = try await harness.request("POST", "/api/v1/agents/checkin", body: Data(#"{"facts": {"macAddresses": "nope"}}"#.utf8))
            #expect(checkIn.status == 422 && checkIn.json["field"] as? String == "facts.macAddresses")

            // Admin API.
            #expect(try await harness.request("GET", "/api/v1/admin/machines").status == 401)
            // A token that is nobody's is not authenticated (401); 403 is for a known caller whose role is too low.
            #expect(try await harness.request("GET", "/api/v1/admin/machines", token: "wrong").status == 401)
            let invalid = try await harness.admin("PUT", "/sequences/broken", json: #"{"name": "Broken", "steps": [{"type": "teleport"}, {"type": "partition"}]}"#)
            #expect(invalid.status == 422)
            let issues = invalid.json["issues"] as? [[String: Any]] ?? []
            #expect(issues.contains { ($0["path"] as? String)?.hasPrefix("$.steps[0]") == true })
            #expect(issues.contains { ($0["path"] as? String)?.hasPrefix("$.steps[1]") == true })
            #expect((invalid.json["field"] as? String)?.hasPrefix("$.steps[") == true)
            #expect(try await harness.admin("GET", "/sequences/broken").status == 404)
            #expect(try await harness.admin("PUT", "/sequences/notjson", json: "{").status == 422)
            let missing = try await harness.admin("PUT", "/rules", json: #"{"rules": [{"match": "any", "pattern": "*", "sequence": "nope", "variables": {}}]}"#)
            #expect(missing.status == 422 && missing.json["field"] as? String == "rules[0].sequence")
            let badField = try await harness.admin("PUT", "/rules", json: #"{"rules": [{"match": "color", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
            #expect(badField.status == 422 && badField.json["field"] as? String == "rules[0].match")
            #expect(try await harness.admin("GET", "/deployments/nope/events?after=x").status == 404)
            #expect(try await harness.admin("GET", "/deployments/\(id)/events?after=x").status == 400)
        }
    }

    @Test func contentRangesETagsAndNoEscapes() async throws {
        try await ServerHarness.with() { harness in
            let bytes = Data((0..<1000).map { UInt8($0 % 251) })
            try FileManager.default.createDirectory(atPath: harness.content + "/images", withIntermediateDirectories: true)
            try bytes.write(to: URL(fileURLWithPath: harness.content + "/images/win 11.wim"))
            try Data("secret".utf8).write(to: URL(fileURLWithPath: harness.scratch.sub("secret")))
            try FileManager.default.createSymbolicLink(atPath: harness.content + "/outside", withDestinationPath: harness.scratch.sub("secret"))
            try FileManager.default.createSymbolicLink(atPath: harness.content + "/inside.wim", withDestinationPath: harness.content + "/images/win 11.wim")

            let whole = try await harness.request("GET", "/content/images/win%2011.wim")
            #expect(whole.status == 200 && whole.body == bytes)
            #expect(whole.headers["content-length"] == "1000")
            #expect(whole.headers["accept-ranges"] == "bytes")
            let etag = try #require(whole.headers["etag"])

            let head = try await harness.request("HEAD", "/content/images/win%2011.wim")
            #expect(head.status == 200 && head.headers["content-length"] == "1000" && head.headers["etag"] == etag)

            let range = try await harness.request("GET", "/content/images/win%2011.wim", headers: ["Range: bytes=10-19"])
            #expect(range.status == 206 && range.body == bytes[10..<20])
            #expect(range.headers["content-range"] == "bytes 10-19/1000" && range.headers["content-length"] == "10")
            let tail = try await harness.request("GET", "/content/images/win%2011.wim", headers: ["Range: bytes=-100"])
            #expect(tail.status == 206 && tail.body == bytes[900...])
            let open = try await harness.request("GET", "/content/images/win%2011.wim", headers: ["Range: bytes=990-"])
            #expect(open.status == 206 && open.body == bytes[990...])

            let notModified = try await harness.request("GET", "/content/images/win%2011.wim", headers: ["If-None-Match: \(etag)"])
            #expect(notModified.status == 304 && notModified.body.isEmpty)
            #expect(try await harness.request("GET", "/content/images/win%2011.wim", headers: ["If-None-Match: \"other\""]).status == 200)

            let unsatisfiable = try await harness.request("GET", "/content/images/win%2011.wim", headers: ["Range: bytes=1000-"])
            #expect(unsatisfiable.status == 416 && unsatisfiable.headers["content-range"] == "bytes */1000")

            #expect(try await harness.request("GET", "/content/inside.wim").body == bytes)
            for escape in ["/content/../data/imprint.db", "/content/%2e%2e/secret", "/content/images/%2E%2E/%2e%2e/secret",
                           "/content/images/..%2f..%2fsecret", "/content/outside", "/content/images", "/content/", "/content/nothing"] {
                let answer = try await harness.request("GET", escape)
                #expect(answer.status == 404, "\(escape) answered \(answer.status)")
                #expect(!answer.text.contains("secret") && !answer.text.contains("SQLite"))
            }

            // 1000 + 10 + 100 + 10 + 1000 (another ETag) + 1000 (the symlink inside); HEAD, 304, 416 and 404 send none.
            let metrics = try await harness.request("GET", "/metrics").text
            #expect(metrics.contains("imprint_content_bytes_served_total 3120\n"), "\(metrics)")
        }
    }

    @Test func openAPIDocumentListsExactlyTheRegisteredRoutes() async throws {
        let document = try String(contentsOf: packageRoot.appendingPathComponent("Sources/Server/openapi.yaml"), encoding: .utf8)
        var documented = Set<String>()
        var inPaths = false, currentPath: String?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line == "paths:" { inPaths = true; continue }
            guard inPaths else { continue }
            if !line.hasPrefix(" ") && !line.isEmpty { inPaths = false; continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                currentPath = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let currentPath {
                let key = line.trimmingCharacters(in: .whitespaces).split(separator: ":").first.map(String.init) ?? ""
                if ["get", "put", "post", "delete", "patch", "head", "options"].contains(key) {
                    documented.insert(key.uppercased() + " " + currentPath)
                }
            }
        }
        let registered = Set(RouteSpec.all.map { "\($0.method.rawValue) \($0.path)" })
        #expect(registered.count == RouteSpec.all.count, "a route is listed twice")
        #expect(documented == registered, "only documented: \(documented.subtracting(registered)); only registered: \(registered.subtracting(documented))")

        // Every registered route is reached (the router's own 404 has no JSON body).
        try await ServerHarness.with() { harness in
            for route in RouteSpec.all {
                let path = route.path.replacingOccurrences(of: "{mac}", with: "52:54:00:00:00:09")
                    .replacingOccurrences(of: "{", with: "").replacingOccurrences(of: "}", with: "")
                let answer = try await harness.request(route.method.rawValue, path, token: harness.adminToken,
                                                       maxTime: route.handler == .dashboardLive ? 2 : nil)
                let routerNotFound = answer.status == 404 && answer.json["error"] == nil && route.method != .head
                #expect(!routerNotFound, "\(route.method) \(path) is not routed")
            }
        }
    }
}

/// Whether GRUB's own script parser (grub-script-check, from grub-common) accepts `script`.
private func grubScriptCheck(_ script: String) throws -> Bool {
    let scratch = ScratchDirectory()
    let file = scratch.sub("script.grub")
    try Data(script.utf8).write(to: URL(fileURLWithPath: file))
    return try run(["grub-script-check", file], allowFailure: true).status == 0
}
