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
    public var adminToken: String
    public var unknownMachines: UnknownMachines
    /// What iPXE scripts and sequences call the server (`ServerURL`); nil: `http://` + the
    /// request's Host header, right when clients reach the server directly.
    public var publicURL: String?
    /// Kernel arguments the iPXE script adds (consoles, `imprint.onfailure=`...). The console
    /// named last is the one /init and the agent print to: the monitor by default, the serial
    /// port in the lab.
    public var kernelArguments = ServerConfiguration.defaultKernelArguments
    public static let defaultKernelArguments = "console=ttyS0,115200 console=tty0"
    /// How long a pending machine waits before checking in again.
    public var retryAfter: Int = 30
    /// PEM certificate (chain) and private key: HTTPS instead of HTTP when both are set.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// The scheme clients reach this server with.
    public var scheme: String { tlsCertificate != nil ? "https" : "http" }

    public init(host: String = "0.0.0.0", port: Int = 8080, dataDirectory: String, contentDirectory: String, bootDirectory: String,
                adminToken: String, unknownMachines: UnknownMachines = .pending, publicURL: String? = nil) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.contentDirectory = contentDirectory
        self.bootDirectory = bootDirectory
        self.adminToken = adminToken
        self.unknownMachines = unknownMachines
        self.publicURL = publicURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    public var databasePath: String { dataDirectory + "/imprint.db" }
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
