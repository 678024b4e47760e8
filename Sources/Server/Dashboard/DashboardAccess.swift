import Foundation
import Hummingbird
import Synchronization

/// How a dashboard request proved it comes from an administrator.
enum DashboardAccess: Sendable {
    /// `Authorization: Bearer <admin token>`, as a script sends it. A browser never adds that
    /// header to a request another site makes it send, so no CSRF token is needed with it.
    case adminToken
    /// A user's API token as the bearer token (no CSRF token needed either).
    case apiToken(Principal)
    /// A browser's session cookie, which the browser does attach to anything it sends here:
    /// its state-changing forms must carry the session's CSRF token.
    case session(DashboardSession)

    /// What the page's forms carry: empty with the bearer token, which needs none.
    var csrfToken: String {
        switch self {
        case .adminToken, .apiToken: return ""
        case let .session(session): return session.csrfToken
        }
    }

    /// Who is asking, with which role: a session without a user logged in with the admin token.
    var principal: Principal {
        switch self {
        case .adminToken: return .adminToken(via: .dashboard)
        case let .apiToken(principal): return principal
        case let .session(session):
            guard let user = session.user else { return .adminToken(via: .dashboard) }
            return Principal(user: user, role: session.role ?? .viewer, via: .dashboard, tokenID: nil)
        }
    }
}

/// What every dashboard answer carries, pages, errors and redirects alike.
enum DashboardSecurity {
    /// Only the dashboard's own script and style (no inline script or style attribute at all:
    /// text an agent sent that slipped through escaping still could not run), the live feed
    /// from here, forms posting only here, and no framing by any page (clickjacking the buttons).
    static let contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    static let headers: [(name: HTTPFields.Element.Name, value: String)] = [
        ("Content-Security-Policy", contentSecurityPolicy),
        // For browsers that predate frame-ancestors.
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        // Links out of the dashboard (none today) reveal no deployment id.
        ("Referrer-Policy", "no-referrer"),
    ].compactMap { name, value in HTTPFields.Element.Name(name).map { ($0, value) } }

    static func apply(to response: inout Response) {
        for field in headers { response.headers[field.name] = field.value }
        // Pages carry the session's CSRF token: never kept by a cache or shown from history.
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
    }
}

/// The live streams open on this instance. A slot is released when its response is dropped,
/// whether or not the stream ever started (a client gone before the body was written).
final class LiveStreamSlots: Sendable {
    private let open = Mutex(0)

    final class Slot: Sendable {
        private let owner: LiveStreamSlots
        fileprivate init(owner: LiveStreamSlots) { self.owner = owner }
        deinit { owner.open.withLock { $0 -= 1 } }
    }

    /// A slot, or nil when `limit` streams are open already.
    func take(limit: Int) -> Slot? {
        let taken = open.withLock { count -> Bool in
            guard count < limit else { return false }
            count += 1
            return true
        }
        return taken ? Slot(owner: self) : nil
    }

    var count: Int { open.withLock { $0 } }
}

/// Failed logins per address in the last minute: guessing the admin token through the form is
/// slowed to a few tries a minute. Per instance (what it protects is the guessing rate, not state).
final class LoginThrottle: Sendable {
    private let allowed: Int
    private let window: Duration
    private let failures = Mutex<[String: [ContinuousClock.Instant]]>([:])

    init(allowed: Int, windowSeconds: Int) {
        self.allowed = max(1, allowed)
        window = .seconds(max(1, windowSeconds))
    }

    /// Seconds until `address` may try again, nil when it may now.
    func wait(for address: String, now: ContinuousClock.Instant = .now) -> Int? {
        failures.withLock { failures in
            let recent = (failures[address] ?? []).filter { now - $0 < window }
            failures[address] = recent.isEmpty ? nil : recent
            guard recent.count >= allowed, let oldest = recent.first else { return nil }
            return max(1, Int((oldest + window - now).components.seconds) + 1)
        }
    }

    func recordFailure(from address: String, now: ContinuousClock.Instant = .now) {
        failures.withLock { failures in
            // Old entries of every address go now and then, so the table stays small.
            if failures.count > 10_000 {
                failures = failures.filter { $0.value.contains { now - $0 < window } }
            }
            failures[address, default: []].append(now)
        }
    }
}

/// An `application/x-www-form-urlencoded` body, as an HTML form posts it.
struct FormFields: Sendable {
    private var values: [String: String] = [:]

