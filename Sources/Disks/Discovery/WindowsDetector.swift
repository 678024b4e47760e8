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
        // Read-only, a volume whose $MFTMirr a power cut set apart from $MFT is still read.
        guard size > 0, let volume = imprint_ntfs_mount_region(name, descriptor, Int64(offset), Int64(size), 1) else {
            return nil
        }
        defer { _ = imprint_ntfs_umount(volume) }
        let label = imprint_ntfs_volume_name(volume).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        let users = exists(volume, "Users")
        // A refresh cut off after its clean-up: the old Windows is in its record's folder and
        // the new one may be half there. Still this volume's Windows, to be refreshed.
        if let record = refreshRecord(volume), let old = record.destination, exists(volume, old + "/" + systemHive) {
            return WindowsInstallation(partition: partition, label: label, systemRoot: "Windows", hasUsers: users, refreshInProgress: old)
        }
        guard exists(volume, systemHive) else { return nil }
        return WindowsInstallation(partition: partition, label: label, systemRoot: "Windows", hasUsers: users)
    }

    /// The record of a refresh begun on this volume, when there is a readable one.
    private static func refreshRecord(_ volume: UnsafeMutablePointer<ntfs_volume>) -> RefreshRecord? {
        guard let inode = ntfs_pathname_to_inode(volume, nil, RefreshRecord.path) else { return nil }
        defer { ntfs_inode_close(inode) }
        guard let attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else { return nil }
        defer { ntfs_attr_close(attribute) }
        let size = attribute.pointee.data_size
        // A record is a few hundred bytes; anything large is not one.
        guard size > 0, size <= 64 << 10 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let read = bytes.withUnsafeMutableBytes { ntfs_attr_pread(attribute, 0, size, $0.baseAddress) }
        guard read == size else { return nil }
        return try? JSONDecoder().decode(RefreshRecord.self, from: Data(bytes))
    }

    private static func exists(_ volume: UnsafeMutablePointer<ntfs_volume>, _ path: String) -> Bool {
        // ntfs-3g looks names up through the volume's upcase table: `windows` finds `Windows`.
        guard let inode = ntfs_pathname_to_inode(volume, nil, path) else { return false }
        ntfs_inode_close(inode)
        return true
    }
}
