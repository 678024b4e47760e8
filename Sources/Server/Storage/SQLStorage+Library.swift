import Foundation

/// The image library's records (migration 8). Each row keeps its record whole as JSON in `body`;
/// the columns beside it are what queries select on.
public protocol LibraryStorage: Sendable {
    func libraryWIMs() async throws -> [LibraryWIM]
    func libraryWIM(id: String) async throws -> LibraryWIM?
    /// Refused (`LibraryConflict`) when the file is imported already.
    func insertLibraryWIM(_ wim: LibraryWIM) async throws
    func deleteLibraryWIM(id: String) async throws -> Bool

    func libraryImages() async throws -> [LibraryImage]
    func libraryImage(name: String) async throws -> LibraryImage?
    /// Adds the next version of `image` (created with `description` when new), numbered in
    /// the same transaction so two jobs never make the same number.
    func addLibraryVersion(image: String, description: String?, _ make: @Sendable (Int) -> LibraryVersion) async throws -> LibraryVersion
    func setLibraryVersionState(image: String, version: Int, state: LibraryVersion.State) async throws -> LibraryVersion?
    /// Removes the version (and the image once it has none); returns how many versions still
    /// name its file (0: the file may go).
    func deleteLibraryVersion(image: String, version: Int) async throws -> Int?

    func createLibraryJob(_ job: LibraryJob) async throws
    func updateLibraryJob(_ job: LibraryJob) async throws
    /// Takes a queued job for `running` (its new record): false when another instance took it first.
    func claimLibraryJob(_ running: LibraryJob) async throws -> Bool
    func libraryJob(id: String) async throws -> LibraryJob?
    func libraryJobs(limit: Int) async throws -> [LibraryJob]
    func libraryJobs(state: LibraryJob.State) async throws -> [LibraryJob]

    /// Records the library versions a deployment was handed (at its check-in).
    func recordDeploymentImages(deploymentID: String, _ images: [(image: String, version: Int)]) async throws
    /// Deployments that applied `image` (one version, or any), newest first.
    func libraryUses(image: String, version: Int?) async throws -> [LibraryUse]
    /// The library versions a deployment was handed.
    func libraryVersions(deploymentID: String) async throws -> [LibraryVersionUsed]
}

/// A library image's version, as a deployment got it.
public struct LibraryVersionUsed: Codable, Sendable, Equatable {
    public var image: String
    public var version: Int
}

/// A library record that would clash with one already there.
public struct LibraryConflict: Error, CustomStringConvertible, Sendable {
    public var description: String
}

extension SQLStorage {
    func libraryWIMs() async throws -> [LibraryWIM] {
        try await executor.query("SELECT body FROM library_wims ORDER BY imported, id").compactMap { StoredJSON.decode(LibraryWIM.self, $0.string("body")) }
    }

    func libraryWIM(id: String) async throws -> LibraryWIM? {
        try await executor.query("SELECT body FROM library_wims WHERE id = ?", [.text(id)]).first
            .flatMap { StoredJSON.decode(LibraryWIM.self, $0.string("body")) }
    }

    func insertLibraryWIM(_ wim: LibraryWIM) async throws {
        let inserted = try await executor.execute("""
            INSERT INTO library_wims (id, file, body, imported) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id
            """, [.text(wim.id), .text(wim.file), .text(try StoredJSON.text(wim)), .text(wim.imported)])
        if inserted.isEmpty { throw LibraryConflict(description: "\(wim.file) is imported already") }
    }

    func deleteLibraryWIM(id: String) async throws -> Bool {
        !(try await executor.execute("DELETE FROM library_wims WHERE id = ? RETURNING id", [.text(id)]).isEmpty)
    }

    func libraryImages() async throws -> [LibraryImage] {
        let images = try await executor.query("SELECT * FROM library_images ORDER BY name")
        let versions = try await executor.query("SELECT body FROM library_versions ORDER BY image_name, version")
            .compactMap { StoredJSON.decode(LibraryVersion.self, $0.string("body")) }
        let byImage = Dictionary(grouping: versions, by: \.image)
        return images.compactMap { row in
            guard let name = row.string("name"), let created = row.string("created") else { return nil }
            return LibraryImage(name: name, description: row.string("description"), created: created, versions: byImage[name] ?? [])
        }
    }

    func libraryImage(name: String) async throws -> LibraryImage? {
        guard let row = try await executor.query("SELECT * FROM library_images WHERE name = ?", [.text(name)]).first,
              let created = row.string("created") else { return nil }
        let versions = try await executor.query("SELECT body FROM library_versions WHERE image_name = ? ORDER BY version", [.text(name)])
            .compactMap { StoredJSON.decode(LibraryVersion.self, $0.string("body")) }
        return LibraryImage(name: name, description: row.string("description"), created: created, versions: versions)
    }

