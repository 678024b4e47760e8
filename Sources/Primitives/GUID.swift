/// A GUID, as GPT, NTFS and the BCD store hold it. The bytes are kept in the order they are
/// written in text (`C12A7328-F81F-...`); on disk the first three groups are little-endian,
/// which is why the on-disk form differs from the textual one.
public struct GUID: Sendable, Hashable, CustomStringConvertible {
    /// The sixteen bytes in textual order.
    public private(set) var bytes: [UInt8]

    public static let zero = GUID(uncheckedBytes: [UInt8](repeating: 0, count: 16))

    private init(uncheckedBytes: [UInt8]) { bytes = uncheckedBytes }

    /// Sixteen bytes in textual order, or nil for any other count.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses `C12A7328-F81F-11D2-BA4B-00A0C93EC93B` in either case, with or without the braces
    /// Windows writes around it (`{...}`); nil when it is not one.
    public init?(_ text: String) {
        var text = Substring(text)
        if text.first == "{" && text.last == "}" { text = text.dropFirst().dropLast() }
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.count) == [8, 4, 4, 4, 12] else { return nil }
        var parsed: [UInt8] = []
        parsed.reserveCapacity(16)
        let digits = Array(groups.joined().utf8)
        guard digits.count == 32 else { return nil }
        var index = 0
        while index < digits.count {
            guard let high = Self.hexValue(digits[index]), let low = Self.hexValue(digits[index + 1]) else { return nil }
            parsed.append(high << 4 | low)
            index += 2
        }
        bytes = parsed
    }

    /// Reads the mixed-endian form on disk; nil unless there are sixteen bytes.
    public init?(onDisk raw: some Collection<UInt8>) {
        let raw = Array(raw)
        guard raw.count == 16 else { return nil }
        bytes = Self.swapGroups(raw)
    }

    /// A random version 4 GUID (RFC 9562), drawn from the caller's generator so tests can
    /// make plans that repeat.
    public static func random(using generator: inout some RandomNumberGenerator) -> GUID {
        var raw = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        raw[6] = raw[6] & 0x0F | 0x40
        raw[8] = raw[8] & 0x3F | 0x80
        return GUID(uncheckedBytes: raw)
    }

    public static func random() -> GUID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// The sixteen bytes as a GPT header or entry, or BCD device data, stores them.
    public var onDiskBytes: [UInt8] { Self.swapGroups(bytes) }

    /// Upper case, as sgdisk and Windows print them.
    public var description: String {
        let hex = bytes.map { byte -> String in
            let text = String(byte, radix: 16, uppercase: true)
            return byte < 0x10 ? "0" + text : text
        }
        return [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]]
            .map { $0.joined() }.joined(separator: "-")
    }

    /// `{9dea862c-5cdd-4e70-acc1-f32b344d4795}`: lower case in braces, as BCD key names are.
    public var braced: String { "{" + description.lowercased() + "}" }

    /// Reverses the first three groups (4, 2 and 2 bytes); the same operation both ways.
    private static func swapGroups(_ raw: [UInt8]) -> [UInt8] {
        Array(raw[0..<4].reversed()) + Array(raw[4..<6].reversed()) + Array(raw[6..<8].reversed()) + Array(raw[8..<16])
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return character - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
