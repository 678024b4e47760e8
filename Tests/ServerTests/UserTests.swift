import Foundation
import Server
import TestSupport
import Testing

/// Named users with roles, their API tokens, their passwords' hashes, and the audit log (issue 20).
@Suite("imprint-server's users, roles, tokens and audit log", .serialized)
struct UserTests {
    static func json(_ value: [String: Any]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: value)) ?? Data(), as: UTF8.self)
    }

    /// A user made through the admin API (with the admin token), and an API token made for them.
    static func user(_ harness: ServerHarness, _ name: String, role: String, password: String) async throws -> (tokenID: String, secret: String) {
        let made = try await harness.admin("POST", "/users", json: json(["name": name, "role": role, "password": password]))
        #expect(made.status == 201 && made.json["role"] as? String == role && made.json["password"] as? String == "set", "\(made.text)")
        #expect(!made.text.contains(password) && !made.text.contains("scrypt"), "\(made.text)")
        let token = try await harness.admin("POST", "/tokens", json: json(["user": name, "label": "\(name)'s script"]))
        #expect(token.status == 201, "\(token.text)")
        let secret = try #require(token.json["secret"] as? String, "\(token.text)")
        let id = try #require((token.json["token"] as? [String: Any])?["id"] as? String, "\(token.text)")
        #expect(secret.hasPrefix("imp_"))
        return (id, secret)
    }

    static let secretValue = "Sup3r-Secret-Local-Admin!"

    static let rules = #"{"rules": [{"name": "lab", "match": "mac", "pattern": "52:54:00:aa:*", "sequence": "base", "variables": {"LocalAdminPassword": "\#(secretValue)", "Site": "lab"}}]}"#

    @Test("every admin API and dashboard route names the role it needs, and only those")
    func everyAdminRouteHasARole() {
        for route in RouteSpec.all {
            let open = ["/dashboard/login", "/dashboard/app.js", "/dashboard/app.css"].contains(route.path)
            let administered = (route.path.hasPrefix("/api/v1/admin/") || route.path.hasPrefix("/dashboard")) && !open
            #expect((route.role != nil) == administered, "\(route.method) \(route.path): role \(route.role?.rawValue ?? "none")")
            // What changes something is never a viewer's (but its own logout and its own tokens;
            // the rule tester, a sequence's check and its dry run post a body and change nothing).
            if route.method != .get && route.method != .head, let role = route.role, role == .viewer {
                let readOnly = ["/api/v1/admin/rules/test", "/dashboard/rules/test", "/api/v1/admin/sequences/{name}/validate",
                                "/dashboard/sequences/{name}/validate", "/api/v1/admin/sequences/{name}/plan"].contains(route.path)
                #expect(route.path == "/dashboard/logout" || route.path.hasPrefix("/api/v1/admin/tokens") || readOnly,
                        "\(route.method) \(route.path) is a viewer's")
            }
        }
    }

    @Test("viewer, operator and administrator over HTTP; API tokens used, revoked; passwords as scrypt hashes; the audit log of a rule change",
          arguments: StorageKind.allCases)
    func rolesTokensPasswordsAndAudit(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            try await harness.putSequence("base")
            let viewer = try await Self.user(harness, "vera", role: "viewer", password: "vera-password-1")
            let operatorToken = try await Self.user(harness, "otto", role: "operator", password: "otto-password-1")
            let administrator = try await Self.user(harness, "ada", role: "administrator", password: "ada-password-1")

            // The password is a scrypt hash with its parameters and salt, never the password.
            let stored = try #require(try await harness.server.storage.user(name: "vera"))
            #expect(stored.passwordHash.hasPrefix("scrypt$N=32768,r=8,p=1$"), "\(stored.passwordHash)")
            #expect(stored.passwordHash != "vera-password-1" && !stored.passwordHash.contains("vera-password-1"))
            let other = try #require(try await harness.server.storage.user(name: "otto"))
            #expect(other.passwordHash.split(separator: "$")[2] != stored.passwordHash.split(separator: "$")[2], "two users share a salt")
            // The dashboard's login checks it: a wrong password is refused, the right one opens a session.
            let wrong = try await harness.postForm("/dashboard/login", ["user": "vera", "password": "vera-password-2", "next": "/dashboard"])
            #expect(wrong.status == 401 && wrong.headers["set-cookie"] == nil && wrong.text.contains("Wrong user name or password"), "\(wrong.status)")
            let unknown = try await harness.postForm("/dashboard/login", ["user": "nobody", "password": "vera-password-1", "next": "/dashboard"])
            #expect(unknown.status == 401 && unknown.text.contains("Wrong user name or password"))
            let right = try await harness.postForm("/dashboard/login", ["user": "vera", "password": "vera-password-1", "next": "/dashboard"])
            #expect(right.status == 303 && (right.headers["set-cookie"] ?? "").contains("imprint_session="), "\(right.status) \(right.text)")
            let short = try await harness.admin("POST", "/users", json: Self.json(["name": "sam", "role": "viewer", "password": "short"]))
            #expect(short.status == 422 && short.json["field"] as? String == "password", "\(short.text)")
            let badRole = try await harness.admin("POST", "/users", json: Self.json(["name": "sam", "role": "root", "password": "long-enough-1"]))
            #expect(badRole.status == 422 && badRole.json["field"] as? String == "role", "\(badRole.text)")
            let taken = try await harness.admin("POST", "/users", json: Self.json(["name": "vera", "role": "viewer", "password": "long-enough-1"]))
            #expect(taken.status == 409, "\(taken.text)")

            // A viewer reads, and is refused any edit with a clear JSON error.
            #expect(try await harness.request("GET", "/api/v1/admin/rules", token: viewer.secret).status == 200)
            let refusedRules = try await harness.request("PUT", "/api/v1/admin/rules", body: Data(Self.rules.utf8), token: viewer.secret)
            #expect(refusedRules.status == 403, "\(refusedRules.text)")
            let message = refusedRules.json["error"] as? String ?? ""
            #expect(message.contains("vera") && message.contains("viewer") && message.contains("PUT /api/v1/admin/rules")
                    && message.contains("administrator role"), "\(message)")
            #expect(try await harness.request("GET", "/api/v1/admin/users", token: viewer.secret).status == 403)
            let me = try await harness.request("GET", "/api/v1/admin/me", token: viewer.secret)
            #expect(me.json["user"] as? String == "vera" && me.json["role"] as? String == "viewer", "\(me.text)")

            // An operator approves a pending machine, and is refused a rule edit.
            #expect(try await harness.checkIn(macs: ["52:54:00:aa:00:01"]).json["status"] as? String == "pending")
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            let machineID = try #require(machines.first?["id"] as? String)
            let viewerApprove = try await harness.request("POST", "/api/v1/admin/machines/\(machineID)/approve", token: viewer.secret)
            #expect(viewerApprove.status == 403 && (viewerApprove.json["error"] as? String ?? "").contains("operator role"), "\(viewerApprove.text)")
            let approved = try await harness.request("POST", "/api/v1/admin/machines/\(machineID)/approve", token: operatorToken.secret)
            #expect(approved.status == 200 && approved.json["state"] as? String == "approved", "\(approved.text)")
            let operatorRules = try await harness.request("PUT", "/api/v1/admin/rules", body: Data(Self.rules.utf8), token: operatorToken.secret)
            #expect(operatorRules.status == 403, "\(operatorRules.text)")

            // An administrator (a user's token) edits the rules; the old admin token still does everything.
            let adminRules = try await harness.request("PUT", "/api/v1/admin/rules", body: Data(Self.rules.utf8), token: administrator.secret)
            #expect(adminRules.status == 200, "\(adminRules.text)")
            #expect(try await harness.admin("GET", "/users").status == 200)

            // Tokens: listed with their last use, revoked by their own user, then refused with 401.
            let listed = try await harness.request("GET", "/api/v1/admin/tokens", token: viewer.secret)
            let tokens = listed.json["tokens"] as? [[String: Any]] ?? []
            #expect(tokens.count == 1 && tokens.first?["lastUsed"] is String && !listed.text.contains(viewer.secret), "\(listed.text)")
            #expect(try await harness.request("GET", "/api/v1/admin/tokens?user=ada", token: viewer.secret).status == 403)
            #expect(try await harness.request("DELETE", "/api/v1/admin/tokens/\(administrator.tokenID)", token: viewer.secret).status == 404,
                    "a viewer revoked someone else's token")
            let revoked = try await harness.request("DELETE", "/api/v1/admin/tokens/\(viewer.tokenID)", token: viewer.secret)
            #expect(revoked.status == 200 && revoked.json["revoked"] is String, "\(revoked.text)")
            let afterRevoke = try await harness.request("GET", "/api/v1/admin/rules", token: viewer.secret)
            #expect(afterRevoke.status == 401 && afterRevoke.headers["www-authenticate"] != nil, "\(afterRevoke.text)")
            #expect(try await harness.request("GET", "/api/v1/admin/rules", token: "imp_" + String(repeating: "0", count: 64)).status == 401)
            // A role changed by an administrator counts at once.
            let promoted = try await harness.admin("PUT", "/users/otto", json: #"{"role": "administrator"}"#)
            #expect(promoted.status == 200 && promoted.json["role"] as? String == "administrator", "\(promoted.text)")
            #expect(try await harness.request("PUT", "/api/v1/admin/rules", body: Data(Self.rules.utf8), token: operatorToken.secret).status == 200)

            // The audit log: the rule change with who, what, before and after, the secret as "set".
            let audit = try await harness.admin("GET", "/audit?object=rules&user=ada")
            #expect(audit.status == 200, "\(audit.text)")
            #expect(!audit.text.contains(Self.secretValue), "the audit log holds a secret: \(audit.text)")
            let entries = audit.json["entries"] as? [[String: Any]] ?? []
            #expect(entries.count == 1, "\(audit.text)")
            let entry = entries.first ?? [:]
            #expect(entry["actor"] as? String == "ada" && entry["role"] as? String == "administrator" && entry["via"] as? String == "api")
            #expect(entry["action"] as? String == "PUT /api/v1/admin/rules" && entry["objectKind"] as? String == "rules", "\(entry)")
            #expect(((entry["before"] as? [String: Any])?["rules"] as? [Any])?.isEmpty == true, "\(entry)")
            let afterRule = ((entry["after"] as? [String: Any])?["rules"] as? [[String: Any]])?.first ?? [:]
            #expect((afterRule["variables"] as? [String: String]) == ["LocalAdminPassword": "set", "Site": "lab"], "\(entry)")
            #expect(entry["time"] is String && entry["id"] is Int)
            // The operator's approval, the refused attempts not at all.
            let approvals = try await harness.admin("GET", "/audit?user=otto").json["entries"] as? [[String: Any]] ?? []
            let actions = approvals.compactMap { $0["action"] as? String }
            #expect(actions == ["PUT /api/v1/admin/rules", "POST /api/v1/admin/machines/{id}/approve"], "\(approvals)")
            let approval = approvals.last ?? [:]
            #expect(approval["objectID"] as? String == machineID && (approval["before"] as? [String: Any])?["state"] as? String == "pending"
                    && (approval["after"] as? [String: Any])?["state"] as? String == "approved", "\(approval)")
            // Users and tokens are recorded too, a token's secret never.
            let userEntries = try await harness.admin("GET", "/audit?object=user:otto").json["entries"] as? [[String: Any]] ?? []
            #expect(userEntries.count == 2 && userEntries.first?["actor"] as? String == "admin token", "\(userEntries)")
            let tokenEntries = try await harness.admin("GET", "/audit?object=token")
            #expect((tokenEntries.json["entries"] as? [Any])?.count == 4 && !tokenEntries.text.contains(viewer.secret), "\(tokenEntries.text)")
            // Paging, newest first.
            let first = try await harness.admin("GET", "/audit?limit=2")
            let next = try #require(first.json["next"] as? Int, "\(first.text)")
            let second = try await harness.admin("GET", "/audit?limit=2&before=\(next)").json["entries"] as? [[String: Any]] ?? []
            #expect(second.count == 2 && (second.first?["id"] as? Int ?? 0) < next)
            #expect(try await harness.admin("GET", "/audit?since=yesterday").status == 400)
            let future = try await harness.admin("GET", "/audit?since=2999-01-01").json["entries"] as? [Any]
            #expect(future?.isEmpty == true)

            // Deleting a user ends their tokens; the audit log keeps their name.
            #expect(try await harness.admin("DELETE", "/users/ada").status == 204)
            #expect(try await harness.request("GET", "/api/v1/admin/rules", token: administrator.secret).status == 401)
            #expect((try await harness.admin("GET", "/audit?user=ada").json["entries"] as? [Any])?.count == 1)
        }
    }

    @Test("the dashboard: a user's session has the user's role; the Users page's forms; a viewer refused an approval")
    func dashboardRolesAndUsersPage() async throws {
        try await ServerHarness.with { harness in
            _ = try await Self.user(harness, "vera", role: "viewer", password: "vera-password-1")
            // An administrator's session (the admin token) adds a user through the form.
            let admin = try await harness.dashboardLogin()
            let page = try await harness.request("GET", "/dashboard/users", headers: ["Cookie: \(admin.cookie)"])
            #expect(page.status == 200 && page.text.contains("id=\"user-vera\"") && page.text.contains("<label>Role of vera"), "\(page.text)")
            let short = try await harness.postForm("/dashboard/users", ["csrf": admin.csrf, "name": "olga", "role": "operator", "password": "short"],
                                                   cookie: admin.cookie)
            #expect(short.status == 422 && short.text.contains("at least 8 characters") && short.text.contains("aria-invalid=\"true\"")
                    && short.text.contains("value=\"olga\""), "\(short.text)")
            let noCSRF = try await harness.postForm("/dashboard/users", ["name": "olga", "role": "operator", "password": "olga-password-1"],
                                                    cookie: admin.cookie)
            #expect(noCSRF.status == 403)
            let added = try await harness.postForm("/dashboard/users", ["csrf": admin.csrf, "name": "olga", "role": "operator", "password": "olga-password-1"],
                                                   cookie: admin.cookie)
            #expect(added.status == 303 && (added.headers["location"] ?? "").hasPrefix("/dashboard/users?done=added&user=olga"), "\(added.text)")
            #expect(try await harness.server.storage.user(name: "olga")?.role == .operator)
            let role = try await harness.postForm("/dashboard/users/olga/role", ["csrf": admin.csrf, "role": "viewer"], cookie: admin.cookie)
            let olga = try await harness.server.storage.user(name: "olga")
            #expect(role.status == 303 && olga?.role == .viewer)
            let revoke = try await harness.postForm("/dashboard/users/vera/revoke-tokens", ["csrf": admin.csrf], cookie: admin.cookie)
            #expect(revoke.status == 303)
            #expect(try await harness.server.storage.apiTokens(user: "vera").allSatisfy { $0.revoked != nil })

            // A viewer's session: reads the machines, is refused the Users page and an approval.
            let login = try await harness.postForm("/dashboard/login", ["user": "vera", "password": "vera-password-1", "next": "/dashboard"])
            let cookie = (login.headers["set-cookie"] ?? "").components(separatedBy: ";").first ?? ""
            #expect(try await harness.checkIn(macs: ["52:54:00:bb:00:01"]).json["status"] as? String == "pending")
            let machines = try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"])
            let csrf = try #require(ServerHarness.csrfToken(in: machines.text))
            #expect(machines.status == 200)
            let users = try await harness.request("GET", "/dashboard/users", headers: ["Cookie: \(cookie)"])
            #expect(users.status == 403 && users.text.contains("user vera is a viewer") && users.text.contains("administrator role"), "\(users.text)")
            let machineID = try #require((try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]])?.first?["id"] as? String)
            let approve = try await harness.postForm("/dashboard/machines/\(machineID)/approve", ["csrf": csrf], cookie: cookie)
            #expect(approve.status == 403 && approve.text.contains("operator role"), "\(approve.text)")
            #expect((try await harness.server.storage.machine(id: machineID))?.state == .pending)
            // The dashboard's changes are in the audit log, as the dashboard's.
            let audit = try await harness.admin("GET", "/audit?object=user:olga").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.map { $0["action"] as? String } == ["POST /dashboard/users/{name}/role", "POST /dashboard/users"], "\(audit)")
            #expect(audit.allSatisfy { $0["via"] as? String == "dashboard" && $0["actor"] as? String == "admin token" })
            // A new password ends the user's sessions.
            #expect(try await harness.admin("PUT", "/users/vera", json: #"{"password": "vera-password-2"}"#).status == 200)
            #expect(try await harness.request("GET", "/dashboard", headers: ["Cookie: \(cookie)"]).status == 401)
        }
    }

    @Test("in Chromium: a viewer is refused an approval with a message, and the Audit page shows an administrator's rule change")
    func viewerRefusedAndAuditPageInChromium() async throws {
        try await ServerHarness.with { harness in
            try await harness.putSequence("base")
            _ = try await Self.user(harness, "vera", role: "viewer", password: "vera-password-1")
            let ada = try await Self.user(harness, "ada", role: "administrator", password: "ada-password-1")
            #expect(try await harness.checkIn(macs: ["52:54:00:cc:00:01"]).json["status"] as? String == "pending")
            let changed = try await harness.request("PUT", "/api/v1/admin/rules", body: Data(Self.rules.utf8), token: ada.secret)
            #expect(changed.status == 200, "\(changed.text)")
            let login = try await harness.postForm("/dashboard/login", ["user": "vera", "password": "vera-password-1", "next": "/dashboard"])
            let cookie = (login.headers["set-cookie"] ?? "").components(separatedBy: ";").first ?? ""
            #expect(!cookie.isEmpty)

            let answer = try await DashboardImagesTests.browse(harness, harness.base + "/dashboard", cookie: cookie, steps: [
                ["label": "machines", "wait": "document.querySelector('#pending tr[id^=\"pending-\"]') !== null && document.querySelector('nav.top a[href=\"/dashboard/audit\"]') !== null"],
                // A viewer is shown no Approve button at all.
                ["label": "buttons", "run": "JSON.stringify({forms: document.querySelectorAll('#pending form, #machines form').length})"],
                // What a page loaded before the role changed, or a crafted post, would send: refused with a message.
                ["label": "approve", "run": """
                    const row = document.querySelector('#pending tr[id^="pending-"]');
                    const form = document.createElement('form');
                    form.method = 'post';
                    form.action = '/dashboard/machines/' + row.id.slice('pending-'.length) + '/approve';
                    const csrf = document.createElement('input');
                    csrf.type = 'hidden'; csrf.name = 'csrf'; csrf.value = document.querySelector('input[name="csrf"]').value;
                    form.appendChild(csrf); document.body.appendChild(form); form.submit(); true
                    """],
                ["label": "refused", "wait": "document.getElementById('notice') !== null && document.title.includes('not allowed')"],
                ["label": "refusal", "run": "JSON.stringify({notice: document.getElementById('notice').innerText, title: document.title})"],
                ["screenshot": DashboardImagesTests.screenshot(harness, "viewer-refused.png")],
                ["navigate": harness.base + "/dashboard/audit?object=rules"],
                ["label": "audit", "wait": "document.querySelector('tr.audit-entry') !== null"],
                ["label": "entries", "run": "JSON.stringify({table: document.getElementById('audit').innerText, filter: document.querySelector('#audit-filter input[name=object]').value})"],
            ], screenshot: DashboardImagesTests.screenshot(harness, "audit.png"))
            #expect(DashboardImagesTests.value(answer, "buttons")["forms"] as? Int == 0, "a viewer was shown a button")
            let refusal = DashboardImagesTests.value(answer, "refusal")
            #expect((refusal["notice"] as? String ?? "").contains("user vera is a viewer") && (refusal["notice"] as? String ?? "").contains("operator role"),
                    "\(refusal)")
            let entries = DashboardImagesTests.value(answer, "entries")
            let table = entries["table"] as? String ?? ""
            #expect(table.contains("ada") && table.contains("PUT /api/v1/admin/rules") && table.contains("\"LocalAdminPassword\" : \"set\""), "\(table)")
            #expect(!table.contains(Self.secretValue))
            #expect(entries["filter"] as? String == "rules")
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            #expect(machines.first?["state"] as? String == "pending", "the viewer's click approved the machine")
        }
    }
}
