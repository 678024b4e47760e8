import Foundation

/// Distribution points (migration 9): plain HTTP servers near the machines holding copies of
/// the content folder, and the SHA-256s of the published files, kept by path, size and
/// modification time so a manifest of many gigabytes is not hashed again at every request.
public protocol DistributionPointStorage: Sendable {
    /// Every point, in the order machines are given them (priority, then name).
    func distributionPoints() async throws -> [DistributionPoint]
    func distributionPoint(name: String) async throws -> DistributionPoint?
    /// The point whose token hashes to `tokenHash`: how a point's own requests are authenticated.
    func distributionPoint(tokenHash: String) async throws -> DistributionPoint?
    /// Creates the point (with `tokenHash`) or updates its rules, URL and priority (its token
    /// and status kept, unless `replaceToken`). Returns the point as stored and whether it was created.
    func putDistributionPoint(_ settings: DistributionPointSettings, tokenHash: String,
                              replaceToken: Bool) async throws -> (point: DistributionPoint, created: Bool)
    func deleteDistributionPoint(name: String) async throws -> Bool
    /// Keeps what the point reports it holds, and `heldVersion`, the version of those files
    /// (`ContentManifest.version`); false when there is no such point.
    func storeDistributionStatus(name: String, _ status: DistributionPointStatus, heldVersion: String) async throws -> Bool
    /// Every point's settings and the version of what it last reported holding, in priority
    /// order: what a check-in chooses from, without reading the points' file lists.
    func distributionPointChoices() async throws -> [DistributionPointChoice]

    /// The SHA-256s computed so far, by path under the content folder.
    func contentHashes() async throws -> [String: ContentHash]
    func storeContentHash(_ hash: ContentHash) async throws
    /// Forgets the hashes of files no longer published.
    func deleteContentHashes(paths: [String]) async throws
}

/// A change to a point that another change overtook.
public struct DistributionPointConflict: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// A point as a check-in sees it.
public struct DistributionPointChoice: Sendable, Equatable {
    public var settings: DistributionPointSettings
    /// Nil until the point reports.
    public var heldVersion: String?
}

/// What an administrator sets of a point.
public struct DistributionPointSettings: Codable, Sendable, Equatable {
    public var name: String
    /// What agents fetch from: mirrors `/content/`, ends in `/`.
    public var url: String
    /// CIDRs matched against the address a check-in comes from.
    public var subnets: [String]
    /// Default gateway addresses matched against the agent's facts (which do not carry one yet).
    public var gateways: [String]
    /// Lower first.
    public var priority: Int
}

/// A point as stored: its settings, its token's hash and its last report.
public struct DistributionPoint: Codable, Sendable, Equatable {
    public var settings: DistributionPointSettings
    public var tokenHash: String
    public var created: String
    public var updated: String
    public var status: DistributionPointStatus?

    public var name: String { settings.name }
}

/// What a point last reported: the files it holds (path under its root → SHA-256), when it
/// reported, whether that sync ended without errors, and the errors.
public struct DistributionPointStatus: Codable, Sendable, Equatable {
    public var files: [String: String]
    /// Set by the server when the report arrives (the point's clock is not trusted).
    public var reported: String
    /// The sync that sent this report fetched, checked and removed everything it had to.
    public var complete: Bool
    public var errors: [String]
    /// What the sync tool counted (fetched, unchanged, corrupt, removed, bytes), for the dashboard.
    public var summary: String?
}

/// A published file's SHA-256, valid while its size and modification time are these.
public struct ContentHash: Sendable, Equatable {
    public var path: String
    public var size: Int
    /// Nanoseconds since 1970.
    public var modifiedNanoseconds: Int
    public var sha256: String
    public var hashed: String
}

extension SQLStorage {
    private static func distributionSettings(_ row: SQLRow) -> DistributionPointSettings? {
        guard let name = row.string("name"), let url = row.string("url"), let priority = row.integer("priority") else { return nil }
        return DistributionPointSettings(name: name, url: url, subnets: StoredJSON.decode([String].self, row.string("subnets")) ?? [],
                                         gateways: StoredJSON.decode([String].self, row.string("gateways")) ?? [], priority: priority)
    }

    private static func distributionPoint(_ row: SQLRow) -> DistributionPoint? {
        guard let settings = distributionSettings(row), let tokenHash = row.string("token_hash"), let created = row.string("created"),
              let updated = row.string("updated") else { return nil }
        return DistributionPoint(settings: settings, tokenHash: tokenHash, created: created, updated: updated,
                                 status: StoredJSON.decode(DistributionPointStatus.self, row.string("status")))
    }

