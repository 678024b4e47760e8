import Primitives

/// Reparse tags the apply targets understand; any other tag is kept byte for byte where the
/// target can hold it.
public enum ReparseTag {
    public static let mountPoint: UInt32 = 0xA000_0003
    public static let symlink: UInt32 = 0xA000_000C
}

/// A symbolic link or junction decoded from the reparse data a WIM stores (the reparse buffer
/// without its 8-byte tag/length header).
public struct SymbolicLinkTarget: Sendable, Equatable {
    /// The target as Windows resolves it (`\??\C:\dir` for absolute targets).
    public var substituteName: String
    /// The target as shown to the user.
    public var printName: String
    /// SYMLINK_FLAG_RELATIVE: the target is relative to the link's directory.
    public var isRelative: Bool
    public var isJunction: Bool

    public init?(tag: UInt32, data: [UInt8]) {
        let header: Int
        switch tag {
        case ReparseTag.symlink: header = 12
        case ReparseTag.mountPoint: header = 8
        default: return nil
        }
        guard data.count >= header else { return nil }
        let substituteOffset = Int(data.le16(0)), substituteLength = Int(data.le16(2))
        let printOffset = Int(data.le16(4)), printLength = Int(data.le16(6))
        let buffer = data.count - header
        guard substituteOffset + substituteLength <= buffer, printOffset + printLength <= buffer,
              substituteLength % 2 == 0, printLength % 2 == 0 else { return nil }
        substituteName = UTF16LE.decode(data[(header + substituteOffset)..<(header + substituteOffset + substituteLength)])
        printName = UTF16LE.decode(data[(header + printOffset)..<(header + printOffset + printLength)])
        isJunction = tag == ReparseTag.mountPoint
        isRelative = !isJunction && (data.le32(8) & 1) != 0
    }

    /// The target in POSIX form relative to the volume root, for targets that name a path on the
    /// same volume: `\??\C:\Windows\x` → `/Windows/x`; relative targets keep their form with "/".
    /// Nil when the target is on another volume or a device path.
    public var posixTarget: String? {
        var name = substituteName.isEmpty ? printName : substituteName
        if isRelative { return name.replacingBackslashes() }
        for prefix in ["\\??\\", "\\\\?\\", "\\DosDevices\\"] where name.hasPrefix(prefix) {
            name.removeFirst(prefix.count)
            break
        }
        let scalars = Array(name.unicodeScalars)
        if scalars.count >= 2, scalars[1] == ":", scalars[0].properties.isAlphabetic {
            name = String(String.UnicodeScalarView(scalars.dropFirst(2)))
        } else if !name.hasPrefix("\\") {
            return nil
        }
        if name.hasPrefix("\\Volume{") || name.hasPrefix("\\Device\\") { return nil }
        let posix = name.replacingBackslashes()
        return posix.hasPrefix("/") ? posix : "/" + posix
    }
}

extension String {
    func replacingBackslashes() -> String {
        String(String.UnicodeScalarView(unicodeScalars.map { $0 == "\\" ? "/" : $0 }))
    }
}
