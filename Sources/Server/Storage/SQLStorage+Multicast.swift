import Foundation

/// Multicast sessions (migration 10): one file sent to a group of machines at once, and the
/// machines the server put in each (issue 19). The sender itself runs in the instance that
/// made the session (`MulticastSessions`); these rows are what every instance's check-ins and
/// dashboards read.
public protocol MulticastStorage: Sendable {
    /// Newest first.
    func multicastSessions() async throws -> [MulticastSession]
    func multicastSession(id: String) async throws -> MulticastSession?
    /// Waiting or running, oldest first: what check-ins may put a machine in.
    func openMulticastSessions() async throws -> [MulticastSession]
    /// Stores a new session. Its group and port: the first of `addresses` no open session uses,
    /// when `addresses` is given (else the session's own, refused when an open session has them).
    /// Throws `MulticastConflict` naming the field (name taken, group in use, range exhausted).
    func createMulticastSession(_ session: MulticastSession, addresses: [(group: String, port: Int)]?) async throws -> MulticastSession
    /// Records the manifest's SHA-256 once it is made (the session takes machines from then on).
    func setMulticastManifest(id: String, sha256: String) async throws
    /// What the sender did so far; `started` moves a waiting session to running (once).
    func updateMulticastProgress(id: String, passes: Int, bytesSent: UInt64, started: String?) async throws
    /// Ends an open session (finished, cancelled, failed) with `reason`; its members that
    /// are not done have left. Nil when it was not open (it stays as it was).
    func endMulticastSession(id: String, state: MulticastSession.State, reason: String?) async throws -> MulticastSession?
    /// Removes the session and its members; false when there was none.
    func deleteMulticastSession(id: String) async throws -> Bool
    /// The open sessions `instance` runs: what its start finds left by its previous run.
    func openMulticastSessions(instance: String) async throws -> [MulticastSession]

    func multicastMembers(session: String) async throws -> [MulticastMember]
    /// Puts the machine in the session (again: a new receiver id, assigned again).
    func addMulticastMember(_ member: MulticastMember) async throws
    /// New states by receiver id, as the sender heard them; done ones get `done` set.
    func updateMulticastMembers(session: String, states: [String: MulticastMember.State]) async throws
}

/// One file sent to many machines at once.
public struct MulticastSession: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable, CaseIterable { case waiting, running, finished, cancelled, failed }
    /// 16 lower-case hex digits: the session id every datagram carries.
    public var id: String
    public var name: String
    /// The file, under the content folder (a library version's file when `image` is set).
    public var file: String
    public var image: String?
    public var imageVersion: Int?
    public var size: UInt64
    public var group: String
    public var port: Int
    public var rateBitsPerSecond: Int
    /// The sender starts when this many receivers are heard, or at `startAt`.
    public var minMachines: Int
    public var startAt: String?
    /// Which machines may join: these ids, or the next `expectedCount` that check in; a session
    /// a rule made takes that rule's machines (`rule`), any number.
    public var expectedMachines: [String]?
    public var expectedCount: Int?
    /// The rule that made it (its name, or "match:pattern" for an unnamed one).
    public var rule: String?
    public var state: State
    /// Why it ended, for a cancelled or failed one (and how a finished one finished).
    public var reason: String?
    public var created: String
    public var started: String?
    public var ended: String?
    public var passes: Int
    public var bytesSent: UInt64
    /// Nil until the block manifest is made: the session takes no machine before.
    public var manifestSHA256: String?
    /// The server instance whose thread sends it.
    public var instance: String?

    public var isOpen: Bool { state == .waiting || state == .running }
}

public struct MulticastMember: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable, CaseIterable { case assigned, receiving, done, left }
    public var session: String
    public var machineID: String
    public var deploymentID: String?
    /// 16 hex digits, fresh for every assignment: how the sender reports this machine.
    public var receiver: String
    public var state: State
    public var assigned: String
    public var done: String?
}

/// A session that cannot be stored as asked, naming the field at fault.
public struct MulticastConflict: Error, CustomStringConvertible, Sendable {
    public var field: String
    public var description: String
}

