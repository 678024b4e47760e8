import Foundation
import Server
import TestSupport
import Testing

/// A browser's dashboard session: the cookie it sends and the CSRF token its pages' forms carry.
struct DashboardLogin {
    /// `imprint_session=<id>`, as a Cookie header's value.
    var cookie: String
    /// The whole Set-Cookie field of the login's answer.
    var setCookie: String
    var csrf: String
}

extension ServerHarness {
    /// POST /dashboard/login as the form does, then the CSRF token from the page it leads to.
    func dashboardLogin(token: String? = nil) async throws -> DashboardLogin {
        let answer = try await postForm("/dashboard/login", ["token": token ?? adminToken, "next": "/dashboard"])
        #expect(answer.status == 303, "login: \(answer.status) \(answer.text)")
        let setCookie = answer.headers["set-cookie"] ?? ""
        let cookie = setCookie.components(separatedBy: ";").first ?? ""
        let page = try await request("GET", "/dashboard", headers: ["Cookie: \(cookie)"])
        return DashboardLogin(cookie: cookie, setCookie: setCookie, csrf: Self.csrfToken(in: page.text) ?? "")
    }

    /// An HTML form's POST (`application/x-www-form-urlencoded`), with a session cookie.
    func postForm(_ path: String, _ fields: [String: String], cookie: String? = nil, headers: [String] = []) async throws -> Answer {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.sorted { $0.key < $1.key }.map { name, value in
            (name.addingPercentEncoding(withAllowedCharacters: allowed) ?? "") + "="
                + (value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
        }.joined(separator: "&")
        return try await request("POST", path, headers: headers + (cookie.map { ["Cookie: \($0)"] } ?? []), body: Data(body.utf8))
    }

    /// The value of the first `<input name="csrf">` in a page.
    static func csrfToken(in html: String) -> String? {
        guard let start = html.range(of: "name=\"csrf\" value=\"") else { return nil }
        return html[start.upperBound...].split(separator: "\"", maxSplits: 1).first.map(String.init)
    }

    /// A deployment's stored events, through the admin API.
    func storedEvents(_ id: String) async throws -> [[String: Any]] {
        try await admin("GET", "/deployments/\(id)/events?limit=10000").json["events"] as? [[String: Any]] ?? []
    }
}

/// Attacks on the dashboard and the event path (issue 13): the admin token in URLs, the session
/// cookie, CSRF, framing and script injection through what agents send, and floods of events,
/// live streams and rows. Real HTTP through `ServerHarness`; both databases where storage decides.
@Suite("Dashboard and event limits under attack")
struct DashboardAttackTests {
    static func events(_ items: [[String: Any]]) -> Data { ServerHarness.batch(items) }

    static func log(_ sequence: Int, _ message: String, step: String? = nil) -> [String: Any] {
        var event = ServerHarness.event(sequence, "log")
        event["message"] = message
        event["level"] = "info"
        if let step { event["step"] = step }
        return event
    }

    // MARK: - Session

    @Test func adminTokenInTheURLIsNoCredential() async throws {
        try await ServerHarness.with { harness in
            for path in ["/dashboard?token=\(harness.adminToken)", "/dashboard/deployments/x?token=\(harness.adminToken)",
                         "/dashboard/live?token=\(harness.adminToken)"] {
                // A time limit only in case the live feed answered with a stream.
                let answer = try await harness.request("GET", path, maxTime: path.hasPrefix("/dashboard/live") ? 20 : nil)
                #expect(answer.status == 401, "\(path): \(answer.status)")
                #expect(answer.headers["set-cookie"] == nil, "\(path) set a cookie from the URL's token")
            }
            let page = try await harness.request("GET", "/dashboard?token=\(harness.adminToken)")
            #expect(page.text.contains("not accepted in a URL"))
            // The login form posts; it neither uses GET nor echoes the token back.
            #expect(page.text.contains("<form method=\"post\" action=\"/dashboard/login\">"))
            #expect(!page.text.contains(harness.adminToken))
            // The old cookie (the admin token itself) opens nothing, under either name.
            for cookie in ["imprint_admin=\(harness.adminToken)", "imprint_session=\(harness.adminToken)"] {
                #expect(try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"]).status == 401, "\(cookie)")
            }
        }
    }

