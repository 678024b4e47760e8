import DiskModel
import CBlkid
import Foundation
import Primitives

/// How a partition is named in BCD device data, found with libblkid: the partition's GPT
/// unique GUID and the disk GUID (PART_ENTRY_UUID, and PTUUID of the whole disk), or for MBR
/// the byte offset and the disk signature.
public struct PartitionIdentity: Equatable, Sendable {
    public var device: BCDDevice
    /// The whole disk (`/dev/sda`) and the partition number, for efibootmgr.
    public var disk: String?
    public var number: Int?
    /// The partition's first byte on the disk (ReAgent.xml names the recovery partition so).
    public var offset: UInt64?

    public init(device: BCDDevice, disk: String? = nil, number: Int? = nil, offset: UInt64? = nil) {
        self.device = device
        self.disk = disk
        self.number = number
        self.offset = offset
    }

    public static func probe(_ partition: String) throws -> PartitionIdentity {
        guard let probe = blkid_new_probe_from_filename(partition) else {
            throw BootError.probe(device: partition, reason: "cannot open it to read its partition entry (\(String(cString: strerror(errno))))")
        }
        defer { blkid_free_probe(probe) }
        blkid_probe_enable_superblocks(probe, 0)
        blkid_probe_enable_partitions(probe, 1)
        blkid_probe_set_partitions_flags(probe, Int32(BLKID_PARTS_ENTRY_DETAILS))
        _ = blkid_do_safeprobe(probe)
        func value(_ probe: blkid_probe, _ name: String) -> String? {
            var data: UnsafePointer<CChar>?
            var length = 0
            guard blkid_probe_lookup_value(probe, name, &data, &length) == 0, let data else { return nil }
            return String(cString: data)
        }
        guard let scheme = value(probe, "PART_ENTRY_SCHEME") else {
            throw BootError.probe(device: partition, reason: "libblkid finds no partition table entry for it: "
                                  + "give the GUIDs (--disk-guid, --windows-partition-guid, --esp-partition-guid)")
        }
        let number = value(probe, "PART_ENTRY_NUMBER").flatMap { Int($0) }
        // libblkid gives the offset in 512-byte sectors.
        let offset = value(probe, "PART_ENTRY_OFFSET").flatMap { UInt64($0) }.map { $0 * 512 }
        let wholeDevno = blkid_probe_get_wholedisk_devno(probe)
        let disk = blkid_devno_to_devname(wholeDevno).map { pointer -> String in
            defer { free(pointer) }
            return String(cString: pointer)
        }
        guard let disk, let diskProbe = blkid_new_probe_from_filename(disk) else {
            throw BootError.probe(device: partition, reason: "cannot find the disk it belongs to")
        }
        defer { blkid_free_probe(diskProbe) }
        blkid_probe_enable_superblocks(diskProbe, 0)
        blkid_probe_enable_partitions(diskProbe, 1)
        _ = blkid_do_safeprobe(diskProbe)
        let tableID = value(diskProbe, "PTUUID")
        if scheme == "gpt" {
            guard let text = value(probe, "PART_ENTRY_UUID"), let partitionGUID = GUID(text),
                  let tableID, let diskGUID = GUID(tableID) else {
                throw BootError.probe(device: partition, reason: "no partition GUID or disk GUID in its GPT entry")
            }
            return PartitionIdentity(device: .gptPartition(partition: partitionGUID, disk: diskGUID), disk: disk, number: number, offset: offset)
        }
        guard let offsetText = value(probe, "PART_ENTRY_OFFSET"), let sectors = UInt64(offsetText),
              let tableID, let signature = UInt32(tableID, radix: 16) else {
            throw BootError.probe(device: partition, reason: "no offset or disk signature in its MBR entry")
        }
        // libblkid gives the offset in 512-byte sectors.
        return PartitionIdentity(device: .mbrPartition(offset: sectors * 512, signature: signature), disk: disk, number: number, offset: offset)
    }
}
