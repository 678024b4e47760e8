import Foundation
import TestSupport
import Testing

/// Which database a `ServerHarness` runs on; the important tests run on both.
enum StorageKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres
    var description: String { rawValue }
}

/// A throwaway PostgreSQL 15 cluster (Debian's `postgresql` package), started once per test
/// process as the `postgres` user on 127.0.0.1 and a free port, with a database per test, and
/// stopped (and deleted) when the process exits. Not installed: the tests that need it fail
/// saying so, they are not skipped.
actor PostgresCluster {
    static let shared = PostgresCluster()
    static let bin = "/usr/lib/postgresql/15/bin"

    struct Failure: Error, CustomStringConvertible { var description: String }

    private var port: Int?
    private var starting: Task<Int, Error>?
    private var created = 0

    /// A new, empty database: its URL for `--database`. Its connect timeout is long: the
    /// servers run inside the test process, whose two-core thread pool other suites' tests
    /// occupy for tens of seconds at a time (each waiting on wimlib-imagex, mkntfs or ntfs-3g), and
    /// a first connection stuck behind them is not PostgreSQL being unreachable.
    func newDatabase() async throws -> String {
        let port = try await started()
        created += 1
        let name = "imprint_\(getpid())_\(created)"
        try await ServerHarness.offload {
            let result = try run([Self.bin + "/psql", "-X", "-q", "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", "postgres",
                                  "-c", "CREATE DATABASE \(name)"], allowFailure: true)
            guard result.status == 0 else { throw Failure(description: "CREATE DATABASE \(name): \(result.stderr)") }
        }
        return "postgres://postgres@127.0.0.1:\(port)/\(name)?sslmode=disable&pool_max=4&connect_timeout=180"
    }

    /// Runs SQL in a test's database with psql: what is stored, as PostgreSQL has it.
    func psql(_ url: String, _ sql: String) async throws -> String {
        let port = try await started()
        let name = String(url.split(separator: "/").last?.split(separator: "?").first ?? "")
        return try await ServerHarness.offload {
            let result = try run([Self.bin + "/psql", "-X", "-At", "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", name, "-c", sql],
                                 allowFailure: true)
            guard result.status == 0 else { throw Failure(description: "psql: \(result.stderr)") }
            return result.output
        }
    }

    /// A whole dump of a test's database (pg_dump), to search for what must not be stored.
    func dump(_ url: String) async throws -> String {
        let port = try await started()
        let name = String(url.split(separator: "/").last?.split(separator: "?").first ?? "")
        return try await ServerHarness.offload {
            let result = try run([Self.bin + "/pg_dump", "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", name], allowFailure: true)
            guard result.status == 0 else { throw Failure(description: "pg_dump: \(result.stderr)") }
            return result.output
        }
    }

    private func started() async throws -> Int {
        if let port { return port }
        if starting == nil { starting = Task { try await ServerHarness.offload { try Self.start() } } }
        let port = try await starting!.value
        self.port = port
        return port
    }

    /// initdb and pg_ctl start, as `postgres` when we are root (PostgreSQL refuses to run as root).
    private static func start() throws -> Int {
        guard FileManager.default.isExecutableFile(atPath: bin + "/initdb") else {
            throw Failure(description: "PostgreSQL 15 is not installed (no \(bin)/initdb): install Debian's postgresql package "
                + "(scripts/test does); the server's tests run against PostgreSQL as well as SQLite")
        }
        let directory = "/tmp/imprint-pg-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let asRoot = getuid() == 0
        if asRoot { try run(["chown", "postgres:postgres", directory]) }
        func asPostgres(_ arguments: [String]) throws -> CommandResult {
            try run(asRoot ? ["runuser", "-u", "postgres", "--"] + arguments : arguments, allowFailure: true)
        }
        let data = directory + "/data"
        let initdb = try asPostgres([bin + "/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
        guard initdb.status == 0 else { throw Failure(description: "initdb failed: \(initdb.stderr)") }
        for _ in 0..<5 {
            let port = Int.random(in: 20_000...60_000)
            let options = "-k \(directory) -p \(port) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                + "-c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB"
            // posix_spawn with every other descriptor closed: the server it leaves running must
            // hold none of ours (Foundation's Process would wait for it, as for ntfs-3g).
            let start = [bin + "/pg_ctl", "-D", data, "-l", directory + "/log", "-w", "-t", "30", "-o", options, "start"]
            if try spawnAndWait(asRoot ? ["runuser", "-u", "postgres", "--"] + start : start) == 0 {
                clusterToStop = (data, directory, asRoot)
                atexit { PostgresCluster.stopAtExit() }
                return port
            }
        }
        let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
        throw Failure(description: "PostgreSQL did not start: \(log.suffix(2000))")
    }

    nonisolated(unsafe) static var clusterToStop: (data: String, directory: String, asRoot: Bool)?

    static func stopAtExit() {
        guard let cluster = clusterToStop else { return }
        clusterToStop = nil
        let stop = [bin + "/pg_ctl", "-D", cluster.data, "-m", "immediate", "-w", "stop"]
        _ = try? spawnAndWait(cluster.asRoot ? ["runuser", "-u", "postgres", "--"] + stop : stop)
        // rm, not FileManager: the latter stops at the socket files PostgreSQL leaves behind.
        _ = try? spawnAndWait(["rm", "-rf", cluster.directory])
    }
}
