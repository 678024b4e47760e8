import Foundation

/// The filesystems the agent makes, each with its own Debian tool.
public enum FilesystemKind: String, Sendable, Codable, CaseIterable {
    case fat32, ntfs, ext4

    /// What libblkid reports for a filesystem of this kind once it is made.
    public var blkidType: String {
        switch self {
        case .fat32: return "vfat"
        case .ntfs: return "ntfs"
        case .ext4: return "ext4"
        }
    }
}

/// How to format a partition: `{"filesystem": "ntfs", "label": "Windows", "clusterSize": 4096}`.
public struct FormatSpec: Sendable, Codable, Equatable {
    public var filesystem: FilesystemKind
    public var label: String?
    /// Bytes per cluster (NTFS, FAT32) or block (ext4); the tool's default when nil.
    public var clusterSize: Int?
    /// A quick format (NTFS: no zeroing, no bad-sector scan). True unless the layout says false.
    public var quick: Bool

    public init(filesystem: FilesystemKind, label: String? = nil, clusterSize: Int? = nil, quick: Bool = true) {
        self.filesystem = filesystem
        self.label = label
        self.clusterSize = clusterSize
        self.quick = quick
    }

    private enum CodingKeys: String, CodingKey, CaseIterable { case filesystem, label, clusterSize, quick }

    public init(from decoder: any Decoder) throws {
        try UnknownKeyCheck.check(decoder, allowed: Set(CodingKeys.allStringValues))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let name = try container.decode(String.self, forKey: .filesystem)
        guard let kind = FilesystemKind(rawValue: name.lowercased()) else {
            throw DecodingError.dataCorruptedError(forKey: .filesystem, in: container,
                debugDescription: "unknown filesystem \"\(name)\" (known: fat32, ntfs, ext4)")
        }
        filesystem = kind
        label = try container.decodeIfPresent(String.self, forKey: .label)
        clusterSize = try container.decodeIfPresent(Int.self, forKey: .clusterSize)
        quick = try container.decodeIfPresent(Bool.self, forKey: .quick) ?? true
        if let label {
            let limit = kind == .fat32 ? 11 : (kind == .ext4 ? 16 : 32)
            if label.utf8.count > limit || label.contains(where: { $0 == "\0" || $0 == "\n" }) {
                throw DecodingError.dataCorruptedError(forKey: .label, in: container,
                    debugDescription: "a \(kind.rawValue) label holds at most \(limit) bytes, \"\(label)\" has \(label.utf8.count)")
            }
        }
        if let clusterSize, clusterSize < 512 || clusterSize > 2 << 20 || clusterSize & (clusterSize - 1) != 0 {
            throw DecodingError.dataCorruptedError(forKey: .clusterSize, in: container,
                debugDescription: "cluster size \(clusterSize) is not a power of two between 512 and 2 MiB")
        }
    }
}

extension CodingKey where Self: CaseIterable & RawRepresentable, RawValue == String {
    static var allStringValues: [String] { allCases.map(\.rawValue) }
}
