import Foundation
import Hummingbird
import SequenceModel

/// The users' admin API: users (administrators only), API tokens (each user's own; an
/// administrator's: anyone's), who is asking, and the audit log.
public enum UserRoute: Sendable, Hashable {
    case list, create, user, update, delete
    case tokens, createToken, revokeToken
    case me, audit
}

/// Who a request of the admin API or the dashboard comes from, and with which role.
public struct Principal: Sendable, Equatable {
    public enum Via: String, Sendable { case api, dashboard, commandLine = "command line" }
    /// Nil: the server's --admin-token (an administrator that is nobody in particular).
    public var user: String?
    public var role: Role
    public var via: Via
    /// The API token it came with, when it did.
    public var tokenID: String?

    /// What the audit log and messages call it.
    public var name: String { user ?? (via == .commandLine ? "command line" : "admin token") }

    static func adminToken(via: Via) -> Principal { Principal(user: nil, role: .administrator, via: via, tokenID: nil) }

    /// The principal of the request being served (set around its handler): whom the audit
    /// log names, without every handler passing it along.
    @TaskLocal static var current: Principal?
}

extension RouteSpec {
    /// The first route of each handler (GET and HEAD share one): its role and its path for
    /// the audit log.
    static let byHandler: [Handler: RouteSpec] = {
        var routes: [Handler: RouteSpec] = [:]
        for route in all where routes[route.handler] == nil { routes[route.handler] = route }
        return routes
    }()

    /// The role `handler` needs; administrator when the table names none, so a route placed
    /// behind the administrator's authentication without a role is closed, not open.
    static func requiredRole(_ handler: Handler) -> Role { byHandler[handler]?.role ?? .administrator }
}

extension ImprintServer {
    // MARK: - Who is asking

    /// The admin API's caller: the admin token (an administrator), or a user's live API token
    /// (that user's role). 401 without a token or with one that is neither (revoked, mistyped).
    func authenticateAdmin(_ request: Request) async throws -> Principal {
        guard let token = request.bearerToken else {
            var error = APIError(.unauthorized, "the admin API needs Authorization: Bearer <admin token or a user's API token>",
                                 field: "Authorization")
            error.headers[.wwwAuthenticate] = "Bearer"
            throw error
        }
        if let principal = try await principal(bearer: token, via: .api) { return principal }
        var error = APIError(.unauthorized, "this token is neither the admin token nor a user's live API token (revoked, or mistyped?)",
                             field: "Authorization")
        error.headers[.wwwAuthenticate] = "Bearer error=\"invalid_token\""
        throw error
    }

    /// The admin token, or a user's live API token; nil when it is neither.
    func principal(bearer token: String, via: Principal.Via) async throws -> Principal? {
        if Tokens.equal(Tokens.hash(token), Tokens.hash(configuration.adminToken)) { return .adminToken(via: via) }
        // Our tokens are "imp_" and 64 hex digits; anything else is not looked up.
        guard token.hasPrefix(Self.apiTokenPrefix), token.count == Self.apiTokenPrefix.count + 64,
              let found = try await storage.useAPIToken(tokenHash: Tokens.hash(token), now: StoredTime.now()) else { return nil }
        return Principal(user: found.user.name, role: found.user.role, via: via, tokenID: found.token.id)
    }

    static let apiTokenPrefix = "imp_"

    /// 403 when `principal`'s role is below what `handler` needs, saying both.
    func authorize(_ principal: Principal, _ handler: RouteSpec.Handler) throws {
        let required = RouteSpec.requiredRole(handler)
        guard principal.role < required else { return }
        throw APIError(.forbidden, Self.refusal(principal, handler))
    }

    static func refusal(_ principal: Principal, _ handler: RouteSpec.Handler) -> String {
        let required = RouteSpec.requiredRole(handler)
        let what = RouteSpec.byHandler[handler].map { "\($0.method.rawValue) \($0.path)" } ?? "this"
        let who = principal.user.map { "user \($0)" } ?? principal.name
        return "\(who) is a\(principal.role == .viewer ? "" : "n") \(principal.role.rawValue): \(what) needs the \(required.rawValue) role"
    }

    /// An admin API route: its caller authenticated and held to the route's role, then
    /// `body` with the caller known to the audit log, which records what it changed.
    func adminRoute(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext,
                    _ body: @escaping () async throws -> Response) async throws -> Response {
        let principal = try await authenticateAdmin(request)
        try authorize(principal, handler)
        return try await Principal.$current.withValue(principal) {
            try await audited(handler, request, context, body)
        }
    }

    // MARK: - The API

    struct UserView: Encodable {
        var name: String
        var role: String
        var created: String
        var updated: String
        var createdBy: String?
        /// Never the hash: that a password is set, and with which scheme.
        var password = "set"
        var tokens: [APIToken]?

