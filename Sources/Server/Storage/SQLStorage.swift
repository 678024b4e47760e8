import Failures
import Foundation
import Logging
import SequenceModel
import Synchronization

/// `ServerStorage` with every statement written once, for SQLite and PostgreSQL alike; what only
/// one database does (where reads go, locks between instances, placeholders) is its executor's.
/// Each method is atomic on its own: one statement, or one transaction.
struct SQLStorage<Executor: SQLExecutor>: ServerStorage {
    let executor: Executor
    private let logger: Logger
    private let pendingEvents = PendingEventBatches()
    /// Seals secret values on every write that holds them (sequences, rules' variables,
    /// deployments' copies of both): nothing reaches the database in plain text through here.
    let sealing: SecretSealing

    init(executor: Executor, logger: Logger, secrets: SecretBox) {
        self.executor = executor
        self.logger = logger
        sealing = SecretSealing(box: secrets)
    }

    /// Appended to a SELECT whose rows the transaction goes on to change: another instance doing
    /// the same waits for this one's COMMIT, and then sees what it wrote.
    var lockingSelectedRows: String { executor.sharedByInstances ? " FOR UPDATE" : "" }

    // MARK: - Migrations

    /// Applies the migrations not applied yet; instances starting together take turns, so each
    /// migration runs once.
    func migrate() async throws {
        try await executor.holding(.migrations) {
            try await executor.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied TEXT NOT NULL)")
            let applied = Set(try await executor.query("SELECT version FROM schema_migrations").compactMap { $0.integer("version") })
            for migration in Migrations.all where !applied.contains(migration.version) {
                try await executor.transaction { db in
                    for statement in migration.statements { try await db.execute(statement) }
                    // SQL cannot encrypt: the secrets stored so far are sealed here, in the same transaction.
                    if migration.version == Migrations.sealingSecrets { try await sealStoredSecrets(in: db) }
                    try await db.execute("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)",
                                         [.integer(migration.version), .text(StoredTime.now())])
                }
                logger.info("database \(executor.name): migration \(migration.version) applied")
            }
            try await checkSecretsKey()
        }
    }

    // MARK: - Secrets

    /// The key given must be the one the database's secrets were sealed with: a wrong one stops
    /// the server at start (naming both keys' ids), not at the first deployment that needs one.
    private func checkSecretsKey() async throws {
        let box = sealing.box
        guard let row = try await executor.query("SELECT key_id, check_value FROM secrets_key WHERE id = 'current'").first,
              let check = row.string("check_value") else {
            // Its record deleted by hand: this key becomes the database's.
            try await recordSecretsKey(into: executor)
            return
        }
        do {
            _ = try box.open(check, what: "the key check")
        } catch {
            throw SecretsKeyError.wrongKey(what: "the secrets stored in the database \(executor.name)", source: box.source,
                                           storedKeyID: row.string("key_id"), keyID: box.keyID)
        }
    }

    private func recordSecretsKey(into db: some SQLStatements) async throws {
        try await db.execute("INSERT INTO secrets_key (id, key_id, check_value, created) VALUES ('current', ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                             [.text(sealing.box.keyID), .text(try sealing.box.seal(SecretBox.checkText)), .text(StoredTime.now())])
    }

    /// Migration 6: every secret stored in plain text so far is sealed with the key the server
    /// was started with, which the database records; events and deployment summaries that
    /// already hold a deployment's secret values are redacted.
    private func sealStoredSecrets(in db: Executor.Transaction) async throws {
        try await recordSecretsKey(into: db)
        var sequenceSecrets: [String: Set<String>] = [:]
        for row in try await db.execute("SELECT name, body FROM sequences") {
            guard let name = row.string("name"), let body = row.string("body") else { continue }
            let sealed = try sealing.sealSequence(body, what: "sequence \"\(name)\"")
            sequenceSecrets[name] = SecretSealing.secretNames(ofSequence: sealed)
            if sealed != body { try await db.execute("UPDATE sequences SET body = ? WHERE name = ?", [.text(sealed), .text(name)]) }
        }
        try await sealRules(in: db) { sequenceSecrets[$0] ?? [] }
        for row in try await db.execute("SELECT * FROM deployments") {
            guard let deployment = Self.deployment(row) else { continue }
            let sealed = try sealedCopy(of: deployment)
            let redactor = try sealing.redactor(for: sealed)
            guard sealed != deployment || !redactor.isEmpty else { continue }
            try await db.execute("UPDATE deployments SET sequence_body = ?, variables = ?, message = ?, current_step = ? WHERE id = ?",
                                 [.text(sealed.sequenceBody), .text(try StoredJSON.text(sealed.variables)),
                                  .text(deployment.message.map(redactor.redact)), .text(deployment.currentStep.map(redactor.redact)),
                                  .text(deployment.id)])
            guard !redactor.isEmpty else { continue }
            for event in try await db.execute("SELECT sequence, body FROM events WHERE deployment_id = ?", [.text(deployment.id)]) {
                guard let sequence = event.integer("sequence"), let stored = StoredJSON.decode(Event.self, event.string("body")) else { continue }
                let redacted = redactor.redact(stored)
                if redacted != stored {
                    try await db.execute("UPDATE events SET body = ? WHERE deployment_id = ? AND sequence = ?",
                                         [.text(try StoredJSON.text(redacted)), .text(deployment.id), .integer(sequence)])
                }
            }
        }
    }

    /// Seals the stored rules' secret values still in plain text (`where` picks the rules);
    /// `secretNames` gives what each rule's sequence lists as secret, by the sequence's name.
    func sealRules(in db: some SQLStatements, where clause: String = "", _ binds: [SQLValue] = [],
                   secretNames: (String) -> Set<String>) async throws {
        for row in try await db.execute("SELECT position, sequence_name, variables FROM rules" + clause, binds) {
            guard let position = row.integer("position"),
                  let variables = StoredJSON.decode([String: String].self, row.string("variables")) else { continue }
            let sealed = try sealing.seal(variables, secretNames: secretNames(row.string("sequence_name") ?? ""), what: "rule \(position)")
            if sealed != variables {
                try await db.execute("UPDATE rules SET variables = ? WHERE position = ?", [.text(try StoredJSON.text(sealed)), .integer(position)])
            }
        }
    }

    /// The deployment with its copy of the sequence and its variables sealed.
    private func sealedCopy(of deployment: Deployment) throws -> Deployment {
        var sealed = deployment
        let what = "deployment \(deployment.id)"
        sealed.sequenceBody = try sealing.sealSequence(deployment.sequenceBody, what: what)
        sealed.variables = try sealing.seal(deployment.variables, secretNames: SecretSealing.secretNames(ofSequence: sealed.sequenceBody), what: what)
        return sealed
    }

    func serializingCheckIns<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await executor.holding(.checkIns, body)
    }

    // MARK: - Machines

    static func machine(_ row: SQLRow) -> Machine? {
        guard let id = row.string("id"), var state = row.string("state").flatMap(Machine.State.init) else { return nil }
        // A rejection is its own column (migration 12): `state`'s CHECK predates it.
        let rejected = row.string("rejected")
        if rejected != nil { state = .rejected }
        return Machine(
            id: id, macs: (row.string("macs") ?? "").split(separator: ",").map(String.init),
            uuid: row.string("uuid"), serial: row.string("serial"),
            manufacturer: row.string("manufacturer"), model: row.string("model"),
            facts: StoredJSON.decode(Facts.self, row.string("facts")), state: state,
            firstSeen: row.string("first_seen") ?? "", lastSeen: row.string("last_seen") ?? "",
            firstAddress: row.string("first_address"), registered: row.string("registered"),
            conflicts: StoredJSON.decode([IdentityConflict].self, row.string("conflicts")) ?? [], rejected: rejected)
    }

    func identifyCheckIn(_ claim: MachineIdentity, facts: Facts, policy: CheckInPolicy) async throws -> CheckInIdentification {
        let factsJSON = try StoredJSON.text(facts)
        let now = Date()
        let nowText = StoredTime.format.format(now)
        let lock = lockingSelectedRows
        return try await executor.transaction { db in
            // Every machine sharing any identifier with the check-in, each compared with `=`.
            var related: [Machine] = []
            func collect(_ rows: [SQLRow]) {
                for machine in rows.compactMap(Self.machine) where !related.contains(where: { $0.id == machine.id }) {
                    related.append(machine)
                }
            }
            if let uuid = claim.uuid {
                collect(try await db.execute("SELECT * FROM machines WHERE uuid = ?" + lock, [.text(uuid)]))
            }
            var owned: Set<String> = []
            if !claim.macs.isEmpty {
                let macs = claim.macs.map { SQLValue.text($0) }
                for row in try await db.execute("SELECT mac FROM machine_macs WHERE mac IN (\(Self.placeholders(macs.count)))", macs) {
                    if let mac = row.string("mac") { owned.insert(mac) }
                }
                collect(try await db.execute("""
                    SELECT * FROM machines WHERE id IN (SELECT machine_id FROM machine_macs WHERE mac IN (\(Self.placeholders(macs.count))))
                    """ + lock, macs))
                // A machine whose MACs all belong to others (it conflicted with them) is known by its whole list.
                collect(try await db.execute("SELECT * FROM machines WHERE macs = ?" + lock, [.text(claim.macField)]))
            }
            if let serial = claim.serial {
                collect(try await db.execute("SELECT * FROM machines WHERE serial = ?" + lock, [.text(serial)]))
            }

            let comparisons = related.map { IdentityComparison(record: $0, claim: claim) }
            if let best = comparisons.filter(\.isExact).max(by: IdentityComparison.ranksBelow) {
                try await db.execute("UPDATE machines SET manufacturer = ?, model = ?, facts = ?, last_seen = ? WHERE id = ?",
                                     [.text(facts.manufacturer), .text(facts.model), .text(factsJSON), .text(nowText), .text(best.record.id)])
                var machine = best.record
                machine.manufacturer = facts.manufacturer
                machine.model = facts.model
                machine.facts = facts
                machine.lastSeen = nowText
                if machine.firstSeen.isEmpty {
                    // A registered machine's first check-in.
                    try await db.execute("UPDATE machines SET first_seen = ?, first_address = ? WHERE id = ?",
                                         [.text(nowText), .text(policy.sourceAddress), .text(machine.id)])
                    machine.firstSeen = nowText
                    machine.firstAddress = policy.sourceAddress
                }
                return .known(machine)
            }
            let conflicts = comparisons.map(\.conflict)
            guard policy.mayCreate else { return .unregistered(conflicts: conflicts) }
            if let limit = policy.newMachinesPerMinute {
                let windowStart = StoredTime.format.format(now.addingTimeInterval(-60))
                let recent = try await db.execute("""
                    SELECT COUNT(*) AS n, MIN(first_seen) AS oldest FROM machines WHERE first_address = ? AND first_seen > ?
                    """, [.text(policy.sourceAddress), .text(windowStart)]).first
                let count = recent?.integer("n") ?? 0
                if count >= limit {
                    let oldest = recent?.string("oldest").flatMap { try? StoredTime.format.parse($0) } ?? now
                    let wait = Int(oldest.addingTimeInterval(60).timeIntervalSince(now).rounded(.up))
                    return .tooManyNewMachines(count: count, retryAfter: max(1, wait))
                }
            }
            let machine = Machine(id: UUID().uuidString.lowercased(), macs: claim.macs, uuid: claim.uuid, serial: claim.serial,
                                  manufacturer: facts.manufacturer, model: facts.model, facts: facts,
                                  state: conflicts.isEmpty ? policy.newState : .pending, firstSeen: nowText, lastSeen: nowText,
                                  firstAddress: policy.sourceAddress, registered: nil, conflicts: conflicts)
            try await insert(machine, factsJSON: factsJSON, into: db)
            // It owns only the MACs no machine has yet: the known machine keeps its boot script.
            try await own(claim.macs.filter { !owned.contains($0) }, machineID: machine.id, into: db)
            return conflicts.isEmpty ? .created(machine) : .conflicting(machine)
        }
    }

    func insert(_ machine: Machine, factsJSON: String, into db: Executor.Transaction) async throws {
        try await db.execute("""
            INSERT INTO machines (id, macs, uuid, serial, manufacturer, model, facts, state, first_seen, last_seen,
                                  first_address, registered, conflicts)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(machine.id), .text(machine.macs.isEmpty ? "" : "," + machine.macs.joined(separator: ",") + ","),
                  .text(machine.uuid), .text(machine.serial), .text(machine.manufacturer), .text(machine.model), .text(factsJSON),
                  .text(machine.state.rawValue), .text(machine.firstSeen), .text(machine.lastSeen), .text(machine.firstAddress),
                  .text(machine.registered), .text(machine.conflicts.isEmpty ? nil : try StoredJSON.text(machine.conflicts))])
    }

    func own(_ macs: [String], machineID: String, into db: Executor.Transaction) async throws {
        guard !macs.isEmpty else { return }
        try await db.execute("INSERT INTO machine_macs (mac, machine_id) VALUES \(Array(repeating: "(?, ?)", count: macs.count).joined(separator: ", "))",
                             macs.flatMap { [SQLValue.text($0), .text(machineID)] })
    }

    func machine(mac: String) async throws -> Machine? {
        try await executor.query("""
            SELECT machines.* FROM machine_macs JOIN machines ON machines.id = machine_macs.machine_id WHERE machine_macs.mac = ?
            """, [.text(mac)]).first.flatMap(Self.machine)
    }

    func registerMachine(_ identity: MachineIdentity, manufacturer: String?, model: String?) async throws -> Machine {
        let now = StoredTime.now()
        let lock = lockingSelectedRows
        // Under the check-in lock: a check-in of the same machine cannot create it in between.
        return try await serializingCheckIns {
            try await executor.transaction { db in
                for (index, mac) in identity.macs.enumerated() {
                    if let owner = try await db.execute("SELECT machine_id FROM machine_macs WHERE mac = ?" + lock, [.text(mac)]).first?.string("machine_id") {
                        throw RegistrationConflict(field: "macs[\(index)]", machineID: owner, message: "MAC \(mac) belongs to machine \(owner) already")
                    }
                }
                if let uuid = identity.uuid,
                   let owner = try await db.execute("SELECT id FROM machines WHERE uuid = ?" + lock, [.text(uuid)]).first?.string("id") {
                    throw RegistrationConflict(field: "uuid", machineID: owner, message: "UUID \(uuid) belongs to machine \(owner) already")
                }
                if let serial = identity.serial,
                   let owner = try await db.execute("SELECT id FROM machines WHERE serial = ?" + lock, [.text(serial)]).first?.string("id") {
                    throw RegistrationConflict(field: "serial", machineID: owner, message: "serial \(serial) belongs to machine \(owner) already")
                }
                let machine = Machine(id: UUID().uuidString.lowercased(), macs: identity.macs, uuid: identity.uuid, serial: identity.serial,
                                      manufacturer: manufacturer, model: model, facts: nil, state: .approved, firstSeen: "", lastSeen: "",
                                      firstAddress: nil, registered: now, conflicts: [])
                try await insert(machine, factsJSON: "null", into: db)
                try await own(identity.macs, machineID: machine.id, into: db)
                return machine
            }
        }
    }

    func machines() async throws -> [Machine] {
        try await executor.query("SELECT * FROM machines ORDER BY first_seen, id").compactMap(Self.machine)
    }

    func machine(id: String) async throws -> Machine? {
        try await executor.query("SELECT * FROM machines WHERE id = ?", [.text(id)]).first.flatMap(Self.machine)
    }

    func setMachineState(id: String, state: Machine.State) async throws -> Bool {
        // `state`'s CHECK allows pending and approved only (migration 1; changing a CHECK means
        // rebuilding the table four others reference): a rejection is kept in `rejected`, the
        // state column left as it was, and an approval clears it.
        if state == .rejected {
            return !(try await executor.execute("UPDATE machines SET rejected = COALESCE(rejected, ?) WHERE id = ? RETURNING id",
                                                [.text(StoredTime.now()), .text(id)]).isEmpty)
        }
        return !(try await executor.execute("UPDATE machines SET state = ?, rejected = NULL WHERE id = ? RETURNING id",
                                            [.text(state.rawValue), .text(id)]).isEmpty)
    }

    // MARK: - Rules and sequences

    func rules() async throws -> [Rule] {
        try await executor.query("SELECT * FROM rules ORDER BY position").compactMap { row in
            guard let field = row.string("match_field").flatMap(Rule.Field.init),
                  let pattern = row.string("pattern"), let sequence = row.string("sequence_name") else { return nil }
            return Rule(name: row.string("name"), match: field, pattern: pattern, sequence: sequence,
                        variables: StoredJSON.decode([String: String].self, row.string("variables")) ?? [:],
                        multicast: StoredJSON.decode(RuleMulticast.self, row.string("multicast")))
        }
    }

    func replaceRules(_ rules: [Rule]) async throws {
        try await executor.transaction { db in
            // Two instances replacing the list at once: one after the other, never interleaved.
            if executor.sharedByInstances { try await db.execute("LOCK TABLE rules IN EXCLUSIVE MODE") }
            // A rule's variable is secret by its name or because its sequence lists it.
            var sequenceSecrets: [String: Set<String>] = [:]
            for name in Set(rules.map(\.sequence)) {
                let body = try await db.execute("SELECT body FROM sequences WHERE name = ?", [.text(name)]).first?.string("body")
                sequenceSecrets[name] = body.map(SecretSealing.secretNames(ofSequence:)) ?? []
            }
            try await db.execute("DELETE FROM rules")
            for (position, rule) in rules.enumerated() {
                let variables = try sealing.seal(rule.variables, secretNames: sequenceSecrets[rule.sequence] ?? [], what: "rule \(position)")
                try await db.execute("""
                    INSERT INTO rules (position, name, match_field, pattern, sequence_name, variables, multicast) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, [.integer(position), .text(rule.name), .text(rule.match.rawValue), .text(rule.pattern),
                          .text(rule.sequence), .text(try StoredJSON.text(variables)), .text(try rule.multicast.map { try StoredJSON.text($0) })])
            }
        }
    }

    private static func storedSequence(_ row: SQLRow) -> StoredSequence? {
        guard let name = row.string("name"), let body = row.string("body") else { return nil }
        return StoredSequence(name: name, body: body, updated: row.string("updated") ?? "")
    }

    func sequence(name: String) async throws -> StoredSequence? {
        try await executor.query("SELECT * FROM sequences WHERE name = ?", [.text(name)]).first.flatMap(Self.storedSequence)
    }

    func sequences() async throws -> [StoredSequence] {
        try await executor.query("SELECT * FROM sequences ORDER BY name").compactMap(Self.storedSequence)
    }

    /// A save whose author is not known; it keeps the version it replaces (`SequenceVersionStorage`).
    func putSequence(name: String, body: String) async throws {
        try await putSequence(name: name, body: body, by: nil)
    }

    // MARK: - Deployments

    static func deployment(_ row: SQLRow) -> Deployment? {
        guard let id = row.string("id"), let machine = row.string("machine_id"),
              let state = row.string("state").flatMap(Deployment.State.init) else { return nil }
        return Deployment(
            id: id, machineID: machine, sequenceName: row.string("sequence_name") ?? "",
            sequenceBody: row.string("sequence_body") ?? "",
            variables: StoredJSON.decode([String: String].self, row.string("variables")) ?? [:],
            tokenHash: row.string("token_hash") ?? "", state: state, currentStep: row.string("current_step"),
            percent: row.double("percent"), message: row.string("message"),
            failure: row.string("failure").flatMap(FailureKind.init(rawValue:)), acknowledged: row.integer("acknowledged") ?? 0, created: row.string("created") ?? "",
            started: row.string("started"), ended: row.string("ended"),
            tokenIssued: row.string("token_issued"), tokenReset: row.string("token_reset"), resumes: row.integer("resumes") ?? 0)
    }

    func activeDeployment(machineID: String) async throws -> Deployment? {
        try await executor.query("""
            SELECT * FROM deployments WHERE machine_id = ? AND state IN ('assigned', 'running') ORDER BY created DESC LIMIT 1
            """, [.text(machineID)]).first.flatMap(Self.deployment)
    }

    func latestDeployment(machineID: String) async throws -> Deployment? {
        try await executor.query("SELECT * FROM deployments WHERE machine_id = ? ORDER BY created DESC LIMIT 1", [.text(machineID)])
            .first.flatMap(Self.deployment)
    }

    func requestRedeploy(machineID: String) async throws -> Bool {
        // One statement: the machine must exist (no row to insert otherwise), and a second request
        // moves the time. The WHERE also tells SQLite's parser that ON CONFLICT is not a join's ON.
        !(try await executor.execute("""
            INSERT INTO redeploys (machine_id, requested) SELECT id, ? FROM machines WHERE id = ?
            ON CONFLICT (machine_id) DO UPDATE SET requested = excluded.requested RETURNING machine_id
            """, [.text(StoredTime.now()), .text(machineID)]).isEmpty)
    }

    func redeployRequested(machineID: String) async throws -> String? {
        try await executor.query("SELECT requested FROM redeploys WHERE machine_id = ?", [.text(machineID)]).first?.string("requested")
    }

    func createDeployment(_ deployment: Deployment) async throws {
        // Its copies of the sequence and the rule's variables come sealed already; sealed again
        // (a no-op) so that no caller can store a deployment's secrets in plain text.
        let d = try sealedCopy(of: deployment)
        let variables = try StoredJSON.text(d.variables)
        try await executor.execute("""
            INSERT INTO deployments (id, machine_id, sequence_name, sequence_body, variables, token_hash, state,
                                     current_step, percent, message, acknowledged, created, started, ended, token_issued)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(d.id), .text(d.machineID), .text(d.sequenceName), .text(d.sequenceBody), .text(variables),
                  .text(d.tokenHash), .text(d.state.rawValue), .text(d.currentStep), .double(d.percent),
                  .text(d.message), .integer(d.acknowledged), .text(d.created), .text(d.started), .text(d.ended),
                  .text(d.tokenIssued ?? d.created)])
    }

    func eventActivity(deploymentID: String) async throws -> (lastSequence: Int, lastReceived: String?) {
        let row = try await executor.query("""
            SELECT COALESCE(MAX(sequence), 0) AS last, MAX(received) AS received FROM events WHERE deployment_id = ?
            """, [.text(deploymentID)]).first
        return (row?.integer("last") ?? 0, row?.string("received"))
    }

    func reissueToken(deploymentID: String, tokenHash: String, notice: String, resumed: Bool) async throws -> Int? {
        try await executor.transaction { db in
            guard let sequence = try await storeServerNotice(notice, deploymentID: deploymentID, into: db) else { return nil }
            try await db.execute("UPDATE deployments SET token_hash = ?, token_issued = ?, token_reset = NULL, resumes = resumes + ? WHERE id = ?",
                                 [.text(tokenHash), .text(StoredTime.now()), .integer(resumed ? 1 : 0), .text(deploymentID)])
            return sequence
        }
    }

    func storeRunState(_ state: RunState, deploymentID: String) async throws -> Bool {
        var state = state
        // The token proves a resumed run is the machine's own; it lives only on the target disk.
        state.token = nil
        // One statement: the row is written only for an active deployment, and replaces the
        // kept one only when it is not newer, so two PUTs racing leave the higher revision.
        return !(try await executor.execute("""
            INSERT INTO run_states (deployment_id, revision, body, updated)
            SELECT id, ?, ?, ? FROM deployments WHERE id = ? AND state IN ('assigned', 'running')
            ON CONFLICT (deployment_id) DO UPDATE SET revision = excluded.revision, body = excluded.body, updated = excluded.updated
            WHERE run_states.revision <= excluded.revision
            RETURNING deployment_id
            """, [.integer(state.revision), .text(try StoredJSON.text(state)), .text(StoredTime.now()), .text(deploymentID)]).isEmpty)
    }

    func runState(deploymentID: String) async throws -> RunState? {
        guard let body = try await executor.query("SELECT body FROM run_states WHERE deployment_id = ?", [.text(deploymentID)])
            .first?.string("body") else { return nil }
        return try? RunState.decode(Data(body.utf8))
    }

    func revokeToken(deploymentID: String, notice: String) async throws -> Deployment? {
        try await executor.transaction { db in
            guard try await storeServerNotice(notice, deploymentID: deploymentID, into: db) != nil else {
                return try await db.execute("SELECT * FROM deployments WHERE id = ?", [.text(deploymentID)]).first.flatMap(Self.deployment)
            }
            // No token hashes to the empty string: nothing opens the deployment until the next check-in.
            return try await db.execute("UPDATE deployments SET token_hash = '', token_reset = ? WHERE id = ? RETURNING *",
                                        [.text(StoredTime.now()), .text(deploymentID)]).first.flatMap(Self.deployment)
        }
    }

    /// The server's own word in a deployment's log (a token re-issued or revoked): a warning
    /// `log` event after every event stored so far, which becomes the deployment's message.
    /// Whatever the old agent had not delivered will not come any more, so the acknowledged
    /// prefix moves up to it; the next agent numbers its events after it. Nil when the
    /// deployment is missing or has ended (nothing is written then).
    private func storeServerNotice(_ message: String, deploymentID: String, into db: Executor.Transaction) async throws -> Int? {
        // The deployment's row first, then the counter's: the order the event group commit takes them in.
        guard let deployment = try await db.execute("SELECT * FROM deployments WHERE id = ?" + lockingSelectedRows,
                                                    [.text(deploymentID)]).first.flatMap(Self.deployment),
              deployment.isActive else { return nil }
        let last = try await db.execute("SELECT COALESCE(MAX(sequence), 0) AS last FROM events WHERE deployment_id = ?",
                                        [.text(deploymentID)]).first?.integer("last") ?? 0
        let event = Event(sequence: last + 1, kind: .log, level: "warning", message: message)
        guard let change = try await db.execute("UPDATE counters SET value = value + 1 WHERE name = 'change' RETURNING value")
            .first?.integer("value") else { throw StorageError.corrupt("the change counter is missing") }
        try await db.execute("""
            INSERT INTO events (deployment_id, sequence, kind, step, status, time, body, change_id, received)
            VALUES (?, ?, ?, NULL, NULL, ?, ?, ?, ?)
            """, [.text(deploymentID), .integer(event.sequence), .text(event.kind.rawValue), .text(event.time),
                  .text(try StoredJSON.text(event)), .integer(change), .text(StoredTime.now())])
        try await db.execute("UPDATE deployments SET acknowledged = ?, message = ? WHERE id = ?",
                             [.integer(event.sequence), .text(message), .text(deploymentID)])
        return event.sequence
    }

    func deployment(id: String) async throws -> Deployment? {
        try await executor.query("SELECT * FROM deployments WHERE id = ?", [.text(id)]).first.flatMap(Self.deployment)
    }

    func deployments() async throws -> [Deployment] {
        try await executor.query("SELECT * FROM deployments ORDER BY created DESC, id").compactMap(Self.deployment)
    }

    func deploymentCounts() async throws -> [Deployment.State: Int] {
        var counts: [Deployment.State: Int] = [:]
        for row in try await executor.query("SELECT state, COUNT(*) AS n FROM deployments GROUP BY state") {
            if let state = row.string("state").flatMap(Deployment.State.init) { counts[state] = row.integer("n") ?? 0 }
        }
        return counts
    }

    // MARK: - Events

    /// Group commit: batches that arrive while a transaction is being written wait and go into
    /// the next one together, so hundreds of agents cost one COMMIT (one fsync) per round rather
    /// than one each. Every batch is answered only after the COMMIT that holds it: an agent drops
    /// acknowledged events from its spool, so they must be on disk by then.
    func storeEvents(deploymentID: String, events: [Event], limits: EventLimits) async throws -> EventIngestResult {
        let encoded = try events.map { try StoredJSON.text($0) }
        return try await withCheckedThrowingContinuation { continuation in
            let batch = PendingEventBatches.Batch(deploymentID: deploymentID, events: events, encoded: encoded, limits: limits,
                                                  continuation: continuation)
            if pendingEvents.add(batch) { Task { await commitPendingEvents() } }
        }
    }

    /// Commits what waits, round after round, until nothing does.
    private func commitPendingEvents() async {
        while true {
            let batches = pendingEvents.takeAll()
            if batches.isEmpty { return }
            do {
                let results = try await executor.transaction { db in try await insertGroup(batches, into: db) }
                for (batch, result) in zip(batches, results) { batch.continuation.resume(with: result) }
            } catch {
                for batch in batches { batch.continuation.resume(throwing: error) }
            }
        }
    }

    /// A group of batches in a fixed handful of statements, however many batches and
    /// deployments it holds: each statement is a round trip while every other writer waits, so
    /// their number, not the rows, bounds how many events a second go in.
    /// A batch for an unknown deployment fails alone, having written nothing.
    private func insertGroup(_ batches: [PendingEventBatches.Batch], into db: Executor.Transaction) async throws
        -> [Result<EventIngestResult, any Error>] {
        let now = StoredTime.now()
        // Locked in one order (PostgreSQL), so two instances storing events of the same
        // deployments (a retry through another instance) take turns and never deadlock.
        let ids = Set(batches.map(\.deploymentID)).sorted()
        var deployments: [String: Deployment] = [:]
        // Bytes of event bodies each deployment has stored (its limit counts them), read with its row.
        var storedBytes: [String: Int] = [:]
        for chunk in ids.chunked(500) {
            for row in try await db.execute("SELECT * FROM deployments WHERE id IN (\(Self.placeholders(chunk.count))) ORDER BY id"
                                            + lockingSelectedRows, chunk.map { .text($0) }) {
                if let deployment = Self.deployment(row) {
                    deployments[deployment.id] = deployment
                    storedBytes[deployment.id] = row.integer("event_bytes") ?? 0
                }
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
            for row in try await db.execute("SELECT deployment_id, sequence FROM events WHERE \(condition)",
                                            chunk.flatMap { [SQLValue.text($0.key), .integer($0.value)] }) {
                if let id = row.string("deployment_id"), let sequence = row.integer("sequence") { stored[id, default: []].insert(sequence) }
            }
        }
        // Each batch in arrival order against its deployment's state so far.
        var results: [Result<EventIngestResult, any Error>] = []
        var rows: [(deploymentID: String, event: Event, encoded: String)] = []
        var touched: [String] = []
        // Per deployment, numbers acknowledged without being stored (past its limits).
        var passedOver: [String: Set<Int>] = [:]
        for batch in batches {
            guard var deployment = deployments[batch.deploymentID] else {
                results.append(.failure(StorageError.notFound("deployment \(batch.deploymentID)")))
                continue
            }
            // Its result is stored (by a batch that passed the token check at the same time as
            // this one): a deployment ends once, so nothing more is taken, a second result least of all.
            if deployment.ended != nil {
                results.append(.failure(StorageError.ended(deployment)))
                continue
            }
            var seen = stored[batch.deploymentID] ?? []
            var passed = passedOver[batch.deploymentID] ?? []
            var bytes = storedBytes[batch.deploymentID] ?? 0
            // Sent again after a lost answer (or twice in one batch): stored once, counted once.
            var inserted: [Event] = []
            var refused = 0
            for (index, event) in batch.events.enumerated() where !seen.contains(event.sequence) && !passed.contains(event.sequence) {
                let size = batch.encoded[index].utf8.count
                // The number bounds the count (each is stored once); the bytes bound the size.
                // A result is always taken: it ends the deployment, and only once.
                if event.kind != .result
                    && (event.sequence > batch.limits.perDeployment || bytes + size > batch.limits.bytesPerDeployment) {
                    passed.insert(event.sequence)
                    refused += 1
                    continue
                }
                seen.insert(event.sequence)
                bytes += size
                inserted.append(event)
                rows.append((batch.deploymentID, event, batch.encoded[index]))
            }
            for event in inserted.sorted(by: { $0.sequence < $1.sequence }) { deployment.record(event) }
            if refused > 0 && deployment.ended == nil {
                // What the dashboard shows until the result: the log stops here on purpose.
                deployment.message = "this deployment reached its limit of \(batch.limits.perDeployment) events or "
                    + "\(batch.limits.bytesPerDeployment) bytes of events: later events are not stored (its result still is)"
            }
            // Advance the contiguous prefix: the agent may drop everything up to it from its spool.
            while seen.contains(deployment.acknowledged + 1) || passed.contains(deployment.acknowledged + 1) { deployment.acknowledged += 1 }
            stored[batch.deploymentID] = seen
            passedOver[batch.deploymentID] = passed
            storedBytes[batch.deploymentID] = bytes
            deployments[batch.deploymentID] = deployment
            if !touched.contains(batch.deploymentID) { touched.append(batch.deploymentID) }
            results.append(.success(EventIngestResult(inserted: inserted.count, acknowledged: deployment.acknowledged, deployment: deployment,
                                                      refused: refused)))
        }
        if !rows.isEmpty {
            // The counter's row stays locked until COMMIT (PostgreSQL): change ids become visible
            // in order, so a live feed that read up to N never misses an N-1 committed later.
            guard let last = try await db.execute("UPDATE counters SET value = value + ? WHERE name = 'change' RETURNING value",
                                                  [.integer(rows.count)]).first?.integer("value")
            else { throw StorageError.corrupt("the change counter is missing") }
            // Change ids in arrival order, as if counted one by one.
            var change = last - rows.count + 1
            for chunk in rows.chunked(500) {  // 9 values a row, well under either database's limit on parameters
                var binds: [SQLValue] = []
                binds.reserveCapacity(chunk.count * 9)
                for row in chunk {
                    let event = row.event
                    binds += [.text(row.deploymentID), .integer(event.sequence), .text(event.kind.rawValue), .text(event.step),
                              .text(event.status?.rawValue), .text(event.time), .text(row.encoded), .integer(change), .text(now)]
                    change += 1
                }
                try await db.execute("""
                    INSERT INTO events (deployment_id, sequence, kind, step, status, time, body, change_id, received)
                    VALUES \(Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", "))
                    """, binds)
            }
        }
        // Every touched deployment's new summary in one UPDATE ... FROM (VALUES ...). The CAST:
        // PostgreSQL takes a VALUES column of NULLs alone for text.
        for chunk in touched.compactMap({ deployments[$0] }).chunked(500) {
            var binds: [SQLValue] = []
            for d in chunk {
                binds += [.text(d.id), .text(d.state.rawValue), .text(d.currentStep), .double(d.percent),
                          .text(d.message), .integer(d.acknowledged), .text(d.started), .text(d.ended), .text(d.failure?.rawValue),
                          .integer(storedBytes[d.id] ?? 0)]
            }
            try await db.execute("""
                UPDATE deployments SET state = v.column2, current_step = v.column3, percent = CAST(v.column4 AS DOUBLE PRECISION),
                       message = v.column5, acknowledged = v.column6, started = v.column7, ended = v.column8, failure = v.column9,
                       event_bytes = CAST(v.column10 AS BIGINT)
                FROM (VALUES \(Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", "))) AS v
                WHERE deployments.id = v.column1
                """, binds)
        }
        return results
    }

    private static func placeholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }

    func events(deploymentID: String, afterSequence: Int, limit: Int) async throws -> [StoredEvent] {
        try await executor.query("""
            SELECT body, change_id, received FROM events WHERE deployment_id = ? AND sequence > ? ORDER BY sequence LIMIT ?
            """, [.text(deploymentID), .integer(afterSequence), .integer(limit)]).compactMap { row in
            guard let event = StoredJSON.decode(Event.self, row.string("body")) else { return nil }
            return StoredEvent(changeID: row.integer("change_id") ?? 0, received: row.string("received") ?? "", event: event)
        }
    }

    func latestChangeID() async throws -> Int {
        try await executor.query("SELECT COALESCE(MAX(change_id), 0) AS latest FROM events").first?.integer("latest") ?? 0
    }

    func changedDeployments(afterChange: Int, limit: Int) async throws -> [(deploymentID: String, changeID: Int)] {
        try await executor.query("""
            SELECT deployment_id, MAX(change_id) AS latest FROM events WHERE change_id > ?
            GROUP BY deployment_id ORDER BY latest LIMIT ?
            """, [.integer(afterChange), .integer(limit)]).compactMap { row in
            guard let id = row.string("deployment_id"), let latest = row.integer("latest") else { return nil }
            return (id, latest)
        }
    }
}

/// Event batches waiting for the next group commit, and whether a committer is running.
final class PendingEventBatches: Sendable {
    struct Batch: Sendable {
        var deploymentID: String
        var events: [Event]
        var encoded: [String]
        var limits: EventLimits
        var continuation: CheckedContinuation<EventIngestResult, any Error>
    }

    private struct State {
        var batches: [Batch] = []
        var committing = false
    }

    private let state = Mutex(State())

    /// Queues `batch`; true when no committer is running, so the caller must start one.
    func add(_ batch: Batch) -> Bool {
        state.withLock { state in
            state.batches.append(batch)
            defer { state.committing = true }
            return !state.committing
        }
    }

    /// What waits for the next commit; none left ends the committer (the next batch starts one).
    func takeAll() -> [Batch] {
        state.withLock { state in
            let batches = state.batches
            state.batches = []
            if batches.isEmpty { state.committing = false }
            return batches
        }
    }
}

extension Deployment {
    /// What one new event says about the deployment as a whole (for the list and the dashboard).
    mutating func record(_ event: Event) {
        // Nothing reopens an ended deployment, not even a late progress event.
        guard ended == nil else { return }
        switch event.kind {
        case .sequenceStarted:
            state = .running
            started = started ?? event.time
            message = event.message ?? message
        case .stepStarted:
            state = .running
            started = started ?? event.time
            currentStep = [event.step, event.name].compactMap { $0 }.joined(separator: " ")
            // The whole sequence's percent when the agent sends it; an older agent's is the step's.
            percent = event.overall
        case .progress:
            state = .running
            if let overall = event.overall ?? event.percent { percent = overall }
            if let message = event.message { self.message = message }
        case .stepEnded:
            if let overall = event.overall { percent = overall }
            if let message = event.message { self.message = message }
        case .log:
            if event.level == "error" || event.level == "warning", let message = event.message { self.message = message }
        case .result:
            state = event.status == .success ? .succeeded : .failed
            if state == .succeeded { percent = 100 }
            message = event.message ?? message
            failure = state == .failed ? event.failure ?? .internal : nil
            started = started ?? event.time
            ended = event.time
        }
    }
}

public enum StorageError: Error, CustomStringConvertible {
    case notFound(String)
    case corrupt(String)
    /// Events for a deployment whose result is stored already.
    case ended(Deployment)
    public var description: String {
        switch self {
        case let .notFound(what): return "\(what) not found"
        case let .corrupt(what): return "the database is damaged: \(what)"
        case let .ended(deployment):
            return "deployment \(deployment.id) has ended (\(deployment.state.rawValue)); its result is stored once and nothing more is accepted"
        }
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements (statements have a limit on parameters).
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
