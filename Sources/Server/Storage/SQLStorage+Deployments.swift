import Foundation

/// The Deployments pages' and the admin API's reports (issue 20): one page of deployments
/// matching filters, and counts and durations per day, per sequence and per step and model,
/// aggregated by the database over a bounded window (migration 14 indexes `created`).
public protocol DeploymentReportStorage: Sendable {
    /// `limit` deployments from `offset`, newest first, each with its machine's identity (not
    /// its sequence's body or variables), and how many match in all.
    func deploymentList(_ filter: DeploymentFilter, offset: Int, limit: Int) async throws -> (items: [DeploymentListItem], total: Int)
    /// Counts and mean durations of the deployments `filter` matches, per day (UTC) and per
    /// sequence, and per step and machine model (at most `stepRows` of those).
    func deploymentStatistics(_ filter: DeploymentFilter, stepRows: Int) async throws -> DeploymentStatistics
    /// The names of the stored sequences and the machines' models (at most `limit` each): what
    /// the filters offer.
    func deploymentFilterChoices(limit: Int) async throws -> (sequences: [String], models: [String])
    /// The SHA-256 kept for one published path, if any.
    func contentHash(path: String) async throws -> ContentHash?
}

/// What a deployment list or summary is restricted to; nil and empty: anything.
public struct DeploymentFilter: Sendable, Equatable {
    public var states: [Deployment.State] = []
    /// ISO 8601 (`StoredTime`): created at or after it.
    public var since: String?
    /// Created before it.
    public var until: String?
    public var sequence: String?
    public var machineID: String?
    /// The machine's model as it reported it.
    public var model: String?

    public init(states: [Deployment.State] = [], since: String? = nil, until: String? = nil, sequence: String? = nil,
                machineID: String? = nil, model: String? = nil) {
        self.states = states
        self.since = since
        self.until = until
        self.sequence = sequence
        self.machineID = machineID
        self.model = model
    }
}

/// One deployment as a list shows it: no sequence body, variables or token.
public struct DeploymentListItem: Sendable, Equatable, Codable {
    public var id: String
    public var machineId: String
    public var sequence: String
    public var state: String
    public var currentStep: String?
    public var percent: Double?
    public var message: String?
    public var failure: String?
    /// Every event 1...acknowledged is stored.
    public var acknowledged: Int
    public var created: String
    public var started: String?
    public var ended: String?
    public var resumes: Int
    /// Its machine as the machine reported itself (nil: a machine forgotten since).
    public var manufacturer: String?
    public var model: String?
    public var serial: String?
    public var macs: [String]
    /// From its start (or creation) to its end, when it has ended.
    public var seconds: Double?
}

public struct DeploymentStatistics: Sendable, Equatable, Codable {
    public struct Counts: Sendable, Equatable, Codable {
        /// A day (`2026-03-01`, UTC) or a sequence's name.
        public var key: String
        public var total: Int
        public var succeeded: Int
        public var failed: Int
        /// Of the ended ones.
        public var meanSeconds: Double?
        /// Assigned or running.
        public var active: Int { total - succeeded - failed }
        /// Of the ended ones, nil when none has ended.
        public var successRate: Double? { succeeded + failed > 0 ? Double(succeeded) / Double(succeeded + failed) : nil }
    }

    public struct Step: Sendable, Equatable, Codable {
        public var sequence: String
        /// Empty when the machines did not say.
        public var model: String
        public var step: String
        public var name: String
        /// Times the step ended (skipped ones not counted).
        public var runs: Int
        public var failures: Int
        public var meanSeconds: Double?
        public var maxSeconds: Double?
    }

    public var days: [Counts]
    public var sequences: [Counts]
    /// By sequence, step number (numerically: 2 before 10) and model.
    public var steps: [Step]
    /// More step rows matched than were read.
    public var stepsTruncated: Bool
}

extension SQLStorage {
    /// PostgreSQL and SQLite share the statements, except what reads JSON and subtracts times.
    private var onPostgres: Bool { Executor.self == PostgresExecutor.self }

    /// Seconds from a deployment's start (its creation if it never started) to its end.
    private var durationSQL: String {
        onPostgres
            ? "CAST(EXTRACT(EPOCH FROM (CAST(d.ended AS TIMESTAMPTZ) - CAST(COALESCE(d.started, d.created) AS TIMESTAMPTZ))) AS DOUBLE PRECISION)"
            : "((julianday(d.ended) - julianday(COALESCE(d.started, d.created))) * 86400.0)"
    }