    func addLibraryVersion(image: String, description: String?, _ make: @Sendable (Int) -> LibraryVersion) async throws -> LibraryVersion {
        try await executor.transaction { db in
            try await db.execute("INSERT INTO library_images (name, description, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                                 [.text(image), .text(description), .text(StoredTime.now())])
            // The image's row, locked: two jobs adding versions of one image take turns.
            _ = try await db.execute("SELECT name FROM library_images WHERE name = ?" + lockingSelectedRows, [.text(image)])
            let last = try await db.execute("SELECT COALESCE(MAX(version), 0) AS last FROM library_versions WHERE image_name = ?",
                                            [.text(image)]).first?.integer("last") ?? 0
            let version = make(last + 1)
            try await db.execute("""
                INSERT INTO library_versions (image_name, version, state, file, body, created) VALUES (?, ?, ?, ?, ?, ?)
                """, [.text(image), .integer(version.version), .text(version.state.rawValue), .text(version.file),
                      .text(try StoredJSON.text(version)), .text(version.created)])
            return version
        }
    }

    func setLibraryVersionState(image: String, version: Int, state: LibraryVersion.State) async throws -> LibraryVersion? {
        try await executor.transaction { db in
            guard let row = try await db.execute("SELECT body FROM library_versions WHERE image_name = ? AND version = ?" + lockingSelectedRows,
                                                 [.text(image), .integer(version)]).first,
                  var record = StoredJSON.decode(LibraryVersion.self, row.string("body")) else { return nil }
            record.state = state
            record.retired = state == .retired ? StoredTime.now() : nil
            try await db.execute("UPDATE library_versions SET state = ?, body = ? WHERE image_name = ? AND version = ?",
                                 [.text(state.rawValue), .text(try StoredJSON.text(record)), .text(image), .integer(version)])
            return record
        }
    }

    func deleteLibraryVersion(image: String, version: Int) async throws -> Int? {
        try await executor.transaction { db in
            guard let row = try await db.execute("DELETE FROM library_versions WHERE image_name = ? AND version = ? RETURNING file",
                                                 [.text(image), .integer(version)]).first, let file = row.string("file") else { return nil }
            let remaining = try await db.execute("SELECT COUNT(*) AS n FROM library_versions WHERE image_name = ?", [.text(image)]).first?.integer("n") ?? 0
            if remaining == 0 { try await db.execute("DELETE FROM library_images WHERE name = ?", [.text(image)]) }
            return try await db.execute("SELECT COUNT(*) AS n FROM library_versions WHERE file = ?", [.text(file)]).first?.integer("n") ?? 0
        }
    }

    func createLibraryJob(_ job: LibraryJob) async throws {
        try await executor.execute("INSERT INTO library_jobs (id, kind, state, body, created) VALUES (?, ?, ?, ?, ?)",
                                   [.text(job.id), .text(job.kind.rawValue), .text(job.state.rawValue), .text(try StoredJSON.text(job)), .text(job.created)])
    }

    func updateLibraryJob(_ job: LibraryJob) async throws {
        try await executor.execute("UPDATE library_jobs SET state = ?, body = ? WHERE id = ?",
                                   [.text(job.state.rawValue), .text(try StoredJSON.text(job)), .text(job.id)])
    }

    func claimLibraryJob(_ running: LibraryJob) async throws -> Bool {
        !(try await executor.execute("UPDATE library_jobs SET state = ?, body = ? WHERE id = ? AND state = 'queued' RETURNING id",
                                     [.text(running.state.rawValue), .text(try StoredJSON.text(running)), .text(running.id)]).isEmpty)
    }

    func libraryJob(id: String) async throws -> LibraryJob? {
        try await executor.query("SELECT body FROM library_jobs WHERE id = ?", [.text(id)]).first
            .flatMap { StoredJSON.decode(LibraryJob.self, $0.string("body")) }
    }

    func libraryJobs(limit: Int) async throws -> [LibraryJob] {
        try await executor.query("SELECT body FROM library_jobs ORDER BY created DESC, id LIMIT ?", [.integer(limit)])
            .compactMap { StoredJSON.decode(LibraryJob.self, $0.string("body")) }
    }

    func libraryJobs(state: LibraryJob.State) async throws -> [LibraryJob] {
        try await executor.query("SELECT body FROM library_jobs WHERE state = ? ORDER BY created, id", [.text(state.rawValue)])
            .compactMap { StoredJSON.decode(LibraryJob.self, $0.string("body")) }
    }

    func recordDeploymentImages(deploymentID: String, _ images: [(image: String, version: Int)]) async throws {
        guard !images.isEmpty else { return }
        try await executor.transaction { db in
            for (image, version) in images {
                try await db.execute("INSERT INTO deployment_images (deployment_id, image_name, version) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                     [.text(deploymentID), .text(image), .integer(version)])
            }
        }
    }

    func libraryVersions(deploymentID: String) async throws -> [LibraryVersionUsed] {
        try await executor.query("SELECT image_name, version FROM deployment_images WHERE deployment_id = ? ORDER BY image_name, version",
                                 [.text(deploymentID)]).compactMap { row in
            guard let image = row.string("image_name"), let version = row.integer("version") else { return nil }
            return LibraryVersionUsed(image: image, version: version)
        }
    }

    func libraryUses(image: String, version: Int?) async throws -> [LibraryUse] {
        var sql = """
            SELECT d.id, d.machine_id, d.state, d.created, i.image_name, i.version FROM deployment_images i
            JOIN deployments d ON d.id = i.deployment_id WHERE i.image_name = ?
            """
        var binds: [SQLValue] = [.text(image)]
        if let version {
            sql += " AND i.version = ?"
            binds.append(.integer(version))
        }
        sql += " ORDER BY d.created DESC, d.id LIMIT 1000"
        return try await executor.query(sql, binds).compactMap { row in
            guard let id = row.string("id"), let machine = row.string("machine_id"), let state = row.string("state"),
                  let created = row.string("created"), let name = row.string("image_name"), let version = row.integer("version") else { return nil }
            return LibraryUse(deploymentID: id, machineID: machine, image: name, version: version, state: state, created: created)
        }
    }

}
