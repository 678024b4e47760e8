import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import SequenceModel

/// The deployment server: builds the Hummingbird application from `RouteSpec.all`.
public final class ImprintServer: Sendable {
    public let configuration: ServerConfiguration
    public let storage: any ServerStorage
    public let metrics = ServerMetrics()
    let logger: Logger
    /// Check-ins of one machine must not race (two deployments for one reboot): they are few
    /// and short, so one lock for all of them is enough; the storage adds a database-level one
    /// (PostgreSQL's advisory lock) so instances sharing a database take turns too.
    private let checkInLock = AsyncLock()

    public init(configuration: ServerConfiguration, storage: any ServerStorage, logger: Logger = Logger(label: "imprint-server")) {
        self.configuration = configuration
        self.storage = storage
        self.logger = logger
    }

    /// Creates the folders and the database when missing and applies the migrations: SQLite
    /// (WAL) in the data folder by default, or the PostgreSQL database `database` names, which
    /// any number of instances may share.
    public static func open(configuration: ServerConfiguration, database: DatabaseLocation = .sqlite(path: nil),
                            logger: Logger = Logger(label: "imprint-server")) async throws -> ImprintServer {
        for directory in [configuration.dataDirectory, configuration.contentDirectory, configuration.bootDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let storage: any ServerStorage
        switch database {
        case let .sqlite(path):
            let path = path ?? configuration.databasePath
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let sqlite = try await SQLiteStorage.open(path: path, logger: logger)
            try await sqlite.migrate()
            storage = sqlite
        case let .postgres(location):
            let postgres = try await PostgresStorage.open(location, logger: logger)
            do { try await postgres.migrate() } catch {
                await postgres.close()
                throw error
            }
            logger.info("database: PostgreSQL \(location.redacted)")
            storage = postgres
        }
        return ImprintServer(configuration: configuration, storage: storage, logger: logger)
    }

    /// Closes the database (the pool of PostgreSQL connections, or the SQLite file).
    public func close() async {
        if let sqlite = storage as? SQLiteStorage { try? await sqlite.close() }
        if let postgres = storage as? PostgresStorage { await postgres.close() }
    }

    /// HTTP, or HTTPS when the configuration names a certificate and key (which must load).
    public func makeApplication(onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let server: HTTPServerBuilder
        if let certificate = configuration.tlsCertificate {
            guard let key = configuration.tlsKey else { throw TLSSetupError("a TLS certificate needs its private key") }
            server = try .tls(.http1(), tlsConfiguration: Self.tlsConfiguration(certificate: certificate, key: key))
        } else {
            server = .http1()
        }
        let router = Router()
        for route in RouteSpec.all {
            router.on(RouterPath(stringLiteral: route.routerPath), method: route.method) { [self] request, context in
                do {
                    return try await self.handle(route.handler, request, context)
                } catch let error as APIError {
                    return error.response
                } catch {
                    self.logger.error("\(request.method) \(request.uri.path): \(error)")
                    return APIError(.internalServerError, "internal error: \(error)").response
                }
            }
        }
        return Application(router: router, server: server,
                           configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "imprint-server"),
                           onServerRunning: onServerRunning, logger: logger)
    }

