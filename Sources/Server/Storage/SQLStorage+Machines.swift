import Foundation
import SequenceModel

/// The Machines pages' storage (issue 20): the inventory searched and filtered one page at a
/// time, a machine's deployment history, a batch of registrations stored all or none, and a
/// machine forgotten with everything that hangs on it. Rejection is `setMachineState(.rejected)`.
public protocol MachineInventoryStorage: Sendable {
    /// The machines `filter` keeps, `limit` of them from `offset`, most recently seen first
    /// (machines never seen last), and how many it keeps in all.
    func machineInventory(_ filter: MachineFilter, offset: Int, limit: Int) async throws -> (machines: [Machine], total: Int)
    /// The models machines reported or were registered with, sorted, at most `limit`: the
    /// inventory's model filter offers them.
    func machineModels(limit: Int) async throws -> [String]
    /// The machine's deployments, newest first, at most `limit`.
    func machineDeployments(machineID: String, limit: Int) async throws -> [Deployment]
    /// Registers every machine of the batch in one transaction, approved, or none of them:
    /// throws `BatchRegistrationConflict` naming each one whose MAC, UUID or serial belongs to
    /// a machine already.
    func registerMachines(_ batch: [MachineRegistration]) async throws -> [Machine]
    /// Deletes the machine with its MACs, its redeploy request, its multicast memberships and
    /// its deployments (their events, run states and library versions used). Refused while one
    /// of its deployments is active with a token nobody reset: its agent may be writing the disk.
    func forgetMachine(id: String) async throws -> ForgetOutcome
}

/// What the inventory keeps; nil keeps everything.
public struct MachineFilter: Sendable, Equatable {
    /// Part of the id, a MAC, the UUID, the serial, the manufacturer or the model, any case.
    public var text: String?
    /// Exactly this model.
    public var model: String?
    /// `uefi` or `bios`, as the machine's facts say.
    public var firmware: Firmware?
    public var state: Machine.State?
    public var seen: Seen?
    /// The sequence of the machine's newest deployment.
    public var sequence: String?

    public enum Firmware: String, Sendable, CaseIterable { case uefi, bios }

    /// When the machine last checked in, counted back from `now`.
    public enum Seen: String, Sendable, CaseIterable {
        case day, week, month
        /// Not in the last 30 days (but once).
        case older
        /// Registered, never checked in.
        case never
    }

    public init(text: String? = nil, model: String? = nil, firmware: Firmware? = nil, state: Machine.State? = nil, seen: Seen? = nil,
                sequence: String? = nil) {
        self.text = text
        self.model = model
        self.firmware = firmware
        self.state = state
        self.seen = seen
        self.sequence = sequence
    }
}

/// One machine of a registration: its identity (checked) and what the administrator says it is.
public struct MachineRegistration: Sendable, Equatable {
    public var identity: MachineIdentity
    public var manufacturer: String?
    public var model: String?

    public init(identity: MachineIdentity, manufacturer: String?, model: String?) {
        self.identity = identity
        self.manufacturer = manufacturer
        self.model = model
    }
}

/// The registrations of a batch that name what belongs to a machine already, by their place
/// in the batch; nothing of the batch was stored.
public struct BatchRegistrationConflict: Error, Sendable, CustomStringConvertible {
    public var conflicts: [(index: Int, conflict: RegistrationConflict)]
    public var description: String {
        conflicts.map { "registration \($0.index + 1): \($0.conflict.message)" }.joined(separator: "; ")
    }
}

public enum ForgetOutcome: Sendable {
    /// Deleted, with how many deployments it had.
    case forgotten(Machine, deployments: Int)
    case notFound
    /// One of its deployments is active and its token works: nothing was deleted.
    case busy(Deployment)
}

