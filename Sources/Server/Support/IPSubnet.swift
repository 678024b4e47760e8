import Foundation

/// One network of `--agent-subnets`: `10.0.0.0/24`, `fd00::/64`, or a single address. IPv4
/// is kept as IPv6 maps it (`::ffff:10.0.0.0/120`), so a server listening on `::` that sees
/// IPv4 clients as mapped addresses compares them alike.
public struct IPSubnet: Sendable, Equatable, CustomStringConvertible {
    /// 16 bytes, the bits past `prefixLength` zero.
    private let network: [UInt8]
    private let prefixLength: Int
    public let description: String

    public init(parsing text: String) throws(ConfigurationError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let parts = trimmed.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let address = Self.bytes(parts[0]) else {
            throw ConfigurationError(option: "--agent-subnets", message: "\"\(trimmed)\" is not an IP address or network such as 10.0.0.0/24 or fd00::/64")
        }
        let isIPv4 = !parts[0].contains(":")
        let width = isIPv4 ? 32 : 128
        var length = width
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...width).contains(value) else {
                throw ConfigurationError(option: "--agent-subnets", message: "\"\(trimmed)\": the prefix length must be 0 to \(width)")
            }
            length = value
        }
        prefixLength = length + (isIPv4 ? 96 : 0)
        network = Self.masked(address, prefixLength)
        guard network == address else {
            // 10.0.0.5/24 is a typo for 10.0.0.0/24 or for the host itself: refuse rather than guess.
            throw ConfigurationError(option: "--agent-subnets", message: "\"\(trimmed)\" has bits set past its prefix; did you mean \(Self.text(network, length: length, isIPv4: isIPv4))?")
        }
        description = Self.text(network, length: length, isIPv4: isIPv4)
    }

    /// `10.0.0.0/24,192.168.5.0/24` → the networks; an empty list is refused (omit the option to allow every address).
    public static func list(parsing text: String) throws(ConfigurationError) -> [IPSubnet] {
        let items = text.split(separator: ",").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        guard !items.isEmpty else { throw ConfigurationError(option: "--agent-subnets", message: "no network given") }
        var subnets: [IPSubnet] = []
        for item in items { subnets.append(try IPSubnet(parsing: item)) }
        return subnets
    }

    /// Whether `address` (`10.0.0.5`, `fd00::5`, `::ffff:10.0.0.5`) lies in this network.
    public func contains(_ address: String) -> Bool {
        guard let bytes = Self.bytes(address) else { return false }
        return Self.masked(bytes, prefixLength) == network
    }

    /// The 16 bytes of an IPv6 address, or of an IPv4 address mapped into IPv6; nil for anything else.
    static func bytes(_ text: String) -> [UInt8]? {
        // A zone (`fe80::1%eth0`) says which link, not which address.
        let address = String(text.split(separator: "%", maxSplits: 1).first ?? "")
        if !address.contains(":") {
            var v4 = in_addr()
            guard inet_pton(AF_INET, address, &v4) == 1 else { return nil }
            return Array(repeating: 0, count: 10) + [0xFF, 0xFF] + withUnsafeBytes(of: v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address, &v6) == 1 else { return nil }
        return withUnsafeBytes(of: v6) { Array($0) }
    }

    private static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let kept = max(0, min(8, length - index * 8))
            return kept == 8 ? byte : byte & ~(UInt8(0xFF) >> kept)
        }
    }

    private static func text(_ bytes: [UInt8], length: Int, isIPv4: Bool) -> String {
        if isIPv4 { return bytes[12...].map(String.init).joined(separator: ".") + "/\(length)" }
        var v6 = in6_addr()
        withUnsafeMutableBytes(of: &v6) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count))
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/\(length)"
    }
}