        init(_ user: User, tokens: [APIToken]? = nil) {
            name = user.name; role = user.role.rawValue; created = user.created; updated = user.updated; createdBy = user.createdBy
            self.tokens = tokens
        }
    }

    static func validUserName(_ name: String) -> Bool {
        name.count <= 64 && validName(name)
    }

    static func role(_ text: String?, field: String = "role") throws(APIError) -> Role {
        guard let text, let role = Role(rawValue: text) else {
            throw APIError(.unprocessableContent, "role is one of " + Role.allCases.map(\.rawValue).joined(separator: ", "), field: field)
        }
        return role
    }

    /// A new user, checked as the API checks it (the dashboard's form and the command line alike).
    func createUser(name: String, role: Role, password: String, by principal: Principal) async throws -> User {
        guard Self.validUserName(name) else {
            throw APIError(.unprocessableContent, "a user name is 1 to 64 letters, digits, '-', '_' and '.'", field: "name")
        }
        try PasswordHash.check(password)
        let now = StoredTime.now()
        let user = User(name: name, role: role, passwordHash: try await PasswordHash.make(password), created: now, updated: now,
                        createdBy: principal.name)
        do { try await storage.createUser(user) } catch let conflict as UserConflict {
            throw APIError(.conflict, conflict.description, field: "name")
        }
        AuditNote.current?.object(name)
        logger.info("user \(name) (\(role.rawValue)) created by \(principal.name)")
        return user
    }

    func updateUser(name: String, role: Role?, password: String?) async throws -> User {
        if let password { try PasswordHash.check(password) }
        let hash: String?
        if let password { hash = try await PasswordHash.make(password) } else { hash = nil }
        guard let user = try await storage.updateUser(name: name, role: role, passwordHash: hash, updated: StoredTime.now()) else {
            throw APIError.notFound("user \(name)")
        }
        return user
    }

    /// A new API token for `user`: its secret, which leaves the server only in this answer.
    func createAPIToken(user: String, label: String, by principal: Principal) async throws -> (token: APIToken, secret: String) {
        guard try await storage.user(name: user) != nil else { throw APIError(.unprocessableContent, "no user named \(user)", field: "user") }
        guard !label.isEmpty, label.count <= 200, !label.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIError(.unprocessableContent, "a token's label says what it is for: 1 to 200 characters, no control characters", field: "label")
        }
        let secret = Self.apiTokenPrefix + Tokens.make()
        let token = APIToken(id: Tokens.make(bytes: 8), user: user, label: label, created: StoredTime.now(), createdBy: principal.name,
                             lastUsed: nil, revoked: nil)
        try await storage.createAPIToken(token, tokenHash: Tokens.hash(secret))
        AuditNote.current?.object(token.id)
        return (token, secret)
    }

    func users(_ route: UserRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        let principal = Principal.current ?? .adminToken(via: .api)
        switch route {
        case .list:
            struct List: Encodable { var users: [UserView] }
            let tokens = Dictionary(grouping: try await storage.apiTokens(user: nil), by: \.user)
            return JSON.response(List(users: try await storage.users().map { UserView($0, tokens: tokens[$0.name] ?? []) }))

        case .user:
            let name = try request.requiredParameter("name", context)
            guard let user = try await storage.user(name: name) else { throw APIError.notFound("user \(name)") }
            return JSON.response(UserView(user, tokens: try await storage.apiTokens(user: name)))

        case .create:
            struct Body: Decodable { var name: String; var role: String; var password: String }
            let body = try decodeBody(Body.self, from: try await request.bodyData(limit: 16 << 10))
            let user = try await createUser(name: body.name, role: try Self.role(body.role), password: body.password, by: principal)
            return JSON.response(UserView(user), status: .created)

        case .update:
            let name = try request.requiredParameter("name", context)
            struct Body: Decodable { var role: String?; var password: String? }
            let body = try decodeBody(Body.self, from: try await request.bodyData(limit: 16 << 10))
            guard body.role != nil || body.password != nil else {
                throw APIError(.unprocessableContent, "give a new role, a new password, or both", field: "role")
            }
            let role = try body.role.map { text throws(APIError) in try Self.role(text) }
            return JSON.response(UserView(try await updateUser(name: name, role: role, password: body.password)))

        case .delete:
            let name = try request.requiredParameter("name", context)
            guard try await storage.deleteUser(name: name) else { throw APIError.notFound("user \(name)") }
            return Response(status: .noContent)

        case .tokens:
            // Someone else's tokens are an administrator's business.
            let asked = request.uri.queryParameters.get("user").map { String($0) }
            let user = asked ?? principal.user
            if principal.role < .administrator, user != principal.user {
                throw APIError(.forbidden, "\(principal.name) may list only their own tokens", field: "user")
            }
            struct List: Encodable { var tokens: [APIToken] }
            return JSON.response(List(tokens: try await storage.apiTokens(user: user)))

        case .createToken:
            struct Body: Decodable { var label: String; var user: String? }
            let body = try decodeBody(Body.self, from: try await request.bodyData(limit: 16 << 10))
            guard let user = body.user ?? principal.user else {
                throw APIError(.unprocessableContent, "the admin token is nobody's: name the user the token is for", field: "user")
            }
            if principal.role < .administrator, user != principal.user {
                throw APIError(.forbidden, "\(principal.name) may make tokens only for themselves", field: "user")
            }
            let made = try await createAPIToken(user: user, label: body.label, by: principal)
            struct Made: Encodable {
                var token: APIToken
                /// `Authorization: Bearer <secret>`; shown this once, never stored.
                var secret: String
            }
            return JSON.response(Made(token: made.token, secret: made.secret), status: .created)

        case .revokeToken:
            let id = try request.requiredParameter("id", context)
            guard let token = try await storage.apiToken(id: id),
                  principal.role == .administrator || token.user == principal.user else { throw APIError.notFound("token \(id)") }
            guard let revoked = try await storage.revokeAPIToken(id: id, at: StoredTime.now()) else { throw APIError.notFound("token \(id)") }
            return JSON.response(revoked)

        case .me:
            struct Me: Encodable { var user: String?; var name: String; var role: String; var tokenId: String? }
            return JSON.response(Me(user: principal.user, name: principal.name, role: principal.role.rawValue, tokenId: principal.tokenID))

        case .audit:
            let query = try AuditQuery(request)
            let entries = try await storage.auditEntries(query.filter, before: query.before, limit: query.limit)
            struct Page: Encodable { var entries: [AuditEntry]; var next: Int? }
            return JSON.response(Page(entries: entries, next: entries.count == query.limit ? entries.last?.id : nil))
        }
    }
}

