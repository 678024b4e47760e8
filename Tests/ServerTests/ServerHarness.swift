import Foundation
import Hummingbird
import Logging
import Server
import SQLiteNIO
import Synchronization
import TestSupport
import Testing

/// A real imprint-server (in this process) on 127.0.0.1 and a random port, with its own data,
/// content and boot folders; spoken to with curl, over real HTTP.
final class ServerHarness: @unchecked Sendable {
    let scratch: ScratchDirectory
    let server: ImprintServer
    let port: Int
    var adminToken = "admin-secret-\(UUID().uuidString.prefix(8))"
    let storageKind: StorageKind
    /// The PostgreSQL database's URL (nil on SQLite): another harness given it shares it.
    let databaseURL: String?
    private let task: Task<Void, Error>

    /// https when the test configured a certificate (curl then trusts that certificate).
    var base: String { "\(server.configuration.scheme)://127.0.0.1:\(port)" }
    var content: String { server.configuration.contentDirectory }
    var boot: String { server.configuration.bootDirectory }

    /// The port the server bound, or that it ended without binding one.
    final class PortBox: Sendable {
        private let state = Mutex<(port: Int?, ended: Bool)>((nil, false))
        func set(_ value: Int?) { state.withLock { $0.port = value } }
        func get() -> Int? { state.withLock { $0.port } }
        func end() { state.withLock { $0.ended = true } }
        var ended: Bool { state.withLock { $0.ended } }
    }

    /// `publicURL`: what the server tells machines it is; default: the harness's own
    /// `http://127.0.0.1:PORT` (the server takes it from its configuration only, never from a
    /// request, so the port is chosen before it starts). `configure` sets any other option.
    /// `logger`: where the server logs (default: only critical messages, to the console).
    init(storage: StorageKind = .sqlite, database: String? = nil, adminToken: String? = nil,
         unknownMachines: ServerConfiguration.UnknownMachines = .pending, publicURL: String? = nil, label: String = #function,
         logger: Logger? = nil, configure: (inout ServerConfiguration) -> Void = { _ in }) async throws {
        scratch = ScratchDirectory(label)
        storageKind = storage
        if let adminToken { self.adminToken = adminToken }
        let location: DatabaseLocation
        switch storage {
        case .sqlite:
            databaseURL = nil
            location = .sqlite(path: nil)
        case .postgres:
            let url: String
            if let database { url = database } else { url = try await PostgresCluster.shared.newDatabase() }
            databaseURL = url
            location = try DatabaseLocation(parsing: url)
        }
        let logger = logger ?? {
            var logger = Logger(label: "imprint-server-test")
            // Stopping by cancellation makes Hummingbird log errors about closed channels; the tests
            // check every status themselves.
            logger.logLevel = .critical
            return logger
        }()
        // A free port is found, then bound by the server: another process may take it in
        // between, so a start that does not bind is tried again on another.
        var attempt = 0
        while true {
            attempt += 1
            let port = try Loopback.freePort()
            var configuration = ServerConfiguration(host: "127.0.0.1", port: port, dataDirectory: scratch.sub("data"),
                                                    contentDirectory: scratch.sub("content"), bootDirectory: scratch.sub("boot"),
                                                    adminToken: self.adminToken, unknownMachines: unknownMachines,
                                                    publicURL: publicURL ?? "http://127.0.0.1:\(port)")
            // One key for every test server: instances sharing a PostgreSQL database must
            // have the same (SecretsTests leave it out to see the generated one).
            configuration.secretsKey = Self.secretsKey
            configure(&configuration)
            let opening = configuration
            let server = try await withTaskExecutorPreference(ServerThreads.shared) {
                try await ImprintServer.open(configuration: opening, database: location, logger: logger, backgroundExecutor: ServerThreads.shared)
            }
            let box = PortBox()
            let app = try server.makeApplication { channel in box.set(channel.localAddress?.port) }
            // Off the cooperative pool like the test itself (an unstructured task does not
            // inherit the preference): in CI a server waiting for a cooperative thread answered
            // nothing for over 20 s.
            let task = Task(executorPreference: ServerThreads.shared) {
                defer { box.end() }
                try await app.runService(gracefulShutdownSignals: [])
            }
            var waited = 0
            while box.get() == nil && !box.ended && waited < 200 {
                try await Task.sleep(nanoseconds: 50_000_000)
                waited += 1
            }
            if let bound = box.get(), bound == port {
                self.server = server
                self.task = task
                self.port = port
                return
            }
            task.cancel()
            _ = try? await task.value
            await server.close()
            guard attempt < 5 else { throw HarnessError.noPort }
        }
    }