    @Test(arguments: StorageKind.allCases) func loginSetsASessionCookieAndLogoutEndsIt(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            // A wrong token: the login page again, no cookie.
            let wrong = try await harness.postForm("/dashboard/login", ["token": "guess"])
            #expect(wrong.status == 401 && wrong.headers["set-cookie"] == nil && wrong.text.contains("Wrong admin token"))

            let login = try await harness.postForm("/dashboard/login", ["token": harness.adminToken, "next": "/dashboard?page=1"])
            #expect(login.status == 303)
            #expect(login.headers["location"] == "/dashboard?page=1")
            let setCookie = login.headers["set-cookie"] ?? ""
            let attributes = Set(setCookie.components(separatedBy: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(attributes.isSuperset(of: ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"]), "\(setCookie)")
            #expect(!attributes.contains("Secure"), "Secure over plain HTTP would keep the browser from sending it back")
            let cookie = setCookie.components(separatedBy: ";").first ?? ""
            let value = String(cookie.dropFirst("imprint_session=".count))
            #expect(cookie.hasPrefix("imprint_session=") && value.count == 64 && value.allSatisfy(\.isHexDigit))
            #expect(!setCookie.contains(harness.adminToken), "the cookie must not be the admin token")

            let page = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"])
            #expect(page.status == 200)
            let csrf = try #require(ServerHarness.csrfToken(in: page.text))
            #expect(csrf.count == 64 && csrf != value && page.text.contains("action=\"/dashboard/logout\""))
            // The database holds the session, so another instance on it accepts the cookie.
            if let database = harness.databaseURL {
                let other = try await ServerHarness(storage: .postgres, database: database, adminToken: harness.adminToken)
                #expect(try await other.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"]).status == 200)
                await other.stop()
            }

            // Where a login goes next: only a dashboard page.
            for (next, expected) in [("//evil.example/x", "/dashboard"), ("https://evil.example", "/dashboard"),
                                     ("/dashboard/deployments/abc", "/dashboard/deployments/abc"), ("/dashboard\\@evil", "/dashboard")] {
                let answer = try await harness.postForm("/dashboard/login", ["token": harness.adminToken, "next": next])
                #expect(answer.headers["location"] == expected, "\(next) → \(answer.headers["location"] ?? "none")")
            }

            // Logging out takes the CSRF token too (another site must not log the administrator out).
            #expect(try await harness.postForm("/dashboard/logout", [:], cookie: cookie).status == 403)
            #expect(try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"]).status == 200)
            let logout = try await harness.postForm("/dashboard/logout", ["csrf": csrf], cookie: cookie)
            #expect(logout.status == 303 && (logout.headers["set-cookie"] ?? "").contains("Max-Age=0"))
            #expect(try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"]).status == 401)
            #expect(try await harness.request("GET", "/dashboard/live", headers: ["Cookie: \(cookie)"], maxTime: 20).status == 401)
        }
    }

    @Test func sessionsExpire() async throws {
        try await ServerHarness.with(configure: { $0.limits.sessionLifetime = 4 }) { harness in
            // The session starts between these two instants (a loaded machine may take seconds per request).
            let beforeLogin = ContinuousClock.now
            let login = try await harness.dashboardLogin()
            let afterLogin = ContinuousClock.now
            #expect(login.setCookie.contains("Max-Age=4"))
            // Checked only while surely unexpired.
            let page = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(login.cookie)"])
            if ContinuousClock.now - beforeLogin < .seconds(3) { #expect(page.status == 200) }
            try await Task.sleep(until: afterLogin + .seconds(5))
            #expect(try await harness.request("GET", "/dashboard", headers: ["Cookie: \(login.cookie)"]).status == 401)
        }
    }

    @Test func cookieIsSecureOverTLS() async throws {
        let scratch = ScratchDirectory()
        let certificate = scratch.sub("cert.pem"), key = scratch.sub("key.pem")
        try run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", certificate])
        try await ServerHarness.with(configure: { $0.tlsCertificate = certificate; $0.tlsKey = key }) { harness in
            let token = harness.adminToken, port = harness.port
            let headers = try await ServerHarness.offload {
                try run(["curl", "-sS", "--cacert", certificate, "-D", "-", "-o", "/dev/null", "--data-urlencode", "token=\(token)",
                         "https://127.0.0.1:\(port)/dashboard/login"]).output
            }
            let setCookie = headers.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("set-cookie:") } ?? ""
            #expect(setCookie.contains("; Secure") && setCookie.contains("HttpOnly"), "\(headers)")
        }
        // Behind a TLS proxy that says so.
        try await ServerHarness.with { harness in
            let login = try await harness.postForm("/dashboard/login", ["token": harness.adminToken], headers: ["X-Forwarded-Proto: https"])
            #expect((login.headers["set-cookie"] ?? "").contains("; Secure"))
        }
    }

    @Test func failedLoginsAreThrottled() async throws {
        // An hour's window: on a loaded machine ten failed logins may take longer than a minute.
        try await ServerHarness.with(configure: { $0.limits.failedLoginWindow = 3600 }) { harness in
            for attempt in 1...10 {
                #expect(try await harness.postForm("/dashboard/login", ["token": "guess-\(attempt)"]).status == 401)
            }
            let throttled = try await harness.postForm("/dashboard/login", ["token": harness.adminToken])
            #expect(throttled.status == 429 && throttled.headers["retry-after"] != nil, "\(throttled.status) \(throttled.text)")
        }
    }

    // MARK: - CSRF

    @Test(arguments: StorageKind.allCases) func formsNeedTheSessionsCSRFToken(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:01")
            let done = try await harness.request("POST", "/api/v1/deployments/\(id)/events",
                                                 body: ServerHarness.batch([ServerHarness.event(1, "result", status: "success")]), token: token)
            #expect(done.status == 200)
            // A machine no rule matches waits for approval.
            try await harness.putRules(#"{"rules": [{"match": "mac", "pattern": "52:54:00:c5:00:01", "sequence": "base", "variables": {}}]}"#)
            #expect(try await harness.checkIn(macs: ["52:54:00:c5:00:99"]).json["status"] as? String == "pending")
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            let pendingID = try #require(machines.first { $0["state"] as? String == "pending" }?["id"] as? String)
            let deployedID = try #require(machines.first { $0["state"] as? String == "approved" }?["id"] as? String)
            func state(_ machine: String) async throws -> String? {
                let list = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
                return list.first { $0["id"] as? String == machine }?["state"] as? String
            }

            let session = try await harness.dashboardLogin()
            let other = try await harness.dashboardLogin()
            #expect(!session.csrf.isEmpty && session.csrf != other.csrf)
            // Without the token, with a wrong one, with another session's: 403, and nothing changes.
            for fields in [[:], ["csrf": String(repeating: "0", count: 64)], ["csrf": other.csrf]] as [[String: String]] {
                let approve = try await harness.postForm("/dashboard/machines/\(pendingID)/approve", fields, cookie: session.cookie)
                #expect(approve.status == 403 && approve.json["field"] as? String == "csrf", "\(fields): \(approve.status) \(approve.text)")
                let redeploy = try await harness.postForm("/dashboard/machines/\(deployedID)/redeploy", fields, cookie: session.cookie)
                #expect(redeploy.status == 403, "\(fields): \(redeploy.status)")
            }
            #expect(try await state(pendingID) == "pending")
            let before = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(session.cookie)"])
            #expect(!before.text.contains("deploys again at its next network boot"))
            #expect(try await harness.request("GET", "/boot/52:54:00:c5:00:01.ipxe").text.hasSuffix("exit 1\n"), "redeployed without a token")

            // The page's forms carry the token; with it, both work.
            #expect(before.text.contains("<input type=\"hidden\" name=\"csrf\" value=\"\(session.csrf)\">"))
            let approve = try await harness.postForm("/dashboard/machines/\(pendingID)/approve", ["csrf": session.csrf], cookie: session.cookie)
            #expect(approve.status == 303 && approve.headers["location"] == "/dashboard")
            #expect(try await state(pendingID) == "approved")
            let redeploy = try await harness.postForm("/dashboard/machines/\(deployedID)/redeploy", ["csrf": session.csrf], cookie: session.cookie)
            #expect(redeploy.status == 303)
            let after = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(session.cookie)"])
            #expect(after.text.contains("deploys again at its next network boot"))
            // A script with the admin token needs none (no browser adds Authorization by itself).
            #expect(try await harness.postForm("/dashboard/machines/\(pendingID)/approve", [:],
                                               headers: ["Authorization: Bearer \(harness.adminToken)"]).status == 303)
        }
    }

    @Test func resetTokenButtonRevokesTheTokenWithCSRF() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:0a")
            let session = try await harness.dashboardLogin()
            let cookie = ["Cookie: \(session.cookie)"]
            let form = "<form class=\"reset-token\" method=\"post\" action=\"/dashboard/deployments/\(id)/reset-token\">"
                + "<input type=\"hidden\" name=\"csrf\" value=\"\(session.csrf)\"><button type=\"submit\">Reset token</button></form>"
            #expect(try await harness.request("GET", "/dashboard/deployments/\(id)", headers: cookie).text.contains(form))
            #expect(try await harness.request("GET", "/dashboard", headers: cookie).text.contains(form), "the machine list has no Reset token")

            // Without the CSRF token (another site's form): 403, and the agent's token still works.
            let forged = try await harness.postForm("/dashboard/deployments/\(id)/reset-token", [:], cookie: session.cookie)
            #expect(forged.status == 403 && forged.json["field"] as? String == "csrf", "\(forged.status) \(forged.text)")
            #expect(try await harness.request("GET", "/api/v1/deployments/\(id)/sequence", token: token).status == 200)

            let reset = try await harness.postForm("/dashboard/deployments/\(id)/reset-token", ["csrf": session.csrf], cookie: session.cookie)
            #expect(reset.status == 303 && reset.headers["location"] == "/dashboard/deployments/\(id)", "\(reset.status) \(reset.text)")
            #expect(try await harness.request("GET", "/api/v1/deployments/\(id)/sequence", token: token).status == 403)
            let page = try await harness.request("GET", "/dashboard/deployments/\(id)", headers: cookie).text
            #expect(page.contains("token reset at") && !page.contains(form), "the page does not show the reset")
            let events = try await harness.storedEvents(id).compactMap { $0["event"] as? [String: Any] }
            #expect(events.contains { ($0["message"] as? String ?? "").contains("token reset by an administrator") }, "\(events)")
            // The machine's next check-in takes a new token at once.
            let again = try await harness.checkIn(macs: ["52:54:00:c5:00:0a"])
            let newToken = try #require((again.json["deployment"] as? [String: Any])?["token"] as? String, "\(again.text)")
            #expect(newToken != token)

            #expect(try await harness.postForm("/dashboard/deployments/nope/reset-token", ["csrf": session.csrf], cookie: session.cookie).status == 404)
            // The new agent numbers its events after the server's notice.
            let after = (again.json["deployment"] as? [String: Any])?["eventsAfter"] as? Int ?? 0
            let result = try await harness.request("POST", "/api/v1/deployments/\(id)/events",
                                                   body: Self.events([ServerHarness.event(after + 1, "result", status: "success")]), token: newToken)
            #expect(result.json["state"] as? String == "succeeded", "\(result.text)")
            let ended = try await harness.postForm("/dashboard/deployments/\(id)/reset-token", ["csrf": session.csrf], cookie: session.cookie)
            #expect(ended.status == 409, "\(ended.status) \(ended.text)")
            #expect(!(try await harness.request("GET", "/dashboard/deployments/\(id)", headers: cookie).text.contains("Reset token")))
        }
    }