    /// A member of an event's stored JSON body, as text or as a number.
    private func eventField(_ name: String, number: Bool) -> String {
        if onPostgres {
            let text = "(CAST(e.body AS JSON) ->> '\(name)')"
            return number ? "CAST(\(text) AS DOUBLE PRECISION)" : text
        }
        return "json_extract(e.body, '$.\(name)')"
    }

    /// The WHERE clause of a filter over `deployments AS d LEFT JOIN machines AS m`, and its binds.
    private static func whereClause(_ filter: DeploymentFilter) -> (sql: String, binds: [SQLValue]) {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if !filter.states.isEmpty {
            conditions.append("d.state IN (" + filter.states.map { _ in "?" }.joined(separator: ", ") + ")")
            binds += filter.states.map { .text($0.rawValue) }
        }
        if let since = filter.since { conditions.append("d.created >= ?"); binds.append(.text(since)) }
        if let until = filter.until { conditions.append("d.created < ?"); binds.append(.text(until)) }
        if let sequence = filter.sequence { conditions.append("d.sequence_name = ?"); binds.append(.text(sequence)) }
        if let machine = filter.machineID { conditions.append("d.machine_id = ?"); binds.append(.text(machine)) }
        if let model = filter.model { conditions.append("m.model = ?"); binds.append(.text(model)) }
        return (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "), binds)
    }

    func deploymentList(_ filter: DeploymentFilter, offset: Int, limit: Int) async throws -> (items: [DeploymentListItem], total: Int) {
        let (condition, binds) = Self.whereClause(filter)
        let from = " FROM deployments AS d LEFT JOIN machines AS m ON m.id = d.machine_id" + condition
        let total = try await executor.query("SELECT COUNT(*) AS n" + from, binds).first?.integer("n") ?? 0
        let rows = try await executor.query("""
            SELECT d.id, d.machine_id, d.sequence_name, d.state, d.current_step, d.percent, d.message, d.failure, d.acknowledged, d.created,
                   d.started, d.ended, d.resumes, m.manufacturer, m.model, m.serial, m.macs, CASE WHEN d.ended IS NULL THEN NULL ELSE \(durationSQL) END AS seconds
            """ + from + " ORDER BY d.created DESC, d.id DESC LIMIT ? OFFSET ?", binds + [.integer(max(0, limit)), .integer(max(0, offset))])
        let items = rows.compactMap { row -> DeploymentListItem? in
            guard let id = row.string("id"), let machine = row.string("machine_id"), let state = row.string("state") else { return nil }
            return DeploymentListItem(id: id, machineId: machine, sequence: row.string("sequence_name") ?? "", state: state,
                                      currentStep: row.string("current_step"), percent: row.double("percent"), message: row.string("message"),
                                      failure: row.string("failure"), acknowledged: row.integer("acknowledged") ?? 0,
                                      created: row.string("created") ?? "", started: row.string("started"),
                                      ended: row.string("ended"), resumes: row.integer("resumes") ?? 0, manufacturer: row.string("manufacturer"),
                                      model: row.string("model"), serial: row.string("serial"),
                                      macs: (row.string("macs") ?? "").split(separator: ",").map(String.init),
                                      seconds: row.double("seconds").map { max(0, $0) })
        }
        return (items, total)
    }

    func deploymentStatistics(_ filter: DeploymentFilter, stepRows: Int) async throws -> DeploymentStatistics {
        let (condition, binds) = Self.whereClause(filter)
        let from = " FROM deployments AS d LEFT JOIN machines AS m ON m.id = d.machine_id"
        let counts = """
            COUNT(*) AS total, SUM(CASE WHEN d.state = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
            SUM(CASE WHEN d.state = 'failed' THEN 1 ELSE 0 END) AS failed,
            CAST(AVG(CASE WHEN d.ended IS NULL THEN NULL ELSE \(durationSQL) END) AS DOUBLE PRECISION) AS mean_seconds
            """
        func read(_ rows: [SQLRow]) -> [DeploymentStatistics.Counts] {
            rows.compactMap { row in
                guard let key = row.string("key") else { return nil }
                return DeploymentStatistics.Counts(key: key, total: row.integer("total") ?? 0, succeeded: row.integer("succeeded") ?? 0,
                                                   failed: row.integer("failed") ?? 0, meanSeconds: row.double("mean_seconds").map { max(0, $0) })
            }
        }
        let days = read(try await executor.query("SELECT substr(d.created, 1, 10) AS key, " + counts + from + condition
                                                 + " GROUP BY substr(d.created, 1, 10) ORDER BY key", binds))
        let sequences = read(try await executor.query("SELECT d.sequence_name AS key, " + counts + from + condition
                                                      + " GROUP BY d.sequence_name ORDER BY key", binds))
        // Each stepEnded event (found through the events' primary key, by deployment) with its
        // duration and name from its JSON body; skipped steps took no time worth averaging.
        let duration = eventField("duration", number: true)
        let stepCondition = (condition.isEmpty ? " WHERE " : condition + " AND ") + "(e.status IS NULL OR e.status <> 'skipped')"
        let rows = try await executor.query("""
            SELECT d.sequence_name AS sequence, COALESCE(m.model, '') AS model, e.step AS step, MAX(\(eventField("name", number: false))) AS name,
                   COUNT(*) AS runs, SUM(CASE WHEN e.status IN ('failed', 'failedContinued') THEN 1 ELSE 0 END) AS failures,
                   CAST(AVG(\(duration)) AS DOUBLE PRECISION) AS mean_seconds, CAST(MAX(\(duration)) AS DOUBLE PRECISION) AS max_seconds
            FROM deployments AS d JOIN events AS e ON e.deployment_id = d.id AND e.kind = 'stepEnded'
            LEFT JOIN machines AS m ON m.id = d.machine_id
            """ + stepCondition + " GROUP BY d.sequence_name, COALESCE(m.model, ''), e.step ORDER BY sequence, model, step LIMIT ?",
            binds + [.integer(max(0, stepRows) + 1)])
        var steps = rows.compactMap { row -> DeploymentStatistics.Step? in
            guard let sequence = row.string("sequence"), let step = row.string("step") else { return nil }
            return DeploymentStatistics.Step(sequence: sequence, model: row.string("model") ?? "", step: step, name: row.string("name") ?? "",
                                             runs: row.integer("runs") ?? 0, failures: row.integer("failures") ?? 0,
                                             meanSeconds: row.double("mean_seconds"), maxSeconds: row.double("max_seconds"))
        }
        let truncated = steps.count > stepRows
        if truncated { steps.removeLast(steps.count - stepRows) }
        steps.sort { a, b in
            if a.sequence != b.sequence { return a.sequence < b.sequence }
            if a.step != b.step { return Self.stepOrder(a.step, b.step) }
            return a.model < b.model
        }
        return DeploymentStatistics(days: days, sequences: sequences, steps: steps, stepsTruncated: truncated)
    }

    /// Step numbers as a sequence numbers them: 2 before 10, 2.1 after 2.
    static func stepOrder(_ a: String, _ b: String) -> Bool {
        let left = a.split(separator: ".").map { Int($0) ?? Int.max }, right = b.split(separator: ".").map { Int($0) ?? Int.max }
        return left != right ? left.lexicographicallyPrecedes(right) : a < b
    }

    func deploymentFilterChoices(limit: Int) async throws -> (sequences: [String], models: [String]) {
        let sequences = try await executor.query("SELECT name FROM sequences ORDER BY name LIMIT ?", [.integer(max(0, limit))])
            .compactMap { $0.string("name") }
        let models = try await executor.query("""
            SELECT DISTINCT model FROM machines WHERE model IS NOT NULL AND model <> '' ORDER BY model LIMIT ?
            """, [.integer(max(0, limit))]).compactMap { $0.string("model") }
        return (sequences, models)
    }

    func contentHash(path: String) async throws -> ContentHash? {
        guard let row = try await executor.query("SELECT path, size, modified_ns, sha256, hashed FROM content_hashes WHERE path = ?", [.text(path)]).first,
              let size = row.integer("size"), let modified = row.integer("modified_ns"), let sha256 = row.string("sha256"),
              let hashed = row.string("hashed") else { return nil }
        return ContentHash(path: path, size: size, modifiedNanoseconds: modified, sha256: sha256, hashed: hashed)
    }
}
