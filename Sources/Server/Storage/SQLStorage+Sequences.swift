import Foundation
import SequenceModel

/// A task sequence's versions (migration 13, issue 20): every save keeps the body it replaces,
/// with who saved that body and when, and who replaced it and when, so any earlier version can
/// be read and restored. Bodies are kept as the sequence was stored: secret values sealed.
public protocol SequenceVersionStorage: Sendable {
    /// Stores `body` as the sequence's current version (secret values sealed, as `putSequence`
    /// does), keeping the body it replaces among the versions; `author` is who saves it (nil:
    /// not known, as for a save from before versions were kept). The new version's number.
    @discardableResult
    func putSequence(name: String, body: String, by author: String?) async throws -> Int
    /// Newest first: the current version, then every kept one. Empty when there is no such sequence.
    func sequenceVersions(name: String) async throws -> [SequenceVersion]
    /// One version, the current one included; nil when there is none of that number.
    func sequenceVersion(name: String, version: Int) async throws -> SequenceVersion?
}

/// One version of a task sequence.
public struct SequenceVersion: Sendable, Codable, Equatable {
    public var name: String
    /// From 1, one more at every save.
    public var version: Int
    /// As stored: secret values sealed (never shown as they are: `SecretSealing.maskSequence`).
    public var body: String
    /// When this body was saved, and by whom (nil: before versions were kept, or not known).
    public var saved: String
    public var savedBy: String?
    /// When a later save replaced it, and by whom; nil for the current version.
    public var replaced: String?
    public var replacedBy: String?

    public var isCurrent: Bool { replaced == nil }
}

extension SQLStorage {
    func putSequence(name: String, body: String, by author: String?) async throws -> Int {
        let sealed = try sealing.sealSequence(body, what: "sequence \"\(name)\"")
        let secretNames = SecretSealing.secretNames(ofSequence: sealed)
        let now = StoredTime.now()
        return try await executor.transaction { db in
            // The row is locked until COMMIT (PostgreSQL): two saves of one sequence number
            // their versions one after the other.
            func current() async throws -> SQLRow? {
                try await db.execute("SELECT body, updated, version, updated_by FROM sequences WHERE name = ?" + lockingSelectedRows,
                                     [.text(name)]).first
            }
            var row = try await current()
            if row == nil {
                let inserted = try await db.execute("""
                    INSERT INTO sequences (name, body, updated, version, updated_by) VALUES (?, ?, ?, 1, ?)
                    ON CONFLICT (name) DO NOTHING RETURNING name
                    """, [.text(name), .text(sealed), .text(now), .text(author)])
                // Another instance made it meanwhile: this save replaces that one.
                if inserted.isEmpty { row = try await current() }
            }
            var version = 1
            if let row {
                let previous = row.integer("version") ?? 1
                try await db.execute("""
                    INSERT INTO sequence_versions (sequence_name, version, body, saved, saved_by, replaced, replaced_by)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, [.text(name), .integer(previous), .text(row.string("body") ?? ""), .text(row.string("updated") ?? ""),
                          .text(row.string("updated_by")), .text(now), .text(author)])
                version = previous + 1
                try await db.execute("UPDATE sequences SET body = ?, updated = ?, version = ?, updated_by = ? WHERE name = ?",
                                     [.text(sealed), .text(now), .integer(version), .text(author), .text(name)])
            }
            // The sequence may list more variables as secret now: the rules' values for them are sealed too.
            try await sealRules(in: db, where: " WHERE sequence_name = ?" + lockingSelectedRows, [.text(name)]) { _ in secretNames }
            return version
        }
    }

    func sequenceVersions(name: String) async throws -> [SequenceVersion] {
        guard let current = try await currentVersion(name: name) else { return [] }
        let kept = try await executor.query("SELECT * FROM sequence_versions WHERE sequence_name = ? ORDER BY version DESC", [.text(name)])
        return [current] + kept.compactMap(Self.keptVersion)
    }

    func sequenceVersion(name: String, version: Int) async throws -> SequenceVersion? {
        if let current = try await currentVersion(name: name), current.version == version { return current }
        return try await executor.query("SELECT * FROM sequence_versions WHERE sequence_name = ? AND version = ?",
                                        [.text(name), .integer(version)]).first.flatMap(Self.keptVersion)
    }

    private func currentVersion(name: String) async throws -> SequenceVersion? {
        guard let row = try await executor.query("SELECT * FROM sequences WHERE name = ?", [.text(name)]).first,
              let body = row.string("body") else { return nil }
        return SequenceVersion(name: name, version: row.integer("version") ?? 1, body: body, saved: row.string("updated") ?? "",
                               savedBy: row.string("updated_by"), replaced: nil, replacedBy: nil)
    }

    private static func keptVersion(_ row: SQLRow) -> SequenceVersion? {
        guard let name = row.string("sequence_name"), let version = row.integer("version"), let body = row.string("body") else { return nil }
        return SequenceVersion(name: name, version: version, body: body, saved: row.string("saved") ?? "", savedBy: row.string("saved_by"),
                               replaced: row.string("replaced") ?? "", replacedBy: row.string("replaced_by"))
    }
}
