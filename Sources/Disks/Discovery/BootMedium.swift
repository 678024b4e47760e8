import DiskModel
import Foundation

/// Recognises the medium the agent booted from, so it is never chosen as a target: the disk
/// holding the filesystem named on the kernel command line (`imprint.media=LABEL=X`,
/// `imprint.media=UUID=Y` or a device path), or one carrying the Imprint media label.
struct BootMedium {
    let environment: DiskEnvironment
    private let requested: String?

    init(environment: DiskEnvironment) {
        self.environment = environment
        let commandLine = environment.attribute(environment.procRoot + "/cmdline") ?? ""
        requested = commandLine.split(separator: " ").first(where: { $0.hasPrefix("imprint.media=") })
            .map { String($0.dropFirst("imprint.media=".count)) }
    }

    func reason(for disk: Disk) -> String? {
        let filesystems = disk.filesystems
        if let requested {
            if requested.hasPrefix("LABEL="), filesystems.contains(where: { $0.label == String(requested.dropFirst(6)) }) {
                return "it holds the filesystem \(requested) named by imprint.media= on the kernel command line"
            }
            if requested.hasPrefix("UUID="),
               filesystems.contains(where: { $0.uuid?.lowercased() == requested.dropFirst(5).lowercased() }) {
                return "it holds the filesystem \(requested) named by imprint.media= on the kernel command line"
            }
            let partitionPaths = disk.partitionTable?.partitions.compactMap(\.devicePath) ?? []
            if requested.hasPrefix("/"), requested == disk.path || partitionPaths.contains(requested) {
                return "imprint.media=\(requested) on the kernel command line"
            }
        }
        if filesystems.contains(where: { $0.label == environment.mediaLabel }) {
            return "it holds a filesystem labelled \(environment.mediaLabel), the Imprint boot medium"
        }
        return nil
    }
}
