import Foundation

public struct ServerConfiguration: Sendable {
    /// What to do with a machine no rule matches.
    public enum UnknownMachines: String, Sendable, CaseIterable {
        /// Give it the rule named `default` (when there is one).
        case `default`
        /// List it as pending until an administrator approves it.
        case pending
    }

    public var host: String
    public var port: Int
    public var dataDirectory: String
    public var contentDirectory: String
    public var bootDirectory: String
    /// Where images uploaded by `captureImage` steps go, one folder per sequence (by default
    /// `captures` in the content folder, so a later sequence can deploy them from /content).
    public var captureDirectory: String
    public var adminToken: String
    public var unknownMachines: UnknownMachines
    /// What iPXE scripts and sequences call the server (`ServerURL`), without a trailing slash.
    /// Always configured, never taken from a request: a Host header is whatever the client
    /// wrote, and the URL ends up in every machine's downloads.
    public var publicURL: String
    /// Where agents may connect from (check-ins, deployments' sequences and events, boot
    /// scripts and files, content); empty: anywhere. Others get 403.
    public var agentSubnets: [IPSubnet] = []
    /// Only machines an administrator registered may check in; others get 403 and nothing is stored.
    public var requireRegistration = false
    /// A second check-in of a machine whose deployment is active gets a new token only after
    /// the deployment has sent nothing for this long (or after an administrator's reset).
    public var tokenReissueAfter: Int = 600
    /// New machines one address may create per minute (nil: no limit), so a flood of invented
    /// identities cannot fill the database.
    public var newMachinesPerMinute: Int? = 20
    /// Release sequences and variables that carry secrets over plain HTTP (a TLS proxy in
    /// front, a lab); otherwise only over this server's own TLS.
    public var allowSecretsOverHTTP = false
    /// Kernel arguments the iPXE script adds (consoles, `imprint.onfailure=`...). The console
    /// named last is the one /init and the agent print to: the monitor by default, the serial
    /// port in the lab.
    public var kernelArguments = ServerConfiguration.defaultKernelArguments
    public static let defaultKernelArguments = "console=ttyS0,115200 console=tty0"
    /// How long a pending machine waits before checking in again.
    public var retryAfter: Int = 30
    /// Events per batch and per deployment, live streams, dashboard pages and sessions.
    public var limits = ServerLimits()
    /// The key sealing secret values in the database (AES-256-GCM): a file holding it in base64,
    /// or the base64 itself (`IMPRINT_SECRETS_KEY`); neither: `secrets.key` in the data folder,
    /// generated on first start. Never in the database: a copy of it alone reveals no secret.
    public var secretsKeyFile: String?
    public var secretsKey: String?
    /// PEM certificate (chain) and private key: HTTPS instead of HTTP when both are set.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Behind nginx: `/content` files that pass every check are answered with
    /// `X-Accel-Redirect: <prefix><path>` and no body, and nginx sends them (sendfile, ranges)
    /// from an `internal` location with this prefix. Nil: the server sends them itself.
    public var contentAccelRedirect: String?
    /// Multicast sessions: the group addresses the server allocates from (each with its port,
    /// `multicastBasePort` + its offset in the range), the IPv4 address of the interface the
    /// senders send from (nil: the kernel's choice for the group's route), their TTL (1: the
    /// local network only), and how long a started session goes on while no machine needs
    /// anything before it ends.
    public var multicastGroups = MulticastGroupRange.default
    public var multicastBasePort = 7700
    public var multicastInterfaceAddress: String?
    public var multicastTTL = 1
    public var multicastIdleSeconds = 600.0
    /// The scheme clients reach this server with.
    public var scheme: String { tlsCertificate != nil ? "https" : "http" }

    public init(host: String = "0.0.0.0", port: Int = 8080, dataDirectory: String, contentDirectory: String, bootDirectory: String,
                adminToken: String, unknownMachines: UnknownMachines = .pending, publicURL: String) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.contentDirectory = contentDirectory
        self.bootDirectory = bootDirectory
        captureDirectory = contentDirectory + "/captures"
        self.adminToken = adminToken
        self.unknownMachines = unknownMachines
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
    }

    public var databasePath: String { dataDirectory + "/imprint.db" }

    /// Checks `--public-url`: an absolute http(s) URL with a host, nothing after the path (a
    /// query or fragment would end up inside every URL built on it).
    public static func validatedPublicURL(_ text: String) throws(ConfigurationError) -> String {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
              components.query == nil, components.fragment == nil, components.user == nil else {
            throw ConfigurationError(option: "--public-url",
                                     message: "\"\(text)\" is not an http:// or https:// URL of this server (e.g. http://10.0.0.1:8080)")
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }
}

/// A setting that cannot work, named as the administrator wrote it.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var option: String
    public var message: String
    public init(option: String, message: String) {
        self.option = option
        self.message = message
    }
    public var description: String { "\(option): \(message)" }
}

/// Counters for /metrics. Per process: Prometheus adds up the instances.
public final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var events = 0
    private var contentBytes: UInt64 = 0

    public init() {}

    func addEvents(_ count: Int) { lock.lock(); events += count; lock.unlock() }
    func addContentBytes(_ count: Int) { lock.lock(); contentBytes += UInt64(count); lock.unlock() }

    public var eventsIngested: Int { lock.lock(); defer { lock.unlock() }; return events }
    public var contentBytesServed: UInt64 { lock.lock(); defer { lock.unlock() }; return contentBytes }
}
