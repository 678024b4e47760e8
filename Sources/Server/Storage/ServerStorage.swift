import Foundation
import SequenceModel

/// Everything the server keeps: `SQLiteStorage` (one file, one instance) or `PostgresStorage`
/// (any number of instances sharing one database), with the same migrations (`Migrations.all`
/// is written in the SQL both accept). Each method is atomic on its own, so handlers never hold
/// a transaction open across their own awaits.
public protocol ServerStorage: Sendable {
    /// Creates or upgrades the schema; safe on every start.
    func migrate() async throws

    /// Finds the machine by UUID, then any MAC, then serial; creates it (in `newState`) when
    /// none matches; records the facts and the time either way.
    func recordCheckIn(facts: Facts, newState: Machine.State) async throws -> Machine
    func machines() async throws -> [Machine]
    func machine(id: String) async throws -> Machine?
    /// False when there is no such machine.
    func setMachineState(id: String, state: Machine.State) async throws -> Bool

    func rules() async throws -> [Rule]
    func replaceRules(_ rules: [Rule]) async throws

    func sequence(name: String) async throws -> StoredSequence?
    func sequences() async throws -> [StoredSequence]
    func putSequence(name: String, body: String) async throws

    /// The machine's assigned or running deployment, if any.
    func activeDeployment(machineID: String) async throws -> Deployment?
    /// The machine's newest deployment in any state.
    func latestDeployment(machineID: String) async throws -> Deployment?
    /// Records that the machine is to be deployed again; false when there is no such machine.
    func requestRedeploy(machineID: String) async throws -> Bool
    /// When the machine was last asked to be deployed again, if ever.
    func redeployRequested(machineID: String) async throws -> String?
    func createDeployment(_ deployment: Deployment) async throws
    /// A new token for a deployment the machine restarted in the middle of; the old one stops working.
    func replaceToken(deploymentID: String, tokenHash: String) async throws
    func deployment(id: String) async throws -> Deployment?
    func deployments() async throws -> [Deployment]
    func deploymentCounts() async throws -> [Deployment.State: Int]

    /// Stores each event once (duplicates by sequence number are ignored), gives each new one
    /// the next change id, and moves the deployment's state, step, percent and message along.
    func storeEvents(deploymentID: String, events: [Event]) async throws -> EventIngestResult
    func events(deploymentID: String, afterSequence: Int, limit: Int) async throws -> [StoredEvent]

    /// The highest change id stored so far (0 when there is none): where a live feed starts.
    func latestChangeID() async throws -> Int
    /// Deployments with events stored after change `afterChange`, each with its newest change
    /// id, oldest first: how a live feed on any instance learns what any instance stored.
    func changedDeployments(afterChange: Int, limit: Int) async throws -> [(deploymentID: String, changeID: Int)]

    /// Runs `body` (a whole check-in: find the machine, its active deployment, create one) while
    /// no other check-in runs against this database, in this process or in any other instance.
    func serializingCheckIns<T: Sendable>(_ body: () async throws -> T) async throws -> T
}

extension ServerStorage {
    /// One process owns the database (SQLite): the server's own lock is enough.
    public func serializingCheckIns<T: Sendable>(_ body: () async throws -> T) async throws -> T { try await body() }
}

/// JSON columns (facts, variables, event bodies), written the same way by both storages so a
/// database moved from one to the other reads back alike.
enum StoredJSON {
    static func text<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String?) -> T? {
        guard let text else { return nil }
        return try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

/// The statements are written once with `?` placeholders (SQLite's); PostgreSQL numbers them.
public enum SQLPlaceholders {
    /// `?` → `$1`, `$2`, ... in order, except inside quoted strings and identifiers.
    public static func numbered(_ sql: String) -> String {
        var result = ""
        result.reserveCapacity(sql.count + 16)
        var index = 0
        var quote: Character?
        for character in sql {
            if let open = quote {
                if character == open { quote = nil }
                result.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                result.append(character)
            } else if character == "?" {
                index += 1
                result += "$\(index)"
            } else {
                result.append(character)
            }
        }
        return result
    }
}

/// The schema, in versions applied in order and recorded in `schema_migrations`. Plain SQL that
/// SQLite and PostgreSQL both accept (TEXT, BIGINT, DOUBLE PRECISION, ON CONFLICT, RETURNING),
/// one statement per string because SQLite prepares one at a time.
public enum Migrations {
    public static let all: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE machines (
                id TEXT PRIMARY KEY,
                macs TEXT NOT NULL,
                uuid TEXT,
                serial TEXT,
                manufacturer TEXT,
                model TEXT,
                facts TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'approved')),
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL
            )
            """,
            "CREATE INDEX machines_uuid ON machines (uuid)",
            "CREATE INDEX machines_serial ON machines (serial)",
            """
            CREATE TABLE rules (
                position BIGINT PRIMARY KEY,
                name TEXT,
                match_field TEXT NOT NULL CHECK (match_field IN ('mac', 'uuid', 'serial', 'model', 'any')),
                pattern TEXT NOT NULL,
                sequence_name TEXT NOT NULL,
                variables TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE sequences (
                name TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                updated TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE deployments (
                id TEXT PRIMARY KEY,
                machine_id TEXT NOT NULL REFERENCES machines (id),
                sequence_name TEXT NOT NULL,
                sequence_body TEXT NOT NULL,
                variables TEXT NOT NULL,
                token_hash TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('assigned', 'running', 'succeeded', 'failed')),
                current_step TEXT,
                percent DOUBLE PRECISION,
                message TEXT,
                acknowledged BIGINT NOT NULL DEFAULT 0,
                created TEXT NOT NULL,
                started TEXT,
                ended TEXT
            )
            """,
            "CREATE INDEX deployments_machine ON deployments (machine_id, state)",
            """
            CREATE TABLE events (
                deployment_id TEXT NOT NULL REFERENCES deployments (id),
                sequence BIGINT NOT NULL,
                kind TEXT NOT NULL,
                step TEXT,
                status TEXT,
                time TEXT NOT NULL,
                body TEXT NOT NULL,
                change_id BIGINT NOT NULL UNIQUE,
                received TEXT NOT NULL,
                PRIMARY KEY (deployment_id, sequence)
            )
            """,
            // One row per counter; UPDATE ... RETURNING takes the next value atomically in
            // both databases, so several server instances never hand out the same change id.
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO counters (name, value) VALUES ('change', 0)",
        ]),
        // Deploy once: a machine whose latest deployment succeeded boots from its disk, unless an
        // administrator asked for it to be deployed again after that deployment was created.
        (2, [
            """
            CREATE TABLE redeploys (
                machine_id TEXT PRIMARY KEY REFERENCES machines (id),
                requested TEXT NOT NULL
            )
            """,
        ]),
    ]
}
