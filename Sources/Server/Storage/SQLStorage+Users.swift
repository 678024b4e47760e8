import Foundation
import SequenceModel

/// Named users, their API tokens and the audit log (migration 11, issue 20).
public protocol UserStorage: Sendable {
    /// By name.
    func users() async throws -> [User]
    func user(name: String) async throws -> User?
    /// Throws `UserConflict` when the name is taken.
    func createUser(_ user: User) async throws
    /// A new role and/or password hash; the user as it is now, nil when there is none. A new
    /// password ends the user's dashboard sessions (whoever knew the old one is logged out).
    func updateUser(name: String, role: Role?, passwordHash: String?, updated: String) async throws -> User?
    /// Removes the user with its tokens and sessions; false when there was none.
    func deleteUser(name: String) async throws -> Bool

    /// Stores a new token (only the SHA-256 of its secret).
    func createAPIToken(_ token: APIToken, tokenHash: String) async throws
    /// Newest first; nil: every user's.
    func apiTokens(user: String?) async throws -> [APIToken]
    func apiToken(id: String) async throws -> APIToken?
    /// Marks the token revoked (it stops working at once); the token as it is now, nil when there is none.
    func revokeAPIToken(id: String, at time: String) async throws -> APIToken?
    /// Revokes every live token of the user; how many there were.
    func revokeAPITokens(user: String, at time: String) async throws -> Int
    /// The live token whose secret hashes to `tokenHash`, with its user; its last-used time
    /// moves to `now` (at most once a minute, so a busy script does not write at every call).
    func useAPIToken(tokenHash: String, now: String) async throws -> (token: APIToken, user: User)?

    /// Appends an entry, numbered after every entry before it.
    func appendAudit(_ entry: AuditEntry) async throws
    /// Newest first, at most `limit`, numbered below `before` when given.
    func auditEntries(_ filter: AuditFilter, before: Int?, limit: Int) async throws -> [AuditEntry]
}

/// What a user may do; each role may do what the roles before it may.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    /// Reads everything but users and other people's tokens.
    case viewer
    /// Approves, registers and redeploys machines, resets deployment tokens.
    case `operator`
    /// Rules, sequences, content, the library, multicast, distribution points, users.
    case administrator

    private var rank: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

public struct User: Sendable, Equatable {
    public var name: String
    public var role: Role
    /// `scrypt$N=...,r=...,p=...$salt$hash` (`PasswordHash`); never leaves the server.
    public var passwordHash: String
    public var created: String
    public var updated: String
    /// Who created it: a user's name, "admin token" or "command line".
    public var createdBy: String?

    public init(name: String, role: Role, passwordHash: String, created: String, updated: String, createdBy: String?) {
        self.name = name
        self.role = role
        self.passwordHash = passwordHash
        self.created = created
        self.updated = updated
        self.createdBy = createdBy
    }
}

/// A user's token for scripts: `Authorization: Bearer <secret>` on the admin API with the
/// user's role. The secret is shown once, when it is made; only its SHA-256 is stored.
public struct APIToken: Sendable, Codable, Equatable {
    public var id: String
    public var user: String
    /// What the token is for ("nightly inventory script").
    public var label: String
    public var created: String
    public var createdBy: String
    public var lastUsed: String?
    public var revoked: String?
}

public struct UserConflict: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// One change made through the admin API, the dashboard or the command line.
public struct AuditEntry: Sendable, Codable, Equatable {
    public var id: Int
    public var time: String
    /// A user's name, or "admin token" (the server's --admin-token), or "command line".
    public var actor: String
    public var role: Role
    /// api, dashboard or command line.
    public var via: String
    /// The route: "PUT /api/v1/admin/rules".
    public var action: String
    /// rules, sequence, machine, deployment, library, distribution point, multicast session, user, token.
    public var objectKind: String
    public var objectID: String?
    /// What the object was before and after, as JSON, secrets as "set" (nil: it did not exist).
    public var before: JSONValue?
    public var after: JSONValue?
}

