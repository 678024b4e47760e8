import DiskModel
import CNTFS3G
import Foundation

/// Looks inside an NTFS volume, read-only and without mounting it, for a Windows installation:
/// `Windows\System32\config\SYSTEM` (the registry hive every installed Windows has).
enum WindowsDetector {
    static let systemHive = "Windows/System32/config/SYSTEM"

    /// nil when the range holds no readable NTFS volume or no Windows; never throws, because a
    /// damaged or hibernated volume must not stop a listing.
    static func detect(descriptor: Int32, name: String, offset: UInt64, size: UInt64, partition: Int?) -> WindowsInstallation? {
        guard size > 0, let volume = imprint_ntfs_mount_region(name, descriptor, Int64(offset), Int64(size), 1) else {
            return nil
        }
        defer { _ = imprint_ntfs_umount(volume) }
        guard exists(volume, systemHive) else { return nil }
        let label = imprint_ntfs_volume_name(volume).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        return WindowsInstallation(partition: partition, label: label, systemRoot: "Windows", hasUsers: exists(volume, "Users"))
    }

    private static func exists(_ volume: UnsafeMutablePointer<ntfs_volume>, _ path: String) -> Bool {
        // ntfs-3g looks names up through the volume's upcase table: `windows` finds `Windows`.
        guard let inode = ntfs_pathname_to_inode(volume, nil, path) else { return false }
        ntfs_inode_close(inode)
        return true
    }
}