    public struct TLSSetupError: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// The server's TLS settings from PEM files: the certificate (followed by any intermediates) and its key.
    public static func tlsConfiguration(certificate: String, key: String) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificate) } catch {
            throw TLSSetupError("\(certificate): not a readable PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw TLSSetupError("\(certificate): no certificate in the file") }
        let privateKey: NIOSSLPrivateKey
        do { privateKey = try NIOSSLPrivateKey(file: key, format: .pem) } catch {
            throw TLSSetupError("\(key): not a readable PEM private key (\(error))")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
    }

    func handle(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        switch handler {
        case .bootScript: return bootScript(request, mac: nil)
        case .bootScriptForMAC: return try await machineBootScript(request, mac: try request.requiredParameter("mac", context))
        case .bootFile:
            return try await ContentFiles.serve(root: configuration.bootDirectory, relative: [try request.requiredParameter("name", context)],
                                                request: request, count: nil)
        case .checkIn: return try await checkIn(request)
        case .deploymentSequence: return try await deploymentSequence(request, context)
        case .deploymentEvents: return try await deploymentEvents(request, context)
        case .content:
            let path = request.uri.path
            let prefix = "/content/"
            guard path.hasPrefix(prefix) else { throw APIError.notFound("file") }
            let segments = path.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            return try await ContentFiles.serve(root: configuration.contentDirectory, relative: segments, request: request,
                                                count: { [metrics] in metrics.addContentBytes($0) })
        case .metrics: return try await metricsText()
        case .dashboard, .dashboardDeployment, .dashboardLive, .dashboardApprove, .dashboardRedeploy:
            return try await dashboard(handler, request, context)
        default:
            try authorizeAdmin(request)
            return try await admin(handler, request, context)
        }
    }

    /// What the machine calls the server: --public-url, else the Host it used to reach us.
    func publicURL(_ request: Request) -> String {
        if let url = configuration.publicURL { return url }
        let host = request.head.authority ?? "\(configuration.host):\(configuration.port)"
        return configuration.scheme + "://" + host
    }

    // MARK: - Boot

    func bootScript(_ request: Request, mac: String?) -> Response {
        let base = publicURL(request)
        var lines = ["#!ipxe"]
        if let mac {
            // A per-machine script (chained as /boot/${netX/mac}.ipxe) says which MAC it was made for.
            lines.append("# for \(mac.filter { $0.isHexDigit || $0 == ":" || $0 == "-" })")
        } else {
            // The machine's own script first: a deployed machine is sent back to its disk there.
            // If it cannot be fetched, this one boots the agent all the same.
            lines.append("chain --replace --autofree \(base)/boot/${netX/mac}.ipxe || echo Imprint: no per-machine script, booting the agent")
        }
        lines += [
            "kernel \(base)/boot/files/vmlinuz initrd=initrd \(configuration.kernelArguments) imprint.agent imprint.server=\(base)",
            "initrd \(base)/boot/files/initrd",
            "boot",
        ]
        return JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
    }

    /// `/boot/{mac}.ipxe`: the agent, unless the machine with that MAC is deployed (deploy once,
    /// as WDS does): then iPXE exits and the firmware boots the next device, its disk.
    func machineBootScript(_ request: Request, mac: String) async throws -> Response {
        // iPXE percent-encodes the colons of ${netX/mac} in the URL.
        let wanted = Self.normalizedMAC(mac.removingPercentEncoding ?? mac)
        if let machine = try await storage.machines().first(where: { $0.macs.contains { Self.normalizedMAC($0) == wanted } }),
           let done = try await finishedDeployment(machineID: machine.id) {
            let lines = [
                "#!ipxe",
                "# for \(mac.filter { $0.isHexDigit || $0 == ":" || $0 == "-" })",
                "echo Imprint: this machine was deployed (\(Self.scriptSafe(done.sequenceName)), \(done.ended ?? done.created)): starting it from its disk.",
                "echo Imprint: to image it again, choose Deploy again on the dashboard.",
                "sleep 3",
                "exit",
            ]
            return JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
        }
        return bootScript(request, mac: mac.removingPercentEncoding ?? mac)
    }

    static func normalizedMAC(_ mac: String) -> String { mac.lowercased().replacingOccurrences(of: "-", with: ":") }

    /// A name shown by iPXE's echo: its settings syntax (`${...}`) and line breaks taken out.
    static func scriptSafe(_ text: String) -> String {
        String(text.filter { $0 != "$" && $0 != "\n" && $0 != "\r" }.prefix(80))
    }

    /// The succeeded deployment that makes this machine done, or nil when it is to be deployed:
    /// its newest deployment did not succeed, or an administrator asked for another one since.
    func finishedDeployment(machineID: String) async throws -> Deployment? {
        guard let latest = try await storage.latestDeployment(machineID: machineID), latest.state == .succeeded else { return nil }
        if let requested = try await storage.redeployRequested(machineID: machineID), requested > latest.created { return nil }
        return latest
    }

    // MARK: - Agents

    struct CheckInBody: Decodable { var facts: Facts }

    struct CheckInAnswer: Encodable {
        struct Assigned: Encodable {
            var id: String
            var token: String
            var sequenceUrl: String
            var variables: [String: String]
        }
        var status: String
        var deployment: Assigned?
        var retryAfter: Int?
        var message: String?
    }

    func checkIn(_ request: Request) async throws -> Response {
        var request = request
        let body = try decodeBody(CheckInBody.self, from: try await request.bodyData(limit: 1 << 20))
        let facts = body.facts
        guard !facts.macAddresses.isEmpty || !(facts.uuid ?? "").isEmpty || !(facts.serialNumber ?? "").isEmpty else {
            throw APIError(.unprocessableContent, "the facts name no MAC address, UUID or serial number to know the machine by",
                           field: "facts.macAddresses")
        }
        let base = publicURL(request)
        let answer: CheckInAnswer = try await checkInLock.withLock { try await storage.serializingCheckIns {
            let rules = try await storage.rules()
            let matched = rules.first { $0.name != Rule.defaultName && $0.matches(facts) }
            let fallback = rules.first { $0.name == Rule.defaultName }
            // A machine a rule names is known: it never waits for approval.
            let newState: Machine.State = matched != nil || configuration.unknownMachines == .default ? .approved : .pending
            let machine = try await storage.recordCheckIn(facts: facts, newState: newState)
            let token = Tokens.make()
            if let active = try await storage.activeDeployment(machineID: machine.id) {
                // Restarted mid-deployment: the same deployment, and only the new token works.
                try await storage.replaceToken(deploymentID: active.id, tokenHash: Tokens.hash(token))
                logger.info("machine \(machine.id) checked in again: deployment \(active.id) continues with a new token")
                return assigned(active, token: token)
            }
            if let done = try await finishedDeployment(machineID: machine.id) {
                return CheckInAnswer(status: "deployed", message: "deployed by deployment \(done.id) of \"\(done.sequenceName)\" "
                    + "(\(done.ended ?? done.created)); to image it again, choose Deploy again on the dashboard "
                    + "or POST /api/v1/admin/machines/\(machine.id)/redeploy")
            }
            let rule: Rule
            if let matched {
                rule = matched
            } else if machine.state == .approved || configuration.unknownMachines == .default, let fallback {
                rule = fallback
            } else {
                let message = machine.state == .approved
                    ? "approved, but no rule matches this machine and there is no rule named \"default\""
                    : "unknown machine \(machine.id): waiting for an administrator to approve it"
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter, message: message)
            }
            guard let sequence = try await storage.sequence(name: rule.sequence) else {
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter,
                                     message: "the rule for this machine names the sequence \"\(rule.sequence)\", which does not exist")
            }
            let id = UUID().uuidString.lowercased()
            var variables = rule.variables
            variables["ServerURL"] = base
            variables["DeploymentID"] = id
            let deployment = Deployment(id: id, machineID: machine.id, sequenceName: sequence.name, sequenceBody: sequence.body,
                                        variables: variables, tokenHash: Tokens.hash(token), state: .assigned, acknowledged: 0,
                                        created: Clock.now())
            try await storage.createDeployment(deployment)
            logger.info("machine \(machine.id): deployment \(id) of \"\(sequence.name)\"")
            return assigned(deployment, token: token)
        } }
        return JSON.response(answer)
    }

    private func assigned(_ deployment: Deployment, token: String) -> CheckInAnswer {
        CheckInAnswer(status: "assigned", deployment: .init(id: deployment.id, token: token,
                                                            sequenceUrl: "/api/v1/deployments/\(deployment.id)/sequence",
                                                            variables: deployment.variables))
    }

    /// The deployment the bearer token belongs to: 401 without a token, 403 with a wrong one or
    /// once the deployment has ended (its result is stored; nothing more is accepted).
    func authorizedDeployment(_ request: Request, _ context: BasicRequestContext) async throws -> Deployment {
        let id = try request.requiredParameter("id", context)
        guard let token = request.bearerToken else {
            var error = APIError(.unauthorized, "this needs the deployment's token: Authorization: Bearer <token>", field: "Authorization")
            error.headers[.wwwAuthenticate] = "Bearer"
            throw error
        }
        // An unknown id answers as a wrong token does, so ids cannot be probed.
        guard let deployment = try await storage.deployment(id: id), Tokens.equal(deployment.tokenHash, Tokens.hash(token)) else {
            throw APIError(.forbidden, "the token is not valid for this deployment", field: "Authorization")
        }
        guard deployment.isActive else {
            throw APIError(.forbidden, "deployment \(id) has ended (\(deployment.state.rawValue)); its token is no longer valid",
                           field: "Authorization")
        }
        return deployment
    }

    func deploymentSequence(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        return JSON.raw(Data(deployment.sequenceBody.utf8), contentType: "application/json")
    }

    struct EventBatch: Decodable { var events: [Event] }

    func deploymentEvents(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        var request = request
        let data = try await request.bodyData(limit: 1 << 20)
        let batch: EventBatch
        do {
            batch = try JSONDecoder().decode(EventBatch.self, from: data)
        } catch let error as DecodingError {
            let field = fieldPath(error)
            throw APIError(.unprocessableContent, describe(error), field: field, index: field.flatMap(Self.eventIndex))
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON")
        }
        for (index, event) in batch.events.enumerated() {
            if let problem = Self.problem(event) {
                throw APIError(.unprocessableContent, "event \(index): \(problem.message)", field: "events[\(index)].\(problem.field)", index: index)
            }
        }
        let result = try await storage.storeEvents(deploymentID: deployment.id, events: batch.events)
        metrics.addEvents(result.inserted)
        struct Answer: Encodable { var acknowledged: Int; var stored: Int; var state: String }
        return JSON.response(Answer(acknowledged: result.acknowledged, stored: result.inserted, state: result.deployment.state.rawValue))
    }

    /// `events[3].kind` → 3.
    static func eventIndex(_ field: String) -> Int? {
        guard field.hasPrefix("events["), let close = field.firstIndex(of: "]") else { return nil }
        return Int(field[field.index(field.startIndex, offsetBy: 7)..<close])
    }

    /// Parsers of event times, made once (an ISO8601DateFormatter per event was a fifth of the server's CPU under load).
    static let fractionalTime = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let plainTime = Date.ISO8601FormatStyle()

    /// What the decoder cannot check: numbering from 1, a real time, a result with a status.
    static func problem(_ event: Event) -> (field: String, message: String)? {
        if event.sequence < 1 { return ("sequence", "sequence numbers start at 1") }
        if (try? fractionalTime.parse(event.time)) == nil && (try? plainTime.parse(event.time)) == nil {
            return ("time", "\"\(event.time)\" is not an ISO 8601 time")
        }
        if event.kind == .result && event.status == nil { return ("status", "a result event needs a status") }
        if let percent = event.percent, !(0...100).contains(percent) { return ("percent", "percent must be between 0 and 100") }
        if let overall = event.overall, !(0...100).contains(overall) { return ("overall", "overall must be between 0 and 100") }
        return nil
    }

    // MARK: - Metrics

    func metricsText() async throws -> Response {
        let counts = try await storage.deploymentCounts()
        var text = "# HELP imprint_deployments Deployments by state.\n# TYPE imprint_deployments gauge\n"
        for state in Deployment.State.allCases { text += "imprint_deployments{state=\"\(state.rawValue)\"} \(counts[state] ?? 0)\n" }
        text += "# HELP imprint_events_ingested_total Events stored (duplicates not counted).\n# TYPE imprint_events_ingested_total counter\n"
        text += "imprint_events_ingested_total \(metrics.eventsIngested)\n"
        text += "# HELP imprint_content_bytes_served_total Bytes of /content sent.\n# TYPE imprint_content_bytes_served_total counter\n"
        text += "imprint_content_bytes_served_total \(metrics.contentBytesServed)\n"
        return JSON.raw(Data(text.utf8), contentType: "text/plain; version=0.0.4")
    }
}
