import Foundation
import SequenceModel
import Server
import SQLiteNIO
import TestSupport
import Testing

/// Secrets at rest and in every answer (issue 13): sealed in the database with a key kept
/// outside it, shown to administrators as a placeholder, opened only for the agent over TLS,
/// and redacted from the events it sends, whatever their length. Both databases, real HTTP.
@Suite("imprint-server keeps secrets", .serialized)
struct SecretsTests {
    // Distinct, so that finding one anywhere means it leaked from there.
    static let adminPwd = "Adm1n-\(UUID().uuidString.prefix(8))"
    static let joinPassword = "J0in-\(UUID().uuidString.prefix(8))"
    static let localPassword = "L0cal-\(UUID().uuidString.prefix(8))"
    /// Short secrets were once left in events: three characters are hidden too.
    static let pin = "q7Z"

    static let sequence = """
        {
          "name": "Join the domain",
          "variables": {"AdminPwd": "\(adminPwd)", "DomainJoinPassword": "\(joinPassword)", "Pin": "\(pin)", "Site": "lab"},
          "secrets": ["DomainJoinPassword"],
          "steps": [{"type": "setVariable", "name": "Mark", "variable": "Done", "value": "yes"}]
        }
        """
    static let rules = """
        {"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "join",
                    "variables": {"LocalAdminPassword": "\(localPassword)", "ComputerName": "PC-1"}}]}
        """
    static var everySecret: [String] { [adminPwd, joinPassword, localPassword] }

    /// A self-signed certificate for 127.0.0.1: secrets leave the server only over TLS.
    static func tls(_ scratch: ScratchDirectory) throws -> (certificate: String, key: String) {
        let certificate = scratch.sub("cert.pem"), key = scratch.sub("key.pem")
        try run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", certificate])
        return (certificate, key)
    }

    /// Everything the database holds, as text: the SQLite file and its WAL byte for byte, or
    /// every row of every table PostgreSQL has.
    static func rawDatabase(_ harness: ServerHarness) async throws -> String {
        switch harness.storageKind {
        case .sqlite:
            let path = harness.server.configuration.databasePath
            return [path, path + "-wal"].compactMap { FileManager.default.contents(atPath: $0) }
                .map { String(decoding: $0, as: UTF8.self) }.joined()
        case .postgres:
            let url = try #require(harness.databaseURL)
            let tables = try await PostgresCluster.shared.psql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                .split(separator: "\n").map(String.init)
            #expect(tables.contains("sequences") && tables.contains("events"), "\(tables)")
            var text = ""
            for table in tables { text += try await PostgresCluster.shared.psql(url, "SELECT t::text FROM \(table) t") }
            return text
        }
    }

    static func expectNoSecret(in text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for secret in everySecret {
            #expect(!text.contains(secret), "\(what) holds a secret: \(text.prefix(2000))", sourceLocation: sourceLocation)
        }
    }

    static func assigned(_ harness: ServerHarness, mac: String) async throws -> (id: String, token: String, variables: [String: String]) {
        let answer = try await harness.checkIn(macs: [mac])
        let deployment = try #require(answer.json["deployment"] as? [String: Any], "\(answer.text)")
        return (try #require(deployment["id"] as? String), try #require(deployment["token"] as? String),
                deployment["variables"] as? [String: String] ?? [:])
    }

    /// The key error a server gives at start, or nil (recorded as `otherwise`) when it started.
    static func refusedAtStart(_ configuration: ServerConfiguration, _ database: DatabaseLocation, _ otherwise: String) async throws
        -> SecretsKeyError? {
        do {
            let server = try await ImprintServer.open(configuration: configuration, database: database)
            await server.close()
            Issue.record(Comment(rawValue: otherwise))
            return nil
        } catch let error as SecretsKeyError {
            return error
        }
    }

