/// Dotted IPv4 addresses as sequences, the server's multicast groups and the sockets write them:
/// one parser for all three.
public enum IPv4 {
    /// "10.77.0.1" as a number in host byte order (10 in the top byte); nil for anything but four
    /// ASCII decimal parts of 0 to 255.
    public static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let byte = UInt32(part), byte <= 255 else { return nil }
            value = value << 8 | byte
        }
        return value
    }

    /// Whether `text` is a dotted IPv4 address in 224.0.0.0/4.
    public static func isMulticast(_ text: String) -> Bool {
        parse(text).map { $0 >> 28 == 0xE } ?? false
    }
}
