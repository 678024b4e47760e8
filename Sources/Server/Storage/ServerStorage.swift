import Foundation
import SequenceModel

/// Everything the server keeps: `SQLStorage` over SQLite (one file, one instance) or over
/// PostgreSQL (any number of instances sharing one database), with the same statements and
/// migrations. Each method is atomic on its own, so handlers never hold a transaction open
/// across their own awaits.
///
/// Secret values are sealed on every write that holds them, with the key the storage was opened
/// with; what it returns of them is sealed, and only the handlers serving an agent open it.
public protocol ServerStorage: LibraryStorage, DistributionPointStorage, MulticastStorage, UserStorage, DeploymentReportStorage, MachineInventoryStorage,
                                SequenceVersionStorage, Sendable {
    /// Creates or upgrades the schema; safe on every start. Throws `SecretsKeyError` when the
    /// secrets key is not the one the database's secrets were sealed with.
    func migrate() async throws

    /// The machine a check-in is, compared exactly (never as a pattern): a known machine whose
    /// identity the check-in matches without contradicting any of it (its facts and last-seen
    /// time are updated; its identity never is), else a new machine as `policy` allows, pending
    /// whenever the check-in contradicts a known machine (the contradiction is kept with it).
    func identifyCheckIn(_ claim: MachineIdentity, facts: Facts, policy: CheckInPolicy) async throws -> CheckInIdentification
    func machines() async throws -> [Machine]
    func machine(id: String) async throws -> Machine?
    /// The machine that owns this MAC (normalized, `52:54:00:12:34:56`), through its index.
    func machine(mac: String) async throws -> Machine?
    /// A machine an administrator vouches for, approved, before it ever checks in. Throws
    /// `RegistrationConflict` when a MAC, the UUID or the serial already belongs to a machine.
    func registerMachine(_ identity: MachineIdentity, manufacturer: String?, model: String?) async throws -> Machine
    /// False when there is no such machine.
    func setMachineState(id: String, state: Machine.State) async throws -> Bool

    func rules() async throws -> [Rule]
    /// Stores the rules with their secret variables' values sealed.
    func replaceRules(_ rules: [Rule]) async throws

    func sequence(name: String) async throws -> StoredSequence?
    func sequences() async throws -> [StoredSequence]
    /// Stores the sequence with its secret variables' values sealed (and seals the values the
    /// rules naming it give variables it lists as secret).
    func putSequence(name: String, body: String) async throws

    /// The machine's assigned or running deployment, if any.
    func activeDeployment(machineID: String) async throws -> Deployment?
    /// The machine's newest deployment in any state.
    func latestDeployment(machineID: String) async throws -> Deployment?
    /// Records that the machine is to be deployed again; false when there is no such machine.
    func requestRedeploy(machineID: String) async throws -> Bool
    /// When the machine was last asked to be deployed again, if ever.
    func redeployRequested(machineID: String) async throws -> String?
    /// Stores the deployment with its copies of the sequence and variables sealed.
    func createDeployment(_ deployment: Deployment) async throws
    /// The highest event sequence number stored for the deployment (0 when none) and when the
    /// newest event arrived: how long the deployment has been quiet.
    func eventActivity(deploymentID: String) async throws -> (lastSequence: Int, lastReceived: String?)
    /// Issues a new token to a still active deployment (only its hash is stored; the old token
    /// stops working), clears an administrator's reset, and stores `notice` as a warning `log`
    /// event of the deployment after every event stored so far; returns that event's sequence
    /// number, after which the new agent numbers its own events. `resumed`: the machine's own
    /// run came back from an interruption, which the deployment counts (`resumes`). Nil when
    /// the deployment is missing or has ended.
    func reissueToken(deploymentID: String, tokenHash: String, notice: String, resumed: Bool) async throws -> Int?
    /// An administrator's reset: the token stops working at once and the machine's next
    /// check-in gets a new one; `notice` is stored as a warning event. The deployment as it is
    /// now, nil when missing; not changed when it has ended.
    func revokeToken(deploymentID: String, notice: String) async throws -> Deployment?
    func deployment(id: String) async throws -> Deployment?
    /// Keeps the run state an agent sent for its active deployment (its `token` is dropped
    /// here, whatever the caller left in it), unless a state with a higher revision is kept
    /// already. False when it was not stored: an older revision, or the deployment has ended.
    @discardableResult
    func storeRunState(_ state: RunState, deploymentID: String) async throws -> Bool
    /// The run state last stored for the deployment, nil when none was.
    func runState(deploymentID: String) async throws -> RunState?
    func deployments() async throws -> [Deployment]
    func deploymentCounts() async throws -> [Deployment.State: Int]

    /// Stores each event once (duplicates by sequence number are ignored), gives each new one
    /// the next change id, and moves the deployment's state, step, percent and message along.
    /// Events past `limits` are not stored but acknowledged (`refused` counts them), except a
    /// result: an agent resends whatever is not acknowledged, so refusing them with an error
    /// would keep its result from ever arriving.
    func storeEvents(deploymentID: String, events: [Event], limits: EventLimits) async throws -> EventIngestResult
    func events(deploymentID: String, afterSequence: Int, limit: Int) async throws -> [StoredEvent]

    /// The highest change id stored so far (0 when there is none): where a live feed starts.
    func latestChangeID() async throws -> Int
    /// Deployments with events stored after change `afterChange`, each with its newest change
    /// id, oldest first: how a live feed on any instance learns what any instance stored.
    func changedDeployments(afterChange: Int, limit: Int) async throws -> [(deploymentID: String, changeID: Int)]

    // The dashboard's pages, one page at a time (never every machine or event at once).

    /// The machines in `state`, `limit` of them from `offset` in the order they were first
    /// seen, and how many there are in that state.
    func machines(state: Machine.State, offset: Int, limit: Int) async throws -> (machines: [Machine], total: Int)
    /// The newest deployment of each of these machines that has one, by machine id.
    func latestDeployments(machineIDs: [String]) async throws -> [String: Deployment]
    /// When each of these machines was last asked to be deployed again, by machine id.
    func redeployRequests(machineIDs: [String]) async throws -> [String: String]
    /// Machines whose newest deployment failed, counted by the kind of failure (`internal` when none was said).
    func latestFailureCounts() async throws -> [String: Int]
    /// At most `limit` events numbered below `beforeSequence`, the newest of them, oldest first.
    func events(deploymentID: String, beforeSequence: Int, limit: Int) async throws -> [StoredEvent]
    /// The deployment's stepStarted and stepEnded events, oldest first, at most `limit`: its
    /// timeline, whichever page of its log is shown.
    func stepEvents(deploymentID: String, limit: Int) async throws -> [Event]

    /// A dashboard login (expired sessions are deleted on the way).
    func createSession(_ session: DashboardSession) async throws
    /// The session whose id hashes to `idHash`, if it has not expired.
    func session(idHash: String) async throws -> DashboardSession?
    /// Logs out; false when there was no such session.
    @discardableResult
    func deleteSession(idHash: String) async throws -> Bool

    /// Runs `body` (a whole check-in: find the machine, its active deployment, create one) while
    /// no other check-in runs against this database, in this process or in any other instance.
    func serializingCheckIns<T: Sendable>(_ body: () async throws -> T) async throws -> T
}

