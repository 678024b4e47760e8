import Foundation
import Primitives

/// The group addresses the server gives its multicast sessions: an IPv4 network inside the
/// administratively scoped block (239.0.0.0/8 stays within the site, as RFC 2365 says), and
/// the ports beside them: the nth address of the range goes with port `basePort + n`, so two
/// sessions differ in both (a receiver bound to its port never sees another session's data,
/// even on a switch that floods every group).
public struct MulticastGroupRange: Sendable, Equatable, CustomStringConvertible {
    /// Host byte order.
    public let network: UInt32
    public let prefixLength: Int
    public let description: String

    /// 239.255.77.0/24: ports 7700 + 1 to 254 beside its addresses.
    public static let `default` = MulticastGroupRange(network: 0xEFFF_4D00, prefixLength: 24)

    private init(network: UInt32, prefixLength: Int) {
        self.network = network
        self.prefixLength = prefixLength
        description = "\(Self.text(network))/\(prefixLength)"
    }

    public init(parsing text: String) throws(ConfigurationError) {
        let option = "--multicast-groups"
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let address = IPv4.parse(parts[0]) else {
            throw ConfigurationError(option: option, message: "\"\(text)\" is not an IPv4 network such as 239.255.77.0/24")
        }
        var length = 32
        if parts.count == 2 {
            guard let value = Int(parts[1]), (4...32).contains(value) else {
                throw ConfigurationError(option: option, message: "\"\(text)\": the prefix length must be 4 to 32")
            }
            length = value
        }
        let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
        guard address & mask == address else {
            throw ConfigurationError(option: option, message: "\"\(text)\" has bits set past its prefix; did you mean \(Self.text(address & mask))/\(length)?")
        }
        guard address >> 28 == 0xE else {
            throw ConfigurationError(option: option, message: "\"\(text)\" is not multicast: group addresses are 224.0.0.0 to 239.255.255.255 (239.x.x.x for a site)")
        }
        network = address
        prefixLength = length
        description = "\(Self.text(address))/\(length)"
    }

    /// Every group address of the range with its port, in order. A network's first and last
    /// addresses are left out (x.x.x.0 and x.x.x.255 confuse people and some switches) unless
    /// the range is that small.
    public func addresses(basePort: Int) -> [(group: String, port: Int)] {
        let count = prefixLength == 32 ? 1 : Int(min(UInt64(1) << UInt64(32 - prefixLength), 4096))
        let usable = count > 2 ? Array(1..<(count - 1)) : Array(0..<count)
        return usable.compactMap { offset in
            let port = basePort + offset
            guard port <= 65535 else { return nil }
            return (Self.text(network &+ UInt32(offset)), port)
        }
    }

    static func text(_ address: UInt32) -> String {
        "\(address >> 24).\(address >> 16 & 0xFF).\(address >> 8 & 0xFF).\(address & 0xFF)"
    }
}
