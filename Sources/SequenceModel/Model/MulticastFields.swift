import Foundation
import Primitives

/// `"multicast"` on an applyImage or writeImage step: the session imprint-server put the machine
/// in when it handed the sequence out (issue 19). The same keys as the `Multicast` module's
/// `MulticastSessionDescriptor`, as plain values: the sequence format (and the server, which
/// links this module) must not depend on the sender and receiver, and the agent turns these
/// into a descriptor where it receives. A sequence written by hand may carry one too (a lab).
public struct MulticastDescriptorFields: Sendable, Equatable, Codable {
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
    /// Seconds to wait for the sender before fetching by HTTP (the receiver's default when absent).
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

    public static let keys: Set<String> = ["session", "receiver", "group", "port", "source", "size", "manifest", "manifestSHA256", "waitSeconds"]

    /// 16 hex digits (either case), as the session and receiver ids are written.
    static func isHexID(_ text: String) -> Bool { text.count == 16 && text.allSatisfy(\.isHexDigit) }

    static func isHTTPURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        return (lower.hasPrefix("http://") || lower.hasPrefix("https://")) && lower.count > 8
    }
}
