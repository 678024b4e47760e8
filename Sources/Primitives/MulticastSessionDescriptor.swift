/// What a receiver is told about a multicast session (issue 19): imprint-server puts it in an
/// applyImage or writeImage step as `"multicast"` when it hands the sequence out (the trusted
/// channel, so `manifestSHA256` can be believed), the agent receives with it, `imprint
/// multicast receive` takes it by hand. Here, below the sequence format and the protocol, so
/// that both use this one type and neither depends on the other.
public struct MulticastSessionDescriptor: Codable, Sendable, Equatable {
    /// 16 hex digits: the session id every datagram carries.
    public var session: String
    /// 16 hex digits: this machine's receiver id, by which the sender (and the server) know it.
    public var receiver: String
    /// IPv4 multicast address, e.g. 239.255.77.1.
    public var group: String
    public var port: Int
    /// HTTP(S) URL of the same file: repairs, and the fallback when the group stays silent.
    public var source: String
    public var size: UInt64
    /// URL of the encoded block manifest, and its SHA-256 (what makes the manifest trusted).
    public var manifest: String
    public var manifestSHA256: String
    /// Seconds to wait for the sender before fetching by HTTP (the receiver's default, 5, when absent).
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

    /// Its JSON keys, for a parser that refuses unknown ones.
    public static let keys: Set<String> = ["session", "receiver", "group", "port", "source", "size", "manifest", "manifestSHA256", "waitSeconds"]

    /// Problems a receiver cannot start with, each naming its field.
    public var problems: [String] {
        var found: [String] = []
        if !Self.isHexID(session) { found.append("session: \"\(session)\" is not 16 hex digits") }
        if !Self.isHexID(receiver) { found.append("receiver: \"\(receiver)\" is not 16 hex digits") }
        if !IPv4.isMulticast(group) { found.append("group: \"\(group)\" is not an IPv4 multicast address (224.0.0.0 to 239.255.255.255)") }
        if !(1...65535).contains(port) { found.append("port: \(port) is not a UDP port") }
        if manifestSHA256.count != 64 || !manifestSHA256.allSatisfy(\.isHexDigit) { found.append("manifestSHA256: not a SHA-256") }
        if let waitSeconds, !(1...3600).contains(waitSeconds) { found.append("waitSeconds: \(waitSeconds) is not 1 to 3600") }
        return found
    }

    /// 16 hex digits (either case), as the session and receiver ids are written.
    public static func isHexID(_ text: String) -> Bool { text.count == 16 && text.allSatisfy(\.isHexDigit) }

    public static func isHTTPURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        return (lower.hasPrefix("http://") || lower.hasPrefix("https://")) && lower.count > 8
    }
}