    init(_ data: Data) throws(APIError) {
        guard let text = String(data: data, encoding: .utf8) else {
            throw APIError(.badRequest, "the form is not UTF-8 text")
        }
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]) else { throw APIError(.badRequest, "a form field's name is not valid percent-encoding") }
            guard let value = Self.decode(parts.count > 1 ? parts[1] : "") else {
                throw APIError(.badRequest, "the form field \(name) is not valid percent-encoding", field: name)
            }
            // The first of a repeated name counts, as for query parameters.
            if values[name] == nil { values[name] = value }
        }
    }

    /// A request's query read as a GET form's fields: a browser writes a space there as `+`,
    /// which Hummingbird's query parameters leave as it is (a filter "Windows 11" would match nothing).
    init(query request: Request) throws(APIError) {
        try self.init(Data((request.uri.query ?? "").utf8))
    }

    subscript(name: String) -> String? { values[name] }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

extension ImprintServer {
    static let sessionCookie = "imprint_session"
    /// Where the cookie is sent: the dashboard only, never with content, agent or API requests.
    static let sessionCookiePath = "/dashboard"

    /// The admin token as a bearer token, or a session cookie of an unexpired session; nil:
    /// the login page. A `?token=` in the URL is not a credential (see `loginPage`).
    func dashboardAccess(_ request: Request) async throws -> DashboardAccess? {
        if let token = request.bearerToken {
            guard let principal = try await principal(bearer: token, via: .dashboard) else { return nil }
            return principal.user == nil ? .adminToken : .apiToken(principal)
        }
        // A session id is 64 hex digits; anything else is not looked up.
        guard let id = cookie(request, Self.sessionCookie), id.count == 64, id.allSatisfy(\.isHexDigit),
              let session = try await storage.session(idHash: Tokens.hash(id)) else { return nil }
        return .session(session)
    }

    /// A state-changing form: with a session, its `csrf` field must be the session's token
    /// (another site can make the browser post, with the cookie, but cannot read the token).
    func requireCSRF(_ form: FormFields, _ access: DashboardAccess) throws {
        try requireCSRF(sent: form["csrf"], access, carrier: "the form", field: "csrf")
    }

    /// The header the dashboard's script sends its session's CSRF token in, with every request
    /// that changes something (JSON and upload bodies carry no form field).
    static let csrfHeader = HTTPFields.Element.Name("X-CSRF-Token")!

    /// A state-changing request of the dashboard's script: with a session, its `X-CSRF-Token`
    /// header must be the session's token. (Another site cannot even send that header without
    /// this server's consent to a CORS preflight, which it never gives.)
    func requireCSRFHeader(_ request: Request, _ access: DashboardAccess) throws {
        try requireCSRF(sent: request.headers[Self.csrfHeader], access, carrier: "the request", field: "X-CSRF-Token")
    }

    /// The CSRF check of a token read from anywhere (a form field, a header, a multipart part).
    func requireCSRF(sent: String?, _ access: DashboardAccess, carrier: String, field: String) throws {
        guard case let .session(session) = access else { return }
        guard let sent, !sent.isEmpty else {
            throw APIError(.forbidden, "\(carrier) has no CSRF token (\(field)): reload the dashboard and try again", field: field)
        }
        guard Tokens.equal(Tokens.hash(sent), Tokens.hash(session.csrfToken)) else {
            throw APIError(.forbidden, "\(carrier)'s CSRF token (\(field)) is not this session's: reload the dashboard and try again", field: field)
        }
    }

    /// A dashboard form's fields (small: a token, a CSRF token, where to go next).
    func dashboardForm(_ request: Request) async throws -> FormFields {
        var request = request
        return try FormFields(try await request.bodyData(limit: 16 << 10))
    }

