import Foundation
import Logging
import PostgresNIO

/// `ServerStorage` in PostgreSQL, shared by any number of server instances.
typealias PostgresStorage = SQLStorage<PostgresExecutor>

extension SQLStorage where Executor == PostgresExecutor {
    /// Connects (failing within `connectTimeout` when the database cannot be reached); the
    /// caller runs `migrate()` next.
    static func open(_ location: PostgresLocation, logger: Logger = Logger(label: "imprint.postgres"),
                     secrets: SecretBox) async throws -> PostgresStorage {
        SQLStorage(executor: try await PostgresExecutor.connect(location, logger: logger), logger: logger,
                   secrets: secrets)
    }

    /// Closes every connection of the pool.
    func close() async { await executor.close() }
}

/// PostgreSQL under `SQLStorage`: a pool of connections, placeholders numbered by
/// `SQLPlaceholders`, and database-level guards (advisory locks, row locks) wherever one
/// instance alone would have used its memory.
struct PostgresExecutor: SQLExecutor {
    /// Statements on the connection a transaction or a lock holds.
    struct Session: SQLStatements {
        let connection: PostgresConnection
        let logger: Logger

        @discardableResult
        func execute(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
            try await PostgresExecutor.rows(connection.query(PostgresExecutor.query(sql, binds), logger: logger))
        }
    }

    let location: PostgresLocation
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger

    var name: String { location.redacted }
    var sharedByInstances: Bool { true }

    static func connect(_ location: PostgresLocation, logger: Logger) async throws -> PostgresExecutor {
        let connectTimeout = Duration.seconds(location.connectTimeoutSeconds)
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
        let executor = PostgresExecutor(location: location, client: client, runner: Task { await client.run() }, logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await executor.query("SELECT 1 AS one") }
                group.addTask {
                    try await Task.sleep(for: connectTimeout)
                    throw DatabaseLocationError("could not reach PostgreSQL at \(location.redacted) within \(connectTimeout)")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            await executor.close()
            throw error
        }
        return executor
    }

    func close() async {
        runner.cancel()
        await runner.value
    }

    @discardableResult
    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await Self.rows(client.query(Self.query(sql, binds), logger: logger))
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] { try await execute(sql, binds) }

    func transaction<T: Sendable>(_ body: (Session) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            let session = Session(connection: connection, logger: logger)
            return try await session.committing { try await body(session) }
        }
    }

    /// A session-level advisory lock on a connection of its own (released at the end, or by
    /// PostgreSQL when that connection dies), so `body` may use other connections.
    func holding<T: Sendable>(_ lock: DatabaseLock, _ body: () async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            let session = Session(connection: connection, logger: logger)
            try await session.execute("SELECT pg_advisory_lock(?)", [.integer(lock.rawValue)])
            do {
                let result = try await body()
                try await session.execute("SELECT pg_advisory_unlock(?)", [.integer(lock.rawValue)])
                return result
            } catch {
                _ = try? await session.execute("SELECT pg_advisory_unlock(?)", [.integer(lock.rawValue)])
                throw error
            }
        }
    }

    private static func query(_ sql: String, _ binds: [SQLValue]) -> PostgresQuery {
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

    private static func rows(_ sequence: PostgresRowSequence) async throws -> [SQLRow] {
        var rows: [SQLRow] = []
        for try await row in sequence {
            var columns: [String: SQLValue] = [:]
            for cell in row {
                guard cell.bytes != nil else { columns[cell.columnName] = .null; continue }
                switch cell.dataType {
                case .int8, .int4, .int2: columns[cell.columnName] = .integer(try cell.decode(Int.self))
                case .float8, .float4: columns[cell.columnName] = .double(try cell.decode(Double.self))
                case .bool: columns[cell.columnName] = .integer(try cell.decode(Bool.self) ? 1 : 0)
                case .text, .varchar, .name, .bpchar: columns[cell.columnName] = .text(try cell.decode(String.self))
                default: columns[cell.columnName] = .null  // void (a lock function's answer) and the like
                }
            }
            rows.append(SQLRow(columns: columns))
        }
        return rows
    }
}

/// Where a PostgreSQL database is:
/// `postgres://user:password@host:port/database?sslmode=...&pool_max=N&connect_timeout=SECONDS`.
public struct PostgresLocation: Sendable, Equatable {
    public enum TLSMode: String, Sendable { case disable, prefer, require }
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    /// Connections this instance opens at most (each instance has its own pool).
    public var maximumConnections: Int
    /// How long the first connection may take before the server gives up starting (libpq's
    /// `connect_timeout`, in seconds): a database across a slow link, or a machine so busy that
    /// the answer waits its turn, needs more than the default.
    public var connectTimeoutSeconds: Int

    public init(url text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "postgres" || scheme == "postgresql" else {
            throw DatabaseLocationError("expected postgres://user:password@host:port/database, got \(Self.redact(text))")
        }
        guard let host = components.host, !host.isEmpty else { throw DatabaseLocationError("\(Self.redact(text)) names no host") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty else { throw DatabaseLocationError("\(Self.redact(text)) names no database (…/DATABASE)") }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user.map { $0.removingPercentEncoding ?? $0 } ?? "postgres"
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        self.database = database.removingPercentEncoding ?? database
        self.tls = .prefer
        self.maximumConnections = 10
        self.connectTimeoutSeconds = 15
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw DatabaseLocationError("sslmode=\(item.value ?? ""): expected disable, prefer or require")
                }
            case "pool_max":
                // Two at least: a check-in or a migration holds its advisory lock on one connection and works on another.
                guard let value = item.value.flatMap(Int.init), value >= 2 else {
                    throw DatabaseLocationError("pool_max=\(item.value ?? ""): expected a number of connections, at least 2")
                }
                maximumConnections = value
            case "connect_timeout":
                guard let value = item.value.flatMap(Int.init), (1...3600).contains(value) else {
                    throw DatabaseLocationError("connect_timeout=\(item.value ?? ""): expected seconds, from 1 to 3600")
                }
                connectTimeoutSeconds = value
            default:
                throw DatabaseLocationError("unknown option \(item.name) (known: sslmode, pool_max, connect_timeout)")
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

public struct DatabaseLocationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Which database the server uses: `--database` as the command line gives it.
public enum DatabaseLocation: Sendable, Equatable {
    /// A SQLite file; nil: `imprint.db` in the data folder.
    case sqlite(path: String?)
    case postgres(PostgresLocation)

    /// nil or empty: SQLite in the data folder; `sqlite:PATH`; `postgres://...` (or `postgresql://`).
    public init(parsing text: String?) throws {
        guard let text, !text.isEmpty else { self = .sqlite(path: nil); return }
        let lower = text.lowercased()
        if lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") {
            self = .postgres(try PostgresLocation(url: text))
        } else if lower.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw DatabaseLocationError("sqlite: names no file (sqlite:/var/lib/imprint/imprint.db)") }
            self = .sqlite(path: path)
        } else {
            throw DatabaseLocationError("expected postgres://user:password@host:port/database or sqlite:PATH")
        }
    }
}
