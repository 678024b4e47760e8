import Foundation
import Logging
import PostgresNIO
import SequenceModel

/// `ServerStorage` in PostgreSQL, shared by any number of server instances: the same
/// `Migrations.all` as SQLite (placeholders numbered by `SQLPlaceholders`), a pool of
/// connections, a transaction wherever SQLite's implementation has one, and database-level
/// guards (advisory locks, row locks) wherever one instance alone would have used its memory.
public final class PostgresStorage: ServerStorage, @unchecked Sendable {
    /// Where the database is: `postgres://user:password@host:port/database?sslmode=...&pool_max=N`.
    public struct Location: Sendable, Equatable {
        public enum TLSMode: String, Sendable { case disable, prefer, require }
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        public var tls: TLSMode
        /// Connections this instance opens at most (each instance has its own pool).
        public var maximumConnections: Int

        public init(url text: String) throws {
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
                  scheme == "postgres" || scheme == "postgresql" else {
                throw LocationError("expected postgres://user:password@host:port/database, got \(Self.redact(text))")
            }
            guard let host = components.host, !host.isEmpty else { throw LocationError("\(Self.redact(text)) names no host") }
            let database = String(components.path.drop { $0 == "/" })
            guard !database.isEmpty else { throw LocationError("\(Self.redact(text)) names no database (…/DATABASE)") }
            self.host = host
            self.port = components.port ?? 5432
            self.username = components.user.map { $0.removingPercentEncoding ?? $0 } ?? "postgres"
            self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
            self.database = database.removingPercentEncoding ?? database
            self.tls = .prefer
            self.maximumConnections = 10
            for item in components.queryItems ?? [] {
                switch item.name {
                case "sslmode":
                    switch item.value ?? "" {
                    case "disable": tls = .disable
                    case "allow", "prefer": tls = .prefer
                    case "require", "verify-ca", "verify-full": tls = .require
                    default: throw LocationError("sslmode=\(item.value ?? ""): expected disable, prefer or require")
                    }
                case "pool_max":
                    guard let value = item.value.flatMap(Int.init), value >= 2 else {
                        throw LocationError("pool_max=\(item.value ?? ""): expected a number of connections, at least 2")
                    }
                    maximumConnections = value
                default:
                    throw LocationError("unknown option \(item.name) (known: sslmode, pool_max)")
                }
            }
        }

        /// The URL without its password, for logs and errors.
        public var redacted: String { "postgres://\(username)@\(host):\(port)/\(database)" }

        static func redact(_ text: String) -> String {
            guard var components = URLComponents(string: text), components.password != nil else { return text }
            components.password = "***"
            return components.string ?? text
        }
    }

    public struct LocationError: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    enum Value: Sendable {
        case text(String), integer(Int), double(Double), null
        static func text(_ value: String?) -> Value { value.map { .text($0) } ?? .null }
    }

    struct Row {
        var values: [String: Value]
        func string(_ column: String) -> String? { if case let .text(value)? = values[column] { return value }; return nil }
        func integer(_ column: String) -> Int? {
            switch values[column] {
            case let .integer(value)?: return value
            case let .double(value)?: return Int(value)
            default: return nil
            }
        }
        func double(_ column: String) -> Double? {
            switch values[column] {
            case let .double(value)?: return value
            case let .integer(value)?: return Double(value)
            default: return nil
            }
        }
    }

    /// Where a query runs: any pooled connection, or the one a transaction or lock holds.
    struct Executor {
        let client: PostgresClient
        let connection: PostgresConnection?
        let logger: Logger

        @discardableResult
        func query(_ sql: String, _ binds: [Value] = []) async throws -> [Row] {
            let query = try PostgresStorage.makeQuery(sql, binds)
            if let connection { return try await PostgresStorage.rows(connection.query(query, logger: logger)) }
            return try await PostgresStorage.rows(client.query(query, logger: logger))
        }
    }

    /// Advisory lock keys: one for migrations, one for check-ins (two arbitrary, fixed numbers).
    static let migrationLockKey = 0x696D_7072_696E_0001
    static let checkInLockKey = 0x696D_7072_696E_0002

    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    public let location: Location