    @Test(arguments: StorageKind.allCases) func sealedAtRestMaskedForAdministratorsOpenedForTheAgent(storage: StorageKind) async throws {
        let scratch = ScratchDirectory()
        let tls = try Self.tls(scratch)
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: {
            $0.tlsCertificate = tls.certificate
            $0.tlsKey = tls.key
        }) { harness in
            try await harness.putSequence("join", Self.sequence)
            try await harness.putRules(Self.rules)

            // The agent, over TLS, gets every value as it was uploaded.
            let first = try await Self.assigned(harness, mac: "52:54:00:5e:c0:01")
            #expect(first.variables["LocalAdminPassword"] == Self.localPassword && first.variables["ComputerName"] == "PC-1", "\(first.variables)")
            let served = try await harness.request("GET", "/api/v1/deployments/\(first.id)/sequence", token: first.token)
            #expect(served.status == 200 && served.text == Self.sequence, "\(served.text)")

            // The database holds none of them, only sealed values.
            let raw = try await Self.rawDatabase(harness)
            Self.expectNoSecret(in: raw, "the database")
            #expect(raw.contains("imprint-secret:v1:"))

            // The admin API shows that each secret is set, never its value.
            let sequence = try await harness.admin("GET", "/sequences/join")
            let variables = (sequence.json["variables"] as? [String: Any]) ?? [:]
            #expect(variables["AdminPwd"] as? String == "(secret, set)" && variables["DomainJoinPassword"] as? String == "(secret, set)"
                    && variables["Pin"] as? String == "(secret, set)" && variables["Site"] as? String == "lab", "\(sequence.text)")
            #expect(!sequence.text.contains(Self.pin))
            let rules = try await harness.admin("GET", "/rules")
            let ruleVariables = ((rules.json["rules"] as? [[String: Any]])?.first?["variables"] as? [String: String]) ?? [:]
            #expect(ruleVariables == ["LocalAdminPassword": "(secret, set)", "ComputerName": "PC-1"], "\(rules.text)")
            let deployment = try await harness.admin("GET", "/deployments/\(first.id)")
            #expect((deployment.json["variables"] as? [String: String])?["LocalAdminPassword"] == "(secret, set)", "\(deployment.text)")
            for path in ["/sequences/join", "/rules", "/deployments", "/deployments/\(first.id)", "/machines", "/sequences"] {
                Self.expectNoSecret(in: try await harness.admin("GET", path).text, "GET \(path)")
            }

            // GET, change something else, PUT it back: the placeholders keep the stored values.
            let edited = sequence.text.replacingOccurrences(of: "\"lab\"", with: "\"lab-2\"")
            #expect(try await harness.admin("PUT", "/sequences/join", json: edited).status == 200)
            let editedRules = rules.text.replacingOccurrences(of: "PC-1", with: "PC-2")
            let put = try await harness.admin("PUT", "/rules", json: editedRules)
            #expect(put.status == 200, "\(put.text)")
            Self.expectNoSecret(in: put.text, "PUT /rules")
            let second = try await Self.assigned(harness, mac: "52:54:00:5e:c0:02")
            #expect(second.variables["LocalAdminPassword"] == Self.localPassword && second.variables["ComputerName"] == "PC-2", "\(second.variables)")
            let again = try await harness.request("GET", "/api/v1/deployments/\(second.id)/sequence", token: second.token)
            let parsed = try #require(SequenceParser.parse(again.body, origin: "served").0, "\(again.text)")
            #expect(parsed.variables == ["AdminPwd": Self.adminPwd, "DomainJoinPassword": Self.joinPassword, "Pin": Self.pin, "Site": "lab-2"])
            Self.expectNoSecret(in: try await Self.rawDatabase(harness), "the database after the PUTs")