    /// POST /dashboard/login with a user's name and password, or with the admin token: a new
    /// session, its id in a cookie, and back to the page the form came from.
    func dashboardLogin(_ request: Request, client: String) async throws -> Response {
        if let wait = loginThrottle.wait(for: client) {
            var error = APIError(.tooManyRequests, "too many failed logins from \(client): try again in \(wait) s")
            error.retryAfter = wait
            throw error
        }
        let form = try await dashboardForm(request)
        let next = Self.safeNext(form["next"])
        var user: User?
        if let name = form["user"], !name.isEmpty {
            // The same answer for an unknown name and a wrong password: the form tells nobody
            // which names exist. An unknown name costs a hash too, so timing does not tell either.
            let found = try await storage.user(name: name)
            let verified = await PasswordHash.verify(form["password"] ?? "", against: found?.passwordHash ?? Self.unknownUserHash)
            guard let found, verified else {
                loginThrottle.recordFailure(from: client)
                logger.warning("dashboard: failed login of user \(name.prefix(64)) from \(client)")
                return dashboardHTML(loginPage(next: next, notice: "Wrong user name or password."), status: .unauthorized)
            }
            user = found
        } else {
            guard let token = form["token"], !token.isEmpty else {
                return dashboardHTML(loginPage(next: next, notice: "Enter your user name and password, or the admin token."), status: .unauthorized)
            }
            guard Tokens.equal(Tokens.hash(token), Tokens.hash(configuration.adminToken)) else {
                loginThrottle.recordFailure(from: client)
                logger.warning("dashboard: failed login from \(client)")
                return dashboardHTML(loginPage(next: next, notice: "Wrong admin token."), status: .unauthorized)
            }
        }
        let id = Tokens.make()
        let now = Date()
        let lifetime = configuration.limits.sessionLifetime
        let session = DashboardSession(idHash: Tokens.hash(id), csrfToken: Tokens.make(), created: StoredTime.format.format(now),
                                       expires: StoredTime.format.format(now.addingTimeInterval(TimeInterval(lifetime))), address: client,
                                       user: user?.name, role: user?.role)
        try await storage.createSession(session)
        logger.info("dashboard: login\(user.map { " of user \($0.name)" } ?? " with the admin token") from \(client)")
        var response = Response(status: .seeOther, headers: [.location: next])
        response.headers[.setCookie] = sessionCookie(value: id, maxAge: lifetime, request: request)
        return response
    }

    /// `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it),
    /// `Secure` when the browser came over TLS (this server's, or a proxy's that says so: a
    /// client lying about it only loses its own login).
    func sessionCookie(value: String, maxAge: Int, request: Request) -> String {
        let forwardedProto = request.headers.first { $0.name.canonicalName == "x-forwarded-proto" }?.value.lowercased()
        let secure = configuration.tlsCertificate != nil || forwardedProto == "https"
        return "\(Self.sessionCookie)=\(value); Path=\(Self.sessionCookiePath); Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
            + (secure ? "; Secure" : "")
    }

    /// Where a login goes next: a dashboard page, never another site (`//host`) or a scheme.
    static func safeNext(_ next: String?) -> String {
        guard let next, next == "/dashboard" || next.hasPrefix("/dashboard/") || next.hasPrefix("/dashboard?"),
              !next.contains("//"), next.count <= 500,
              next.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "/-._~?=&%".unicodeScalars.contains($0)) })
        else { return "/dashboard" }
        return next
    }

    func cookie(_ request: Request, _ name: String) -> String? {
        // Several Cookie fields are allowed (HTTP/2 splits them); each is `a=b; c=d`.
        for field in request.headers where field.name == .cookie {
            for part in field.value.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if pair.count == 2, pair[0] == name { return String(pair[1]) }
            }
        }
        return nil
    }

    func dashboardHTML(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        JSON.raw(Data(text.utf8), status: status, contentType: "text/html; charset=utf-8")
    }

    /// The login form. `notice` says why it is shown (a wrong token, a token in the URL).
    func loginPage(next: String, notice: String?) -> String {
        DashboardPage.page(title: "Imprint: log in", body: """
            <h1>Imprint deployments</h1>
            \(notice.map { "<p class=\"notice\" id=\"notice\">\(DashboardPage.escape($0))</p>" } ?? "")
            <form method="post" action="/dashboard/login"><input type="hidden" name="next" value="\(DashboardPage.escape(next))">
            <label>User name <input type="text" name="user" autocomplete="username" autofocus></label>
            <label>Password <input type="password" name="password" autocomplete="current-password"></label>
            <details><summary>Log in with the admin token instead</summary>
            <label>Admin token <input type="password" name="token" autocomplete="off"></label></details>
            <button type="submit">Log in</button></form>
            """, live: false)
    }

    /// What an unknown user name's password is checked against: a real hash (of random bytes
    /// nobody knows), so a login of a name that does not exist costs what any other does.
    static let unknownUserHash = "scrypt$N=32768,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
}