    /// A check-in claiming a known machine's serial with another MAC becomes a pending machine;
    /// the dashboard says what it conflicts with (the serial as the machine sent it, escaped),
    /// in the list while it waits and after, and on its deployment's page.
    @Test func identityConflictsAreShownEscaped() async throws {
        try await ServerHarness.with { harness in
            let serial = "<b>SN</b>&1"
            #expect(try await harness.checkIn(macs: ["52:54:00:c5:00:0b"], serial: serial).json["status"] as? String == "pending")
            let conflicting = try await harness.checkIn(macs: ["52:54:00:c5:00:0c"], serial: serial)
            let conflictID = try #require(conflicting.json["machineId"] as? String)
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            let record = try #require(machines.first { $0["id"] as? String == conflictID })
            let description = try #require((record["conflicts"] as? [[String: Any]])?.first?["description"] as? String)
            let escaped = DashboardPage.escape(description)
            #expect(escaped.contains("serial &lt;b&gt;SN&lt;/b&gt;&amp;1"), "\(escaped)")

            let session = try await harness.dashboardLogin()
            let cookie = ["Cookie: \(session.cookie)"]
            func row(_ html: String, _ prefix: String) -> String {
                html.components(separatedBy: "<tr").first { $0.contains("id=\"\(prefix)-\(conflictID)\"") } ?? ""
            }
            let waiting = try await harness.request("GET", "/dashboard", headers: cookie).text
            #expect(row(waiting, "pending").contains("Identity conflict: this machine's first check-in \(escaped)"), "\(waiting)")
            #expect(!waiting.contains("<b>SN</b>"))

            // Approved, it is deployed; the list and the deployment's page still say it.
            #expect(try await harness.admin("POST", "/machines/\(conflictID)/approve").status == 200)
            try await harness.putSequence("base")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
            let assigned = try await harness.checkIn(macs: ["52:54:00:c5:00:0c"], serial: serial)
            let deploymentID = try #require((assigned.json["deployment"] as? [String: Any])?["id"] as? String, "\(assigned.text)")
            let list = try await harness.request("GET", "/dashboard", headers: cookie).text
            #expect(row(list, "machine").contains(escaped), "\(list)")
            let detail = try await harness.request("GET", "/dashboard/deployments/\(deploymentID)", headers: cookie).text
            #expect(detail.contains("<section id=\"conflicts\">") && detail.contains(escaped) && !detail.contains("<b>SN</b>"), "\(detail)")
        }
    }

