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
        if readOnly {
            if let mounted = imprint_ntfs_mount_readonly(device) {
                pointer = mounted
            } else {
                let code = errno
                // EIO: perhaps only $MFTMirr apart from $MFT (a cut between a record's two
                // writes); the read-only region mount reads it as if the copy were right.
                guard code == EIO else { throw NTFSApplyError.mount(device: device, errno: code) }
                let fd = open(device, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw NTFSApplyError.mount(device: device, errno: code) }
                let size = lseek(fd, 0, SEEK_END)
                guard size > 0, let mounted = imprint_ntfs_mount_region(device, fd, 0, Int64(size), 1) else {
                    close(fd)
                    throw NTFSApplyError.mount(device: device, errno: code)
                }
                pointer = mounted
                regionDescriptor = fd
            }
        } else {
            let (mounted, repaired) = try NTFSTarget.mountRepairingMirror(device)
            pointer = mounted
            // Rare (a cut between a record's two writes) and worth a technician's eye.
            if let repaired { FileHandle.standardError.write(Data(("imprint: " + repaired + "\n").utf8)) }
        }
    }

    /// The device opened for a region mount, closed once libntfs-3g has unmounted.
    private var regionDescriptor: Int32?

    deinit {
        if let pointer { _ = imprint_ntfs_umount(pointer) }
        if let regionDescriptor { close(regionDescriptor) }
    }

    /// Unmounts, writing out what was changed: the errno when that fails, nil when it worked
    /// (or the volume was unmounted already).
    public func unmount() -> Int32? {
        guard let mounted = pointer else { return nil }
        pointer = nil
        let failure = imprint_ntfs_umount(mounted) == 0 ? nil : errno
        if let regionDescriptor { close(regionDescriptor) }
        regionDescriptor = nil
        return failure
    }
}