            // The placeholder is not a value: for a secret nothing is stored for, it is refused.
            let invented = sequence.text.replacingOccurrences(of: "\"Site\"", with: "\"NewPassword\": \"(secret, set)\", \"Site\"")
            let refused = try await harness.admin("PUT", "/sequences/join", json: invented)
            #expect(refused.status == 422 && refused.json["field"] as? String == "$.variables.NewPassword", "\(refused.text)")
            // Nor is a sealed value from another server's database (another key): it could never be opened.
            let foreign = sequence.text.replacingOccurrences(of: "\"Site\"", with: "\"OtherPassword\": \"imprint-secret:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", \"Site\"")
            let refusedForeign = try await harness.admin("PUT", "/sequences/join", json: foreign)
            #expect(refusedForeign.status == 422 && refusedForeign.json["field"] as? String == "$.variables.OtherPassword", "\(refusedForeign.text)")
            let renamed = rules.text.replacingOccurrences(of: "\"default\"", with: "\"other\"")
            let refusedRules = try await harness.admin("PUT", "/rules", json: renamed)
            #expect(refusedRules.status == 422 && refusedRules.json["field"] as? String == "rules[0].variables.LocalAdminPassword",
                    "\(refusedRules.text)")
        }
    }

    @Test(arguments: StorageKind.allCases) func eventsAreStoredAndShownRedacted(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default, configure: { $0.allowSecretsOverHTTP = true }) { harness in
            try await harness.putSequence("join", Self.sequence)
            try await harness.putRules(Self.rules)
            let deployment = try await Self.assigned(harness, mac: "52:54:00:5e:c0:11")
            // What an agent that redacts nothing (an old one, or a step that printed them) sends.
            var events = [ServerHarness.event(1, "sequenceStarted"), ServerHarness.event(2, "stepStarted", step: "1")]
            events[1]["name"] = "Join with \(Self.joinPassword)"
            for (index, message) in ["net user Administrator \(Self.adminPwd)", "PIN is \(Self.pin), \(Self.pin)!",
                                     "<Password><Value>\(Self.localPassword)</Value></Password>"].enumerated() {
                events.append(["sequence": index + 3, "time": "2026-01-02T03:04:05.678Z", "kind": "log", "level": "error", "message": message])
            }
            let posted = try await harness.request("POST", "/api/v1/deployments/\(deployment.id)/events",
                                                   body: ServerHarness.batch(events), token: deployment.token)
            #expect(posted.status == 200, "\(posted.text)")

            let stored = try await harness.admin("GET", "/deployments/\(deployment.id)/events")
            Self.expectNoSecret(in: stored.text, "the stored events")
            #expect(!stored.text.contains(Self.pin), "\(stored.text)")
            let messages = ((stored.json["events"] as? [[String: Any]]) ?? []).compactMap { ($0["event"] as? [String: Any])?["message"] as? String }
            #expect(messages.contains("net user Administrator ********") && messages.contains("PIN is ********, ********!"), "\(messages)")
            // The dashboard (a script with the admin token) shows the same, and the deployment's message too.
            let page = try await harness.request("GET", "/dashboard/deployments/\(deployment.id)", token: harness.adminToken)
            #expect(page.status == 200 && page.text.contains("********"), "\(page.status)")
            Self.expectNoSecret(in: page.text, "the dashboard")
            #expect(!page.text.contains("PIN is \(Self.pin)"))
            Self.expectNoSecret(in: try await harness.admin("GET", "/deployments/\(deployment.id)").text, "the deployment")
            Self.expectNoSecret(in: try await Self.rawDatabase(harness), "the database")
        }
    }

    @Test(arguments: StorageKind.allCases) func aWrongKeyIsRefusedAtStartNamingTheKeyFile(storage: StorageKind) async throws {
        let harness = try await ServerHarness(storage: storage, unknownMachines: .default)
        let database: DatabaseLocation
        do {
            try await harness.putSequence("join", Self.sequence)
            database = harness.storageKind == .sqlite ? .sqlite(path: harness.server.configuration.databasePath)
                : try DatabaseLocation(parsing: try #require(harness.databaseURL))
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
        let scratch = ScratchDirectory()
        let otherKey = scratch.sub("other.key")
        try Data((Data((0..<32).map { UInt8(255 - $0) }).base64EncodedString() + "\n").utf8).write(to: URL(fileURLWithPath: otherKey))
        var configuration = ServerConfiguration(dataDirectory: scratch.sub("data"), contentDirectory: scratch.sub("content"),
                                                bootDirectory: scratch.sub("boot"), adminToken: "x", publicURL: "http://127.0.0.1:1")
        configuration.secretsKeyFile = otherKey
        if let error = try await Self.refusedAtStart(configuration, database, "a server started with another key") {
            #expect(error.description.contains("the secrets in the database were encrypted with another key"), "\(error)")
            #expect(error.description.contains("--secrets-key-file") && error.description.contains(otherKey), "\(error)")
        }
        // The right key opens it again.
        configuration.secretsKeyFile = nil
        configuration.secretsKey = ServerHarness.secretsKey
        let server = try await ImprintServer.open(configuration: configuration, database: database)
        await server.close()
    }

    @Test(arguments: StorageKind.allCases) func aMissingKeyIsGeneratedPrivateAndKept(storage: StorageKind) async throws {
        let harness = try await ServerHarness(storage: storage, unknownMachines: .default, configure: { $0.secretsKey = nil })
        var configuration = harness.server.configuration
        let keyFile = configuration.dataDirectory + "/secrets.key"
        let database: DatabaseLocation
        do {
            try await harness.putSequence("join", Self.sequence)
            let attributes = try FileManager.default.attributesOfItem(atPath: keyFile)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(attributes)")
            let text = try String(contentsOfFile: keyFile, encoding: .utf8)
            #expect(Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines))?.count == 32, "\(text)")
            // Written beside and renamed: nothing else is left in the folder.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: configuration.dataDirectory).filter { $0.hasPrefix("secrets.key.") }
            #expect(leftovers.isEmpty, "\(leftovers)")
            database = harness.storageKind == .sqlite ? .sqlite(path: nil) : try DatabaseLocation(parsing: try #require(harness.databaseURL))
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()

        // The next start takes the same file.
        let before = try String(contentsOfFile: keyFile, encoding: .utf8)
        let again = try await ImprintServer.open(configuration: configuration, database: database)
        await again.close()
        #expect(try String(contentsOfFile: keyFile, encoding: .utf8) == before)

        // The file lost: a new key is no key for these secrets, and the one just made is not left to be mistaken for it.
        try FileManager.default.removeItem(atPath: keyFile)
        if let error = try await Self.refusedAtStart(configuration, database, "a server started with a new key on sealed secrets") {
            #expect(error.description.contains("encrypted with another key"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: keyFile))

        // A key file named but missing is an error, not a new key.
        configuration.secretsKeyFile = configuration.dataDirectory + "/absent.key"
        await #expect(throws: SecretsKeyError.self) { _ = try await ImprintServer.open(configuration: configuration, database: database) }
    }

    /// A database from before migration 6, secrets in plain text in a sequence, a rule, a
    /// deployment and its events: the migration seals them and redacts the events.
    @Test(arguments: StorageKind.allCases) func migrationSealsPlaintextSecrets(storage: StorageKind) async throws {
        let scratch = ScratchDirectory()
        let before = Migrations.all.filter { $0.version < Migrations.sealingSecrets }
        var statements = before.flatMap(\.statements)
        statements += before.map { "INSERT INTO schema_migrations (version, applied) VALUES (\($0.version), '2026-01-01T00:00:00.000Z')" }
        func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        let sequence = Self.sequence
        let event = #"{"kind":"log","message":"password is \#(Self.adminPwd) and \#(Self.localPassword)","sequence":1,"time":"2026-01-01T00:00:01.000Z"}"#
        statements += [
            "INSERT INTO sequences (name, body, updated) VALUES ('join', \(quoted(sequence)), '2026-01-01T00:00:00.000Z')",
            "INSERT INTO rules (position, name, match_field, pattern, sequence_name, variables) VALUES (0, 'default', 'any', '*', 'join', "
                + quoted(#"{"ComputerName":"PC-1","LocalAdminPassword":"\#(Self.localPassword)"}"#) + ")",
            "INSERT INTO machines (id, macs, facts, state, first_seen, last_seen) VALUES ('m1', ',52:54:00:00:00:01,', 'null', 'approved', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            "INSERT INTO deployments (id, machine_id, sequence_name, sequence_body, variables, token_hash, state, message, created) VALUES "
                + "('d1', 'm1', 'join', \(quoted(sequence)), "
                + quoted(#"{"DeploymentID":"d1","LocalAdminPassword":"\#(Self.localPassword)"}"#)
                + ", 'x', 'running', \(quoted("failed with \(Self.adminPwd)")), '2026-01-01T00:00:00.000Z')",
            "INSERT INTO events (deployment_id, sequence, kind, time, body, change_id, received) VALUES ('d1', 1, 'log', '2026-01-01T00:00:01.000Z', "
                + quoted(event) + ", 1, '2026-01-01T00:00:01.000Z')",
        ]
        let (location, postgresURL) = try await ServerHarness.oldDatabase(storage, statements: statements, scratch: scratch)
        var configuration = ServerConfiguration(dataDirectory: scratch.sub("data"), contentDirectory: scratch.sub("content"),
                                                bootDirectory: scratch.sub("boot"), adminToken: "x", publicURL: "http://127.0.0.1:1")
        configuration.secretsKey = ServerHarness.secretsKey
        let server = try await ImprintServer.open(configuration: configuration, database: location)
        await server.close()
        let raw: String
        if let postgresURL {
            raw = try await PostgresCluster.shared.psql(postgresURL, """
                SELECT body FROM sequences UNION ALL SELECT variables FROM rules UNION ALL SELECT sequence_body || variables || message FROM deployments
                UNION ALL SELECT body FROM events
                """)
        } else {
            // The rows as they are now (the file may keep freed pages of the old ones until a VACUUM).
            let connection = try await SQLiteConnection.open(storage: .file(path: scratch.sub("old.db")))
            var text = ""
            for query in ["SELECT body AS t FROM sequences", "SELECT variables AS t FROM rules",
                          "SELECT sequence_body || variables || message AS t FROM deployments", "SELECT body AS t FROM events"] {
                for row in try await connection.query(query, []) { text += row.column("t")?.string ?? "" }
            }
            try await connection.close()
            raw = text
        }
        Self.expectNoSecret(in: raw, "the migrated database")
        #expect(raw.contains("imprint-secret:v1:") && raw.contains("password is ******** and ********") && raw.contains("\"Site\": \"lab\""), "\(raw)")
    }
}
