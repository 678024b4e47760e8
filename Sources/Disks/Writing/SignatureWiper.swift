import DiskModel
import CBlkid
import Foundation

/// Erases every signature libblkid recognises (filesystem superblocks, RAID and LVM labels,
/// partition tables) in a byte range, as `wipefs --all` does: after a new table is written,
/// nothing stale from the old contents may be detected in the new partitions.
enum SignatureWiper {
    /// Returns what was erased, for the log: `ntfs at 1048579`, `gpt at 512`.
    @discardableResult
    static func wipe(_ disk: WritableDisk, offset: UInt64 = 0, size: UInt64 = 0) throws(DiskError) -> [String] {
        guard let probe = blkid_new_probe() else { throw DiskError.probe(path: disk.path, reason: "out of memory") }
        defer { blkid_free_probe(probe) }
        guard blkid_probe_set_device(probe, disk.descriptor, blkid_loff_t(offset), blkid_loff_t(size)) == 0 else {
            throw DiskError.probe(path: disk.path, reason: "libblkid cannot use bytes \(offset)..<\(offset + size)")
        }
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, Int32(BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_BADCSUM))
        blkid_probe_enable_partitions(probe, 1)
        blkid_probe_set_partitions_flags(probe, Int32(BLKID_PARTS_MAGIC | BLKID_PARTS_FORCE_GPT))
        var erased: [String] = []
        // Each wipe steps the probe back, so the next probe finds the next signature.
        for _ in 0..<64 {
            guard blkid_do_probe(probe) == 0 else { break }
            let type = blkidValue(probe, "TYPE") ?? blkidValue(probe, "PTTYPE") ?? "signature"
            let at = blkidValue(probe, "SBMAGIC_OFFSET") ?? blkidValue(probe, "PTMAGIC_OFFSET") ?? "?"
            guard blkid_do_wipe(probe, 0) == 0 else {
                throw DiskError.io(path: disk.path, operation: "erase the \(type) signature at byte \(at) of the range at \(offset)", errno: errno)
            }
            erased.append("\(type) at \(offset + (UInt64(at) ?? 0))")
        }
        return erased
    }
}
