import DiskModel
import CBlkid
import Foundation

/// What libblkid finds on a disk or on a byte range of it. Ranges are probed through the
/// whole disk's descriptor, so partitions are seen the same way whether or not the kernel
/// shows a device for them (the build machine's kernel has no partition parsers).
struct BlkidProbe {
    let path: String
    let descriptor: Int32

    /// The partition table at the start of the disk, or nil when there is none.
    func partitionTable(sectorSize: Int) throws(DiskError) -> PartitionTable? {
        guard let probe = blkid_new_probe() else { throw DiskError.probe(path: path, reason: "out of memory") }
        defer { blkid_free_probe(probe) }
        guard blkid_probe_set_device(probe, descriptor, 0, 0) == 0 else {
            throw DiskError.probe(path: path, reason: "libblkid cannot use the device")
        }
        blkid_probe_enable_superblocks(probe, 0)
        blkid_probe_enable_partitions(probe, 1)
        blkid_probe_set_partitions_flags(probe, Int32(BLKID_PARTS_ENTRY_DETAILS))
        guard let list = blkid_probe_get_partitions(probe), let table = blkid_partlist_get_table(list),
              let typeName = blkid_parttable_get_type(table) else { return nil }
        let tableType: PartitionTableType
        switch String(cString: typeName) {
        case "gpt": tableType = .gpt
        case "dos": tableType = .mbr
        case let other:
            // Apple, BSD, Solaris labels: report nothing we would write over blindly.
            return PartitionTable(type: .mbr, id: "unsupported:\(other)", partitions: [])
        }
        var id = blkid_parttable_get_id(table).map { String(cString: $0) }
        if tableType == .gpt { id = id?.uppercased() } else if let raw = id, !raw.hasPrefix("0x") { id = "0x" + raw }

        var partitions: [Partition] = []
        let count = blkid_partlist_numof_partitions(list)
        for index in 0..<max(count, 0) {
            guard let entry = blkid_partlist_get_partition(list, index) else { continue }
            // libblkid counts in 512-byte units whatever the disk's sector size.
            let offset = UInt64(max(blkid_partition_get_start(entry), 0)) * 512
            let size = UInt64(max(blkid_partition_get_size(entry), 0)) * 512
            let type: String
            if tableType == .gpt {
                type = blkid_partition_get_type_string(entry).map { String(cString: $0).uppercased() } ?? ""
            } else {
                type = String(format: "0x%02x", blkid_partition_get_type(entry))
            }
            var partition = Partition(
                number: Int(blkid_partition_get_partno(entry)), offset: offset, size: size, type: type,
                typeName: PartitionTypeNames.name(of: type),
                name: blkid_partition_get_name(entry).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 },
                attributes: UInt64(blkid_partition_get_flags(entry)),
                uuid: blkid_partition_get_uuid(entry).map { String(cString: $0).uppercased() })
            if blkid_partition_is_extended(entry) == 0 {
                partition.filesystem = try filesystem(offset: offset, size: size)
            }
            partitions.append(partition)
        }
        return PartitionTable(type: tableType, id: id, partitions: partitions)
    }

    /// The filesystem (or RAID member, BitLocker volume, swap) in a byte range; the whole
    /// disk when `size` is 0.
    func filesystem(offset: UInt64 = 0, size: UInt64 = 0) throws(DiskError) -> Filesystem? {
        guard let probe = blkid_new_probe() else { throw DiskError.probe(path: path, reason: "out of memory") }
        defer { blkid_free_probe(probe) }
        guard blkid_probe_set_device(probe, descriptor, blkid_loff_t(offset), blkid_loff_t(size)) == 0 else {
            throw DiskError.probe(path: path, reason: "libblkid cannot read bytes \(offset)..<\(offset + size)")
        }
        blkid_probe_enable_partitions(probe, 0)
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, Int32(BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE))
        // safeprobe: two conflicting signatures (a stale one) give "ambivalent" rather than a guess.
        let result = blkid_do_safeprobe(probe)
        if result == -2 { return Filesystem(type: "ambivalent", usage: "several signatures; wipe before use") }
        guard result == 0, let type = blkidValue(probe, "TYPE") else { return nil }
        return Filesystem(type: type, label: blkidValue(probe, "LABEL"), uuid: blkidValue(probe, "UUID"), usage: blkidValue(probe, "USAGE"))
    }
}

/// One value of a finished probe (`TYPE`, `LABEL`, `UUID`, ...), or nil.
func blkidValue(_ probe: blkid_probe, _ name: String) -> String? {
    var data: UnsafePointer<CChar>?
    var length = 0
    guard blkid_probe_lookup_value(probe, name, &data, &length) == 0, let data else { return nil }
    return String(cString: data)
}
