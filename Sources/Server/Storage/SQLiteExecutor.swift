import Logging
import SQLiteNIO

/// `ServerStorage` in one SQLite file, which one server process owns.
typealias SQLiteStorage = SQLStorage<SQLiteExecutor>

extension SQLStorage where Executor == SQLiteExecutor {
    static func open(path: String, logger: Logger = Logger(label: "imprint.sqlite"), secrets: SecretBox) async throws -> SQLiteStorage {
        SQLStorage(executor: try await SQLiteExecutor.open(path: path, logger: logger), logger: logger, secrets: secrets)
    }

    func close() async throws { try await executor.close() }
}

/// SQLite under `SQLStorage`: one file in WAL mode. Writes run one at a time on one connection;
/// reads (token checks, pages, the live feed) on a second one, so they see every committed write
/// and never wait behind a group of event inserts.
struct SQLiteExecutor: SQLExecutor {
    /// Statements on one connection, for whoever holds its lock.
    struct Session: SQLStatements {
        let connection: SQLiteConnection

        @discardableResult
        func execute(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
            try await connection.query(sql, binds.map(Self.data)).map(Self.row)
        }

        private static func data(_ value: SQLValue) -> SQLiteData {
            switch value {
            case let .text(text): return .text(text)
            case let .integer(integer): return .integer(integer)
            case let .double(double): return .float(double)
            case .null: return .null
            }
        }

        private static func row(_ row: SQLiteRow) -> SQLRow {
            var columns: [String: SQLValue] = [:]
            for column in row.columns {
                switch column.data {
                case let .integer(integer): columns[column.name] = .integer(integer)
                case let .float(double): columns[column.name] = .double(double)
                case let .text(text): columns[column.name] = .text(text)
                case .blob, .null: columns[column.name] = .null  // the schema has no BLOB column
                }
            }
            return SQLRow(columns: columns)
        }
    }

    let path: String
    private let writer: Session
    private let reader: Session
    /// Not actors: these are not re-entered at an await, so a transaction's statements run alone.
    private let writeLock = AsyncLock()
    private let readLock = AsyncLock()

    var name: String { path }
    var sharedByInstances: Bool { false }

    static func open(path: String, logger: Logger) async throws -> SQLiteExecutor {
        let writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        _ = try await writer.query("PRAGMA journal_mode = WAL", [])
        // Another process (a backup, a second instance) holding the write lock makes us wait, not fail.
        _ = try await writer.query("PRAGMA busy_timeout = 5000", [])
        _ = try await writer.query("PRAGMA foreign_keys = ON", [])
        let reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        _ = try await reader.query("PRAGMA busy_timeout = 5000", [])
        _ = try await reader.query("PRAGMA query_only = ON", [])
        return SQLiteExecutor(path: path, writer: Session(connection: writer), reader: Session(connection: reader))
    }

    func close() async throws {
        try await reader.connection.close()
        try await writer.connection.close()
    }

    @discardableResult
    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await writeLock.withLock { try await writer.execute(sql, binds) }
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await readLock.withLock { try await reader.execute(sql, binds) }
    }

    /// BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading read locks.
    func transaction<T: Sendable>(_ body: (Session) async throws -> T) async throws -> T {
        try await writeLock.withLock { try await writer.committing(begin: "BEGIN IMMEDIATE") { try await body(writer) } }
    }

    /// One process owns the file: the server's own lock is enough.
    func holding<T: Sendable>(_ lock: DatabaseLock, _ body: () async throws -> T) async throws -> T { try await body() }
}
