import Foundation
import Hummingbird
import SequenceModel

/// The dashboard's Users page (administrators: add a user, change a role, reset a password,
/// revoke a user's API tokens, delete a user) and its Audit page (everyone: the audit log with
/// filters). Plain HTML forms that post and come back (no script needed), checked by the same
/// functions as the admin API, so a form's error is the API's, at its field.
public enum DashboardUserRoute: Sendable, Hashable {
    case page, add, role, password, revokeTokens, delete
    case audit
}

extension ImprintServer {
    func dashboardUsers(_ route: DashboardUserRoute, _ request: Request, _ context: BasicRequestContext,
                        access: DashboardAccess) async throws -> Response {
        let principal = access.principal
        switch route {
        case .page:
            let query = request.uri.queryParameters
            var notice: String?
            if let done = query.get("done"), let name = query.get("user").map { String($0) }, Self.validUserName(name) {
                notice = DashboardUsersPage.doneMessage(String(done), user: name)
            }
            return dashboardHTML(try await usersPage(access: access, notice: notice, failure: nil))

        case .add:
            let form = try await dashboardForm(request)
            try requireCSRF(form, access)
            let name = form["name"]?.trimmingCharacters(in: .whitespaces) ?? ""
            do {
                let role = try Self.role(form["role"])
                _ = try await createUser(name: name, role: role, password: form["password"] ?? "", by: principal)
            } catch let error as APIError where error.status == .unprocessableContent || error.status == .conflict {
                // The page again, the form as it was sent (not the password), the error at its field.
                let failure = DashboardUsersPage.Failure(message: error.message, field: error.field ?? "name", name: name, role: form["role"])
                return dashboardHTML(try await usersPage(access: access, notice: nil, failure: failure), status: error.status)
            }
            return usersRedirect(done: "added", user: name)

        case .role, .password:
            let name = try request.requiredParameter("name", context)
            let form = try await dashboardForm(request)
            try requireCSRF(form, access)
            do {
                if route == .role {
                    _ = try await updateUser(name: name, role: try Self.role(form["role"]), password: nil)
                } else {
                    _ = try await updateUser(name: name, role: nil, password: form["password"] ?? "")
                }
            } catch let error as APIError where error.status == .unprocessableContent {
                let failure = DashboardUsersPage.Failure(message: "\(name): \(error.message)", field: error.field ?? "role", name: nil, role: nil,
                                                         user: name)
                return dashboardHTML(try await usersPage(access: access, notice: nil, failure: failure), status: error.status)
            }
            return usersRedirect(done: route == .role ? "role" : "password", user: name)

        case .revokeTokens:
            let name = try request.requiredParameter("name", context)
            try requireCSRF(try await dashboardForm(request), access)
            guard try await storage.user(name: name) != nil else { throw APIError.notFound("user \(name)") }
            _ = try await storage.revokeAPITokens(user: name, at: StoredTime.now())
            return usersRedirect(done: "revoked", user: name)

        case .delete:
            let name = try request.requiredParameter("name", context)
            try requireCSRF(try await dashboardForm(request), access)
            guard try await storage.deleteUser(name: name) else { throw APIError.notFound("user \(name)") }
            logger.info("user \(name) deleted by \(principal.name)")
            return usersRedirect(done: "deleted", user: name)

        case .audit:
            let query = try AuditQuery(request)
            let entries = try await storage.auditEntries(query.filter, before: query.before, limit: query.limit)
            return dashboardHTML(DashboardUsersPage.audit(entries, query: query, more: entries.count == query.limit, csrf: access.csrfToken))
        }
    }

    private func usersPage(access: DashboardAccess, notice: String?, failure: DashboardUsersPage.Failure?) async throws -> String {
        let tokens = Dictionary(grouping: try await storage.apiTokens(user: nil), by: \.user)
        return DashboardUsersPage.index(try await storage.users(), tokens: tokens, notice: notice, failure: failure,
                                        principal: access.principal, csrf: access.csrfToken)
    }

    private func usersRedirect(done: String, user: String) -> Response {
        Response(status: .seeOther, headers: [.location: "/dashboard/users?done=\(done)&user=\(user)#user-\(user)"])
    }

    /// A dashboard page (or form) the caller's role does not allow: 403 with a page that says
    /// who they are, what their role is and which role the action needs.
    func dashboardRefusal(_ handler: RouteSpec.Handler, _ principal: Principal, access: DashboardAccess) -> Response {
        let body = "<h1>Not allowed</h1><p class=\"notice refusal\" id=\"notice\" role=\"alert\">\(DashboardPage.escape(Self.refusal(principal, handler))).</p>"
            + "<p>Ask an administrator for a role that allows it.</p><p><a href=\"/dashboard\">Back to the machines</a></p>"
        return dashboardHTML(DashboardPage.page(title: "Imprint: not allowed", body: body, csrf: access.csrfToken, feed: false), status: .forbidden)
    }
}

