import Foundation
import SequenceModel

/// A browser logged in to the dashboard. The cookie holds a random id; only its SHA-256 is
/// stored, so reading the database (or a backup of it) opens no session.
public struct DashboardSession: Sendable, Equatable {
    public var idHash: String
    /// What every state-changing form of this session carries (a page of another site cannot read it).
    public var csrfToken: String
    public var created: String
    public var expires: String
    /// Where the login came from.
    public var address: String?
    /// The user logged in; nil: logged in with the admin token (an administrator).
    public var user: String?
    /// The user's role as it is now (read with the session, so a changed role counts at once).
    public var role: Role?

    public init(idHash: String, csrfToken: String, created: String, expires: String, address: String?, user: String? = nil, role: Role? = nil) {
        self.idHash = idHash
        self.csrfToken = csrfToken
        self.created = created
        self.expires = expires
        self.address = address
        self.user = user
        self.role = role
    }
}

/// The dashboard's pages and sessions: bounded queries, so a page costs the same with ten
/// machines or a hundred thousand.
extension SQLStorage {
    func machines(state: Machine.State, offset: Int, limit: Int) async throws -> (machines: [Machine], total: Int) {
        // A rejected machine keeps the state column it had (migration 12): it is neither pending nor approved.
        let (condition, binds): (String, [SQLValue]) = state == .rejected ? ("rejected IS NOT NULL", [])
            : ("state = ? AND rejected IS NULL", [.text(state.rawValue)])
        let total = try await executor.query("SELECT COUNT(*) AS n FROM machines WHERE " + condition, binds)
            .first?.integer("n") ?? 0
        let machines = try await executor.query("SELECT * FROM machines WHERE " + condition + " ORDER BY first_seen, id LIMIT ? OFFSET ?",
                                                binds + [.integer(max(0, limit)), .integer(max(0, offset))])
            .compactMap(Self.machine)
        return (machines, total)
    }

    func latestDeployments(machineIDs: [String]) async throws -> [String: Deployment] {
        var latest: [String: Deployment] = [:]
        for chunk in machineIDs.chunked(500) {
            // Oldest first, so the newest of each machine is the one kept.
            let rows = try await executor.query("""
                SELECT * FROM deployments WHERE machine_id IN (\(Self.questionMarks(chunk.count))) ORDER BY created, id
                """, chunk.map { .text($0) })
            for deployment in rows.compactMap(Self.deployment) { latest[deployment.machineID] = deployment }
        }
        return latest
    }

    func redeployRequests(machineIDs: [String]) async throws -> [String: String] {
        var requests: [String: String] = [:]
        for chunk in machineIDs.chunked(500) {
            for row in try await executor.query("SELECT machine_id, requested FROM redeploys WHERE machine_id IN (\(Self.questionMarks(chunk.count)))",
                                                chunk.map { .text($0) }) {
                if let id = row.string("machine_id"), let requested = row.string("requested") { requests[id] = requested }
            }
        }
        return requests
    }

    func latestFailureCounts() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        // A failed deployment counts when no newer one of its machine exists.
        for row in try await executor.query("""
            SELECT COALESCE(failure, 'internal') AS kind, COUNT(*) AS n FROM deployments AS d
            WHERE state = 'failed' AND NOT EXISTS (
                SELECT 1 FROM deployments AS newer WHERE newer.machine_id = d.machine_id
                AND (newer.created > d.created OR (newer.created = d.created AND newer.id > d.id)))
            GROUP BY COALESCE(failure, 'internal')
            """) {
            if let kind = row.string("kind") { counts[kind] = row.integer("n") ?? 0 }
        }
        return counts
    }

    func events(deploymentID: String, beforeSequence: Int, limit: Int) async throws -> [StoredEvent] {
        try await executor.query("""
            SELECT body, change_id, received FROM events WHERE deployment_id = ? AND sequence < ? ORDER BY sequence DESC LIMIT ?
            """, [.text(deploymentID), .integer(beforeSequence), .integer(max(0, limit))]).reversed().compactMap { row in
            guard let event = StoredJSON.decode(Event.self, row.string("body")) else { return nil }
            return StoredEvent(changeID: row.integer("change_id") ?? 0, received: row.string("received") ?? "", event: event)
        }
    }

    func stepEvents(deploymentID: String, limit: Int) async throws -> [Event] {
        try await executor.query("""
            SELECT body FROM events WHERE deployment_id = ? AND kind IN ('stepStarted', 'stepEnded') ORDER BY sequence LIMIT ?
            """, [.text(deploymentID), .integer(max(0, limit))]).compactMap { StoredJSON.decode(Event.self, $0.string("body")) }
    }

    func createSession(_ session: DashboardSession) async throws {
        try await executor.transaction { db in
            // Expired sessions go as new ones come: the table holds only what may still be used.
            try await db.execute("DELETE FROM sessions WHERE expires <= ?", [.text(session.created)])
            try await db.execute("INSERT INTO sessions (id_hash, csrf_token, created, expires, address, user_name) VALUES (?, ?, ?, ?, ?, ?)",
                                 [.text(session.idHash), .text(session.csrfToken), .text(session.created), .text(session.expires),
                                  .text(session.address), .text(session.user)])
        }
    }

    func session(idHash: String) async throws -> DashboardSession? {
        // Times are stored as ISO 8601 UTC text, which sorts in time order.
        // A user's session ends with the user: a deleted user's row is gone, and its session
        // with it (the join finds no role).
        guard let row = try await executor.query("""
            SELECT s.*, u.role FROM sessions AS s LEFT JOIN users AS u ON u.name = s.user_name WHERE s.id_hash = ? AND s.expires > ?
            """, [.text(idHash), .text(StoredTime.now())]).first,
              let csrf = row.string("csrf_token"), let created = row.string("created"), let expires = row.string("expires")
        else { return nil }
        let user = row.string("user_name")
        let role = row.string("role").flatMap(Role.init)
        if user != nil && role == nil { return nil }
        return DashboardSession(idHash: idHash, csrfToken: csrf, created: created, expires: expires, address: row.string("address"),
                                user: user, role: role)
    }

    @discardableResult
    func deleteSession(idHash: String) async throws -> Bool {
        !(try await executor.execute("DELETE FROM sessions WHERE id_hash = ? RETURNING id_hash", [.text(idHash)]).isEmpty)
    }

    private static func questionMarks(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }
}