    enum HarnessError: Error { case noPort }

    /// Where the in-process servers and the tests speaking to them run. Swift's cooperative pool
    /// has two threads on a two-core machine, which other tests block with synchronous work, and
    /// Dispatch's global queue adds a thread only about once a second when its threads block (a
    /// run of tests waiting on curl starved the servers there too). A serial queue of its own
    /// for each job is served at once by Dispatch's overcommitting pool: a thread whenever one
    /// is needed, reused afterwards.
    final class ServerThreads: TaskExecutor {
        static let shared = ServerThreads()

        func enqueue(_ job: consuming ExecutorJob) {
            let unowned = UnownedJob(job)
            DispatchQueue(label: "imprint.test.server").async { unowned.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }
    }

    /// The secrets key of test servers (32 bytes, base64): fixed, so a test can start another
    /// server on the same database, and see what it sealed.
    static let secretsKey = Data((0..<32).map { UInt8($0) }).base64EncodedString()

    /// A database as an older server left it: `statements` (its migrations' and its rows) run on
    /// a new SQLite file or PostgreSQL database, for a test of what the next migrations do.
    static func oldDatabase(_ storage: StorageKind, statements: [String], scratch: ScratchDirectory) async throws
        -> (location: DatabaseLocation, postgresURL: String?) {
        let create = "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)"
        switch storage {
        case .sqlite:
            let path = scratch.sub("old.db")
            let connection = try await SQLiteConnection.open(storage: .file(path: path))
            for statement in [create] + statements { _ = try await connection.query(statement, []) }
            try await connection.close()
            return (.sqlite(path: path), nil)
        case .postgres:
            let url = try await PostgresCluster.shared.newDatabase()
            _ = try await PostgresCluster.shared.psql(url, ([create] + statements).joined(separator: ";\n"))
            return (try DatabaseLocation(parsing: url), url)
        }
    }

    /// Runs `body` against a fresh server, stopped (and its database closed) however it ends.
    static func with(storage: StorageKind = .sqlite, unknownMachines: ServerConfiguration.UnknownMachines = .pending, publicURL: String? = nil,
                     label: String = #function, logger: Logger? = nil, configure: (inout ServerConfiguration) -> Void = { _ in },
                     _ body: (ServerHarness) async throws -> Void) async throws {
        try await withTaskExecutorPreference(ServerThreads.shared) {
            try await withFreshServer(storage: storage, unknownMachines: unknownMachines, publicURL: publicURL, label: label,
                                      logger: logger, configure: configure, body)
        }
    }