/// `?user=&object=&since=&before=&limit=` of the audit log (the API and the dashboard's page).
struct AuditQuery: Sendable {
    var filter = AuditFilter()
    var before: Int?
    var limit = 50
    /// As given, for the page's form.
    var object: String?

    init(_ request: Request) throws(APIError) {
        let query = try FormFields(query: request)
        func value(_ name: String) -> String? {
            query[name].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        filter.actor = value("user")
        if let object = value("object") {
            self.object = object
            // "sequence" (every sequence) or "sequence:Windows 11" (that one).
            let parts = object.split(separator: ":", maxSplits: 1)
            filter.objectKind = String(parts[0])
            if parts.count == 2 { filter.objectID = String(parts[1]) }
        }
        if let since = value("since") {
            // A day (2026-03-01) is its first millisecond.
            let full = since.count == 10 ? since + "T00:00:00.000Z" : since
            guard let date = StoredTime.parse(full) ?? (try? Date.ISO8601FormatStyle().parse(full)) else {
                throw APIError(.badRequest, "since is a time as 2026-03-01T08:00:00Z, or a day as 2026-03-01", field: "since")
            }
            filter.since = StoredTime.format.format(date)
        }
        if let text = value("before") {
            guard let number = Int(text), number > 0 else { throw APIError(.badRequest, "before is an entry's number", field: "before") }
            before = number
        }
        if let text = value("limit") {
            guard let number = Int(text), (1...500).contains(number) else {
                throw APIError(.badRequest, "limit is between 1 and 500", field: "limit")
            }
            limit = number
        }
    }
}

extension ImprintServer {
    /// `imprint-server user add`: a user made on the server's own machine, before any exists
    /// (the first administrator), checked as the API checks one and recorded in the audit log
    /// as the command line's.
    public static func addUser(name: String, role: Role, password: String, storage: any ServerStorage) async throws -> User {
        guard validUserName(name) else {
            throw APIError(.unprocessableContent, "a user name is 1 to 64 letters, digits, '-', '_' and '.'", field: "name")
        }
        try PasswordHash.check(password)
        let now = StoredTime.now()
        let user = User(name: name, role: role, passwordHash: try await PasswordHash.make(password), created: now, updated: now,
                        createdBy: "command line")
        do { try await storage.createUser(user) } catch let conflict as UserConflict {
            throw APIError(.conflict, conflict.description, field: "name")
        }
        struct View: Encodable { var name: String; var role: String; var password = "set" }
        let after = try? JSONDecoder().decode(JSONValue.self, from: JSON.encoder.encode(View(name: name, role: role.rawValue)))
        try await storage.appendAudit(AuditEntry(id: 0, time: now, actor: "command line", role: .administrator, via: Principal.Via.commandLine.rawValue,
                                                 action: "imprint-server user add", objectKind: "user", objectID: name, before: nil, after: after))
        return user
    }
}