    // MARK: - Headers and escaping

    @Test func everyDashboardAnswerForbidsFramingAndInlineScript() async throws {
        try await ServerHarness.with { harness in
            let (id, _) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:02")
            let session = try await harness.dashboardLogin()
            let cookie = ["Cookie: \(session.cookie)"]
            let answers: [(String, ServerHarness.Answer)] = [
                ("login page", try await harness.request("GET", "/dashboard")),
                ("index", try await harness.request("GET", "/dashboard", headers: cookie)),
                ("second page", try await harness.request("GET", "/dashboard?page=2", headers: cookie)),
                ("bad page", try await harness.request("GET", "/dashboard?page=x", headers: cookie)),
                ("deployment", try await harness.request("GET", "/dashboard/deployments/\(id)", headers: cookie)),
                ("missing deployment", try await harness.request("GET", "/dashboard/deployments/nope", headers: cookie)),
                ("script", try await harness.request("GET", "/dashboard/app.js")),
                ("style", try await harness.request("GET", "/dashboard/app.css")),
                ("login", try await harness.postForm("/dashboard/login", ["token": harness.adminToken])),
                ("failed login", try await harness.postForm("/dashboard/login", ["token": "x"])),
                ("no CSRF", try await harness.postForm("/dashboard/machines/x/approve", [:], cookie: session.cookie)),
                ("live", try await harness.request("GET", "/dashboard/live", headers: cookie, maxTime: 2)),
            ]
            for (name, answer) in answers {
                let policy = answer.headers["content-security-policy"] ?? ""
                #expect(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'")
                        && policy.contains("default-src 'none'") && !policy.contains("unsafe-inline"), "\(name): \(policy)")
                #expect(answer.headers["x-frame-options"] == "DENY", "\(name)")
                #expect(answer.headers["x-content-type-options"] == "nosniff", "\(name)")
                #expect(answer.headers["referrer-policy"] == "no-referrer", "\(name)")
            }
            let statuses = Dictionary(uniqueKeysWithValues: answers.map { ($0.0, $0.1.status) })
            #expect(statuses == ["login page": 401, "index": 200, "second page": 200, "bad page": 400, "deployment": 200,
                                 "missing deployment": 404, "script": 200, "style": 200, "login": 303, "failed login": 401,
                                 "no CSRF": 403, "live": 200])
            // Nothing inline: no script element without src, no style element or attribute.
            for (name, answer) in answers where (answer.headers["content-type"] ?? "").hasPrefix("text/html") {
                #expect(!answer.text.contains("<script>") && !answer.text.contains("<style") && !answer.text.contains("style=\""), "\(name)")
            }
            #expect(answers.first { $0.0 == "script" }?.1.headers["content-type"] == "text/javascript; charset=utf-8")
        }
    }

    @Test(arguments: StorageKind.allCases) func agentTextIsEscapedEverywhereOnThePage(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:03")
            let quoteStep = "1'); alert(1); ('", scriptStep = "</script><script>alert(1)</script>"
            var started = ServerHarness.event(1, "stepStarted", step: quoteStep)
            started["name"] = "<img src=x onerror=alert(1)>"
            started["type"] = "\" onmouseover=\"alert(1)"
            var ended = ServerHarness.event(2, "stepEnded", status: "failed", step: scriptStep)
            ended["message"] = "<svg onload=alert(1)>"
            var log = Self.log(3, "]]></script><!-- \u{2028} & <b>bold</b>", step: "\"]' x")
            log["level"] = "\"><script>alert(1)</script>"
            let posted = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events([started, ended, log]), token: token)
            #expect(posted.status == 200, "\(posted.text)")

            let session = try await harness.dashboardLogin()
            let page = try await harness.request("GET", "/dashboard/deployments/\(id)", headers: ["Cookie: \(session.cookie)"]).text
            for raw in [quoteStep, scriptStep, "<img src=x", "<svg", "\" onmouseover", "<b>bold", "\"><script>", "<script>alert"] {
                #expect(!page.contains(raw), "unescaped in the page: \(raw)")
            }
            #expect(page.contains("1&#39;); alert(1); (&#39;"))
            #expect(page.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(page.contains("data-step=\"1&#39;); alert(1); (&#39;\""))
            // An unknown level is shown as info, not written into a class.
            #expect(page.contains("<span class=\"info\">"))
            // The machine list escapes the step too.
            let index = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(session.cookie)"]).text
            #expect(!index.contains(quoteStep) && !index.contains("<img src=x"))
            // The script never builds a selector from a step or a deployment id.
            #expect(!DashboardPage.script.contains("[data-step=\"' +") && !DashboardPage.script.contains("[data-deployment=\"' +"))
        }
    }

    /// A step number made to break a CSS selector, arriving live: the old page's
    /// `querySelector('tr[data-step="' + number + '"]')` threw on it and dropped the update.
    @Test func hostileStepNumbersArriveLiveInChromium() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:04")
            #expect(try await harness.request("POST", "/api/v1/deployments/\(id)/events",
                                              body: Self.events([ServerHarness.event(1, "sequenceStarted")]), token: token).status == 200)
            let session = try await harness.dashboardLogin()
            let hostile = ["1\"] , x[y=\"", "1\"],body,[x=\"", "</script><script>window.pwned=1</script>", "1'); window.pwned=1; ('"]
            let browser = try DashboardTests.browse(
                harness.base + "/dashboard/deployments/\(id)", cookie: session.cookie,
                until: "document.querySelectorAll('#timeline tr[data-step]').length === 4",
                eval: "JSON.stringify({steps: Array.from(document.querySelectorAll('#timeline tr[data-step]')).map(r => r.cells[0].textContent), pwned: window.pwned === 1, scripts: document.scripts.length})",
                screenshot: harness.scratch.sub("hostile.png"))
            try await Task.sleep(nanoseconds: 2_500_000_000)
            let events = hostile.enumerated().map { index, step -> [String: Any] in
                ServerHarness.event(index + 2, "stepStarted", step: step)
            }
            #expect(try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events(events), token: token).status == 200)
            let output = try await ServerHarness.offload {
                let data = (browser.standardOutput as? Pipe)?.fileHandleForReading.readDataToEndOfFile() ?? Data()
                browser.waitUntilExit()
                return data
            }
            let result = (try? JSONSerialization.jsonObject(with: output)) as? [String: Any] ?? [:]
            #expect(result["held"] as? Bool == true, "the live steps never appeared: \(String(decoding: output, as: UTF8.self))")
            let page = ((result["value"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }) as? [String: Any] ?? [:]
            #expect(page["steps"] as? [String] == hostile)
            #expect(page["pwned"] as? Bool == false)
            #expect(page["scripts"] as? Int == 1)
        }
    }

    // MARK: - Limits

    @Test(arguments: StorageKind.allCases) func oversizedBatchIsRefusedWhole(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:05")
            let batch = (1...1001).map { Self.log($0, "line \($0)") }
            let answer = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events(batch), token: token)
            #expect(answer.status == 413 && answer.json["field"] as? String == "events", "\(answer.status) \(answer.text)")
            #expect((answer.json["error"] as? String ?? "").contains("at most 1000 events"))
            #expect(try await harness.storedEvents(id).isEmpty)
            // 1,000 is fine.
            let fits = try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events(Array(batch.prefix(1000))), token: token)
            #expect(fits.status == 200 && fits.json["stored"] as? Int == 1000)
        }
    }

    @Test(arguments: StorageKind.allCases) func eventsPastTheDeploymentsLimitsAreNotStored(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, configure: {
            $0.limits.events = EventLimits(perDeployment: 10, bytesPerDeployment: 3000)
        }) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:06")
            func post(_ events: [[String: Any]]) async throws -> ServerHarness.Answer {
                try await harness.request("POST", "/api/v1/deployments/\(id)/events", body: Self.events(events), token: token)
            }
            let first = try await post((1...12).map { Self.log($0, "line \($0)") })
            #expect(first.status == 200)
            #expect(first.json["stored"] as? Int == 10 && first.json["refused"] as? Int == 2, "\(first.text)")
            // Acknowledged all the same: a real agent goes on to its result instead of resending forever.
            #expect(first.json["acknowledged"] as? Int == 12)
            #expect((first.json["limit"] as? String ?? "").contains("10 events"))
            let flood = try await post((13...40).map { Self.log($0, "flood \($0)") })
            #expect(flood.json["stored"] as? Int == 0 && flood.json["refused"] as? Int == 28 && flood.json["acknowledged"] as? Int == 40)
            #expect(try await harness.storedEvents(id).count == 10)
            let deployment = try await harness.admin("GET", "/deployments/\(id)").json
            #expect((deployment["message"] as? String ?? "").contains("limit"), "the dashboard should say why the log stops")
            // The result is stored whatever the limits.
            let result = try await post([ServerHarness.event(41, "result", status: "success")])
            #expect(result.json["stored"] as? Int == 1 && result.json["state"] as? String == "succeeded", "\(result.text)")
            #expect(try await harness.storedEvents(id).count == 11)

            // Bytes: three events of 1,000 characters fill 3,000 bytes of bodies; the rest is refused.
            let (other, otherToken) = try await harness.assignedDeployment(mac: "52:54:00:c5:00:07")
            let big = try await harness.request("POST", "/api/v1/deployments/\(other)/events",
                                                body: Self.events((1...5).map { Self.log($0, String(repeating: "x", count: 1000)) }),
                                                token: otherToken)
            #expect(big.status == 200 && (big.json["stored"] as? Int ?? 0) < 3 && (big.json["refused"] as? Int ?? 0) >= 3, "\(big.text)")
            #expect(big.json["acknowledged"] as? Int == 5)
        }
    }

    @Test func liveStreamsAreCapped() async throws {
        try await ServerHarness.with(configure: { $0.limits.liveStreams = 2 }) { harness in
            let token = harness.adminToken, base = harness.base
            // Two streams held open by curl in the background.
            let streams = try (0..<2).map { _ -> Process in
                let curl = Process()
                curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                curl.arguments = ["curl", "-sN", "--max-time", "60", "-o", "/dev/null", "-H", "Authorization: Bearer \(token)", base + "/dashboard/live"]
                try curl.run()
                return curl
            }
            defer { for stream in streams where stream.isRunning { stream.terminate() } }
            try await Task.sleep(nanoseconds: 1_000_000_000)
            var third = try await harness.request("GET", "/dashboard/live", token: token, maxTime: 3)
            var waited = 0
            // The two may not be connected yet (200), or a loaded machine slow to answer (0 when curl gives up).
            while third.status != 429 && waited < 20 {
                try await Task.sleep(nanoseconds: 250_000_000)
                waited += 1
                third = try await harness.request("GET", "/dashboard/live", token: token, maxTime: 3)
            }
            #expect(third.status == 429, "\(third.status) \(third.text)")
            #expect(third.headers["retry-after"] != nil && (third.json["error"] as? String ?? "").contains("live streams"))
            // Closed streams give their places back (found at the next keepalive write).
            for stream in streams { stream.terminate(); stream.waitUntilExit() }
            var again = 0
            for _ in 0..<60 {
                again = try await harness.request("GET", "/dashboard/live", token: token, maxTime: 1).status
                if again == 200 { break }
                try await Task.sleep(nanoseconds: 500_000_000)
            }
            #expect(again == 200)
        }
    }

    @Test(arguments: StorageKind.allCases) func dashboardPagesArePaginated(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: {
            $0.limits.machinesPerPage = 2
            $0.limits.eventsPerPage = 5
        }) { harness in
            let (id, token) = try await harness.assignedDeployment(mac: "52:54:00:c5:01:01")
            for index in 2...5 { _ = try await harness.checkIn(macs: [String(format: "52:54:00:c5:01:%02x", index)]) }
            let session = try await harness.dashboardLogin()
            func get(_ path: String) async throws -> String {
                let answer = try await harness.request("GET", path, headers: ["Cookie: \(session.cookie)"])
                #expect(answer.status == 200, "\(path): \(answer.status)")
                return answer.text
            }
            func rows(_ html: String) -> Int { html.components(separatedBy: "<tr class=\"machine\"").count - 1 }
            let first = try await get("/dashboard")
            #expect(rows(first) == 2 && first.contains("page 1 of 3") && first.contains("href=\"/dashboard?page=2\""))
            let last = try await get("/dashboard?page=3")
            #expect(rows(last) == 1 && last.contains("href=\"/dashboard?page=2\"") && !last.contains("?page=4"))
            #expect(rows(try await get("/dashboard?page=9")) == 0)
            #expect(try await harness.request("GET", "/dashboard?page=0", headers: ["Cookie: \(session.cookie)"]).status == 400)

            // A deployment's log: the newest page, following the live feed, with a link to older ones.
            let posted = try await harness.request("POST", "/api/v1/deployments/\(id)/events",
                                                   body: Self.events((1...12).map { Self.log($0, "line number \($0)") }), token: token)
            #expect(posted.status == 200)
            func lines(_ html: String) -> [String] {
                html.components(separatedBy: "line number ").dropFirst().compactMap { $0.split(separator: "<").first.map(String.init) }
            }
            let newest = try await get("/dashboard/deployments/\(id)")
            #expect(lines(newest) == ["8", "9", "10", "11", "12"])
            #expect(newest.contains("?before=8\"") && newest.contains("data-follow=\"true\"") && !newest.contains("?after="))
            let older = try await get("/dashboard/deployments/\(id)?before=8")
            #expect(lines(older) == ["3", "4", "5", "6", "7"])
            #expect(older.contains("?before=3\"") && older.contains("?after=7\"") && !older.contains("data-follow"))
            let oldest = try await get("/dashboard/deployments/\(id)?before=3")
            #expect(lines(oldest) == ["1", "2"] && !oldest.contains("?before=") && oldest.contains("?after=2\""))
            let forward = try await get("/dashboard/deployments/\(id)?after=7")
            #expect(lines(forward) == ["8", "9", "10", "11", "12"] && forward.contains("data-follow=\"true\""))
            #expect(try await harness.request("GET", "/dashboard/deployments/\(id)?before=x", headers: ["Cookie: \(session.cookie)"]).status == 400)
        }
    }
}
