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

/// Names for the partition types people meet on Windows and Linux machines.
enum PartitionTypeNames {
    static let gpt: [String: String] = [
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI system",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Microsoft LDM metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD": "Microsoft LDM data",
        "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Microsoft storage spaces",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
        "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
        "48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS+",
    ]
    static let mbr: [UInt8: String] = [
        0x05: "Extended", 0x07: "NTFS/exFAT", 0x0b: "FAT32", 0x0c: "FAT32 (LBA)", 0x0e: "FAT16 (LBA)",
        0x0f: "Extended (LBA)", 0x27: "Windows recovery", 0x82: "Linux swap", 0x83: "Linux",
        0x85: "Linux extended", 0x8e: "Linux LVM", 0xee: "GPT protective", 0xef: "EFI system", 0xfd: "Linux RAID",
    ]

    static func name(of type: String) -> String? {
        if type.hasPrefix("0x"), let byte = UInt8(type.dropFirst(2), radix: 16) { return mbr[byte] }
        return gpt[type.uppercased()]
    }
}