    private static func withFreshServer(storage: StorageKind, unknownMachines: ServerConfiguration.UnknownMachines, publicURL: String?,
                                        label: String, logger: Logger?, configure: (inout ServerConfiguration) -> Void,
                                        _ body: (ServerHarness) async throws -> Void) async throws {
        let harness = try await ServerHarness(storage: storage, unknownMachines: unknownMachines, publicURL: publicURL, label: label,
                                              logger: logger, configure: configure)
        do {
            try await body(harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        // SQLiteNIO insists on an explicit close before its connection is released; PostgreSQL's
        // pool closes its connections.
        await server.close()
    }

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    /// One request with curl (URLSession is unreliable on Linux). `--path-as-is` so `..` reaches
    /// the server as sent. Run off Swift's cooperative threads: the server needs them meanwhile.
    func request(_ method: String, _ path: String, headers: [String] = [], body: Data? = nil, token: String? = nil,
                 maxTime: Int? = nil) async throws -> Answer {
        let id = UUID().uuidString
        let bodyOut = scratch.sub("body-\(id)"), headersOut = scratch.sub("headers-\(id)")
        var arguments = ["curl", "-sS", "--path-as-is", "-o", bodyOut, "-D", headersOut, "-w", "%{http_code}", "-H", "Expect:"]
        if method == "HEAD" { arguments.append("-I") } else { arguments += ["-X", method] }
        // A stream that never ends by itself (the dashboard's live feed) is cut after maxTime.
        if let maxTime { arguments += ["--max-time", "\(maxTime)"] }
        if let certificate = server.configuration.tlsCertificate { arguments += ["--cacert", certificate] }
        for header in headers { arguments += ["-H", header] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let body {
            let bodyIn = scratch.sub("in-\(id)")
            try body.write(to: URL(fileURLWithPath: bodyIn))
            arguments += ["-H", "Content-Type: application/json", "--data-binary", "@" + bodyIn]
        }
        arguments.append(base + path)
        let finalArguments = arguments
        let output = try await Self.offload { try run(finalArguments, allowFailure: true).output }
        let headerText = (try? String(contentsOfFile: headersOut, encoding: .utf8)) ?? ""
        var parsed: [String: String] = [:]
        // The last block: after a 100 Continue there would be two.
        let block = headerText.components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty }.last ?? ""
        for line in block.components(separatedBy: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Answer(status: Int(output) ?? 0, headers: parsed,
                      body: FileManager.default.contents(atPath: bodyOut) ?? Data())
    }

    func admin(_ method: String, _ path: String, json: String? = nil) async throws -> Answer {
        try await request(method, "/api/v1/admin" + path, body: json.map { Data($0.utf8) }, token: adminToken)
    }

    static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            // A thread at once, as for the servers (ServerThreads).
            DispatchQueue(label: "imprint.test.offload").async { continuation.resume(with: Result { try work() }) }
        }
    }

    // MARK: - Fixtures

    static let minimalSequence = """
        {"name": "Minimal", "steps": [{"type": "setVariable", "name": "Mark", "variable": "Done", "value": "yes"}]}
        """

    func putSequence(_ name: String, _ json: String = ServerHarness.minimalSequence) async throws {
        let answer = try await admin("PUT", "/sequences/\(name)", json: json)
        #expect(answer.status == 200, "PUT sequence \(name): \(answer.text)")
    }

    func putRules(_ json: String) async throws {
        let answer = try await admin("PUT", "/rules", json: json)
        #expect(answer.status == 200, "PUT rules: \(answer.text)")
    }

    static func facts(macs: [String], uuid: String? = nil, serial: String? = nil, model: String? = nil, gateways: [String]? = nil) -> Data {
        var facts: [String: Any] = ["macAddresses": macs, "firmware": "uefi", "memoryMiB": 8192, "cpuCount": 4,
                                    "architecture": "amd64", "disks": [] as [Any]]
        if let uuid { facts["uuid"] = uuid }
        if let serial { facts["serialNumber"] = serial }
        if let model { facts["model"] = model }
        if let gateways { facts["defaultGateways"] = gateways }
        return (try? JSONSerialization.data(withJSONObject: ["facts": facts])) ?? Data()
    }

    func checkIn(macs: [String], uuid: String? = nil, serial: String? = nil, model: String? = nil, gateways: [String]? = nil) async throws -> Answer {
        try await request("POST", "/api/v1/agents/checkin", body: Self.facts(macs: macs, uuid: uuid, serial: serial, model: model, gateways: gateways))
    }

    /// A machine that gets a deployment at once: default rule, unknown machines get it.
    func assignedDeployment(mac: String = "52:54:00:00:00:01") async throws -> (id: String, token: String) {
        try await putSequence("base")
        try await putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
        let answer = try await checkIn(macs: [mac])
        let deployment = answer.json["deployment"] as? [String: Any]
        let id = deployment?["id"] as? String ?? "", token = deployment?["token"] as? String ?? ""
        if id.isEmpty {
            // Pending policy: approve and check in again.
            let machines = try await admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            for machine in machines { _ = try await admin("POST", "/machines/\(machine["id"] as? String ?? "")/approve") }
            let again = try await checkIn(macs: [mac]).json["deployment"] as? [String: Any]
            return (again?["id"] as? String ?? "", again?["token"] as? String ?? "")
        }
        return (id, token)
    }

    static func event(_ sequence: Int, _ kind: String, status: String? = nil, percent: Double? = nil, step: String? = nil) -> [String: Any] {
        var event: [String: Any] = ["sequence": sequence, "time": "2026-01-02T03:04:05.678Z", "kind": kind]
        if let status { event["status"] = status }
        if let percent { event["percent"] = percent }
        if let step { event["step"] = step; event["name"] = "Step \(step)" }
        return event
    }

    static func batch(_ events: [[String: Any]]) -> Data {
        (try? JSONSerialization.data(withJSONObject: ["events": events])) ?? Data()
    }
}