/// What a check-in may do to the machine list.
public struct CheckInPolicy: Sendable {
    /// The state of a new machine whose check-in contradicts no known one (a new machine that
    /// does contradict one is always pending).
    public var newState: Machine.State
    /// False with --require-registration: a check-in that is not a registered machine is
    /// refused and nothing is stored.
    public var mayCreate: Bool
    /// Where the check-in came from (kept with a new machine, and what the limit counts by).
    public var sourceAddress: String
    /// At most this many new machines per minute from one address; nil: no limit.
    public var newMachinesPerMinute: Int?

    public init(newState: Machine.State, mayCreate: Bool, sourceAddress: String, newMachinesPerMinute: Int?) {
        self.newState = newState
        self.mayCreate = mayCreate
        self.sourceAddress = sourceAddress
        self.newMachinesPerMinute = newMachinesPerMinute
    }
}

/// What the database made of a check-in.
public enum CheckInIdentification: Sendable {
    /// An exact match: a known machine, its facts and last-seen time updated.
    case known(Machine)
    /// A new machine that contradicts no known one, in the policy's state.
    case created(Machine)
    /// A new pending machine whose check-in contradicts known ones (`machine.conflicts`);
    /// those machines were left as they were.
    case conflicting(Machine)
    /// Registration is required and this is no registered machine: nothing was stored.
    case unregistered(conflicts: [IdentityConflict])
    /// The address created `count` machines in the last minute: nothing was stored; the next
    /// may come after `retryAfter` seconds.
    case tooManyNewMachines(count: Int, retryAfter: Int)
}