extension SQLStorage {
    private static func multicastSession(_ row: SQLRow) -> MulticastSession? {
        guard let id = row.string("id"), let name = row.string("name"), let file = row.string("file"),
              let group = row.string("group_address"), let port = row.integer("port"), let state = row.string("state").flatMap(MulticastSession.State.init),
              let created = row.string("created") else { return nil }
        return MulticastSession(
            id: id, name: name, file: file, image: row.string("image_name"), imageVersion: row.integer("image_version"),
            size: UInt64(max(0, row.integer("size") ?? 0)), group: group, port: port, rateBitsPerSecond: row.integer("rate_bps") ?? 0,
            minMachines: row.integer("min_machines") ?? 1, startAt: row.string("start_at"),
            expectedMachines: StoredJSON.decode([String].self, row.string("expected_machines")), expectedCount: row.integer("expected_count"),
            rule: row.string("rule_key"), state: state, reason: row.string("reason"), created: created, started: row.string("started"),
            ended: row.string("ended"), passes: row.integer("passes") ?? 0, bytesSent: UInt64(max(0, row.integer("bytes_sent") ?? 0)),
            manifestSHA256: row.string("manifest_sha256"), instance: row.string("instance"))
    }

    private static func multicastMember(_ row: SQLRow) -> MulticastMember? {
        guard let session = row.string("session_id"), let machine = row.string("machine_id"), let receiver = row.string("receiver"),
              let state = row.string("state").flatMap(MulticastMember.State.init), let assigned = row.string("assigned") else { return nil }
        return MulticastMember(session: session, machineID: machine, deploymentID: row.string("deployment_id"), receiver: receiver,
                               state: state, assigned: assigned, done: row.string("done"))
    }

    func multicastSessions() async throws -> [MulticastSession] {
        try await executor.query("SELECT * FROM multicast_sessions ORDER BY created DESC, id").compactMap(Self.multicastSession)
    }

    func multicastSession(id: String) async throws -> MulticastSession? {
        try await executor.query("SELECT * FROM multicast_sessions WHERE id = ?", [.text(id)]).first.flatMap(Self.multicastSession)
    }

    func openMulticastSessions() async throws -> [MulticastSession] {
        try await executor.query("SELECT * FROM multicast_sessions WHERE state IN ('waiting', 'running') ORDER BY created, id")
            .compactMap(Self.multicastSession)
    }

    func openMulticastSessions(instance: String) async throws -> [MulticastSession] {
        try await executor.query("SELECT * FROM multicast_sessions WHERE state IN ('waiting', 'running') AND instance = ? ORDER BY created, id",
                                 [.text(instance)]).compactMap(Self.multicastSession)
    }

