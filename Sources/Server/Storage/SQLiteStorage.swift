import Foundation
import Logging
import SequenceModel
import SQLiteNIO

/// `ServerStorage` in one SQLite file (WAL, so readers never wait for the writer). One
/// connection, each operation under a lock and multi-statement ones in a transaction.
public final class SQLiteStorage: ServerStorage, @unchecked Sendable {
    private let connection: SQLiteConnection
    private let lock = AsyncLock()
    /// Reads (token checks, pages, the live feed) on a connection of their own: in WAL mode they
    /// see every committed write and never wait behind a group of event inserts.
    private let readConnection: SQLiteConnection
    private let readLock = AsyncLock()
    @TaskLocal private static var reading = false
    public let path: String

    public static func open(path: String, logger: Logger = Logger(label: "imprint.sqlite")) async throws -> SQLiteStorage {
        let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        _ = try await connection.query("PRAGMA journal_mode = WAL", [])
        // Another process (a backup, a second instance) holding the write lock makes us wait, not fail.
        _ = try await connection.query("PRAGMA busy_timeout = 5000", [])
        _ = try await connection.query("PRAGMA foreign_keys = ON", [])
        let readConnection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        _ = try await readConnection.query("PRAGMA busy_timeout = 5000", [])
        _ = try await readConnection.query("PRAGMA query_only = ON", [])
        return SQLiteStorage(connection: connection, readConnection: readConnection, path: path)
    }

    private init(connection: SQLiteConnection, readConnection: SQLiteConnection, path: String) {
        self.connection = connection
        self.readConnection = readConnection
        self.path = path
    }

    public func close() async throws {
        try await readConnection.close()
        try await connection.close()
    }

