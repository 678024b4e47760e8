import DiskModel
import Foundation

/// A disk after preparation: its partitions as devices, and the filesystems made on them.
public struct PreparedDisk: Sendable {
    public var disk: Disk
    public var partitions: ExposedPartitions
    public var filesystems: [Int: Filesystem]
}

/// Carries out a `DiskPlan`: checks again that the disk is the planned one and may be written,
/// erases every old signature, writes the table, makes the kernel show the partitions, formats
/// them, and checks through libblkid that what was made is what is seen.
public enum DiskPreparer {
    public static func prepare(_ plan: DiskPlan, environment: DiskEnvironment = .system,
                               log: (String) -> Void = { _ in }) throws(DiskError) -> PreparedDisk {
        let exposed: ExposedPartitions
        let disk: Disk
        do {
            let writable = try WritableDisk(identity: plan.identity, rules: plan.rules, environment: environment)
            disk = writable.disk
            log("\(writable.path): checked: same disk as planned, not the boot medium, not in use")
            try wipe(writable, plan: plan, log: log)
            try writable.write(try PartitionTableWriter.writes(for: plan.layout))
            try writable.flush()
            log("\(writable.path): wrote a \(plan.layout.table.rawValue) table with \(plan.layout.partitions.count) partitions")
            exposed = try PartitionExposer.expose(writable, plan: plan.layout, environment: environment, log: log)
            // The exclusive open ends here: mkfs opens the partitions exclusively itself.
        }
        var filesystems: [Int: Filesystem] = [:]
        for partition in plan.layout.partitions {
            guard let format = partition.format else { continue }
            guard let device = exposed.device(partition.number) else {
                throw DiskError.partitionsNotVisible(path: plan.disk.path, reason: "partition \(partition.number) has no device")
            }
            try device.verify(on: disk, environment: environment)
            log("formatting partition \(partition.number) (\(device.path)) as \(format.filesystem.rawValue)")
            filesystems[partition.number] = try Formatter.format(
                format, device: device.path, startSector: partition.firstSector, sectorSize: plan.layout.sectorSize, log: log)
        }
        return PreparedDisk(disk: disk, partitions: exposed, filesystems: filesystems)
    }

    /// Erases signatures in the old partitions, in the new partitions' ranges and on the
    /// whole disk, then zeroes the first and last MiB (old tables, old GPT backups).
    static func wipe(_ disk: WritableDisk, plan: DiskPlan, log: (String) -> Void) throws(DiskError) {
        var ranges: [(UInt64, UInt64)] = (disk.disk.partitionTable?.partitions ?? []).map { ($0.offset, $0.size) }
        ranges += plan.layout.partitions.map { ($0.offset, $0.size) }
        var erased: [String] = []
        for (offset, size) in ranges where size > 0 && offset + size <= disk.disk.size {
            erased += try SignatureWiper.wipe(disk, offset: offset, size: size)
        }
        erased += try SignatureWiper.wipe(disk)
        let edge: UInt64 = min(1 << 20, disk.disk.size / 2)
        try disk.zero(offset: 0, length: edge)
        try disk.zero(offset: disk.disk.size - edge, length: edge)
        log("\(disk.path): erased " + (erased.isEmpty ? "no old signatures" : erased.joined(separator: ", "))
            + "; zeroed the first and last \(ByteSize.format(edge))")
    }
}