    func distributionPoints() async throws -> [DistributionPoint] {
        try await executor.query("SELECT * FROM distribution_points ORDER BY priority, name").compactMap(Self.distributionPoint)
    }

    func distributionPoint(name: String) async throws -> DistributionPoint? {
        try await executor.query("SELECT * FROM distribution_points WHERE name = ?", [.text(name)]).first.flatMap(Self.distributionPoint)
    }

    func distributionPoint(tokenHash: String) async throws -> DistributionPoint? {
        try await executor.query("SELECT * FROM distribution_points WHERE token_hash = ?", [.text(tokenHash)]).first.flatMap(Self.distributionPoint)
    }

    func putDistributionPoint(_ settings: DistributionPointSettings, tokenHash: String,
                              replaceToken: Bool) async throws -> (point: DistributionPoint, created: Bool) {
        let subnets = try StoredJSON.text(settings.subnets), gateways = try StoredJSON.text(settings.gateways)
        let now = StoredTime.now()
        return try await executor.transaction { db in
            // Insert first: two administrators creating the same point at once make one point,
            // and the second updates it (its token is then the first's).
            let inserted = try await db.execute("""
                INSERT INTO distribution_points (name, url, subnets, gateways, priority, token_hash, created, updated)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING *
                """, [.text(settings.name), .text(settings.url), .text(subnets), .text(gateways), .integer(settings.priority),
                      .text(tokenHash), .text(now), .text(now)])
            if let row = inserted.first, let point = Self.distributionPoint(row) { return (point, true) }
            var sql = "UPDATE distribution_points SET url = ?, subnets = ?, gateways = ?, priority = ?, updated = ?"
            var binds: [SQLValue] = [.text(settings.url), .text(subnets), .text(gateways), .integer(settings.priority), .text(now)]
            if replaceToken {
                sql += ", token_hash = ?"
                binds.append(.text(tokenHash))
            }
            binds.append(.text(settings.name))
            guard let row = try await db.execute(sql + " WHERE name = ? RETURNING *", binds).first, let point = Self.distributionPoint(row) else {
                throw DistributionPointConflict(description: "distribution point \(settings.name) was deleted while it was being updated; send it again")
            }
            return (point, false)
        }
    }

    func deleteDistributionPoint(name: String) async throws -> Bool {
        !(try await executor.execute("DELETE FROM distribution_points WHERE name = ? RETURNING name", [.text(name)]).isEmpty)
    }

    func storeDistributionStatus(name: String, _ status: DistributionPointStatus, heldVersion: String) async throws -> Bool {
        !(try await executor.execute("UPDATE distribution_points SET status = ?, held_version = ? WHERE name = ? RETURNING name",
                                     [.text(try StoredJSON.text(status)), .text(heldVersion), .text(name)]).isEmpty)
    }

    func distributionPointChoices() async throws -> [DistributionPointChoice] {
        try await executor.query("SELECT name, url, subnets, gateways, priority, held_version FROM distribution_points ORDER BY priority, name")
            .compactMap { row in Self.distributionSettings(row).map { DistributionPointChoice(settings: $0, heldVersion: row.string("held_version")) } }
    }

    func contentHashes() async throws -> [String: ContentHash] {
        var hashes: [String: ContentHash] = [:]
        for row in try await executor.query("SELECT path, size, modified_ns, sha256, hashed FROM content_hashes") {
            guard let path = row.string("path"), let size = row.integer("size"), let modified = row.integer("modified_ns"),
                  let sha256 = row.string("sha256"), let hashed = row.string("hashed") else { continue }
            hashes[path] = ContentHash(path: path, size: size, modifiedNanoseconds: modified, sha256: sha256, hashed: hashed)
        }
        return hashes
    }

    func storeContentHash(_ hash: ContentHash) async throws {
        try await executor.execute("""
            INSERT INTO content_hashes (path, size, modified_ns, sha256, hashed) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (path) DO UPDATE SET size = excluded.size, modified_ns = excluded.modified_ns,
                sha256 = excluded.sha256, hashed = excluded.hashed
            """, [.text(hash.path), .integer(hash.size), .integer(hash.modifiedNanoseconds), .text(hash.sha256), .text(hash.hashed)])
    }

    func deleteContentHashes(paths: [String]) async throws {
        guard !paths.isEmpty else { return }
        try await executor.transaction { db in
            for path in paths { try await db.execute("DELETE FROM content_hashes WHERE path = ?", [.text(path)]) }
        }
    }
}