    // MARK: - Plumbing

    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        try await (Self.reading ? readConnection : connection).query(sql, binds)
    }

    /// Runs `body` alone, inside BEGIN IMMEDIATE (the write lock up front, so two writers never
    /// deadlock upgrading read locks) ... COMMIT, rolled back when it throws.
    @discardableResult
    private func transaction<T>(_ body: () async throws -> T) async throws -> T {
        try await lock.withLock {
            try await Self.$reading.withValue(false) { try await writeTransaction(body) }
        }
    }

    private func writeTransaction<T>(_ body: () async throws -> T) async throws -> T {
        try await query("BEGIN IMMEDIATE")
        do {
            let result = try await body()
            try await query("COMMIT")
            return result
        } catch {
            _ = try? await query("ROLLBACK")
            throw error
        }
    }

    func read<T>(_ body: () async throws -> T) async throws -> T {
        try await readLock.withLock { try await Self.$reading.withValue(true) { try await body() } }
    }

    private static func text(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }

    // MARK: - Migrations

    public func migrate() async throws {
        try await lock.withLock {
            try await query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)")
        }
        let applied = try await read {
            Set(try await query("SELECT version FROM schema_migrations").compactMap { $0.column("version")?.integer })
        }
        for migration in Migrations.all where !applied.contains(migration.version) {
            try await transaction {
                for statement in migration.statements { try await query(statement) }
                try await query("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)",
                                [.integer(migration.version), .text(Clock.now())])
            }
        }
    }

    // MARK: - Machines

    private static func machine(_ row: SQLiteRow) -> Machine? {
        guard let id = row.column("id")?.string, let state = row.column("state")?.string.flatMap(Machine.State.init) else { return nil }
        return Machine(
            id: id, macs: (row.column("macs")?.string ?? "").split(separator: ",").map(String.init),
            uuid: row.column("uuid")?.string, serial: row.column("serial")?.string,
            manufacturer: row.column("manufacturer")?.string, model: row.column("model")?.string,
            facts: StoredJSON.decode(Facts.self, row.column("facts")?.string), state: state,
            firstSeen: row.column("first_seen")?.string ?? "", lastSeen: row.column("last_seen")?.string ?? "")
    }

    public func recordCheckIn(facts: Facts, newState: Machine.State) async throws -> Machine {
        let macs = facts.macAddresses.map(Rule.normalizedMAC)
        // Stored between commas (",a,b,") so `LIKE '%,a,%'` finds one MAC without a second table.
        let macField = macs.isEmpty ? "" : "," + macs.joined(separator: ",") + ","
        let factsJSON = try StoredJSON.text(facts)
        let now = Clock.now()
        return try await transaction {
            var existing: SQLiteRow?
            if let uuid = facts.uuid?.lowercased(), !uuid.isEmpty {
                existing = try await query("SELECT * FROM machines WHERE uuid = ?", [.text(uuid)]).first
            }
            for mac in macs where existing == nil {
                existing = try await query("SELECT * FROM machines WHERE macs LIKE ?", [.text("%," + mac + ",%")]).first
            }
            if existing == nil, let serial = facts.serialNumber, !serial.isEmpty {
                existing = try await query("SELECT * FROM machines WHERE serial = ?", [.text(serial)]).first
            }
            if let existing, let machine = Self.machine(existing) {
                try await query("""
                    UPDATE machines SET macs = ?, uuid = ?, serial = ?, manufacturer = ?, model = ?, facts = ?, last_seen = ?
                    WHERE id = ?
                    """, [.text(macField), Self.text(facts.uuid?.lowercased()), Self.text(facts.serialNumber),
                          Self.text(facts.manufacturer), Self.text(facts.model), .text(factsJSON), .text(now), .text(machine.id)])
                var updated = machine
                updated.macs = macs
                updated.uuid = facts.uuid?.lowercased()
                updated.serial = facts.serialNumber
                updated.manufacturer = facts.manufacturer
                updated.model = facts.model
                updated.facts = facts
                updated.lastSeen = now
                return updated
            }
            let machine = Machine(id: UUID().uuidString.lowercased(), macs: macs, uuid: facts.uuid?.lowercased(),
                                  serial: facts.serialNumber, manufacturer: facts.manufacturer, model: facts.model,
                                  facts: facts, state: newState, firstSeen: now, lastSeen: now)
            try await query("""
                INSERT INTO machines (id, macs, uuid, serial, manufacturer, model, facts, state, first_seen, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.text(machine.id), .text(macField), Self.text(machine.uuid), Self.text(machine.serial),
                      Self.text(machine.manufacturer), Self.text(machine.model), .text(factsJSON), .text(newState.rawValue),
                      .text(now), .text(now)])
            return machine
        }
    }

    public func machines() async throws -> [Machine] {
        try await read { try await query("SELECT * FROM machines ORDER BY first_seen, id").compactMap(Self.machine) }
    }

    public func machine(id: String) async throws -> Machine? {
        try await read { try await query("SELECT * FROM machines WHERE id = ?", [.text(id)]).first.flatMap(Self.machine) }
    }

    public func setMachineState(id: String, state: Machine.State) async throws -> Bool {
        try await transaction {
            let rows = try await query("UPDATE machines SET state = ? WHERE id = ? RETURNING id", [.text(state.rawValue), .text(id)])
            return !rows.isEmpty
        }
    }

    // MARK: - Rules and sequences

    public func rules() async throws -> [Rule] {
        try await read {
            try await query("SELECT * FROM rules ORDER BY position").compactMap { row in
                guard let field = row.column("match_field")?.string.flatMap(Rule.Field.init),
                      let pattern = row.column("pattern")?.string, let sequence = row.column("sequence_name")?.string else { return nil }
                return Rule(name: row.column("name")?.string, match: field, pattern: pattern, sequence: sequence,
                            variables: StoredJSON.decode([String: String].self, row.column("variables")?.string) ?? [:])
            }
        }
    }

    public func replaceRules(_ rules: [Rule]) async throws {
        let encoded = try rules.map { try StoredJSON.text($0.variables) }
        try await transaction {
            try await query("DELETE FROM rules")
            for (position, rule) in rules.enumerated() {
                try await query("INSERT INTO rules (position, name, match_field, pattern, sequence_name, variables) VALUES (?, ?, ?, ?, ?, ?)",
                                [.integer(position), Self.text(rule.name), .text(rule.match.rawValue), .text(rule.pattern),
                                 .text(rule.sequence), .text(encoded[position])])
            }
        }
    }

    private static func storedSequence(_ row: SQLiteRow) -> StoredSequence? {
        guard let name = row.column("name")?.string, let body = row.column("body")?.string else { return nil }
        return StoredSequence(name: name, body: body, updated: row.column("updated")?.string ?? "")
    }

    public func sequence(name: String) async throws -> StoredSequence? {
        try await read { try await query("SELECT * FROM sequences WHERE name = ?", [.text(name)]).first.flatMap(Self.storedSequence) }
    }

    public func sequences() async throws -> [StoredSequence] {
        try await read { try await query("SELECT * FROM sequences ORDER BY name").compactMap(Self.storedSequence) }
    }

    public func putSequence(name: String, body: String) async throws {
        try await transaction {
            try await query("""
                INSERT INTO sequences (name, body, updated) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated = excluded.updated
                """, [.text(name), .text(body), .text(Clock.now())])
        }
    }

    // MARK: - Deployments

    private static func deployment(_ row: SQLiteRow) -> Deployment? {
        guard let id = row.column("id")?.string, let machine = row.column("machine_id")?.string,
              let state = row.column("state")?.string.flatMap(Deployment.State.init) else { return nil }
        let percent = row.column("percent")
        return Deployment(
            id: id, machineID: machine, sequenceName: row.column("sequence_name")?.string ?? "",
            sequenceBody: row.column("sequence_body")?.string ?? "",
            variables: StoredJSON.decode([String: String].self, row.column("variables")?.string) ?? [:],
            tokenHash: row.column("token_hash")?.string ?? "", state: state, currentStep: row.column("current_step")?.string,
            percent: percent?.isNull == false ? percent?.double : nil, message: row.column("message")?.string,
            acknowledged: row.column("acknowledged")?.integer ?? 0, created: row.column("created")?.string ?? "",
            started: row.column("started")?.string, ended: row.column("ended")?.string)
    }

    public func activeDeployment(machineID: String) async throws -> Deployment? {
        try await read {
            try await query("""
                SELECT * FROM deployments WHERE machine_id = ? AND state IN ('assigned', 'running') ORDER BY created DESC LIMIT 1
                """, [.text(machineID)]).first.flatMap(Self.deployment)
        }
    }

    public func latestDeployment(machineID: String) async throws -> Deployment? {
        try await read {
            try await query("SELECT * FROM deployments WHERE machine_id = ? ORDER BY created DESC LIMIT 1", [.text(machineID)])
                .first.flatMap(Self.deployment)
        }
    }

    public func requestRedeploy(machineID: String) async throws -> Bool {
        try await transaction {
            guard try await !query("SELECT id FROM machines WHERE id = ?", [.text(machineID)]).isEmpty else { return false }
            try await query("""
                INSERT INTO redeploys (machine_id, requested) VALUES (?, ?)
                ON CONFLICT (machine_id) DO UPDATE SET requested = excluded.requested
                """, [.text(machineID), .text(Clock.now())])
            return true
        }
    }

    public func redeployRequested(machineID: String) async throws -> String? {
        try await read {
            try await query("SELECT requested FROM redeploys WHERE machine_id = ?", [.text(machineID)]).first?.column("requested")?.string
        }
    }

    public func createDeployment(_ d: Deployment) async throws {
        let variables = try StoredJSON.text(d.variables)
        try await transaction {
            try await query("""
                INSERT INTO deployments (id, machine_id, sequence_name, sequence_body, variables, token_hash, state,
                                         current_step, percent, message, acknowledged, created, started, ended)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.text(d.id), .text(d.machineID), .text(d.sequenceName), .text(d.sequenceBody), .text(variables),
                      .text(d.tokenHash), .text(d.state.rawValue), Self.text(d.currentStep), d.percent.map { .float($0) } ?? .null,
                      Self.text(d.message), .integer(d.acknowledged), .text(d.created), Self.text(d.started), Self.text(d.ended)])
        }
    }

    public func replaceToken(deploymentID: String, tokenHash: String) async throws {
        try await transaction {
            try await query("UPDATE deployments SET token_hash = ? WHERE id = ?", [.text(tokenHash), .text(deploymentID)])
        }
    }

    public func deployment(id: String) async throws -> Deployment? {
        try await read { try await query("SELECT * FROM deployments WHERE id = ?", [.text(id)]).first.flatMap(Self.deployment) }
    }

    public func deployments() async throws -> [Deployment] {
        try await read { try await query("SELECT * FROM deployments ORDER BY created DESC, id").compactMap(Self.deployment) }
    }

    public func deploymentCounts() async throws -> [Deployment.State: Int] {
        try await read {
            var counts: [Deployment.State: Int] = [:]
            for row in try await query("SELECT state, COUNT(*) AS n FROM deployments GROUP BY state") {
                if let state = row.column("state")?.string.flatMap(Deployment.State.init) { counts[state] = row.column("n")?.integer ?? 0 }
            }
            return counts
        }
    }

    // MARK: - Events

    /// A batch waiting for the next group commit.
    private struct PendingBatch {
        var deploymentID: String
        var events: [Event]
        var encoded: [String]
        var continuation: CheckedContinuation<EventIngestResult, Error>
    }
    private let pendingLock = NSLock()
    private var pendingBatches: [PendingBatch] = []
    private var committing = false

    /// Group commit: batches that arrive while a transaction is being written wait and go into
    /// the next one together, so hundreds of agents cost one COMMIT (one fsync) per round rather
    /// than one each. Every batch is answered only after the COMMIT that holds it: an agent drops
    /// acknowledged events from its spool, so they must be on disk by then.
    public func storeEvents(deploymentID: String, events: [Event]) async throws -> EventIngestResult {
        let encoded = try events.map { try StoredJSON.text($0) }
        return try await withCheckedThrowingContinuation { continuation in
            pendingLock.lock()
            pendingBatches.append(PendingBatch(deploymentID: deploymentID, events: events, encoded: encoded, continuation: continuation))
            let startCommitter = !committing
            committing = true
            pendingLock.unlock()
            if startCommitter { Task { await self.commitPendingBatches() } }
        }
    }

    private func commitPendingBatches() async {
        while true {
            let batches = takePendingBatches()
            if batches.isEmpty { return }
            do {
                let results = try await transaction { try await insertGroup(batches) }
                for (batch, result) in zip(batches, results) { batch.continuation.resume(with: result) }
            } catch {
                for batch in batches { batch.continuation.resume(throwing: error) }
            }
        }
    }

    /// What waits for the next commit; none left ends the committer (the next batch starts one).
    private func takePendingBatches() -> [PendingBatch] {
        pendingLock.withLock {
            let batches = pendingBatches
            pendingBatches = []
            if batches.isEmpty { committing = false }
            return batches
        }
    }

    /// A group of batches in a fixed handful of statements, however many batches and
    /// deployments it holds: each statement is a round trip to SQLite's thread while every other
    /// writer waits, so their number, not the rows, bounds how many events a second go in.
    /// A batch for an unknown deployment fails alone, having written nothing.
    private func insertGroup(_ batches: [PendingBatch]) async throws -> [Result<EventIngestResult, Error>] {
        let now = Clock.now()
        let ids = Array(Set(batches.map(\.deploymentID)))
        var deployments: [String: Deployment] = [:]
        for chunk in ids.chunked(500) {
            for row in try await query("SELECT * FROM deployments WHERE id IN (\(Self.placeholders(chunk.count)))", chunk.map { .text($0) }) {
                if let deployment = Self.deployment(row) { deployments[deployment.id] = deployment }
            }
        }
        // Per deployment, every stored sequence after its acknowledged prefix or this group's
        // lowest event, whichever is lower: the duplicates to skip and any events sent out of
        // order earlier that the prefix may now reach. Normally none at all.
        var stored: [String: Set<Int>] = [:]
        var thresholds: [String: Int] = [:]
        for batch in batches {
            guard let deployment = deployments[batch.deploymentID], let low = batch.events.map(\.sequence).min() else { continue }
            thresholds[batch.deploymentID] = min(thresholds[batch.deploymentID] ?? deployment.acknowledged, low - 1)
        }
        for chunk in Array(thresholds).chunked(400) {
            let condition = Array(repeating: "(deployment_id = ? AND sequence > ?)", count: chunk.count).joined(separator: " OR ")
            for row in try await query("SELECT deployment_id, sequence FROM events WHERE \(condition)",
                                       chunk.flatMap { [SQLiteData.text($0.key), .integer($0.value)] }) {
                if let id = row.column("deployment_id")?.string, let sequence = row.column("sequence")?.integer {
                    stored[id, default: []].insert(sequence)
                }
            }
        }
        // Each batch in arrival order against its deployment's state so far.
        var results: [Result<EventIngestResult, Error>] = []
        var rows: [(deploymentID: String, event: Event, encoded: String)] = []
        var touched: [String] = []
        for batch in batches {
            guard var deployment = deployments[batch.deploymentID] else {
                results.append(.failure(StorageError.notFound("deployment \(batch.deploymentID)")))
                continue
            }
            var seen = stored[batch.deploymentID] ?? []
            // Sent again after a lost answer (or twice in one batch): stored once, counted once.
            var inserted: [Event] = []
            for (index, event) in batch.events.enumerated() where seen.insert(event.sequence).inserted {
                inserted.append(event)
                rows.append((batch.deploymentID, event, batch.encoded[index]))
            }
            for event in inserted.sorted(by: { $0.sequence < $1.sequence }) { Self.apply(event, to: &deployment, now: now) }
            // Advance the contiguous prefix: the agent may drop everything up to it from its spool.
            while seen.contains(deployment.acknowledged + 1) { deployment.acknowledged += 1 }
            stored[batch.deploymentID] = seen
            deployments[batch.deploymentID] = deployment
            if !touched.contains(batch.deploymentID) { touched.append(batch.deploymentID) }
            results.append(.success(EventIngestResult(inserted: inserted.count, acknowledged: deployment.acknowledged, deployment: deployment)))
        }
        if !rows.isEmpty {
            guard let last = try await query("UPDATE counters SET value = value + ? WHERE name = 'change' RETURNING value",
                                             [.integer(rows.count)]).first?.column("value")?.integer
            else { throw StorageError.corrupt("the change counter is missing") }
            // Change ids in arrival order, as if counted one by one.
            var change = last - rows.count + 1
            for chunk in rows.chunked(500) {  // 9 values a row, well under SQLite's limit on parameters
                var binds: [SQLiteData] = []
                binds.reserveCapacity(chunk.count * 9)
                for row in chunk {
                    let event = row.event
                    binds += [.text(row.deploymentID), .integer(event.sequence), .text(event.kind.rawValue), Self.text(event.step),
                              Self.text(event.status?.rawValue), .text(event.time), .text(row.encoded), .integer(change), .text(now)]
                    change += 1
                }
                try await query("""
                    INSERT INTO events (deployment_id, sequence, kind, step, status, time, body, change_id, received)
                    VALUES \(Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", "))
                    """, binds)
            }
        }
        // Every touched deployment's new summary in one UPDATE ... FROM (VALUES ...).
        for chunk in touched.compactMap({ deployments[$0] }).chunked(500) {
            var binds: [SQLiteData] = []
            for d in chunk {
                binds += [.text(d.id), .text(d.state.rawValue), Self.text(d.currentStep), d.percent.map { .float($0) } ?? .null,
                          Self.text(d.message), .integer(d.acknowledged), Self.text(d.started), Self.text(d.ended)]
            }
            try await query("""
                UPDATE deployments SET state = v.column2, current_step = v.column3, percent = v.column4, message = v.column5,
                       acknowledged = v.column6, started = v.column7, ended = v.column8
                FROM (VALUES \(Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", "))) AS v
                WHERE deployments.id = v.column1
                """, binds)
        }
        return results
    }

    private static func placeholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }

    /// What one new event says about the deployment as a whole (for the list and the dashboard).
    static func apply(_ event: Event, to deployment: inout Deployment, now: String) {
        // Nothing reopens an ended deployment, not even a late progress event.
        guard deployment.ended == nil else { return }
        switch event.kind {
        case .sequenceStarted:
            deployment.state = .running
            deployment.started = deployment.started ?? event.time
            deployment.message = event.message ?? deployment.message
        case .stepStarted:
            deployment.state = .running
            deployment.started = deployment.started ?? event.time
            deployment.currentStep = [event.step, event.name].compactMap { $0 }.joined(separator: " ")
            // The whole sequence's percent when the agent sends it; an older agent's is the step's.
            deployment.percent = event.overall
        case .progress:
            deployment.state = .running
            if let percent = event.overall ?? event.percent { deployment.percent = percent }
            if let message = event.message { deployment.message = message }
        case .stepEnded:
            if let overall = event.overall { deployment.percent = overall }
            if let message = event.message { deployment.message = message }
        case .log:
            if event.level == "error" || event.level == "warning", let message = event.message { deployment.message = message }
        case .result:
            deployment.state = event.status == .success ? .succeeded : .failed
            if deployment.state == .succeeded { deployment.percent = 100 }
            deployment.message = event.message ?? deployment.message
            deployment.started = deployment.started ?? event.time
            deployment.ended = event.time
        }
    }

    public func events(deploymentID: String, afterSequence: Int, limit: Int) async throws -> [StoredEvent] {
        try await read {
            try await query("""
                SELECT body, change_id, received FROM events WHERE deployment_id = ? AND sequence > ? ORDER BY sequence LIMIT ?
                """, [.text(deploymentID), .integer(afterSequence), .integer(limit)]).compactMap { row in
                guard let event = StoredJSON.decode(Event.self, row.column("body")?.string) else { return nil }
                return StoredEvent(changeID: row.column("change_id")?.integer ?? 0, received: row.column("received")?.string ?? "", event: event)
            }
        }
    }
}

extension SQLiteStorage {
    public func latestChangeID() async throws -> Int {
        try await read {
            try await query("SELECT COALESCE(MAX(change_id), 0) AS latest FROM events").first?.column("latest")?.integer ?? 0
        }
    }

    public func changedDeployments(afterChange: Int, limit: Int) async throws -> [(deploymentID: String, changeID: Int)] {
        try await read {
            try await query("""
                SELECT deployment_id, MAX(change_id) AS latest FROM events WHERE change_id > ?
                GROUP BY deployment_id ORDER BY latest LIMIT ?
                """, [.integer(afterChange), .integer(limit)]).compactMap { row in
                guard let id = row.column("deployment_id")?.string, let latest = row.column("latest")?.integer else { return nil }
                return (id, latest)
            }
        }
    }
}

public enum StorageError: Error, CustomStringConvertible {
    case notFound(String)
    case corrupt(String)
    public var description: String {
        switch self {
        case let .notFound(what): return "\(what) not found"
        case let .corrupt(what): return "the database is damaged: \(what)"
        }
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements (statements have a limit on parameters).
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