    func createMulticastSession(_ session: MulticastSession, addresses: [(group: String, port: Int)]?) async throws -> MulticastSession {
        try await executor.transaction { db in
            // Open sessions locked (PostgreSQL): two instances allocating at once take turns.
            let open = try await db.execute("SELECT name, group_address, port FROM multicast_sessions WHERE state IN ('waiting', 'running')"
                                            + lockingSelectedRows)
            if !(try await db.execute("SELECT id FROM multicast_sessions WHERE name = ?", [.text(session.name)]).isEmpty) {
                throw MulticastConflict(field: "name", description: "a multicast session is named \"\(session.name)\" already: choose another name")
            }
            let used = Set(open.compactMap { row in row.string("group_address").flatMap { group in row.integer("port").map { "\(group):\($0)" } } })
            var stored = session
            if let addresses {
                guard let free = addresses.first(where: { !used.contains("\($0.group):\($0.port)") }) else {
                    throw MulticastConflict(field: "group", description: "every group address of the server's range (--multicast-groups) is used by an "
                                            + "open session (\(open.count)): end one, or give the group and port")
                }
                stored.group = free.group
                stored.port = free.port
            } else if used.contains("\(session.group):\(session.port)") {
                throw MulticastConflict(field: "group", description: "an open multicast session sends to \(session.group) port \(session.port) already: "
                                        + "choose another group or port, or leave them out for the server to choose")
            }
            let s = stored
            try await db.execute("""
                INSERT INTO multicast_sessions (id, name, file, image_name, image_version, size, group_address, port, rate_bps, min_machines,
                    start_at, expected_machines, expected_count, rule_key, state, reason, created, started, ended, passes, bytes_sent,
                    manifest_sha256, instance)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.text(s.id), .text(s.name), .text(s.file), .text(s.image), s.imageVersion.map { .integer($0) } ?? .null,
                      .integer(Int(clamping: s.size)), .text(s.group), .integer(s.port), .integer(s.rateBitsPerSecond), .integer(s.minMachines),
                      .text(s.startAt), .text(try s.expectedMachines.map { try StoredJSON.text($0) }), s.expectedCount.map { .integer($0) } ?? .null,
                      .text(s.rule), .text(s.state.rawValue), .text(s.reason), .text(s.created), .text(s.started), .text(s.ended),
                      .integer(s.passes), .integer(Int(clamping: s.bytesSent)), .text(s.manifestSHA256), .text(s.instance)])
            return s
        }
    }

    func setMulticastManifest(id: String, sha256: String) async throws {
        try await executor.execute("UPDATE multicast_sessions SET manifest_sha256 = ? WHERE id = ?", [.text(sha256), .text(id)])
    }

    func updateMulticastProgress(id: String, passes: Int, bytesSent: UInt64, started: String?) async throws {
        try await executor.execute("UPDATE multicast_sessions SET passes = ?, bytes_sent = ? WHERE id = ?",
                                   [.integer(passes), .integer(Int(clamping: bytesSent)), .text(id)])
        if let started {
            try await executor.execute("UPDATE multicast_sessions SET state = 'running', started = ? WHERE id = ? AND state = 'waiting'",
                                       [.text(started), .text(id)])
        }
    }

    func endMulticastSession(id: String, state: MulticastSession.State, reason: String?) async throws -> MulticastSession? {
        try await executor.transaction { db in
            guard let row = try await db.execute("""
                UPDATE multicast_sessions SET state = ?, reason = ?, ended = ? WHERE id = ? AND state IN ('waiting', 'running') RETURNING *
                """, [.text(state.rawValue), .text(reason), .text(StoredTime.now()), .text(id)]).first else { return nil }
            try await db.execute("UPDATE multicast_members SET state = 'left' WHERE session_id = ? AND state IN ('assigned', 'receiving')", [.text(id)])
            return Self.multicastSession(row)
        }
    }

    func deleteMulticastSession(id: String) async throws -> Bool {
        try await executor.transaction { db in
            try await db.execute("DELETE FROM multicast_members WHERE session_id = ?", [.text(id)])
            return !(try await db.execute("DELETE FROM multicast_sessions WHERE id = ? RETURNING id", [.text(id)]).isEmpty)
        }
    }

    func multicastMembers(session: String) async throws -> [MulticastMember] {
        try await executor.query("SELECT * FROM multicast_members WHERE session_id = ? ORDER BY assigned, machine_id", [.text(session)])
            .compactMap(Self.multicastMember)
    }

    func addMulticastMember(_ member: MulticastMember) async throws {
        try await executor.execute("""
            INSERT INTO multicast_members (session_id, machine_id, deployment_id, receiver, state, assigned, done) VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (session_id, machine_id) DO UPDATE SET deployment_id = excluded.deployment_id, receiver = excluded.receiver,
                state = excluded.state, assigned = excluded.assigned, done = excluded.done
            """, [.text(member.session), .text(member.machineID), .text(member.deploymentID), .text(member.receiver),
                  .text(member.state.rawValue), .text(member.assigned), .text(member.done)])
    }

    func updateMulticastMembers(session: String, states: [String: MulticastMember.State]) async throws {
        guard !states.isEmpty else { return }
        let now = StoredTime.now()
        try await executor.transaction { db in
            for (receiver, state) in states.sorted(by: { $0.key < $1.key }) {
                // Done is final: a late heartbeat saying receiving does not take it back.
                if state == .done {
                    try await db.execute("UPDATE multicast_members SET state = 'done', done = ? WHERE session_id = ? AND receiver = ? AND state <> 'done'",
                                         [.text(now), .text(session), .text(receiver)])
                } else {
                    try await db.execute("UPDATE multicast_members SET state = ? WHERE session_id = ? AND receiver = ? AND state <> 'done'",
                                         [.text(state.rawValue), .text(session), .text(receiver)])
                }
            }
        }
    }
}
