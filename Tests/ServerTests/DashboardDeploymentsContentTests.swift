import Foundation
import Server
import TestSupport
import Testing

/// The dashboard's Deployments and Content pages (issue 20) in a real headless Chromium, their
/// admin API on SQLite and PostgreSQL, and the screenshot crawler the lab runs.
@Suite(.serialized)
struct DashboardDeploymentsContentTests {
    /// Three steps; its strings name content files (an image, a driver folder) as real
    /// sequences' sources do, through ${ServerURL}.
    static let sequence = """
        {"name": "Win11", "steps": [
          {"type": "setVariable", "name": "Partition", "variable": "Image", "value": "${ServerURL}/content/images/install.wim"},
          {"type": "setVariable", "name": "Apply", "variable": "Applied", "value": "yes"},
          {"type": "runCommand", "name": "Drivers", "command": "curl -fsS ${ServerURL}/content/drivers/optiplex/net.inf -o net.inf"}]}
        """

    static let latitude = "Latitude 5440", optiplex = "OptiPlex 7010"

    struct Seeded {
        var succeeded: [String]
        /// Failed today, in the Drivers step of an OptiPlex.
        var failed: String
        var running: String
        /// Failed, created long ago (outside every window but "all").
        var old: String
    }

    /// An ISO 8601 time `seconds` from now, as an agent writes event times.
    static func time(_ seconds: Double) -> String {
        StoredTimeFormat.string(Date().addingTimeInterval(seconds))
    }

    enum StoredTimeFormat {
        static func string(_ date: Date) -> String {
            date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
        }
    }