public struct AuditFilter: Sendable, Equatable {
    public var actor: String?
    public var objectKind: String?
    public var objectID: String?
    /// ISO 8601: entries at or after it.
    public var since: String?

    public init(actor: String? = nil, objectKind: String? = nil, objectID: String? = nil, since: String? = nil) {
        self.actor = actor
        self.objectKind = objectKind
        self.objectID = objectID
        self.since = since
    }
}

extension SQLStorage {
    private static func user(_ row: SQLRow) -> User? {
        guard let name = row.string("name"), let role = row.string("role").flatMap(Role.init), let hash = row.string("password_hash"),
              let created = row.string("created") else { return nil }
        return User(name: name, role: role, passwordHash: hash, created: created, updated: row.string("updated") ?? created,
                    createdBy: row.string("created_by"))
    }

    private static func apiToken(_ row: SQLRow) -> APIToken? {
        guard let id = row.string("id"), let user = row.string("user_name"), let created = row.string("created") else { return nil }
        return APIToken(id: id, user: user, label: row.string("label") ?? "", created: created, createdBy: row.string("created_by") ?? "",
                        lastUsed: row.string("last_used"), revoked: row.string("revoked"))
    }

    func users() async throws -> [User] {
        try await executor.query("SELECT * FROM users ORDER BY name").compactMap(Self.user)
    }

    func user(name: String) async throws -> User? {
        try await executor.query("SELECT * FROM users WHERE name = ?", [.text(name)]).first.flatMap(Self.user)
    }

    func createUser(_ user: User) async throws {
        let inserted = try await executor.execute("""
            INSERT INTO users (name, role, password_hash, created, updated, created_by) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (name) DO NOTHING RETURNING name
            """, [.text(user.name), .text(user.role.rawValue), .text(user.passwordHash), .text(user.created), .text(user.updated),
                  .text(user.createdBy)])
        guard !inserted.isEmpty else { throw UserConflict(description: "a user named \(user.name) exists already") }
    }

    func updateUser(name: String, role: Role?, passwordHash: String?, updated: String) async throws -> User? {
        try await executor.transaction { db in
            let rows = try await db.execute("""
                UPDATE users SET role = COALESCE(?, role), password_hash = COALESCE(?, password_hash), updated = ? WHERE name = ? RETURNING *
                """, [.text(role?.rawValue), .text(passwordHash), .text(updated), .text(name)])
            guard let user = rows.first.flatMap(Self.user) else { return nil }
            if passwordHash != nil { try await db.execute("DELETE FROM sessions WHERE user_name = ?", [.text(name)]) }
            return user
        }
    }

    func deleteUser(name: String) async throws -> Bool {
        try await executor.transaction { db in
            try await db.execute("DELETE FROM sessions WHERE user_name = ?", [.text(name)])
            try await db.execute("DELETE FROM api_tokens WHERE user_name = ?", [.text(name)])
            return !(try await db.execute("DELETE FROM users WHERE name = ? RETURNING name", [.text(name)]).isEmpty)
        }
    }

    func createAPIToken(_ token: APIToken, tokenHash: String) async throws {
        try await executor.execute("""
            INSERT INTO api_tokens (id, user_name, label, token_hash, created, created_by) VALUES (?, ?, ?, ?, ?, ?)
            """, [.text(token.id), .text(token.user), .text(token.label), .text(tokenHash), .text(token.created), .text(token.createdBy)])
    }

    func apiTokens(user: String?) async throws -> [APIToken] {
        if let user {
            return try await executor.query("SELECT * FROM api_tokens WHERE user_name = ? ORDER BY created DESC, id", [.text(user)])
                .compactMap(Self.apiToken)
        }
        return try await executor.query("SELECT * FROM api_tokens ORDER BY created DESC, id").compactMap(Self.apiToken)
    }

    func apiToken(id: String) async throws -> APIToken? {
        try await executor.query("SELECT * FROM api_tokens WHERE id = ?", [.text(id)]).first.flatMap(Self.apiToken)
    }