    /// Connects (failing within `connectTimeout` when the database cannot be reached); the
    /// caller runs `migrate()` next.
    public static func open(_ location: Location, connectTimeout: Duration = .seconds(15),
                            logger: Logger = Logger(label: "imprint.postgres")) async throws -> PostgresStorage {
        let tls: PostgresClient.Configuration.TLS
        switch location.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(.makeClientConfiguration())
        case .require: tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(host: location.host, port: location.port, username: location.username,
                                                         password: location.password, database: location.database, tls: tls)
        configuration.options.maximumConnections = location.maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = connectTimeout
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let storage = PostgresStorage(client: client, location: location, logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await storage.executor.query("SELECT 1 AS one") }
                group.addTask {
                    try await Task.sleep(for: connectTimeout)
                    throw LocationError("could not reach PostgreSQL at \(location.redacted) within \(connectTimeout)")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            await storage.close()
            throw error
        }
        return storage
    }

    private init(client: PostgresClient, location: Location, logger: Logger) {
        self.client = client
        self.location = location
        self.logger = logger
        runner = Task { await client.run() }
    }

    /// Closes every connection of the pool.
    public func close() async {
        runner.cancel()
        await runner.value
    }

    // MARK: - Plumbing

    private var executor: Executor { Executor(client: client, connection: nil, logger: logger) }

    @discardableResult
    func query(_ sql: String, _ binds: [Value] = []) async throws -> [Row] { try await executor.query(sql, binds) }

    static func makeQuery(_ sql: String, _ binds: [Value]) throws -> PostgresQuery {
        var bindings = PostgresBindings(capacity: binds.count)
        for bind in binds {
            switch bind {
            case let .text(value): bindings.append(value)
            case let .integer(value): bindings.append(value)
            case let .double(value): bindings.append(value)
            case .null: bindings.appendNull()
            }
        }
        return PostgresQuery(unsafeSQL: SQLPlaceholders.numbered(sql), binds: bindings)
    }

    static func rows(_ sequence: PostgresRowSequence) async throws -> [Row] {
        var rows: [Row] = []
        for try await row in sequence {
            var values: [String: Value] = [:]
            for cell in row {
                guard cell.bytes != nil else { values[cell.columnName] = .null; continue }
                switch cell.dataType {
                case .int8, .int4, .int2: values[cell.columnName] = .integer(try cell.decode(Int.self))
                case .float8, .float4: values[cell.columnName] = .double(try cell.decode(Double.self))
                case .bool: values[cell.columnName] = .integer(try cell.decode(Bool.self) ? 1 : 0)
                case .text, .varchar, .name, .bpchar: values[cell.columnName] = .text(try cell.decode(String.self))
                default: values[cell.columnName] = .null  // void (a lock function's answer) and the like
                }
            }
            rows.append(Row(values: values))
        }
        return rows
    }