    static func post(_ harness: ServerHarness, _ id: String, _ token: String, _ events: [[String: Any]]) async throws {
        let body = try JSONSerialization.data(withJSONObject: ["events": events])
        let answer = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: body, token: token)
        #expect(answer.status == 200, "\(answer.text)")
    }

    /// Steps 1 to 3 ended with these durations and statuses (`nil`: not reached), then the result.
    static func report(_ harness: ServerHarness, _ id: String, _ token: String, steps: [(Double, String)], result: (String, String?, String?)?) async throws {
        var events: [[String: Any]] = [["sequence": 1, "time": time(-600), "kind": "sequenceStarted", "name": "Win11"]]
        var clock = -590.0
        let names = ["Partition", "Apply", "Drivers"]
        for (index, (duration, status)) in steps.enumerated() {
            let number = "\(index + 1)"
            events.append(["sequence": events.count + 1, "time": time(clock), "kind": "stepStarted", "step": number, "name": names[index], "type": "setVariable"])
            clock += duration
            var ended: [String: Any] = ["sequence": events.count + 1, "time": time(clock), "kind": "stepEnded", "step": number, "name": names[index],
                                        "type": "setVariable", "status": status, "duration": duration]
            if status == "failed" { ended["message"] = "pnputil: the driver package net.inf was rejected" }
            events.append(ended)
            events.append(["sequence": events.count + 1, "time": time(clock), "kind": "log", "step": number, "level": "info", "message": "\(names[index]) done"])
        }
        if let (status, failure, message) = result {
            var event: [String: Any] = ["sequence": events.count + 1, "time": time(clock + 1), "kind": "result", "status": status, "duration": clock + 600]
            if let failure { event["failure"] = failure }
            if let message { event["message"] = message }
            events.append(event)
        }
        try await post(harness, id, token, events)
    }

    /// Five machines of two models deployed with Win11: two succeeded (Latitude, Latitude),
    /// one failed today in its Drivers step (OptiPlex), one running (OptiPlex), one failed
    /// long ago (OptiPlex, its creation moved back in the database).
    static func seed(_ harness: ServerHarness) async throws -> Seeded {
        try await harness.putSequence("win11", sequence)
        try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "win11", "variables": {}}]}"#)
        func deploy(_ mac: String, _ model: String) async throws -> (String, String) {
            let answer = try await harness.checkIn(macs: [mac], serial: "SN-" + mac.suffix(2), model: model)
            let deployment = answer.json["deployment"] as? [String: Any]
            let id = try #require(deployment?["id"] as? String, "\(answer.text)")
            return (id, deployment?["token"] as? String ?? "")
        }
        let first = try await deploy("52:54:00:dc:00:01", latitude)
        try await report(harness, first.0, first.1, steps: [(2, "success"), (60, "success"), (10, "success")], result: ("success", nil, nil))
        let second = try await deploy("52:54:00:dc:00:02", latitude)
        try await report(harness, second.0, second.1, steps: [(4, "success"), (80, "success"), (12, "success")], result: ("success", nil, nil))
        let failed = try await deploy("52:54:00:dc:00:03", optiplex)
        try await report(harness, failed.0, failed.1, steps: [(3, "success"), (70, "success"), (5, "failed")],
                      result: ("failed", "badInput", "step 3 failed: pnputil: the driver package net.inf was rejected"))
        let running = try await deploy("52:54:00:dc:00:04", optiplex)
        try await report(harness, running.0, running.1, steps: [(3, "success")], result: nil)
        let old = try await deploy("52:54:00:dc:00:05", optiplex)
        try await report(harness, old.0, old.1, steps: [(3, "success"), (70, "success"), (5, "failed")], result: ("failed", "network", "long ago"))
        let moveBack = "UPDATE deployments SET created = '2020-01-02T03:04:05.000Z' WHERE id = '\(old.0)'"
        switch harness.storageKind {
        case .sqlite:
            _ = try run(["sqlite3", harness.server.configuration.databasePath, moveBack])
        case .postgres:
            _ = try await PostgresCluster.shared.psql(try #require(harness.databaseURL), moveBack)
        }
        return Seeded(succeeded: [first.0, second.0], failed: failed.0, running: running.0, old: old.0)
    }

    /// A user made with the admin API, logged in to the dashboard with their password.
    static func login(_ harness: ServerHarness, _ name: String, role: String) async throws -> DashboardLogin {
        let password = "\(name)-password-1"
        let made = try await harness.admin("POST", "/users", json: UserTests.json(["name": name, "role": role, "password": password]))
        #expect(made.status == 201, "\(made.text)")
        let answer = try await harness.postForm("/dashboard/login", ["user": name, "password": password, "next": "/dashboard"])
        #expect(answer.status == 303, "\(answer.text)")
        let setCookie = answer.headers["set-cookie"] ?? ""
        let cookie = setCookie.components(separatedBy: ";").first ?? ""
        let page = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"])
        return DashboardLogin(cookie: cookie, setCookie: setCookie, csrf: ServerHarness.csrfToken(in: page.text) ?? "")
    }

    static func screenshot(_ harness: ServerHarness, _ name: String) -> String { DashboardImagesTests.screenshot(harness, name) }

    // MARK: - Deployments

    @Test func deploymentsFilteredSummaryAndLogInChromium() async throws {
        try await ServerHarness.with(unknownMachines: .default) { harness in
            let seeded = try await Self.seed(harness)
            let session = try await harness.dashboardLogin()

            let rows = "Array.from(document.querySelectorAll('#deployment-list tr.deployment'))"
            let answer = try await DashboardImagesTests.browse(harness, harness.base + "/dashboard/deployments", cookie: session.cookie, steps: [
                ["label": "list", "wait": "document.querySelector('nav.top a[href=\"/dashboard/deployments\"]') !== null && \(rows).length === 5"],
                ["label": "failed today", "run": "Array.from(document.querySelectorAll('nav.sub a')).find(a => a.textContent === 'Failed today').click(); true"],
                ["label": "filtered", "wait": "location.search.includes('window=today') && \(rows).length === 1"],
                ["label": "failed seen", "run": """
                    JSON.stringify({ids: \(rows).map(row => row.dataset.deployment), text: document.getElementById('deployments').innerText,
                                    state: document.querySelector('#deployment-filter select[name=state]').value,
                                    window: document.querySelector('#deployment-filter select[name=window]').value,
                                    labels: Array.from(document.querySelectorAll('#deployment-filter label')).every(label => label.querySelector('select, input') !== null)})
                    """],
                ["label": "filtered shot", "screenshot": Self.screenshot(harness, "deployments-failed-today.png")],
                ["label": "by model", "navigate": harness.base + "/dashboard/deployments?model=" + (Self.latitude.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")],
                ["label": "model rows", "wait": "location.search.includes('model=') && \(rows).length === 2"],
                ["label": "summary", "navigate": harness.base + "/dashboard/deployments/summary"],
                ["label": "summary page", "wait": "document.getElementById('sequence-table') !== null"],
                ["label": "summary seen", "run": """
                    JSON.stringify({totals: document.getElementById('totals').innerText,
                                    sequence: Array.from(document.querySelectorAll('#sequence-table tr[data-key] td')).map(cell => cell.textContent),
                                    days: document.querySelectorAll('#day-table tr[data-key]').length,
                                    outliers: Array.from(document.querySelectorAll('tr.step-stat.outlier')).map(row => row.dataset.step + ' ' + row.dataset.model + ' ' + row.innerText),
                                    latitudeDrivers: (document.querySelector('tr.step-stat[data-step="3"][data-model="\(Self.latitude)"]') || {}).innerText,
                                    charts: document.querySelectorAll('svg.chart[role=img] title').length, bars: document.querySelectorAll('#day-chart rect').length})
                    """],
                ["label": "summary shot", "screenshot": Self.screenshot(harness, "deployments-summary.png")],
                ["label": "deployment", "navigate": harness.base + "/dashboard/deployments/" + seeded.failed],
                ["label": "deployment page", "wait": "document.getElementById('log-download') !== null"],
                ["label": "deployment seen", "run": """
                    JSON.stringify({failure: document.getElementById('failure').innerText, href: document.getElementById('log-download').getAttribute('href'),
                                    kind: document.querySelector('#failure .failure-kind').dataset.kind})
                    """],
                // The download, as the browser fetches it with the session.
                ["label": "download", "run": """
                    fetch(document.getElementById('log-download').href, {credentials: 'same-origin'}).then(async response => JSON.stringify({
                      status: response.status, type: response.headers.get('content-type'), disposition: response.headers.get('content-disposition'),
                      text: await response.text()}))
                    """],
            ], screenshot: Self.screenshot(harness, "deployment-failed.png"))

            let failed = DashboardImagesTests.value(answer, "failed seen")
            #expect(failed["ids"] as? [String] == [seeded.failed], "\(failed)")
            #expect((failed["text"] as? String ?? "").contains("bad input") && (failed["text"] as? String ?? "").contains("driver package net.inf was rejected"), "\(failed)")
            #expect(failed["state"] as? String == "failed" && failed["window"] as? String == "today" && failed["labels"] as? Bool == true, "\(failed)")

            let summary = DashboardImagesTests.value(answer, "summary seen")
            let totals = summary["totals"] as? String ?? ""
            // The window is the last 30 days: the old failure is not counted.
            #expect(totals.contains("4 deployments") && totals.contains("2 succeeded") && totals.contains("1 failed") && totals.contains("1 not ended")
                    && totals.contains("success rate 67%"), "\(totals)")
            #expect(summary["sequence"] as? [String] == ["4", "2", "1", "1", "67%", "1 min 33 s"], "\(summary)")
            #expect(summary["days"] as? Int == 1)
            let outliers = summary["outliers"] as? [String] ?? []
            #expect(outliers.count == 1 && outliers[0].hasPrefix("3 \(Self.optiplex)") && outliers[0].contains("fails on this model"), "\(outliers)")
            #expect((summary["latitudeDrivers"] as? String ?? "").contains(" 11 s"), "\(summary)")
            #expect((summary["charts"] as? Int ?? 0) >= 2 && (summary["bars"] as? Int ?? 0) >= 2, "\(summary)")

            let detail = DashboardImagesTests.value(answer, "deployment seen")
            #expect(detail["kind"] as? String == "badInput" && (detail["failure"] as? String ?? "").contains("driver package net.inf was rejected"), "\(detail)")
            let download = DashboardImagesTests.value(answer, "download")
            #expect(download["status"] as? Int == 200 && (download["type"] as? String ?? "").hasPrefix("text/plain")
                    && (download["disposition"] as? String ?? "").hasPrefix("attachment"), "\(download)")
            let log = download["text"] as? String ?? ""
            #expect(log.contains("sequence win11") && log.contains("failure badInput") && log.contains("[3] Drivers failed in 5.0 s: pnputil")
                    && log.contains("Apply done") && log.contains("sequence failed"), "\(log)")

            // A viewer reads the running deployment's page without the Reset token button an operator has.
            let viewer = try await Self.login(harness, "vera", role: "viewer")
            let viewed = try await harness.request("GET", "/dashboard/deployments/\(seeded.running)", headers: ["Cookie: \(viewer.cookie)"])
            #expect(viewed.status == 200 && viewed.text.contains("log-download") && !viewed.text.contains("reset-token"), "\(viewed.text)")
            let operated = try await harness.request("GET", "/dashboard/deployments/\(seeded.running)", headers: ["Cookie: \(session.cookie)"])
            #expect(operated.text.contains("reset-token"))
            let viewerList = try await harness.request("GET", "/dashboard/deployments/summary", headers: ["Cookie: \(viewer.cookie)"])
            #expect(viewerList.status == 200 && viewerList.text.contains("fails on this model"))

            // Without a session: the login page, not the log.
            let anonymous = try await harness.request("GET", "/dashboard/deployments/\(seeded.failed)/log")
            #expect(anonymous.status == 401 && !anonymous.text.contains("pnputil"))
            // A filter's bad value is named.
            let bad = try await harness.request("GET", "/dashboard/deployments?state=broken", headers: ["Cookie: \(session.cookie)"])
            #expect(bad.status == 400 && bad.text.contains("state is one of"), "\(bad.status) \(bad.text)")
        }
    }

    /// The admin API's list, summary and log on both databases: the SQL aggregates alike.
    @Test(arguments: StorageKind.allCases)
    func deploymentQueriesOnBothDatabases(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let seeded = try await Self.seed(harness)
            let all = try await harness.admin("GET", "/deployments?window=all&limit=2")
            #expect(all.status == 200 && all.json["total"] as? Int == 5 && all.json["pages"] as? Int == 3, "\(all.text)")
            let firstPage = (all.json["deployments"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(firstPage.count == 2 && !firstPage.contains(seeded.old), "newest first: \(firstPage)")
            let failedToday = try await harness.admin("GET", "/deployments?state=failed&window=today").json["deployments"] as? [[String: Any]] ?? []
            #expect(failedToday.map { $0["id"] as? String } == [seeded.failed], "\(failedToday)")
            #expect(failedToday.first?["model"] as? String == Self.optiplex && failedToday.first?["failure"] as? String == "badInput")
            #expect(abs((failedToday.first?["seconds"] as? Double ?? 0) - 89) < 0.01, "\(failedToday)")
            let running = try await harness.admin("GET", "/deployments?state=running").json["deployments"] as? [[String: Any]] ?? []
            #expect(running.map { $0["id"] as? String } == [seeded.running])
            let bySequence = try await harness.admin("GET", "/deployments?sequence=win11&model=\(Self.optiplex.replacingOccurrences(of: " ", with: "%20"))&since=2019-12-31")
            #expect(bySequence.json["total"] as? Int == 3, "\(bySequence.text)")
            let machine = try await harness.admin("GET", "/deployments?machine=\(try #require(failedToday.first?["machineId"] as? String))")
            #expect(machine.json["total"] as? Int == 1)
            let bad = try await harness.admin("GET", "/deployments?since=yesterday")
            #expect(bad.status == 400 && bad.json["field"] as? String == "since", "\(bad.text)")

            let summary = try await harness.admin("GET", "/deployments/summary")
            let statistics = try #require(summary.json["statistics"] as? [String: Any], "\(summary.text)")
            let sequences = statistics["sequences"] as? [[String: Any]] ?? []
            #expect(sequences.count == 1 && sequences.first?["total"] as? Int == 4 && sequences.first?["succeeded"] as? Int == 2
                    && sequences.first?["failed"] as? Int == 1, "\(sequences)")
            // (83 + 107 + 89) / 3 seconds from each start (sequenceStarted) to its end (the result).
            #expect(abs((sequences.first?["meanSeconds"] as? Double ?? 0) - 93) < 0.01, "\(sequences)")
            let steps = statistics["steps"] as? [[String: Any]] ?? []
            let drivers = steps.filter { $0["step"] as? String == "3" }
            #expect(drivers.map { $0["model"] as? String } == [Self.latitude, Self.optiplex], "\(steps)")
            #expect(drivers.last?["failures"] as? Int == 1 && drivers.last?["runs"] as? Int == 1 && drivers.first?["failures"] as? Int == 0, "\(drivers)")
            #expect(abs((drivers.first?["meanSeconds"] as? Double ?? 0) - 11) < 0.01 && drivers.first?["name"] as? String == "Drivers", "\(drivers)")
            #expect(steps.map { $0["step"] as? String } == ["1", "1", "2", "2", "3", "3"], "\(steps)")
            let all90 = try await harness.admin("GET", "/deployments/summary?window=all")
            #expect(((all90.json["statistics"] as? [String: Any])?["days"] as? [[String: Any]])?.count == 2, "\(all90.text)")

            let log = try await harness.request("GET", "/api/v1/admin/deployments/\(seeded.failed)/log", token: harness.adminToken)
            #expect(log.status == 200 && log.headers["content-disposition"]?.contains("attachment") == true && log.text.contains("Drivers failed"), "\(log.text)")
            #expect(try await harness.request("GET", "/api/v1/admin/deployments/nothing/log", token: harness.adminToken).status == 404)
        }
    }

    // MARK: - Content

    /// The list's first page, open in Chromium, learns from the live feed that a deployment it
    /// does not list has started, and offers to reload; the reload lists it.
    @Test func newDeploymentAnnouncedOnTheListInChromium() async throws {
        try await ServerHarness.with(unknownMachines: .default) { harness in
            _ = try await harness.assignedDeployment(mac: "52:54:00:d1:00:01")
            let session = try await harness.dashboardLogin()
            let notice = "document.getElementById('new-deployments')"
            let browser = try DashboardTests.browse(harness.base + "/dashboard/deployments", cookie: session.cookie,
                                                    until: "\(notice) !== null && !\(notice).hidden",
                                                    eval: "JSON.stringify({rows: document.querySelectorAll('#deployment-list tr.deployment').length, notice: \(notice).innerText})",
                                                    screenshot: harness.scratch.sub("new-deployment.png"))
            // Once the page follows the live feed (a loaded machine starts Chromium slowly), a
            // second machine checks in and its agent reports.
            let opened = ContinuousClock.now
            while harness.server.openLiveStreams == 0, ContinuousClock.now - opened < .seconds(60) {
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:d1:00:02")
            let posted = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: DashboardTests.events([
                (1, #""kind": "sequenceStarted", "name": "base""#),
            ]), token: token)
            #expect(posted.status == 200, "\(posted.text)")
            let output = try await ServerHarness.offload {
                let data = (browser.standardOutput as? Pipe)?.fileHandleForReading.readDataToEndOfFile() ?? Data()
                browser.waitUntilExit()
                return data
            }
            let result = (try? JSONSerialization.jsonObject(with: output)) as? [String: Any] ?? [:]
            #expect(result["held"] as? Bool == true, "the notice never showed: \(String(decoding: output, as: UTF8.self))")
            let page = ((result["value"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }) as? [String: Any] ?? [:]
            #expect(page["rows"] as? Int == 1 && (page["notice"] as? String ?? "").contains("reload the list"), "\(page)")
            let reloaded = try await harness.request("GET", "/dashboard/deployments", headers: ["Cookie: \(session.cookie)"])
            #expect(reloaded.text.contains(id))
        }
    }

    @Test func contentUploadReferencesRolesAndAuditInChromium() async throws {
        try await ServerHarness.with(unknownMachines: .default) { harness in
            try await harness.putSequence("win11", Self.sequence)
            try FileManager.default.createDirectory(atPath: harness.content + "/drivers/optiplex", withIntermediateDirectories: true)
            try Data("[Version]\r\nSignature=\"$Windows NT$\"\r\n".utf8).write(to: URL(fileURLWithPath: harness.content + "/drivers/optiplex/net.inf"))
            let file = harness.scratch.sub("install.wim")
            let data = Data((0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 97) })
            try data.write(to: URL(fileURLWithPath: file))
            let sha256 = String(try run(["sha256sum", file]).output.prefix(64))
            let admin = try await Self.login(harness, "ada", role: "administrator")
            let viewer = try await Self.login(harness, "vera", role: "viewer")

            // Names that would leave the content folder, hidden ones and the library's: refused, saying why.
            let announce = UserTests.json(["size": data.count, "sha256": sha256])
            for path in ["..%2F..%2Fetc%2Fpasswd", "images/..%2F..%2Fx", ".env", "images/.hidden", "library/wims/x.wim", "a%00b"] {
                let answer = try await harness.admin("POST", "/content/uploads/" + path, json: announce)
                #expect(answer.status == 422 && answer.json["field"] as? String == "path", "\(path): \(answer.status) \(answer.text)")
                let message = answer.json["error"] as? String ?? ""
                #expect(message.contains("not a path inside the content folder") || message.contains("library/"), "\(path): \(message)")
            }
            let outside = harness.scratch.sub("outside")
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: harness.content + "/out", withDestinationPath: outside)
            let linked = try await harness.admin("POST", "/content/uploads/out/x.bin", json: announce)
            #expect(linked.status == 422 && (linked.json["error"] as? String ?? "").contains("leads out of the content folder"), "\(linked.text)")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: outside))?.isEmpty == true)

            // An earlier client sent the first half through the API: the page goes on from there.
            let half = data.count / 2
            #expect(try await harness.admin("POST", "/content/uploads/images/install.wim", json: announce).json["offset"] as? Int == 0)
            let firstHalf = try await harness.request("PUT", "/api/v1/admin/content/uploads/images/install.wim", headers: ["Upload-Offset: 0"],
                                                      body: data.prefix(half), token: harness.adminToken)
            #expect(firstHalf.status == 200 && firstHalf.json["offset"] as? Int == half, "\(firstHalf.text)")

            let ready = "document.getElementById('content-page') !== null && document.getElementById('content-page').dataset.ready === 'true'"
            let row = "document.querySelector('tr.content-file[data-path=\"images/install.wim\"]')"
            let answer = try await DashboardImagesTests.browse(harness, harness.base + "/dashboard/content", cookie: admin.cookie, steps: [
                ["label": "page", "wait": "\(ready) && document.querySelector('nav.top a[href=\"/dashboard/content\"]') !== null"],
                ["label": "choose", "file": "#content-upload-form input[type=file]", "path": file],
                ["label": "upload", "run": """
                    (function () {
                      const form = document.getElementById('content-upload-form');
                      form.dataset.pieceBytes = '2048';
                      form.elements.namedItem('folder').value = 'images';
                      const bar = document.getElementById('content-upload-progress');
                      window.percents = [];
                      new MutationObserver(() => window.percents.push(bar.dataset.phase + ' ' + bar.dataset.percent))
                        .observe(bar, {attributes: true, attributeFilter: ['data-percent']});
                      form.querySelector('button[type=submit]').click();
                      return true;
                    })()
                    """],
                ["label": "uploaded", "wait": "document.getElementById('content-upload-progress').dataset.phase === 'uploaded' && \(row) !== null && \(row).querySelector('.sha code') !== null", "timeout": 60],
                ["label": "seen", "run": """
                    JSON.stringify({log: document.getElementById('content-upload-log').innerText, percents: window.percents,
                                    bar: document.getElementById('content-upload-progress').innerText,
                                    row: \(row).innerText, sha: \(row).querySelector('.sha code').textContent,
                                    references: Array.from(\(row).querySelectorAll('li.reference')).map(item => item.dataset.sequence),
                                    drivers: document.querySelector('tr.content-file[data-path="drivers/optiplex/net.inf"]').innerText})
                    """],
                ["label": "shot", "screenshot": Self.screenshot(harness, "content-uploaded.png")],
                // The driver file, deleted by its button (a plain form: the page comes back with a notice).
                ["label": "delete", "run": "document.querySelector('tr.content-file[data-path=\"drivers/optiplex/net.inf\"] form.delete-content button').click(); true"],
                ["label": "deleted", "wait": "document.getElementById('notice') !== null && document.querySelector('tr.content-file[data-path=\"drivers/optiplex/net.inf\"]') === null"],
                ["label": "notice", "run": "document.getElementById('notice').innerText"],
                ["label": "audit", "navigate": harness.base + "/dashboard/audit?object=content"],
                ["label": "audit page", "wait": "document.querySelectorAll('#audit tr.audit-entry').length === 2"],
                ["label": "audit seen", "run": "JSON.stringify(Array.from(document.querySelectorAll('#audit tr.audit-entry')).map(row => row.innerText))"],
                ["label": "audit shot", "screenshot": Self.screenshot(harness, "content-audit.png")],
            ], screenshot: Self.screenshot(harness, "content.png"))

            let seen = DashboardImagesTests.value(answer, "seen")
            let log = seen["log"] as? String ?? ""
            #expect(log.contains("holds \(half) bytes") && log.contains("Uploaded images/install.wim and verified"), "\(log)")
            let percents = seen["percents"] as? [String] ?? []
            let uploading = Set(percents.filter { $0.hasPrefix("uploading") })
            // Pieces of 2 KiB from the half held: the bar moved through several values.
            #expect(uploading.count >= 5 && percents.last == "uploaded 100.0", "\(percents)")
            #expect(seen["sha"] as? String == sha256 && (seen["row"] as? String ?? "").contains("39.1 KiB"), "\(seen)")
            #expect(seen["references"] as? [String] == ["win11"], "\(seen)")
            #expect((seen["drivers"] as? String ?? "").contains("win11"), "a file in a folder a sequence names: \(seen)")
            let steps = answer["steps"] as? [[String: Any]] ?? []
            #expect((steps.first { $0["label"] as? String == "notice" }?["value"] as? String ?? "").contains("drivers/optiplex/net.inf deleted"))
            let audit = (try? JSONSerialization.jsonObject(with: Data((steps.first { $0["label"] as? String == "audit seen" }?["value"] as? String ?? "").utf8))) as? [String] ?? []
            #expect(audit.count == 2 && audit[0].contains("ada") && audit[0].contains("POST /dashboard/content/delete/{path}")
                    && audit[0].contains("drivers/optiplex/net.inf") && audit[1].contains("PUT /dashboard/content/uploads/{path}")
                    && audit[1].contains(sha256), "\(audit)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: harness.content + "/images/install.wim")) == data)
            #expect(!FileManager.default.fileExists(atPath: harness.content + "/drivers/optiplex/net.inf"))

            // The API lists the same: size, SHA-256 (kept from the upload), the sequence naming it.
            let listing = try await harness.admin("GET", "/content")
            let files = listing.json["files"] as? [[String: Any]] ?? []
            let listed = try #require(files.first { $0["path"] as? String == "images/install.wim" }, "\(listing.text)")
            #expect(listed["sha256"] as? String == sha256 && listed["size"] as? Int == data.count, "\(listed)")
            #expect(((listed["sequences"] as? [[String: Any]])?.first?["path"] as? String) == "$.steps[0].value", "\(listed)")
            #expect(!listing.text.contains(".uploads") && !listing.text.contains("\"out/"), "\(listing.text)")

            // A viewer sees the files but no upload form and no delete button, and is refused both.
            let page = try await harness.request("GET", "/dashboard/content", headers: ["Cookie: \(viewer.cookie)"])
            #expect(page.status == 200 && page.text.contains("images/install.wim"))
            #expect(!page.text.contains("content-upload-form") && !page.text.contains("delete-content") && !page.text.contains(">Delete<"), "\(page.text)")
            let refusedDelete = try await harness.postForm("/dashboard/content/delete/images/install.wim", ["csrf": viewer.csrf], cookie: viewer.cookie)
            #expect(refusedDelete.status == 403 && refusedDelete.text.contains("vera") && refusedDelete.text.contains("administrator role"), "\(refusedDelete.text)")
            let refusedUpload = try await harness.request("POST", "/dashboard/content/uploads/images/other.bin",
                                                          headers: ["Cookie: \(viewer.cookie)", "X-CSRF-Token: \(viewer.csrf)"], body: Data(announce.utf8))
            #expect(refusedUpload.status == 403 && (refusedUpload.json["error"] as? String ?? "").contains("administrator role"), "\(refusedUpload.text)")
            let token = try await harness.admin("POST", "/tokens", json: UserTests.json(["user": "vera", "label": "vera's script"])).json["secret"] as? String ?? ""
            #expect(try await harness.request("DELETE", "/api/v1/admin/content/files/images/install.wim", token: token).status == 403)
            #expect(try await harness.request("GET", "/api/v1/admin/content", token: token).status == 200)
            #expect(FileManager.default.fileExists(atPath: harness.content + "/images/install.wim"))
            // The upload's script needs the CSRF header with a session, as every dashboard write.
            let noHeader = try await harness.request("POST", "/dashboard/content/uploads/images/other.bin", headers: ["Cookie: \(admin.cookie)"],
                                                     body: Data(announce.utf8))
            #expect(noHeader.status == 403 && noHeader.json["field"] as? String == "X-CSRF-Token", "\(noHeader.text)")

            // Deleting through the API: the file, never a folder, never what a link leads to.
            #expect(try await harness.request("DELETE", "/api/v1/admin/content/files/images", token: harness.adminToken).status == 422)
            #expect(try await harness.request("DELETE", "/api/v1/admin/content/files/out/nothing", token: harness.adminToken).status == 422)
            let deleted = try await harness.request("DELETE", "/api/v1/admin/content/files/images/install.wim", token: harness.adminToken)
            #expect(deleted.status == 200 && deleted.json["sha256"] as? String == sha256, "\(deleted.text)")
            #expect(try await harness.request("DELETE", "/api/v1/admin/content/files/images/install.wim", token: harness.adminToken).status == 404)
        }
    }

    /// A file copied into the content folder by hand is hashed in the background, once.
    @Test func contentHashedInTheBackground() async throws {
        try await ServerHarness.with { harness in
            try FileManager.default.createDirectory(atPath: harness.content + "/images", withIntermediateDirectories: true)
            let data = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
            try data.write(to: URL(fileURLWithPath: harness.content + "/images/disk.img"))
            let sha256 = String(try run(["sha256sum", harness.content + "/images/disk.img"]).output.prefix(64))
            var listed: [String: Any] = [:]
            for _ in 0..<50 {
                let files = try await harness.admin("GET", "/content").json["files"] as? [[String: Any]] ?? []
                listed = files.first { $0["path"] as? String == "images/disk.img" } ?? [:]
                if listed["sha256"] is String { break }
                try await Task.sleep(nanoseconds: 200_000_000)
            }
            #expect(listed["sha256"] as? String == sha256, "\(listed)")
            #expect(try await harness.server.storage.contentHash(path: "images/disk.img")?.sha256 == sha256)
        }
    }

    // MARK: - Screenshots

    /// The crawler the lab runs after its scenarios: every page it reaches answers 200 and is a PNG.
    @Test func screenshotCrawlerVisitsEveryNavPage() async throws {
        try await ServerHarness.with(unknownMachines: .default) { harness in
            let seeded = try await Self.seed(harness)
            let out = harness.scratch.sub("screenshots")
            let tokenFile = harness.scratch.sub("admin-token")
            try Data(harness.adminToken.utf8).write(to: URL(fileURLWithPath: tokenFile))
            let arguments = ["python3", packageRoot.appendingPathComponent("Tests/TestSupport/screenshots.py").path, harness.base, out,
                             "--token-file", tokenFile]
            let result = try await ServerHarness.offload { try run(arguments, allowFailure: true) }
            let (status, output) = (result.status, result.stdout)
            let pages = (try? JSONSerialization.jsonObject(with: output)) as? [[String: Any]] ?? []
            #expect(status == 0, "\(String(decoding: output, as: UTF8.self))")
            let urls = pages.compactMap { $0["url"] as? String }.map { $0.replacingOccurrences(of: harness.base, with: "") }
            for expected in ["/dashboard/deployments", "/dashboard/deployments/summary", "/dashboard/content", "/dashboard/audit", "/dashboard/images"] {
                #expect(urls.contains(expected), "not crawled: \(expected) in \(urls)")
            }
            #expect(urls.contains { $0.hasPrefix("/dashboard/deployments/") && $0.count > 30 }, "no deployment's page: \(urls)")
            #expect(pages.allSatisfy { $0["status"] as? Int == 200 }, "\(pages)")
            for page in pages {
                let png = out + "/" + (page["file"] as? String ?? "")
                let header = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: png)).readData(ofLength: 8)) ?? Data()
                #expect(header == Data([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), "\(png) is not a PNG")
            }
            _ = seeded
        }
    }
}
