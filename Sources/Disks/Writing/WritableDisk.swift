import DiskModel
import CImprintSystem
import Foundation

/// A disk opened for writing after every check passed, just before the first write: it is
/// still the planned disk (identity), it still satisfies the rules that chose it (not the boot
/// medium, not read-only, not in use, removable or holding data only if allowed), and the
/// kernel grants an exclusive open (no mounted filesystem, no holder).
public final class WritableDisk {
    public let disk: Disk
    let descriptor: Int32

    public init(identity: DiskIdentity, rules: DiskRules, environment: DiskEnvironment) throws(DiskError) {
        let current = try DiskInventory.disk(identity.path, environment)
        let changes = identity.differences(from: current)
        guard changes.isEmpty else { throw DiskError.diskChanged(path: identity.path, reason: changes.joined(separator: "; ")) }
        let rejections = DiskSelector.rejections(of: current, under: rules)
        guard rejections.isEmpty else {
            throw DiskError.refused(path: identity.path, reason: rejections.map(\.message).joined(separator: "; "))
        }
        // O_EXCL on a block device: the kernel refuses while anything mounts or holds it.
        let descriptor = open(identity.path, O_RDWR | O_EXCL | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            if code == EBUSY {
                throw DiskError.refused(path: identity.path, reason: "the kernel reports it busy (mounted, or held by RAID, LVM or device-mapper)")
            }
            throw DiskError.io(path: identity.path, operation: "open for writing", errno: code)
        }
        var info = stat()
        var bytes: UInt64 = 0
        let isBlock = fstat(descriptor, &info) == 0 && (info.st_mode & S_IFMT) == S_IFBLK
        let number = "\(major(info.st_rdev)):\(minor(info.st_rdev))"
        guard isBlock, number == identity.deviceNumber, imprint_block_size64(descriptor, &bytes) == 0, bytes == identity.size else {
            close(descriptor)
            let reason = !isBlock ? "it is not a block device"
                : number != identity.deviceNumber ? "the device node now leads to \(number), not \(identity.deviceNumber)"
                : "the kernel reports \(bytes) bytes, not \(identity.size)"
            throw DiskError.diskChanged(path: identity.path, reason: reason)
        }
        self.disk = current
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    public var path: String { disk.path }

    public func write(_ writes: [DiskWrite]) throws(DiskError) {
        for item in writes {
            try write(item.bytes, at: item.offset)
        }
    }

    public func zero(offset: UInt64, length: UInt64) throws(DiskError) {
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var position = offset
        let end = min(offset + length, disk.size)
        while position < end {
            let count = Int(min(UInt64(chunk.count), end - position))
            try write(chunk[0..<count], at: position)
            position += UInt64(count)
        }
    }

    private func write(_ bytes: some RandomAccessCollection<UInt8>, at offset: UInt64) throws(DiskError) {
        guard offset + UInt64(bytes.count) <= disk.size else {
            throw DiskError.io(path: path, operation: "write \(bytes.count) bytes at \(offset), past the end of the disk", errno: ENOSPC)
        }
        let array = Array(bytes)
        var done = 0
        while done < array.count {
            let written = array.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw DiskError.io(path: path, operation: "write at offset \(offset + UInt64(done))", errno: errno) }
            done += written
        }
    }

    /// Everything written reaches the device before the kernel is asked to re-read it.
    public func flush() throws(DiskError) {
        guard fsync(descriptor) == 0 else { throw DiskError.io(path: path, operation: "fsync", errno: errno) }
        _ = imprint_block_flush(descriptor)
    }
}
