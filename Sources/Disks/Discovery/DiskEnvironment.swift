import DiskModel
import Foundation

/// Where discovery looks: the kernel's views of devices (sysfs), device nodes and process
/// state. Parameters rather than constants so tests can point them at prepared trees whose
/// device nodes are links to real loop devices.
public struct DiskEnvironment: Sendable, Equatable {
    public var sysRoot: String
    public var devRoot: String
    public var procRoot: String
    /// The filesystem label the Imprint USB medium carries; a disk holding it is the boot medium.
    public var mediaLabel: String
    /// How new partitions are made visible, tried in this order: the kernel's own parser
    /// (BLKRRPART), BLKPG, then loop devices over each partition. Tests narrow it to one.
    public var partitionMethods: [PartitionMethod]

    public static let defaultMediaLabel = "IMPRINT"

    public init(sysRoot: String = "/sys", devRoot: String = "/dev", procRoot: String = "/proc",
                mediaLabel: String = DiskEnvironment.defaultMediaLabel,
                partitionMethods: [PartitionMethod] = PartitionMethod.allCases) {
        self.sysRoot = sysRoot
        self.devRoot = devRoot
        self.procRoot = procRoot
        self.mediaLabel = mediaLabel
        self.partitionMethods = partitionMethods
    }

    public static let system = DiskEnvironment()

    func blockDirectory(_ name: String) -> String { sysRoot + "/block/" + name }
    func devicePath(_ name: String) -> String { devRoot + "/" + name }

    /// The text of a small sysfs or proc file, trimmed; nil when it does not exist.
    func attribute(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text
    }

    func entries(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted(by: KernelName.precedes)
    }
}

/// How the partitions of a new table become devices the agent can format.
public enum PartitionMethod: String, Sendable, Codable, CaseIterable {
    /// The kernel re-reads the table with its own parser (any Debian kernel).
    case kernel
    /// The agent tells the kernel each partition with BLKPG, as partx does (kernels without parsers).
    case blkpg
    /// A loop device over each partition's byte range (any kernel with loop devices).
    case loop
}