    /// Runs `body` on one connection between BEGIN and COMMIT, rolled back when it throws.
    @discardableResult
    private func transaction<T: Sendable>(_ body: (Executor) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            let executor = Executor(client: client, connection: connection, logger: logger)
            try await executor.query("BEGIN")
            do {
                let result = try await body(executor)
                try await executor.query("COMMIT")
                return result
            } catch {
                _ = try? await executor.query("ROLLBACK")
                throw error
            }
        }
    }

    /// Runs `body` holding a session-level advisory lock on a connection of its own (released at
    /// the end, or by PostgreSQL when that connection dies), so `body` may use other connections.
    private func holdingLock<T: Sendable>(_ key: Int, _ body: (Executor) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            let executor = Executor(client: client, connection: connection, logger: logger)
            try await executor.query("SELECT pg_advisory_lock(?)", [.integer(key)])
            do {
                let result = try await body(executor)
                try await executor.query("SELECT pg_advisory_unlock(?)", [.integer(key)])
                return result
            } catch {
                _ = try? await executor.query("SELECT pg_advisory_unlock(?)", [.integer(key)])
                throw error
            }
        }
    }

    // MARK: - Migrations

    /// Applies the migrations not applied yet; instances starting together take turns (an
    /// advisory lock), so each migration runs once.
    public func migrate() async throws {
        try await holdingLock(Self.migrationLockKey) { locked in
            try await locked.query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)")
            let applied = Set(try await locked.query("SELECT version FROM schema_migrations").compactMap { $0.integer("version") })
            for migration in Migrations.all where !applied.contains(migration.version) {
                try await locked.query("BEGIN")
                do {
                    for statement in migration.statements { try await locked.query(statement) }
                    try await locked.query("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)",
                                           [.integer(migration.version), .text(Clock.now())])
                    try await locked.query("COMMIT")
                } catch {
                    _ = try? await locked.query("ROLLBACK")
                    throw error
                }
                logger.info("database \(location.redacted): migration \(migration.version) applied")
            }
        }
    }

    public func serializingCheckIns<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await holdingLock(Self.checkInLockKey) { _ in try await body() }
    }

    // MARK: - Machines

    private static func machine(_ row: Row) -> Machine? {
        guard let id = row.string("id"), let state = row.string("state").flatMap(Machine.State.init) else { return nil }
        return Machine(
            id: id, macs: (row.string("macs") ?? "").split(separator: ",").map(String.init),
            uuid: row.string("uuid"), serial: row.string("serial"),
            manufacturer: row.string("manufacturer"), model: row.string("model"),
            facts: StoredJSON.decode(Facts.self, row.string("facts")), state: state,
            firstSeen: row.string("first_seen") ?? "", lastSeen: row.string("last_seen") ?? "")
    }

    public func recordCheckIn(facts: Facts, newState: Machine.State) async throws -> Machine {
        let macs = facts.macAddresses.map(Rule.normalizedMAC)
        let macField = macs.isEmpty ? "" : "," + macs.joined(separator: ",") + ","
        let factsJSON = try StoredJSON.text(facts)
        let now = Clock.now()
        return try await transaction { db in
            var existing: Row?
            if let uuid = facts.uuid?.lowercased(), !uuid.isEmpty {
                existing = try await db.query("SELECT * FROM machines WHERE uuid = ? FOR UPDATE", [.text(uuid)]).first
            }
            for mac in macs where existing == nil {
                existing = try await db.query("SELECT * FROM machines WHERE macs LIKE ? FOR UPDATE", [.text("%," + mac + ",%")]).first
            }
            if existing == nil, let serial = facts.serialNumber, !serial.isEmpty {
                existing = try await db.query("SELECT * FROM machines WHERE serial = ? FOR UPDATE", [.text(serial)]).first
            }
            if let existing, let machine = Self.machine(existing) {
                try await db.query("""
                    UPDATE machines SET macs = ?, uuid = ?, serial = ?, manufacturer = ?, model = ?, facts = ?, last_seen = ?
                    WHERE id = ?
                    """, [.text(macField), .text(facts.uuid?.lowercased()), .text(facts.serialNumber),
                          .text(facts.manufacturer), .text(facts.model), .text(factsJSON), .text(now), .text(machine.id)])
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
            try await db.query("""
                INSERT INTO machines (id, macs, uuid, serial, manufacturer, model, facts, state, first_seen, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.text(machine.id), .text(macField), .text(machine.uuid), .text(machine.serial),
                      .text(machine.manufacturer), .text(machine.model), .text(factsJSON), .text(newState.rawValue),
                      .text(now), .text(now)])
            return machine
        }
    }

    public func machines() async throws -> [Machine] {
        try await query("SELECT * FROM machines ORDER BY first_seen, id").compactMap(Self.machine)
    }

    public func machine(id: String) async throws -> Machine? {
        try await query("SELECT * FROM machines WHERE id = ?", [.text(id)]).first.flatMap(Self.machine)
    }

    public func setMachineState(id: String, state: Machine.State) async throws -> Bool {
        !(try await query("UPDATE machines SET state = ? WHERE id = ? RETURNING id", [.text(state.rawValue), .text(id)]).isEmpty)
    }

    // MARK: - Rules and sequences

    public func rules() async throws -> [Rule] {
        try await query("SELECT * FROM rules ORDER BY position").compactMap { row in
            guard let field = row.string("match_field").flatMap(Rule.Field.init),
                  let pattern = row.string("pattern"), let sequence = row.string("sequence_name") else { return nil }
            return Rule(name: row.string("name"), match: field, pattern: pattern, sequence: sequence,
                        variables: StoredJSON.decode([String: String].self, row.string("variables")) ?? [:])
        }
    }

    public func replaceRules(_ rules: [Rule]) async throws {
        let encoded = try rules.map { try StoredJSON.text($0.variables) }
        try await transaction { db in
            // Two instances replacing the list at once: one after the other, never interleaved.
            try await db.query("LOCK TABLE rules IN EXCLUSIVE MODE")
            try await db.query("DELETE FROM rules")
            for (position, rule) in rules.enumerated() {
                try await db.query("INSERT INTO rules (position, name, match_field, pattern, sequence_name, variables) VALUES (?, ?, ?, ?, ?, ?)",
                                   [.integer(position), .text(rule.name), .text(rule.match.rawValue), .text(rule.pattern),
                                    .text(rule.sequence), .text(encoded[position])])
            }
        }
    }

    private static func storedSequence(_ row: Row) -> StoredSequence? {
        guard let name = row.string("name"), let body = row.string("body") else { return nil }
        return StoredSequence(name: name, body: body, updated: row.string("updated") ?? "")
    }

    public func sequence(name: String) async throws -> StoredSequence? {
        try await query("SELECT * FROM sequences WHERE name = ?", [.text(name)]).first.flatMap(Self.storedSequence)
    }

    public func sequences() async throws -> [StoredSequence] {
        try await query("SELECT * FROM sequences ORDER BY name").compactMap(Self.storedSequence)
    }

    public func putSequence(name: String, body: String) async throws {
        try await query("""
            INSERT INTO sequences (name, body, updated) VALUES (?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated = excluded.updated
            """, [.text(name), .text(body), .text(Clock.now())])
    }

    // MARK: - Deployments

    private static func deployment(_ row: Row) -> Deployment? {
        guard let id = row.string("id"), let machine = row.string("machine_id"),
              let state = row.string("state").flatMap(Deployment.State.init) else { return nil }
        return Deployment(
            id: id, machineID: machine, sequenceName: row.string("sequence_name") ?? "",
            sequenceBody: row.string("sequence_body") ?? "",
            variables: StoredJSON.decode([String: String].self, row.string("variables")) ?? [:],
            tokenHash: row.string("token_hash") ?? "", state: state, currentStep: row.string("current_step"),
            percent: row.double("percent"), message: row.string("message"),
            acknowledged: row.integer("acknowledged") ?? 0, created: row.string("created") ?? "",
            started: row.string("started"), ended: row.string("ended"))
    }

    public func activeDeployment(machineID: String) async throws -> Deployment? {
        try await query("""
            SELECT * FROM deployments WHERE machine_id = ? AND state IN ('assigned', 'running') ORDER BY created DESC LIMIT 1
            """, [.text(machineID)]).first.flatMap(Self.deployment)
    }

    public func latestDeployment(machineID: String) async throws -> Deployment? {
        try await query("SELECT * FROM deployments WHERE machine_id = ? ORDER BY created DESC LIMIT 1", [.text(machineID)])
            .first.flatMap(Self.deployment)
    }

    public func requestRedeploy(machineID: String) async throws -> Bool {
        // One statement: the machine must exist (the foreign key), and a second request moves the time.
        !(try await query("""
            INSERT INTO redeploys (machine_id, requested) SELECT id, ? FROM machines WHERE id = ?
            ON CONFLICT (machine_id) DO UPDATE SET requested = excluded.requested RETURNING machine_id
            """, [.text(Clock.now()), .text(machineID)]).isEmpty)
    }

    public func redeployRequested(machineID: String) async throws -> String? {
        try await query("SELECT requested FROM redeploys WHERE machine_id = ?", [.text(machineID)]).first?.string("requested")
    }

    public func createDeployment(_ d: Deployment) async throws {
        let variables = try StoredJSON.text(d.variables)
        try await query("""
            INSERT INTO deployments (id, machine_id, sequence_name, sequence_body, variables, token_hash, state,
                                     current_step, percent, message, acknowledged, created, started, ended)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(d.id), .text(d.machineID), .text(d.sequenceName), .text(d.sequenceBody), .text(variables),
                  .text(d.tokenHash), .text(d.state.rawValue), .text(d.currentStep), d.percent.map { .double($0) } ?? .null,
                  .text(d.message), .integer(d.acknowledged), .text(d.created), .text(d.started), .text(d.ended)])
    }

    public func replaceToken(deploymentID: String, tokenHash: String) async throws {
        try await query("UPDATE deployments SET token_hash = ? WHERE id = ?", [.text(tokenHash), .text(deploymentID)])
    }

    public func deployment(id: String) async throws -> Deployment? {
        try await query("SELECT * FROM deployments WHERE id = ?", [.text(id)]).first.flatMap(Self.deployment)
    }

    public func deployments() async throws -> [Deployment] {
        try await query("SELECT * FROM deployments ORDER BY created DESC, id").compactMap(Self.deployment)
    }

    public func deploymentCounts() async throws -> [Deployment.State: Int] {
        var counts: [Deployment.State: Int] = [:]
        for row in try await query("SELECT state, COUNT(*) AS n FROM deployments GROUP BY state") {
            if let state = row.string("state").flatMap(Deployment.State.init) { counts[state] = row.integer("n") ?? 0 }
        }
        return counts
    }

    // MARK: - Events

    public func storeEvents(deploymentID: String, events: [Event]) async throws -> EventIngestResult {
        let encoded = try events.map { try StoredJSON.text($0) }
        return try await transaction { db in
            // The deployment's row lock: two instances storing events of one deployment (a retry
            // through another instance) take turns, so each sees what the other stored.
            guard var deployment = try await db.query("SELECT * FROM deployments WHERE id = ? FOR UPDATE", [.text(deploymentID)])
                .first.flatMap(Self.deployment) else { throw StorageError.notFound("deployment \(deploymentID)") }
            let now = Clock.now()
            var inserted: [Event] = []
            for (index, event) in events.enumerated() {
                let exists = try await db.query("SELECT 1 AS one FROM events WHERE deployment_id = ? AND sequence = ?",
                                                [.text(deploymentID), .integer(event.sequence)])
                if !exists.isEmpty || inserted.contains(where: { $0.sequence == event.sequence }) { continue }
                // The counter's row stays locked until COMMIT: change ids become visible in order,
                // so a live feed that read up to N never misses an N-1 committed later.
                guard let change = try await db.query("UPDATE counters SET value = value + 1 WHERE name = 'change' RETURNING value")
                    .first?.integer("value") else { throw StorageError.corrupt("the change counter is missing") }
                try await db.query("""
                    INSERT INTO events (deployment_id, sequence, kind, step, status, time, body, change_id, received)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.text(deploymentID), .integer(event.sequence), .text(event.kind.rawValue), .text(event.step),
                          .text(event.status?.rawValue), .text(event.time), .text(encoded[index]), .integer(change), .text(now)])
                inserted.append(event)
            }
            for event in inserted.sorted(by: { $0.sequence < $1.sequence }) { SQLiteStorage.apply(event, to: &deployment, now: now) }
            var acknowledged = deployment.acknowledged
            let later = try await db.query("SELECT sequence FROM events WHERE deployment_id = ? AND sequence > ? ORDER BY sequence",
                                           [.text(deploymentID), .integer(acknowledged)])
            for row in later {
                guard let sequence = row.integer("sequence"), sequence == acknowledged + 1 else { break }
                acknowledged = sequence
            }
            deployment.acknowledged = acknowledged
            try await db.query("""
                UPDATE deployments SET state = ?, current_step = ?, percent = ?, message = ?, acknowledged = ?, started = ?, ended = ?
                WHERE id = ?
                """, [.text(deployment.state.rawValue), .text(deployment.currentStep), deployment.percent.map { .double($0) } ?? .null,
                      .text(deployment.message), .integer(acknowledged), .text(deployment.started), .text(deployment.ended),
                      .text(deploymentID)])
            return EventIngestResult(inserted: inserted.count, acknowledged: acknowledged, deployment: deployment)
        }
    }

    public func events(deploymentID: String, afterSequence: Int, limit: Int) async throws -> [StoredEvent] {
        try await query("""
            SELECT body, change_id, received FROM events WHERE deployment_id = ? AND sequence > ? ORDER BY sequence LIMIT ?
            """, [.text(deploymentID), .integer(afterSequence), .integer(limit)]).compactMap { row in
            guard let event = StoredJSON.decode(Event.self, row.string("body")) else { return nil }
            return StoredEvent(changeID: row.integer("change_id") ?? 0, received: row.string("received") ?? "", event: event)
        }
    }

    public func latestChangeID() async throws -> Int {
        try await query("SELECT COALESCE(MAX(change_id), 0) AS latest FROM events").first?.integer("latest") ?? 0
    }

    public func changedDeployments(afterChange: Int, limit: Int) async throws -> [(deploymentID: String, changeID: Int)] {
        try await query("""
            SELECT deployment_id, MAX(change_id) AS latest FROM events WHERE change_id > ?
            GROUP BY deployment_id ORDER BY latest LIMIT ?
            """, [.integer(afterChange), .integer(limit)]).compactMap { row in
            guard let id = row.string("deployment_id"), let latest = row.integer("latest") else { return nil }
            return (id, latest)
        }
    }
}

/// Which database the server uses: `--database` as the command line gives it.
public enum DatabaseLocation: Sendable, Equatable {
    /// A SQLite file; nil: `imprint.db` in the data folder.
    case sqlite(path: String?)
    case postgres(PostgresStorage.Location)

    /// nil or empty: SQLite in the data folder; `sqlite:PATH`; `postgres://...` (or `postgresql://`).
    public init(parsing text: String?) throws {
        guard let text, !text.isEmpty else { self = .sqlite(path: nil); return }
        let lower = text.lowercased()
        if lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") {
            self = .postgres(try PostgresStorage.Location(url: text))
        } else if lower.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw PostgresStorage.LocationError("sqlite: names no file (sqlite:/var/lib/imprint/imprint.db)") }
            self = .sqlite(path: path)
        } else {
            throw PostgresStorage.LocationError("expected postgres://user:password@host:port/database or sqlite:PATH")
        }
    }
}
