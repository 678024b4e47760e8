import Primitives

/// What a receiver is told about a session: the server puts it in an applyImage or writeImage
/// step as `"multicast"` at check-in (the trusted channel, so `manifestSHA256` can be believed).
public struct MulticastSessionDescriptor: Codable, Sendable, Equatable {
    /// 16 lower-case hex digits: the session id in every datagram.
    public var session: String
    /// 16 hex digits: this machine's receiver id, by which the sender reports it.
    public var receiver: String
    /// IPv4 multicast address, e.g. 239.255.77.1.
    public var group: String
    public var port: Int
    /// HTTP(S) URL of the same file: repairs and the fallback when the group is silent.
    public var source: String
    public var size: UInt64
    /// URL of the encoded `BlockManifest`.
    public var manifest: String
    public var manifestSHA256: String
    /// Seconds to wait for the sender to be heard before fetching by HTTP (5 when absent).
    public var waitSeconds: Int?

    public init(session: String, receiver: String, group: String, port: Int, source: String, size: UInt64,
                manifest: String, manifestSHA256: String, waitSeconds: Int? = nil) {
        self.session = session
        self.receiver = receiver
        self.group = group
        self.port = port
        self.source = source
        self.size = size
        self.manifest = manifest
        self.manifestSHA256 = manifestSHA256
        self.waitSeconds = waitSeconds
    }

    /// Problems a receiver cannot start with, each naming its field.
    public var problems: [String] {
        var found: [String] = []
        if parseSessionID(session) == nil { found.append("session: \"\(session)\" is not 16 hex digits") }
        if parseSessionID(receiver) == nil { found.append("receiver: \"\(receiver)\" is not 16 hex digits") }
        if !IPv4.isMulticast(group) { found.append("group: \"\(group)\" is not an IPv4 multicast address (224.0.0.0 to 239.255.255.255)") }
        if !(1...65535).contains(port) { found.append("port: \(port) is not a UDP port") }
        if manifestSHA256.count != 64 || !manifestSHA256.allSatisfy(\.isHexDigit) { found.append("manifestSHA256: not a SHA-256") }
        if let waitSeconds, !(1...3600).contains(waitSeconds) { found.append("waitSeconds: \(waitSeconds) is not 1 to 3600") }
        return found
    }
}