extension SQLStorage {
    func machineInventory(_ filter: MachineFilter, offset: Int, limit: Int) async throws -> (machines: [Machine], total: Int) {
        let (condition, binds) = Self.inventoryCondition(filter, now: Date())
        let total = try await executor.query("SELECT COUNT(*) AS n FROM machines WHERE " + condition, binds).first?.integer("n") ?? 0
        let machines = try await executor.query("SELECT * FROM machines WHERE " + condition + " ORDER BY last_seen DESC, id LIMIT ? OFFSET ?",
                                                binds + [.integer(max(0, limit)), .integer(max(0, offset))]).compactMap(Self.machine)
        return (machines, total)
    }

    /// The WHERE clause of `filter`, with its values bound (never written into the SQL).
    static func inventoryCondition(_ filter: MachineFilter, now: Date) -> (String, [SQLValue]) {
        var clauses = ["1 = 1"]
        var binds: [SQLValue] = []
        if let text = filter.text?.lowercased(), !text.isEmpty {
            // LIKE's own characters are escaped: what the user typed is matched as it is. LOWER on
            // both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
            func pattern(_ value: String) -> SQLValue {
                .text("%" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
                    .replacingOccurrences(of: "_", with: "\\_") + "%")
            }
            let columns = ["id", "macs", "COALESCE(uuid, '')", "COALESCE(serial, '')", "COALESCE(manufacturer, '')", "COALESCE(model, '')"]
            clauses.append("(" + columns.map { "LOWER(\($0)) LIKE ? ESCAPE '\\'" }.joined(separator: " OR ") + ")")
            // A MAC typed as Windows writes it (52-54-00-...) is found as the column keeps it.
            binds += [pattern(text), pattern(text.replacingOccurrences(of: "-", with: ":"))] + Array(repeating: pattern(text), count: 4)
        }
        if let model = filter.model {
            clauses.append("model = ?")
            binds.append(.text(model))
        }
        if let firmware = filter.firmware {
            // The facts are stored as JSON with sorted keys and no spaces (`StoredJSON`), and
            // `firmware` is a key of the top level only: the value is one of two fixed words.
            clauses.append("facts LIKE ?")
            binds.append(.text("%\"firmware\":\"\(firmware.rawValue)\"%"))
        }
        switch filter.state {
        case .rejected?: clauses.append("rejected IS NOT NULL")
        case let state?:
            clauses.append("state = ? AND rejected IS NULL")
            binds.append(.text(state.rawValue))
        case nil: break
        }
        if let seen = filter.seen {
            func ago(_ days: Double) -> SQLValue { .text(StoredTime.format.format(now.addingTimeInterval(-days * 86_400))) }
            switch seen {
            case .day: clauses.append("last_seen >= ?"); binds.append(ago(1))
            case .week: clauses.append("last_seen >= ?"); binds.append(ago(7))
            case .month: clauses.append("last_seen >= ?"); binds.append(ago(30))
            case .older: clauses.append("last_seen <> '' AND last_seen < ?"); binds.append(ago(30))
            case .never: clauses.append("last_seen = ''")
            }
        }
        if let sequence = filter.sequence {
            // The newest deployment's (created, then id, as the dashboard's "latest" everywhere).
            clauses.append("""
                EXISTS (SELECT 1 FROM deployments AS d WHERE d.machine_id = machines.id AND d.sequence_name = ? AND NOT EXISTS (
                    SELECT 1 FROM deployments AS newer WHERE newer.machine_id = d.machine_id
                    AND (newer.created > d.created OR (newer.created = d.created AND newer.id > d.id))))
                """)
            binds.append(.text(sequence))
        }
        return (clauses.joined(separator: " AND "), binds)
    }

    func machineModels(limit: Int) async throws -> [String] {
        try await executor.query("SELECT DISTINCT model FROM machines WHERE model IS NOT NULL AND model <> '' ORDER BY model LIMIT ?",
                                 [.integer(max(0, limit))]).compactMap { $0.string("model") }
    }