    func revokeAPIToken(id: String, at time: String) async throws -> APIToken? {
        try await executor.execute("UPDATE api_tokens SET revoked = COALESCE(revoked, ?) WHERE id = ? RETURNING *", [.text(time), .text(id)])
            .first.flatMap(Self.apiToken)
    }

    func revokeAPITokens(user: String, at time: String) async throws -> Int {
        try await executor.execute("UPDATE api_tokens SET revoked = ? WHERE user_name = ? AND revoked IS NULL RETURNING id",
                                   [.text(time), .text(user)]).count
    }

    func useAPIToken(tokenHash: String, now: String) async throws -> (token: APIToken, user: User)? {
        guard let row = try await executor.query("""
            SELECT t.id, t.user_name, t.label, t.created, t.created_by, t.last_used, t.revoked,
                   u.name, u.role, u.password_hash, u.created AS user_created, u.updated, u.created_by AS user_created_by
            FROM api_tokens AS t JOIN users AS u ON u.name = t.user_name WHERE t.token_hash = ? AND t.revoked IS NULL
            """, [.text(tokenHash)]).first, var token = Self.apiToken(row),
              let role = row.string("role").flatMap(Role.init), let name = row.string("name") else { return nil }
        let user = User(name: name, role: role, passwordHash: row.string("password_hash") ?? "", created: row.string("user_created") ?? "",
                        updated: row.string("updated") ?? "", createdBy: row.string("user_created_by"))
        // Text times sort in time order: a minute ago is the same format with an earlier value.
        let minuteAgo = StoredTime.format.format((StoredTime.parse(now) ?? Date()).addingTimeInterval(-60))
        if token.lastUsed.map({ $0 < minuteAgo }) ?? true {
            try await executor.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", [.text(now), .text(token.id)])
            token.lastUsed = now
        }
        return (token, user)
    }

    func appendAudit(_ entry: AuditEntry) async throws {
        let before = try entry.before.map(StoredJSON.text)
        let after = try entry.after.map(StoredJSON.text)
        try await executor.transaction { db in
            // The counter's row is locked until COMMIT: numbers follow the order entries commit in.
            guard let id = try await db.execute("UPDATE counters SET value = value + 1 WHERE name = 'audit' RETURNING value")
                .first?.integer("value") else { throw StorageError.corrupt("the audit counter is missing") }
            try await db.execute("""
                INSERT INTO audit_log (id, time, actor, actor_role, via, action, object_kind, object_id, before_value, after_value)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.integer(id), .text(entry.time), .text(entry.actor), .text(entry.role.rawValue), .text(entry.via), .text(entry.action),
                      .text(entry.objectKind), .text(entry.objectID), .text(before), .text(after)])
        }
    }

    func auditEntries(_ filter: AuditFilter, before: Int?, limit: Int) async throws -> [AuditEntry] {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let actor = filter.actor { conditions.append("actor = ?"); binds.append(.text(actor)) }
        if let kind = filter.objectKind { conditions.append("object_kind = ?"); binds.append(.text(kind)) }
        if let id = filter.objectID { conditions.append("object_id = ?"); binds.append(.text(id)) }
        if let since = filter.since { conditions.append("time >= ?"); binds.append(.text(since)) }
        if let before { conditions.append("id < ?"); binds.append(.integer(before)) }
        binds.append(.integer(max(0, limit)))
        let sql = "SELECT * FROM audit_log" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY id DESC LIMIT ?"
        return try await executor.query(sql, binds).compactMap { row in
            guard let id = row.integer("id"), let time = row.string("time"), let actor = row.string("actor"),
                  let role = row.string("actor_role").flatMap(Role.init), let action = row.string("action"),
                  let kind = row.string("object_kind") else { return nil }
            return AuditEntry(id: id, time: time, actor: actor, role: role, via: row.string("via") ?? "", action: action, objectKind: kind,
                              objectID: row.string("object_id"), before: StoredJSON.decode(JSONValue.self, row.string("before_value")),
                              after: StoredJSON.decode(JSONValue.self, row.string("after_value")))
        }
    }
}
