/// A value bound to a statement's `?` or read from a row: the few types the schema uses.
enum SQLValue: Sendable {
    case text(String), integer(Int), double(Double), null

    /// An optional column: nil is NULL.
    static func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
    static func double(_ value: Double?) -> SQLValue { value.map { .double($0) } ?? .null }
}

/// One row of a result, its columns by name as the database typed them.
struct SQLRow: Sendable {
    var columns: [String: SQLValue]

    func string(_ name: String) -> String? {
        if case let .text(value)? = columns[name] { return value }
        return nil
    }

    func integer(_ name: String) -> Int? {
        switch columns[name] {
        case let .integer(value)?: return value
        case let .double(value)?: return Int(exactly: value.rounded(.towardZero))
        default: return nil
        }
    }

    func double(_ name: String) -> Double? {
        switch columns[name] {
        case let .double(value)?: return value
        case let .integer(value)?: return Double(value)
        default: return nil
        }
    }
}

/// Runs statements written once, with `?` placeholders, for every database.
protocol SQLStatements: Sendable {
    /// One statement: a write (with its RETURNING rows), or any statement inside a transaction.
    @discardableResult
    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]
}

extension SQLStatements {
    @discardableResult
    func execute(_ sql: String) async throws -> [SQLRow] { try await execute(sql, []) }

    /// `body` between `begin` and COMMIT, rolled back when it throws; the caller sees `body`'s
    /// error, not the rollback's. On the caller's isolation, as `body` is.
    nonisolated(nonsending) func committing<T>(begin: String = "BEGIN", _ body: () async throws -> T) async throws -> T {
        try await execute(begin)
        do {
            let result = try await body()
            try await execute("COMMIT")
            return result
        } catch {
            _ = try? await execute("ROLLBACK")
            throw error
        }
    }
}

/// One database under `SQLStorage`: where its statements run, and what only it does.
protocol SQLExecutor: SQLStatements {
    /// What a transaction's statements run on: the connection the transaction holds.
    associatedtype Transaction: SQLStatements

    /// The database for logs, without a password.
    var name: String { get }
    /// Other server instances write this database at the same time (PostgreSQL), so a
    /// transaction locks what it reads in order to change it. SQLite's write transactions hold
    /// the whole file already (BEGIN IMMEDIATE), and one process owns it.
    var sharedByInstances: Bool { get }

    /// A read on its own, seeing every committed write.
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]
    /// `body`'s statements in one transaction, rolled back when it throws.
    func transaction<T: Sendable>(_ body: (Transaction) async throws -> T) async throws -> T
    /// `body` while no other server instance sharing the database holds `lock`.
    func holding<T: Sendable>(_ lock: DatabaseLock, _ body: () async throws -> T) async throws -> T
}

extension SQLExecutor {
    func query(_ sql: String) async throws -> [SQLRow] { try await query(sql, []) }
}

/// What instances sharing a database take turns at; the values are PostgreSQL's advisory lock
/// keys (two arbitrary, fixed numbers).
enum DatabaseLock: Int {
    case migrations = 0x696D_7072_696E_0001
    case checkIns = 0x696D_7072_696E_0002
}