    func machineDeployments(machineID: String, limit: Int) async throws -> [Deployment] {
        try await executor.query("SELECT * FROM deployments WHERE machine_id = ? ORDER BY created DESC, id DESC LIMIT ?",
                                 [.text(machineID), .integer(max(0, limit))]).compactMap(Self.deployment)
    }

    func registerMachines(_ batch: [MachineRegistration]) async throws -> [Machine] {
        let now = StoredTime.now()
        let lock = lockingSelectedRows
        // Under the check-in lock, as one registration is: no check-in creates one of these in between.
        return try await serializingCheckIns {
            try await executor.transaction { db in
                var conflicts: [(index: Int, conflict: RegistrationConflict)] = []
                for (index, registration) in batch.enumerated() {
                    let identity = registration.identity
                    for (position, mac) in identity.macs.enumerated() {
                        if let owner = try await db.execute("SELECT machine_id FROM machine_macs WHERE mac = ?" + lock, [.text(mac)]).first?.string("machine_id") {
                            conflicts.append((index, RegistrationConflict(field: "macs[\(position)]", machineID: owner,
                                                                          message: "MAC \(mac) belongs to machine \(owner) already")))
                        }
                    }
                    if let uuid = identity.uuid,
                       let owner = try await db.execute("SELECT id FROM machines WHERE uuid = ?" + lock, [.text(uuid)]).first?.string("id") {
                        conflicts.append((index, RegistrationConflict(field: "uuid", machineID: owner, message: "UUID \(uuid) belongs to machine \(owner) already")))
                    }
                    if let serial = identity.serial,
                       let owner = try await db.execute("SELECT id FROM machines WHERE serial = ?" + lock, [.text(serial)]).first?.string("id") {
                        conflicts.append((index, RegistrationConflict(field: "serial", machineID: owner,
                                                                      message: "serial \(serial) belongs to machine \(owner) already")))
                    }
                }
                // Every conflict, not only the first: a batch is corrected once, not row by row.
                guard conflicts.isEmpty else { throw BatchRegistrationConflict(conflicts: conflicts) }
                var machines: [Machine] = []
                for registration in batch {
                    let identity = registration.identity
                    let machine = Machine(id: UUID().uuidString.lowercased(), macs: identity.macs, uuid: identity.uuid, serial: identity.serial,
                                          manufacturer: registration.manufacturer, model: registration.model, facts: nil, state: .approved,
                                          firstSeen: "", lastSeen: "", firstAddress: nil, registered: now, conflicts: [])
                    try await insert(machine, factsJSON: "null", into: db)
                    try await own(identity.macs, machineID: machine.id, into: db)
                    machines.append(machine)
                }
                return machines
            }
        }
    }

    func forgetMachine(id: String) async throws -> ForgetOutcome {
        let lock = lockingSelectedRows
        // Under the check-in lock: no check-in gives it a deployment while it goes.
        return try await serializingCheckIns {
            try await executor.transaction { db in
                guard let machine = try await db.execute("SELECT * FROM machines WHERE id = ?" + lock, [.text(id)]).first.flatMap(Self.machine) else {
                    return .notFound
                }
                let deployments = try await db.execute("SELECT * FROM deployments WHERE machine_id = ?" + lock, [.text(id)]).compactMap(Self.deployment)
                if let busy = deployments.first(where: { $0.isActive && $0.tokenReset == nil }) { return .busy(busy) }
                // What references a deployment first, then the deployments, then what references the machine.
                let ofMachine = "(SELECT id FROM deployments WHERE machine_id = ?)"
                for table in ["events", "run_states", "deployment_images"] {
                    try await db.execute("DELETE FROM \(table) WHERE deployment_id IN \(ofMachine)", [.text(id)])
                }
                for table in ["multicast_members", "deployments", "redeploys", "machine_macs"] {
                    try await db.execute("DELETE FROM \(table) WHERE machine_id = ?", [.text(id)])
                }
                try await db.execute("DELETE FROM machines WHERE id = ?", [.text(id)])
                return .forgotten(machine, deployments: deployments.count)
            }
        }
    }
}
