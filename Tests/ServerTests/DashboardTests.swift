import Foundation
import Server
import TestSupport
import Testing

/// The dashboard in a real headless Chromium: the page, its live progress (server-sent events
/// while the browser watches), a failed step highlighted, and approving a pending machine.
@Suite(.serialized)
struct DashboardTests {
    /// Runs Tests/TestSupport/browser.py (Chromium through the DevTools protocol).
    /// `cookie`: `name=value` the browser holds for the server (a session from POST /dashboard/login).
    static func browse(_ url: String, cookie: String, until condition: String, eval: String, screenshot: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", packageRoot.appendingPathComponent("Tests/TestSupport/browser.py").path, url,
                             "--cookie", cookie, "--until", condition, "--eval", eval, "--screenshot", screenshot, "--timeout", "60"]
        process.standardOutput = Pipe()
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    static func events(_ items: [(Int, String)]) -> Data {
        Data(("{\"events\": [" + items.map { sequence, rest in
            "{\"sequence\": \(sequence), \"time\": \"2026-11-23T10:00:\(String(format: "%02d", sequence % 60)).000Z\", \(rest)}"
        }.joined(separator: ",") + "]}").utf8)
    }

    @Test func liveProgressFailureAndApprovalInChromium() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:d0:00:01")
            let first = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events([
                (1, #""kind": "sequenceStarted", "name": "base""#),
                (2, #""kind": "stepStarted", "step": "1", "name": "Apply Windows", "type": "applyImage""#),
                (3, #""kind": "progress", "step": "1", "name": "Apply Windows", "type": "applyImage", "percent": 10, "message": "writing data""#),
            ]), token: token)
            #expect(first.status == 200, "\(first.text)")
            // A machine nobody has a rule for waits for approval.
            try await harness.putRules(#"{"rules": [{"match": "mac", "pattern": "52:54:00:d0:00:01", "sequence": "base", "variables": {}}]}"#)
            #expect(try await harness.checkIn(macs: ["52:54:00:d0:00:99"]).json["status"] as? String == "pending")

            // Unauthorized without the token.
            #expect(try await harness.request("GET", "/dashboard").status == 401)
            // The browser's way in: the login form posts the admin token; the session cookie follows.
            let session = try await harness.dashboardLogin()

            // The browser opens the page at 10%; the agent reports 42.5% while it watches.
            let shot = ProcessInfo.processInfo.environment["IMPRINT_SCREENSHOTS"].map { $0 + "/dashboard.png" } ?? harness.scratch.sub("dashboard.png")
            let bar = "document.querySelector('.progress[data-deployment=\"\(id)\"]')"
            let browser = try Self.browse(harness.base + "/dashboard", cookie: session.cookie,
                                          until: "\(bar) && \(bar).dataset.percent === '42.5'",
                                          eval: "JSON.stringify({percent: \(bar).dataset.percent, step: document.querySelector('.step[data-deployment=\"\(id)\"]').textContent, pending: document.querySelectorAll('#pending tr').length, html: document.body.innerText})",
                                          screenshot: shot)
            try await Task.sleep(nanoseconds: 2_500_000_000)
            let second = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events([
                (4, #""kind": "progress", "step": "1", "name": "Apply Windows", "type": "applyImage", "percent": 42.5, "message": "writing data""#),
            ]), token: token)
            #expect(second.status == 200)
            let output = try await ServerHarness.offload {
                let data = (browser.standardOutput as? Pipe)?.fileHandleForReading.readDataToEndOfFile() ?? Data()
                browser.waitUntilExit()
                return data
            }
            let result = (try? JSONSerialization.jsonObject(with: output)) as? [String: Any] ?? [:]
            #expect(result["held"] as? Bool == true, "the page never showed 42.5%: \(String(decoding: output, as: UTF8.self))")
            let page = ((result["value"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }) as? [String: Any] ?? [:]
            #expect(page["percent"] as? String == "42.5")
            #expect((page["step"] as? String ?? "").contains("Apply Windows"))
            #expect((page["pending"] as? Int ?? 0) >= 2, "the pending machine is not listed")
            #expect((try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0 > 1000, "no screenshot")

            // A power cut in step 1: the machine's own run resumes it (a new token; the server's notice is event 5).
            #expect(try await harness.request("PUT", "/api/v1/deployments/\(id)/state",
                                              body: ResumeTests.state(id, token: token, revision: 1), token: token).status == 204)
            let resumed = try await ResumeTests.checkIn(harness, mac: "52:54:00:d0:00:01", resume: (id, token))
            let resumedToken = try #require((resumed.json["deployment"] as? [String: Any])?["token"] as? String, "\(resumed.text)")

            // A failing step: highlighted with its message on the deployment's page.
            _ = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events([
                (6, #""kind": "stepEnded", "step": "1", "name": "Apply Windows", "type": "applyImage", "status": "failed", "duration": 12.5, "message": "SHA-256 mismatch in win.wim""#),
                (7, #""kind": "result", "status": "failed", "duration": 13, "message": "step 1 failed: SHA-256 mismatch in win.wim""#),
            ]), token: resumedToken)
            let detail = try Self.browse(harness.base + "/dashboard/deployments/\(id)", cookie: session.cookie,
                                         until: "document.querySelector('tr.step-row.failed') !== null",
                                         eval: "document.querySelector('tr.step-row.failed').innerText + ' | ' + document.getElementById('log').innerText + ' | ' + document.getElementById('resume').innerText",
                                         screenshot: ProcessInfo.processInfo.environment["IMPRINT_SCREENSHOTS"].map { $0 + "/deployment.png" } ?? harness.scratch.sub("deployment.png"))
            let detailOutput = try await ServerHarness.offload {
                let data = (detail.standardOutput as? Pipe)?.fileHandleForReading.readDataToEndOfFile() ?? Data()
                detail.waitUntilExit()
                return data
            }
            let detailResult = (try? JSONSerialization.jsonObject(with: detailOutput)) as? [String: Any] ?? [:]
            let text = detailResult["value"] as? String ?? ""
            #expect(text.contains("Apply Windows") && text.contains("failed") && text.contains("SHA-256 mismatch in win.wim"), "\(text)")
            #expect(text.contains("12.5 s"))
            #expect(text.contains("resumed after an interruption") && text.contains("Run state: at step 1 \"Mark\" (begun, not ended"), "\(text)")

            // Approving the pending machine from the dashboard (the session's cookie and the form's CSRF token).
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            let pendingID = machines.first { ($0["state"] as? String) == "pending" }?["id"] as? String ?? ""
            let approve = try await harness.postForm("/dashboard/machines/\(pendingID)/approve", ["csrf": session.csrf], cookie: session.cookie)
            #expect(approve.status == 303)
            let after = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            #expect(after.first { ($0["id"] as? String) == pendingID }?["state"] as? String == "approved")
        }
    }
}
