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
    let checkInLock = AsyncLock()
    /// The `/dashboard/live` streams open on this instance (each polls the database), capped by `limits.liveStreams`.
    let liveStreams = LiveStreamSlots()
    /// How many dashboard pages follow the live feed on this instance now.
    public var openLiveStreams: Int { liveStreams.count }
    /// Failed dashboard logins per address (guessing the admin token through the form).
    let loginThrottle: LoginThrottle
    /// Opens secrets for the agent and masks them for administrators, with the key `storage` seals them with.
    let sealing: SecretSealing
    /// Each active deployment's secret values, to redact the events its agent sends.
    let redactors = DeploymentRedactors()
    /// Resumable uploads under way, captures and library WIMs (one request at a time each).
    let uploads = ResumableUploads()
    /// The image library's background jobs (import, extract, service).
    let libraryJobs = LibraryJobs()
    /// Hashes of published files for the distribution points' manifest, each file read once at a time.
    let contentHashing = ContentHashing()
    /// The Content page's background hashing of files not hashed since they changed.
    let contentHashQueue = ContentHashQueue()
    /// Multicast sessions: their block manifests and the senders this instance runs.
    let multicast: MulticastSessions

    public init(configuration: ServerConfiguration, storage: any ServerStorage, secrets: SecretBox,
                logger: Logger = Logger(label: "imprint-server")) {
        self.configuration = configuration
        self.storage = storage
        self.logger = logger
        sealing = SecretSealing(box: secrets)
        multicast = MulticastSessions(dataDirectory: configuration.dataDirectory)
        loginThrottle = LoginThrottle(allowed: configuration.limits.failedLogins, windowSeconds: configuration.limits.failedLoginWindow)
    }

    /// Creates the folders and the database when missing and applies the migrations: SQLite
    /// (WAL) in the data folder by default, or the PostgreSQL database `database` names, which
    /// any number of instances may share.
    /// `backgroundExecutor`: where the server's own background work (the image library's
    /// jobs) runs; nil: Swift's default pool. Tests give the threads their servers run on.
    public static func open(configuration: ServerConfiguration, database: DatabaseLocation = .sqlite(path: nil),
                            logger: Logger = Logger(label: "imprint-server"),
                            backgroundExecutor: (any TaskExecutor)? = nil) async throws -> ImprintServer {
        for directory in [configuration.dataDirectory, configuration.contentDirectory, configuration.bootDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let (storage, secrets) = try await openStorage(configuration: configuration, database: database, logger: logger)
        logger.info("secrets: sealed in the database with \(secrets.source) (key id \(secrets.keyID))")
        let server = ImprintServer(configuration: configuration, storage: storage, secrets: secrets, logger: logger)
        try FileManager.default.createDirectory(atPath: server.libraryWorkDirectory, withIntermediateDirectories: true)
        await server.libraryJobs.start(server, on: backgroundExecutor)
        await server.multicast.start(server, on: backgroundExecutor)
        return server
    }

    /// The database alone, migrated, with the secrets key it was sealed with: what `open`
    /// starts the server on, and what `imprint-server user` works on (no jobs, no senders).
    public static func openStorage(configuration: ServerConfiguration, database: DatabaseLocation,
                                   logger: Logger) async throws -> (storage: any ServerStorage, secrets: SecretBox) {
        let (secrets, generatedKeyFile) = try SecretBox.load(file: configuration.secretsKeyFile, base64: configuration.secretsKey,
                                                             dataDirectory: configuration.dataDirectory, logger: logger)
        let storage: any ServerStorage
        do {
            switch database {
            case let .sqlite(path):
                let path = path ?? configuration.databasePath
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let sqlite = try await SQLiteStorage.open(path: path, logger: logger, secrets: secrets)
                do { try await sqlite.migrate() } catch {
                    try? await sqlite.close()
                    throw error
                }
                storage = sqlite
            case let .postgres(location):
                let postgres = try await PostgresStorage.open(location, logger: logger, secrets: secrets)
                do { try await postgres.migrate() } catch {
                    await postgres.close()
                    throw error
                }
                logger.info("database: PostgreSQL \(location.redacted)")
                storage = postgres
            }
        } catch var error as SecretsKeyError {
            // A key generated just now for a database sealed with another: it opens nothing, and
            // left in place it would be taken for the right one at the next start.
            if let generatedKeyFile, unlink(generatedKeyFile) == 0 {
                error.message += " (the key generated at this start in \(generatedKeyFile) was removed)"
            }
            throw error
        }
        return (storage, secrets)
    }

    /// Closes a storage `openStorage` opened.
    public static func close(_ storage: any ServerStorage) async {
        if let sqlite = storage as? SQLiteStorage { try? await sqlite.close() }
        if let postgres = storage as? PostgresStorage { await postgres.close() }
    }

    /// Closes the database (the pool of PostgreSQL connections, or the SQLite file).
    public func close() async {
        await libraryJobs.stop()
        // The senders end their sessions in the database, so before it closes.
        await multicast.stop()
        if let sqlite = storage as? SQLiteStorage { try? await sqlite.close() }
        if let postgres = storage as? PostgresStorage { await postgres.close() }
    }

    /// A kept-alive connection left idle this long is closed (one that is reading a request or
    /// writing a response is not: downloads and the dashboard's feed run as long as they need).
    /// A client that boots or powers off leaves its connections open: GRUB 2.12 did, when our
    /// scripts ended in `boot` (they are menu entries now, see `BootLoader`), and as it numbers
    /// its TCP ports from 21550 with small sequence numbers at every start, those connections,
    /// kept, met the machine's next GRUB on the same ports, whose connections then failed.
    /// Closed after 30 s, the machine's next system (the agent's kernel) answers with a reset
    /// and the server forgets them.
    public static let idleConnectionTimeoutSeconds = 30.0
    private static var http1: HTTP1Channel.Configuration {
        .init(idleTimeout: .nanoseconds(Int64(idleConnectionTimeoutSeconds * 1_000_000_000)))
    }

    /// HTTP, or HTTPS when the configuration names a certificate and key (which must load).
    public func makeApplication(onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let server: HTTPServerBuilder
        if let certificate = configuration.tlsCertificate {
            guard let key = configuration.tlsKey else { throw TLSSetupError("a TLS certificate needs its private key") }
            server = try .tls(.http1(configuration: Self.http1), tlsConfiguration: Self.tlsConfiguration(certificate: certificate, key: key))
        } else {
            server = .http1(configuration: Self.http1)
        }
        let router = Router(context: ClientRequestContext.self)
        for route in RouteSpec.all {
            router.on(RouterPath(stringLiteral: route.routerPath), method: route.method) { [self] request, context in
                do {
                    try self.checkAgentSubnet(route.handler, client: context.clientAddress)
                    return try await self.handle(route.handler, request, context.basic, client: context.clientAddress)
                } catch {
                    return self.errorResponse(error, request)
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

    func handle(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext, client: String) async throws -> Response {
        switch handler {
        case .bootScript(let loader): return bootScript(loader, method: request.method)
        case .bootScriptForMAC(let loader):
            return try await machineBootScript(loader, mac: try request.requiredParameter("mac", context), method: request.method)
        case .bootFile:
            let name = try request.requiredParameter("name", context)
            let response = try await ContentFiles.serve(root: configuration.bootDirectory, relative: [name], request: request, logger: logger, count: nil)
            // Which machine took which boot file, as dnsmasq logs each file it sends by TFTP: under
            // UEFI HTTP Boot the firmware, shim and GRUB show little of what they fetched.
            if request.method == .get, response.status == .ok || response.status == .partialContent {
                logger.info("boot file \(name) (\(response.headers[.contentLength] ?? "?") bytes) to \(client)")
            }
            return response
        case .checkIn: return try await checkIn(request, client: client)
        case .deploymentSequence: return try await deploymentSequence(request, context)
        case .deploymentEvents: return try await deploymentEvents(request, context)
        case .deploymentState: return try await deploymentState(request, context)
        case .captureAnnounce: return try await captureAnnounce(request, context)
        case .captureData: return try await captureData(request, context)
        case .content:
            let path = request.uri.path
            let prefix = "/content/"
            guard path.hasPrefix(prefix) else { throw APIError.notFound("file") }
            let segments = path.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            return try await ContentFiles.serve(root: configuration.contentDirectory, relative: segments, request: request,
                                                logger: logger, accelRedirect: configuration.contentAccelRedirect,
                                                count: { [metrics] in metrics.addContentBytes($0) })
        case .metrics: return try await metricsText()
        case .dashboard, .dashboardDeployment, .dashboardLive, .dashboardApprove, .dashboardRedeploy, .dashboardResetToken,
             .dashboardLogin, .dashboardLogout, .dashboardScript, .dashboardStyle,
             .dashboardImages, .dashboardImage, .dashboardLibrary, .dashboardDistributionPoints,
             .dashboardMulticast, .dashboardMulticastAPI, .dashboardUsers, .dashboardMachines:
            return try await dashboard(handler, request, context, client: client)
        case .dashboardDeployments, .dashboardContent:
            return try await dashboard(handler, request, context, client: client)
        case .dashboardRules, .dashboardSequences:
            return try await dashboard(handler, request, context, client: client)
        // Every admin route by name: a new handler must be placed here (or above) on purpose,
        // never fall behind admin authentication (or out of it) by default.
        case .adminGetSequence, .adminPutSequence, .adminListSequences, .adminGetRules, .adminPutRules, .adminMachines,
             .adminApproveMachine, .adminRedeployMachine, .adminDeployments, .adminDeployment, .adminDeploymentEvents,
             .adminRegisterMachine, .adminResetDeploymentToken:
            // The admin token or a user's API token, held to the route's role (`adminRoute`).
            return try await adminRoute(handler, request, context) { try await self.admin(handler, request, context) }
        case let .library(route):
            return try await adminRoute(handler, request, context) { try await self.library(route, request, context) }
        case let .distributionPoints(route):
            // The administrator's routes take the admin token; a point's own (manifest, status)
            // its point's token, which `distributionPoints` checks.
            guard route.isAdmin else { return try await distributionPoints(route, request, context) }
            return try await adminRoute(handler, request, context) { try await self.distributionPoints(route, request, context) }
        case let .multicast(route):
            // A session's manifest is fetched as /content is (what it holds is checked against
            // the SHA-256 the check-in gave); the rest is the administrator's.
            guard route.isAdmin else { return try await multicast(route, request, context) }
            return try await adminRoute(handler, request, context) { try await self.multicast(route, request, context) }
        case let .users(route):
            return try await adminRoute(handler, request, context) { try await self.users(route, request, context) }
        case let .deploymentReports(route):
            return try await adminRoute(handler, request, context) { try await self.deploymentReports(route, request, context) }
        case let .contentAdmin(route):
            let prefix = route == .delete ? Self.adminContentFiles : Self.adminContentUploads
            return try await adminRoute(handler, request, context) { try await self.contentAdmin(route, request, context, prefix: prefix) }
        case let .machines(route):
            return try await adminRoute(handler, request, context) { try await self.machinesAPI(route, request, context) }
        case .ruleTest:
            return try await adminRoute(handler, request, context) { try await self.ruleTestAPI(request) }
        case let .sequences(route):
            return try await adminRoute(handler, request, context) { try await self.sequencesAPI(route, request, context) }
        }
    }

    /// What agents and iPXE reach: refused (403) from outside `--agent-subnets` when it is set.
    /// The address is the connection's peer, never a header (X-Forwarded-For is whatever the
    /// client wrote).
    func checkAgentSubnet(_ handler: RouteSpec.Handler, client: String) throws {
        guard !configuration.agentSubnets.isEmpty else { return }
        switch handler {
        case .bootScript, .bootScriptForMAC, .bootFile, .checkIn, .deploymentSequence, .deploymentEvents, .deploymentState, .content,
             .captureAnnounce, .captureData, .multicast(.manifest):
            guard configuration.agentSubnets.contains(where: { $0.contains(client) }) else {
                throw APIError(.forbidden, "\(client) is not in the networks agents may connect from (--agent-subnets "
                               + configuration.agentSubnets.map(\.description).joined(separator: ",") + ")")
            }
        // The administrator's side: the admin token (and the dashboard's login) guard it, from anywhere.
        case .adminGetSequence, .adminPutSequence, .adminListSequences, .adminGetRules, .adminPutRules, .adminMachines,
             .adminApproveMachine, .adminRedeployMachine, .adminDeployments, .adminDeployment, .adminDeploymentEvents,
             .adminRegisterMachine, .adminResetDeploymentToken, .metrics,
             .dashboard, .dashboardDeployment, .dashboardLive, .dashboardApprove, .dashboardRedeploy, .dashboardResetToken,
             .dashboardLogin, .dashboardLogout, .dashboardScript, .dashboardStyle, .library,
             .dashboardImages, .dashboardImage, .dashboardLibrary, .dashboardDistributionPoints,
             .multicast, .dashboardMulticast, .dashboardMulticastAPI, .users, .dashboardUsers, .machines, .dashboardMachines,
             .deploymentReports, .contentAdmin, .dashboardDeployments, .dashboardContent,
             .ruleTest, .sequences, .dashboardRules, .dashboardSequences,
             // Distribution points authenticate with their own tokens, from wherever they are (the
             // content they fetch, /content/, stays within --agent-subnets).
             .distributionPoints:
            return
        }
    }

    /// What machines call the server: `--public-url`, never a request's Host header.
    var publicURL: String { configuration.publicURL }
}

/// The router's context: Hummingbird's basic one, plus the connection's peer address (which
/// the basic one does not keep) for `--agent-subnets` and the per-address limits.
struct ClientRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// What the basic context is made from (the source type itself is not Sendable).
    let channel: any Channel
    let requestLogger: Logger
    /// `10.0.0.5`, `fd00::5`; an IPv4 client of a server listening on `::` as its IPv4 address.
    let clientAddress: String

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        requestLogger = source.logger
        var address = source.channel.remoteAddress?.ipAddress ?? "unknown"
        if address.lowercased().hasPrefix("::ffff:"), !address.dropFirst(7).contains(":") { address = String(address.dropFirst(7)) }
        clientAddress = address
    }

    /// The context the handlers take, with this request's path parameters.
    var basic: BasicRequestContext {
        var context = BasicRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: requestLogger))
        context.coreContext = coreContext
        return context
    }
}