/// The Users and Audit pages' HTML, pure: every name, label and logged value is escaped.
enum DashboardUsersPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    /// A form sent back with an error: what it held (never the password) and where it failed.
    struct Failure {
        var message: String
        var field: String
        var name: String?
        var role: String?
        /// The user whose row's form failed (nil: the add form).
        var user: String?
    }

    static func doneMessage(_ done: String, user: String) -> String? {
        switch done {
        case "added": return "User \(user) added."
        case "role": return "\(user)'s role changed."
        case "password": return "\(user)'s password reset; their dashboard sessions ended."
        case "revoked": return "\(user)'s API tokens revoked."
        case "deleted": return "User \(user) deleted, with their tokens and sessions."
        default: return nil
        }
    }

    static let roleDescriptions: [(Role, String)] = [
        (.viewer, "reads everything: machines, deployments, rules, sequences, images, the audit log"),
        (.operator, "and approves, rejects, registers and redeploys machines, resets a deployment's token"),
        (.administrator, "and changes rules, sequences, content, the image library, multicast sessions, distribution points and users; forgets machines"),
    ]

    static func roleOptions(selected: String?) -> String {
        Role.allCases.map { role in
            "<option value=\"\(role.rawValue)\"\(selected == role.rawValue ? " selected" : "")>\(role.rawValue)</option>"
        }.joined()
    }

    static func index(_ users: [User], tokens: [String: [APIToken]], notice: String?, failure: Failure?, principal: Principal, csrf: String) -> String {
        let csrfField = DashboardPage.csrfField(csrf)
        var body = "<h1>Users</h1><p class=\"hint\">Logged in as \(escape(principal.name)) (\(escape(principal.role.rawValue))).</p>"
        if let notice { body += "<p id=\"notice\" class=\"form-message ok\" role=\"status\">\(escape(notice))</p>" }
        if let failure, let user = failure.user {
            body += "<p id=\"user-error\" class=\"form-message error\" role=\"alert\" data-user=\"\(escape(user))\" data-field=\"\(escape(failure.field))\">\(escape(failure.message))</p>"
        }
        body += "<section id=\"users\"><h2>Users</h2>"
        if users.isEmpty {
            body += "<p class=\"empty\">No user yet: whoever has the admin token is the administrator. Add the first users below.</p>"
        } else {
            body += "<table><tr><th scope=\"col\">User</th><th scope=\"col\">Role</th><th scope=\"col\">API tokens</th>"
                + "<th scope=\"col\">Change role</th><th scope=\"col\">Reset password</th><th scope=\"col\"></th></tr>"
            for user in users {
                let name = escape(user.name)
                let path = "/dashboard/users/\(name)"
                let live = (tokens[user.name] ?? []).filter { $0.revoked == nil }
                body += "<tr class=\"user\" id=\"user-\(name)\" data-user=\"\(name)\" data-role=\"\(user.role.rawValue)\">"
                    + "<th scope=\"row\">\(name)<div class=\"hint\">created \(escape(user.created))" + (user.createdBy.map { " by \(escape($0))" } ?? "") + "</div></th>"
                    + "<td class=\"role\">\(user.role.rawValue)</td><td class=\"tokens\">" + tokenList(tokens[user.name] ?? []) + "</td>"
                    + "<td><form method=\"post\" action=\"\(path)/role\">\(csrfField)<label>Role of \(name) "
                    + "<select name=\"role\">\(roleOptions(selected: user.role.rawValue))</select></label> <button type=\"submit\">Change role</button></form></td>"
                    + "<td><form method=\"post\" action=\"\(path)/password\">\(csrfField)<label>New password for \(name) "
                    + "<input type=\"password\" name=\"password\" minlength=\"8\" required autocomplete=\"new-password\"></label> "
                    + "<button type=\"submit\">Reset password</button></form></td><td class=\"actions\">"
                    + (live.isEmpty ? "" : "<form method=\"post\" action=\"\(path)/revoke-tokens\">\(csrfField)<button type=\"submit\">Revoke \(live.count) token(s) of \(name)</button></form>")
                    + "<form method=\"post\" action=\"\(path)/delete\">\(csrfField)<button type=\"submit\">Delete \(name)</button></form></td></tr>"
            }
            body += "</table>"
        }
        body += "</section>"
        let adding = failure?.user == nil ? failure : nil
        body += "<section id=\"add-user\"><h2>Add a user</h2><form method=\"post\" action=\"/dashboard/users\" class=\"library-form\" id=\"add-user-form\">\(csrfField)"
            + "<label>Name <input type=\"text\" name=\"name\" required maxlength=\"64\" pattern=\"[A-Za-z0-9._\\-]+\" value=\"\(escape(adding?.name ?? ""))\""
            + (adding?.field == "name" ? " aria-invalid=\"true\" aria-describedby=\"add-user-error\"" : "") + "></label>"
            + "<label>Role <select name=\"role\">\(roleOptions(selected: adding?.role ?? Role.viewer.rawValue))</select></label>"
            + "<label>Password <input type=\"password\" name=\"password\" required minlength=\"8\" autocomplete=\"new-password\""
            + (adding?.field == "password" ? " aria-invalid=\"true\" aria-describedby=\"add-user-error\"" : "") + "></label>"
            + "<button type=\"submit\">Add user</button>"
            + (adding.map { "<p id=\"add-user-error\" class=\"form-message error\" role=\"alert\" data-field=\"\(escape($0.field))\">\(escape($0.message))</p>" } ?? "")
            + "</form></section>"
        body += "<section id=\"roles\"><h2>Roles</h2><dl>" + roleDescriptions.map { role, text in
            "<dt>\(role.rawValue)</dt><dd>\(escape(text))</dd>"
        }.joined() + "</dl><p class=\"hint\">Scripts use a user's API token (POST /api/v1/admin/tokens) as Authorization: Bearer, with that user's role.</p></section>"
        return DashboardPage.page(title: "Imprint: users", body: body, csrf: csrf, feed: false)
    }

    static func tokenList(_ tokens: [APIToken]) -> String {
        guard !tokens.isEmpty else { return "<span class=\"empty\">none</span>" }
        return "<ul class=\"changes\">" + tokens.prefix(20).map { token in
            "<li class=\"token\(token.revoked == nil ? "" : " revoked")\" data-token=\"\(escape(token.id))\">\(escape(token.label))"
                + "<div class=\"hint\">" + (token.revoked.map { "revoked \(escape($0))" } ?? token.lastUsed.map { "last used \(escape($0))" } ?? "never used")
                + "</div></li>"
        }.joined() + (tokens.count > 20 ? "<li>\(tokens.count - 20) more</li>" : "") + "</ul>"
    }

    static func audit(_ entries: [AuditEntry], query: AuditQuery, more: Bool, csrf: String) -> String {
        var body = "<h1>Audit log</h1><p class=\"hint\">Every change made through the admin API, the dashboard or the command line: who, when, what, and the object before and after (secrets as \"set\").</p>"
        body += "<form method=\"get\" action=\"/dashboard/audit\" id=\"audit-filter\" class=\"library-form\">"
            + "<label>User <input type=\"text\" name=\"user\" value=\"\(escape(query.filter.actor ?? ""))\" placeholder=\"alice, or admin token\"></label>"
            + "<label>Object <input type=\"text\" name=\"object\" value=\"\(escape(query.object ?? ""))\" placeholder=\"rules, sequence, sequence:Windows-11, machine:ID\"></label>"
            + "<label>Since <input type=\"text\" name=\"since\" value=\"\(escape(query.filter.since ?? ""))\" placeholder=\"2026-03-01\"></label>"
            + "<button type=\"submit\">Filter</button> <a href=\"/dashboard/audit\">All entries</a></form>"
        body += "<section id=\"audit-entries\">"
        if entries.isEmpty {
            body += "<p class=\"empty\">No entry" + (query.filter == AuditFilter() && query.before == nil ? " yet." : " matches.") + "</p>"
        } else {
            body += "<table id=\"audit\"><tr><th scope=\"col\">#</th><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">What</th>"
                + "<th scope=\"col\">Object</th><th scope=\"col\">Before</th><th scope=\"col\">After</th></tr>"
            for entry in entries {
                body += "<tr class=\"audit-entry\" data-entry=\"\(entry.id)\" data-actor=\"\(escape(entry.actor))\" data-kind=\"\(escape(entry.objectKind))\">"
                    + "<td>\(entry.id)</td><td class=\"when\">\(escape(entry.time))</td>"
                    + "<td>\(escape(entry.actor))<div class=\"hint\">\(entry.role.rawValue), \(escape(entry.via))</div></td>"
                    + "<td><code>\(escape(entry.action))</code></td>"
                    + "<td>\(escape(entry.objectKind))" + (entry.objectID.map { " <code>\(escape($0))</code>" } ?? "") + "</td>"
                    + "<td>\(value(entry.before))</td><td>\(value(entry.after))</td></tr>"
            }
            body += "</table>"
        }
        if more, let last = entries.last {
            var parts: [String] = []
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            for (name, value) in [("user", query.filter.actor), ("object", query.object), ("since", query.filter.since)] {
                if let value { parts.append("\(name)=" + (value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")) }
            }
            parts.append("before=\(last.id)")
            body += "<nav class=\"pages\" id=\"audit-pages\"><a rel=\"next\" href=\"/dashboard/audit?\(escape(parts.joined(separator: "&")))\">Older entries</a></nav>"
        }
        body += "</section>"
        return DashboardPage.page(title: "Imprint: audit log", body: body, csrf: csrf, feed: false)
    }

    /// A logged state as indented JSON (nil: the object did not exist).
    static func value(_ value: JSONValue?) -> String {
        guard let value else { return "<span class=\"empty\">none</span>" }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let text = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return "<pre class=\"audit-value\" tabindex=\"0\">\(escape(text))</pre>"
    }

    static let style = """
        pre.audit-value { max-height: 16em; max-width: 32em; overflow: auto; background: #f6f6f6; font-size: 0.8em; margin: 0; padding: 0.3em; }
        #users form { margin: 0.2em 0; } #roles dt { font-weight: bold; } li.token.revoked { color: #888; }
        .refusal { font-weight: bold; } form[action="/dashboard/login"] label { display: block; margin: 0.4em 0; }
        """
}
