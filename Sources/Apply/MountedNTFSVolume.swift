import CNTFS3G
import Foundation

/// An NTFS volume opened through libntfs-3g (no kernel mount) to read or write a few whole
/// files after the apply: checked to be NTFS first, unmounted by `unmount()` or, when a step
/// fails before that, on release. NTFSVolumeFiles (drivers, unattend) and the boot step's
/// reader share it.
public final class MountedNTFSVolume {
    public let device: String
    /// nil once unmounted.
    public private(set) var pointer: UnsafeMutablePointer<ntfs_volume>?

    public init(device: String, readOnly: Bool = false) throws {
        self.device = device
        guard NTFSTarget.hasNTFSBootSector(device) else { throw NTFSApplyError.notNTFS(device: device) }
        guard let mounted = readOnly ? imprint_ntfs_mount_readonly(device) : imprint_ntfs_mount(device) else {
            throw NTFSApplyError.mount(device: device, errno: errno)
        }
        pointer = mounted
    }

    deinit { if let pointer { _ = imprint_ntfs_umount(pointer) } }

    /// Unmounts, writing out what was changed: the errno when that fails, nil when it worked
    /// (or the volume was unmounted already).
    public func unmount() -> Int32? {
        guard let mounted = pointer else { return nil }
        pointer = nil
        return imprint_ntfs_umount(mounted) == 0 ? nil : errno
    }
}
