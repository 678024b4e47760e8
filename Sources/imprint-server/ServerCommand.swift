import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Primitives
import Server

/// `imprint-server`: check-in, sequences, events, content, the admin API and metrics.
@main
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imprint-server",
        abstract: "The Imprint deployment server: machines check in, get a task sequence, report events.",
        // Without a subcommand the server runs, as it always has.
        subcommands: [UserCommand.self])

    @Option(help: "Address and port to listen on.") var bind = "0.0.0.0:8080"
    @Option(help: "Folder for the database (imprint.db) and the server's files.") var data = "/var/lib/imprint-server"
    @Option(help: "Folder served under /content (images, drivers, unattend files).") var content = "/srv/imprint/content"
    @Option(help: "Folder holding the boot environment's kernel (vmlinuz) and initrd.") var boot = "/srv/imprint/boot"
    @Option(help: "Folder receiving images that captureImage steps upload, one folder per sequence (default: captures in --content).")
    var captures: String?
    @Option(help: "Largest image a captureImage step may upload, in GiB.") var maxCaptureSize: UInt64 = 1024
    @Option(help: "Bearer token of the admin API (or IMPRINT_ADMIN_TOKEN).") var adminToken: String?
    @Option(help: "Machines no rule matches: 'default' gives them the rule named default, 'pending' waits for approval.")
    var unknownMachines = "pending"
    @Option(help: ArgumentHelp("The URL machines reach this server at, e.g. http://10.0.0.1:8080 (required).",
                               discussion: "iPXE scripts and each deployment's ServerURL are built on it, never on a request's Host header, which any client may write."))
    var publicUrl: String?
    @Option(help: ArgumentHelp("Networks agents may connect from, e.g. 10.0.0.0/24,fd00::/64 (default: any).",
                               discussion: "Check-ins, deployments' sequences and events, boot scripts and files and /content answer 403 to any other address. The admin API and the dashboard are not affected."))
    var agentSubnets: String?
    @Flag(help: "Only machines an administrator registered (POST /api/v1/admin/machines) may check in; others are refused and not stored.")
    var requireRegistration = false
    @Option(help: ArgumentHelp("Seconds a running deployment must have sent nothing before a second check-in of its machine gets a new token.",
                               discussion: "Until then such a check-in is answered 409 and the agent holding the token keeps it; an administrator can reset the token at once (POST /api/v1/admin/deployments/ID/reset-token)."))
    var tokenReissueAfter = 600
    @Option(help: "New machines one address may add per minute (0: no limit); past it check-ins get 429.")
    var newMachinesPerMinute = 20
    @Flag(help: "Release sequences and variables that carry secrets over plain HTTP too (behind a TLS proxy, or in a closed lab).")
    var allowSecretsOverHttp = false
    @Option(help: ArgumentHelp("File holding the key that encrypts secrets in the database (32 bytes, base64), or set IMPRINT_SECRETS_KEY.",
                               discussion: "Default: secrets.key in --data, generated (mode 0600) on first start. Keep it, and its backup, apart from the database: a copy of the database without it reveals no secret, and without it the stored secrets are lost."))
    var secretsKeyFile: String?
    @Option(help: "PEM certificate (followed by any intermediates): serve HTTPS instead of HTTP. Needs --tls-key.")
    var tlsCertificate: String?
    @Option(help: "PEM private key of --tls-certificate.") var tlsKey: String?
    @Option(help: ArgumentHelp("Behind nginx: answer /content with X-Accel-Redirect to this internal location (e.g. /protected-content/), so nginx sends the file.",
                               discussion: "The server still checks every request (published files only, agent subnets); nginx's location must be `internal` and alias --content. See README, \"Content at wire speed\"."))
    var contentAccelRedirect: String?
    @Option(help: ArgumentHelp("Kernel arguments the iPXE script adds to the boot environment's command line.",
                               discussion: "The console named last gets the agent's output, e.g. 'console=tty0 console=ttyS0 imprint.onfailure=poweroff' for a lab on a serial console."))
    var kernelArguments = ServerConfiguration.defaultKernelArguments
    @Option(help: ArgumentHelp("The IPv4 multicast network multicast sessions get their group addresses from.",
                               discussion: "Each address goes with its own port, --multicast-port plus its place in the range. 239.x.x.x stays within a site."))
    var multicastGroups = MulticastGroupRange.default.description
    @Option(help: "The first UDP port of multicast sessions (the range's first usable address gets this plus one).")
    var multicastPort = 7700
    @Option(help: ArgumentHelp("The IPv4 address of the interface multicast sessions are sent from (default: the route the kernel picks for the group).",
                               discussion: "On a server with several networks, the address it has on the machines' network."))
    var multicastInterfaceAddress: String?
    @Option(help: "Hops a multicast datagram may cross (1: the local network only).")
    var multicastTtl = 1
    @Option(help: ArgumentHelp(
        "The database: postgres://user:password@host:port/database (several instances may share it; options ?sslmode=disable|prefer|require&pool_max=N&connect_timeout=SECONDS) or sqlite:PATH.",
        discussion: "Default: SQLite in --data (imprint.db). The migrations run on start.")) var database: String?

    func run() async throws {
        let databaseLocation: DatabaseLocation
        do { databaseLocation = try DatabaseLocation(parsing: database) } catch { throw ValidationError("--database: \(error)") }
        guard let token = adminToken ?? ProcessInfo.processInfo.environment["IMPRINT_ADMIN_TOKEN"], !token.isEmpty else {
            throw ValidationError("set --admin-token or IMPRINT_ADMIN_TOKEN: the admin API must not be open")
        }
        guard let policy = ServerConfiguration.UnknownMachines(rawValue: unknownMachines) else {
            throw ValidationError("--unknown-machines: expected default or pending, got \(unknownMachines)")
        }
        guard let colon = bind.lastIndex(of: ":"), let port = Int(bind[bind.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--bind: expected HOST:PORT, e.g. 0.0.0.0:8080")
        }
        var host = String(bind[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let publicUrl else {
            throw ValidationError("set --public-url to the URL machines reach this server at, e.g. --public-url http://10.0.0.1:8080: "
                                  + "iPXE scripts and each deployment's ServerURL are built on it (taken from requests, a client could "
                                  + "send machines to its own server for their images and drivers)")
        }
        let publicURL: String
        do { publicURL = try ServerConfiguration.validatedPublicURL(publicUrl) } catch { throw ValidationError("\(error)") }
        var subnets: [IPSubnet] = []
        if let agentSubnets {
            do { subnets = try IPSubnet.list(parsing: agentSubnets) } catch { throw ValidationError("\(error)") }
        }
        guard tokenReissueAfter >= 0 else { throw ValidationError("--token-reissue-after: seconds, 0 or more") }
        guard newMachinesPerMinute >= 0 else { throw ValidationError("--new-machines-per-minute: 0 (no limit) or more") }
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-certificate and --tls-key go together")
        }
        if let tlsCertificate, let tlsKey {
            // Load them now: a wrong file is an error at start, not at the first connection.
            do { _ = try ImprintServer.tlsConfiguration(certificate: tlsCertificate, key: tlsKey) } catch {
                throw ValidationError("\(error)")
            }
        }
        var logger = Logger(label: "imprint-server")
        logger.logLevel = .info
        var configuration = ServerConfiguration(host: host, port: port, dataDirectory: data, contentDirectory: content, bootDirectory: boot,
                                                adminToken: token, unknownMachines: policy, publicURL: publicURL)
        configuration.agentSubnets = subnets
        if let captures { configuration.captureDirectory = captures }
        configuration.limits.captureBytes = maxCaptureSize << 30
        configuration.requireRegistration = requireRegistration
        configuration.tokenReissueAfter = tokenReissueAfter
        configuration.newMachinesPerMinute = newMachinesPerMinute == 0 ? nil : newMachinesPerMinute
        configuration.allowSecretsOverHTTP = allowSecretsOverHttp
        configuration.tlsCertificate = tlsCertificate
        configuration.kernelArguments = kernelArguments
        configuration.tlsKey = tlsKey
        if let prefix = contentAccelRedirect {
            guard prefix.hasPrefix("/"), prefix.hasSuffix("/"), !prefix.contains(".."), prefix.allSatisfy({ !$0.isWhitespace }) else {
                throw ValidationError("--content-accel-redirect: a location path starting and ending with '/', such as /protected-content/")
            }
            configuration.contentAccelRedirect = prefix
        }
        do { configuration.multicastGroups = try MulticastGroupRange(parsing: multicastGroups) } catch { throw ValidationError("\(error)") }
        guard (1...65000).contains(multicastPort) else { throw ValidationError("--multicast-port: a UDP port, 1 to 65000") }
        configuration.multicastBasePort = multicastPort
        if let address = multicastInterfaceAddress {
            guard IPv4.parse(address) != nil else {
                throw ValidationError("--multicast-interface-address: \"\(address)\" is not an IPv4 address such as 10.0.0.1")
            }
            configuration.multicastInterfaceAddress = address
        }
        guard (1...255).contains(multicastTtl) else { throw ValidationError("--multicast-ttl: 1 to 255") }
        configuration.multicastTTL = multicastTtl
        configuration.secretsKeyFile = secretsKeyFile
        configuration.secretsKey = ProcessInfo.processInfo.environment["IMPRINT_SECRETS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let server = try await ImprintServer.open(configuration: configuration, database: databaseLocation, logger: logger)
        let boundHost = host, scheme = configuration.scheme
        let app = try server.makeApplication { channel in
            // One line a supervisor (or a test that asked for port 0) can read, unbuffered.
            let line = "imprint-server listening on \(scheme)://\(boundHost):\(channel.localAddress?.port ?? port)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        // Closed however the service ends (SIGTERM included): SQLite's connection must be
        // closed before it is released, and PostgreSQL's pool ends its connections cleanly.
        do {
            try await app.runService()
        } catch {
            await server.close()
            throw error
        }
        await server.close()
    }
}