/// A registration naming what already belongs to a machine.
public struct RegistrationConflict: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var machineID: String
    public var message: String
    public var description: String { message }
}

/// JSON columns (facts, variables, event bodies), written the same way on both databases so a
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
        // What kind of failure ended a failed deployment (bad input, refused, network, disk,
        // interrupted, internal), from its result event: the dashboard groups failures by it.
        (3, ["ALTER TABLE deployments ADD COLUMN failure TEXT"]),
        // Exact machine identity. Each MAC belongs to one machine through its own indexed table,
        // compared with `=` only (a MAC of `%` once matched every machine through LIKE); a check-in
        // contradicting a machine becomes another machine, with the contradiction in `conflicts`;
        // new machines remember the address they came from (the per-address limit counts them);
        // a deployment's token is issued once, re-issued only after quiet time or a reset.
        (4, [
            "CREATE TABLE machine_macs (mac TEXT PRIMARY KEY, machine_id TEXT NOT NULL REFERENCES machines (id))",
            "CREATE INDEX machine_macs_machine ON machine_macs (machine_id)",
            // `machines.macs` (",a,b,") split one character at a time: substr and || are all
            // the string functions SQLite and PostgreSQL share. Only what has a MAC's shape is
            // kept; a MAC two machines had (the old LIKE merge could do that) goes to the
            // machine seen first.
            """
            WITH RECURSIVE split (machine_id, first_seen, rest, mac) AS (
                SELECT id, first_seen, macs || ',', CAST('' AS TEXT) FROM machines
                UNION ALL
                SELECT machine_id, first_seen, substr(rest, 2),
                       CASE WHEN substr(rest, 1, 1) = ',' THEN '' ELSE mac || substr(rest, 1, 1) END
                FROM split WHERE rest <> ''
            )
            INSERT INTO machine_macs (mac, machine_id)
            SELECT mac, machine_id FROM split
            WHERE substr(rest, 1, 1) = ',' AND length(mac) = 17 AND mac LIKE '__:__:__:__:__:__'
            ORDER BY first_seen, machine_id
            ON CONFLICT (mac) DO NOTHING
            """,
            // A machine whose MACs all belong to others is found again by its exact list.
            "CREATE INDEX machines_macs ON machines (macs)",
            "ALTER TABLE machines ADD COLUMN conflicts TEXT",
            "ALTER TABLE machines ADD COLUMN first_address TEXT",
            "ALTER TABLE machines ADD COLUMN registered TEXT",
            "CREATE INDEX machines_first_address ON machines (first_address, first_seen)",
            "ALTER TABLE deployments ADD COLUMN token_issued TEXT",
            "ALTER TABLE deployments ADD COLUMN token_reset TEXT",
        ]),
        // Dashboard sessions in the database, so any instance behind a load balancer accepts
        // them: the cookie holds a random id, the table only its SHA-256 (a copy of the
        // database opens no browser session), with the form's CSRF token and a fixed expiry.
        // Events per deployment are bounded in bytes as well as in number: `event_bytes` counts
        // the stored bodies (characters for events stored before this migration).
        (5, [
            """
            CREATE TABLE sessions (
                id_hash TEXT PRIMARY KEY,
                csrf_token TEXT NOT NULL,
                created TEXT NOT NULL,
                expires TEXT NOT NULL,
                address TEXT
            )
            """,
            "CREATE INDEX sessions_expires ON sessions (expires)",
            "ALTER TABLE deployments ADD COLUMN event_bytes BIGINT NOT NULL DEFAULT 0",
            "UPDATE deployments SET event_bytes = (SELECT COALESCE(SUM(length(body)), 0) FROM events WHERE events.deployment_id = deployments.id)",
            "CREATE INDEX machines_state ON machines (state, first_seen, id)",
        ]),
        // Secrets sealed at rest (AES-256-GCM, with a key kept outside the database): which key
        // sealed them, as its id and a value only that key opens, so a wrong key is refused at
        // start. The values themselves are sealed by `SQLStorage` after these statements, in
        // the same transaction (`sealingSecrets`).
        (6, [
            """
            CREATE TABLE secrets_key (
                id TEXT PRIMARY KEY,
                key_id TEXT NOT NULL,
                check_value TEXT NOT NULL,
                created TEXT NOT NULL
            )
            """,
        ]),
        // Resuming after a power cut: how many times a deployment was resumed by its own run,
        // and the run state its agent last sent. The state has its own table, not a column of
        // `deployments`: every read of a deployment (the event group commit's, the dashboard's
        // lists) takes whole rows, and a state may be up to 64 KiB.
        (7, [
            "ALTER TABLE deployments ADD COLUMN resumes BIGINT NOT NULL DEFAULT 0",
            """
            CREATE TABLE run_states (
                deployment_id TEXT PRIMARY KEY REFERENCES deployments (id),
                revision BIGINT NOT NULL,
                body TEXT NOT NULL,
                updated TEXT NOT NULL
            )
            """,
        ]),
        // The image library: imported WIMs, named images in versions (each its own file under
        // the content folder), the jobs that make them, and which deployment applied which
        // version (one query answers "which machines run version 3?").
        (8, [
            """
            CREATE TABLE library_wims (
                id TEXT PRIMARY KEY,
                file TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL,
                imported TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE library_images (
                name TEXT PRIMARY KEY,
                description TEXT,
                created TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE library_versions (
                image_name TEXT NOT NULL REFERENCES library_images (name),
                version BIGINT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('ready', 'retired')),
                file TEXT NOT NULL,
                body TEXT NOT NULL,
                created TEXT NOT NULL,
                PRIMARY KEY (image_name, version)
            )
            """,
            "CREATE INDEX library_versions_file ON library_versions (file)",
            """
            CREATE TABLE library_jobs (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('import', 'extract', 'service')),
                state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
                body TEXT NOT NULL,
                created TEXT NOT NULL
            )
            """,
            "CREATE INDEX library_jobs_state ON library_jobs (state, created)",
            """
            CREATE TABLE deployment_images (
                deployment_id TEXT NOT NULL REFERENCES deployments (id),
                image_name TEXT NOT NULL,
                version BIGINT NOT NULL,
                PRIMARY KEY (deployment_id, image_name, version)
            )
            """,
            "CREATE INDEX deployment_images_version ON deployment_images (image_name, version)",
        ]),
        // Distribution points: HTTP servers near the machines holding copies of the content,
        // each with its rules (subnets, gateways, as JSON lists), its token's hash and the last
        // status it reported (JSON: file → SHA-256), with the version of what it holds beside
        // it (what check-ins compare, without reading the status); and the published files' SHA-256s, valid
        // while a file keeps its size and modification time (nanoseconds), so a manifest of
        // many gigabytes is hashed once, not at every request.
        (9, [
            """
            CREATE TABLE distribution_points (
                name TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                subnets TEXT NOT NULL,
                gateways TEXT NOT NULL,
                priority BIGINT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                status TEXT,
                held_version TEXT,
                created TEXT NOT NULL,
                updated TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE content_hashes (
                path TEXT PRIMARY KEY,
                size BIGINT NOT NULL,
                modified_ns BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                hashed TEXT NOT NULL
            )
            """,
        ]),
        // Multicast sessions (issue 19): a file under the content folder sent to a group of
        // machines at once, the group and port it goes to, what starts it, which machines it
        // expects (ids as a JSON list, or a count), what the sender did, and the SHA-256 of its
        // block manifest (NULL until made); the instance whose thread sends it. Its members:
        // each machine the server put in it, by the receiver id the sender reports it by. At
        // most one open session per group and port. Rules may make sessions: their settings
        // (minMachines, waitSeconds, rateMbps) as JSON beside the rule.
        (10, [
            """
            CREATE TABLE multicast_sessions (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                file TEXT NOT NULL,
                image_name TEXT,
                image_version BIGINT,
                size BIGINT NOT NULL,
                group_address TEXT NOT NULL,
                port BIGINT NOT NULL,
                rate_bps BIGINT NOT NULL,
                min_machines BIGINT NOT NULL,
                start_at TEXT,
                expected_machines TEXT,
                expected_count BIGINT,
                rule_key TEXT,
                state TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'finished', 'cancelled', 'failed')),
                reason TEXT,
                created TEXT NOT NULL,
                started TEXT,
                ended TEXT,
                passes BIGINT NOT NULL DEFAULT 0,
                bytes_sent BIGINT NOT NULL DEFAULT 0,
                manifest_sha256 TEXT,
                instance TEXT
            )
            """,
            "CREATE INDEX multicast_sessions_state ON multicast_sessions (state, created)",
            "CREATE UNIQUE INDEX multicast_sessions_open_address ON multicast_sessions (group_address, port) WHERE state IN ('waiting', 'running')",
            """
            CREATE TABLE multicast_members (
                session_id TEXT NOT NULL REFERENCES multicast_sessions (id),
                machine_id TEXT NOT NULL REFERENCES machines (id),
                deployment_id TEXT,
                receiver TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('assigned', 'receiving', 'done', 'left')),
                assigned TEXT NOT NULL,
                done TEXT,
                PRIMARY KEY (session_id, machine_id)
            )
            """,
            "CREATE INDEX multicast_members_receiver ON multicast_members (session_id, receiver)",
            "ALTER TABLE rules ADD COLUMN multicast TEXT",
        ]),
        // Users (issue 20): named users with a role and a scrypt password hash; their API
        // tokens (only the SHA-256 of each secret, revoked ones kept to show when); the audit
        // log, numbered by a counter as events are, actors kept as text so entries outlive a
        // deleted user; a dashboard session's user (NULL: logged in with the admin token).
        (11, [
            """
            CREATE TABLE users (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'administrator')),
                password_hash TEXT NOT NULL,
                created TEXT NOT NULL,
                updated TEXT NOT NULL,
                created_by TEXT
            )
            """,
            """
            CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY,
                user_name TEXT NOT NULL REFERENCES users (name),
                label TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created TEXT NOT NULL,
                created_by TEXT NOT NULL,
                last_used TEXT,
                revoked TEXT
            )
            """,
            "CREATE INDEX api_tokens_user ON api_tokens (user_name)",
            """
            CREATE TABLE audit_log (
                id BIGINT PRIMARY KEY,
                time TEXT NOT NULL,
                actor TEXT NOT NULL,
                actor_role TEXT NOT NULL,
                via TEXT NOT NULL,
                action TEXT NOT NULL,
                object_kind TEXT NOT NULL,
                object_id TEXT,
                before_value TEXT,
                after_value TEXT
            )
            """,
            "CREATE INDEX audit_log_actor ON audit_log (actor, id)",
            "CREATE INDEX audit_log_object ON audit_log (object_kind, object_id, id)",
            "CREATE INDEX audit_log_time ON audit_log (time)",
            "INSERT INTO counters (name, value) VALUES ('audit', 0)",
            "ALTER TABLE sessions ADD COLUMN user_name TEXT",
        ]),
        // Machines rejected by an administrator (issue 20): when, in a column of its own, since
        // `state`'s CHECK (pending, approved) cannot change without rebuilding the table; the
        // inventory's filters and order (last seen, model) by index.
        (12, [
            "ALTER TABLE machines ADD COLUMN rejected TEXT",
            "CREATE INDEX machines_last_seen ON machines (last_seen, id)",
            "CREATE INDEX machines_model ON machines (model)",
        ]),
        // Task sequences' versions (issue 20): every save keeps the body it replaces, sealed as
        // it was stored, with who saved it and when and who replaced it and when; the current
        // body stays in `sequences`, with its version number and who saved it.
        (13, [
            """
            CREATE TABLE sequence_versions (
                sequence_name TEXT NOT NULL,
                version BIGINT NOT NULL,
                body TEXT NOT NULL,
                saved TEXT NOT NULL,
                saved_by TEXT,
                replaced TEXT NOT NULL,
                replaced_by TEXT,
                PRIMARY KEY (sequence_name, version)
            )
            """,
            "ALTER TABLE sequences ADD COLUMN version BIGINT NOT NULL DEFAULT 1",
            "ALTER TABLE sequences ADD COLUMN updated_by TEXT",
        ]),
        // The Deployments pages (issue 20): lists filtered by state, time, sequence and machine,
        // newest first, and the summary's window, read through `created` instead of every row.
        (14, [
            "CREATE INDEX deployments_by_created ON deployments (created)",
            "CREATE INDEX deployments_by_state_created ON deployments (state, created)",
            "CREATE INDEX deployments_by_sequence_created ON deployments (sequence_name, created)",
        ]),
    ]

    /// The migration after whose statements the secrets stored in plain text so far are sealed.
    public static let sealingSecrets = 6
}
