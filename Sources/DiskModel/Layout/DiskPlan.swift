import Foundation

/// What preparing a disk would do, computed without touching anything: the disk the rules
/// choose, everything on it that would be lost, and every partition that would be created.
public struct DiskPlan: Sendable, Encodable {
    public var rules: DiskRules
    public var disk: Disk
    public var identity: DiskIdentity
    public var layout: PartitionPlan
    /// The other disks and why they were not chosen.
    public var selection: DiskSelection

    public init(rules: DiskRules, disk: Disk, layout: PartitionPlan, selection: DiskSelection) {
        self.rules = rules
        self.disk = disk
        identity = DiskIdentity(disk)
        self.layout = layout
        self.selection = selection
    }

    /// Plans `layout` on the disk already chosen by `rules` (a task sequence's selectDisk).
    public static func make(layout: PartitionLayout, on disk: Disk, rules: DiskRules, selection: DiskSelection) throws(DiskError) -> DiskPlan {
        var generator = SystemRandomNumberGenerator()
        let placed = try LayoutPlanner.plan(layout, diskSize: disk.size, sectorSize: disk.logicalSectorSize, generator: &generator)
        return DiskPlan(rules: rules, disk: disk, layout: placed, selection: selection)
    }


    /// Each thing on the disk that would be destroyed, one line each.
    public var losses: [String] {
        var lines: [String] = []
        if let table = disk.partitionTable {
            lines.append("the \(table.type.rawValue) partition table" + (table.id.map { " \($0)" } ?? "")
                         + " with \(table.partitions.count) partition\(table.partitions.count == 1 ? "" : "s")")
            for partition in table.partitions {
                var text = "partition \(partition.number): \(ByteSize.format(partition.size)) at \(ByteSize.format(partition.offset)), "
                    + (partition.typeName ?? partition.type)
                if let name = partition.name { text += " \"\(name)\"" }
                if let fs = partition.filesystem {
                    text += ", " + fs.type + (fs.label.map { " \"\($0)\"" } ?? "")
                }
                if let windows = disk.windows.first(where: { $0.partition == partition.number }) {
                    text += ", holds Windows" + (windows.hasUsers ? " and Users" : "")
                }
                lines.append(text)
            }
        }
        if let fs = disk.filesystem {
            lines.append("the whole-disk \(fs.type) filesystem" + (fs.label.map { " \"\($0)\"" } ?? "")
                         + (disk.windows.isEmpty ? "" : ", which holds Windows"))
        }
        return lines
    }

    public var description: String {
        var lines = ["disk: " + DiskSelection.summaryLine(disk)]
        let losses = self.losses
        if losses.isEmpty {
            lines.append("would wipe: nothing (the disk is blank)")
        } else {
            lines.append("would WIPE everything on \(disk.path):")
            lines += losses.map { "  - " + $0 }
        }
        lines.append("would create a \(layout.table.rawValue) partition table \(layout.diskID) (\(layout.sectorSize)-byte sectors):")
        for partition in layout.partitions {
            var text = "  \(partition.number)  sectors \(partition.firstSector)-\(partition.lastSector)"
                + "  \(ByteSize.format(partition.size)) at \(ByteSize.format(partition.offset))"
                + "  \(PartitionTypeNames.name(of: partition.type) ?? partition.type)"
            if let name = partition.name { text += "  \"\(name)\"" }
            if partition.active { text += "  active" }
            if partition.attributes != 0 { text += "  attributes 0x" + String(partition.attributes, radix: 16) }
            if let format = partition.format {
                text += "  → \(format.filesystem.rawValue)" + (format.label.map { " \"\($0)\"" } ?? "")
            }
            if let id = partition.id { text += "  [\(id)]" }
            lines.append(text)
        }
        return lines.joined(separator: "\n")
    }
}

extension DiskSelection {
    public static func summaryLine(_ disk: Disk) -> String {
        var parts = [disk.path, ByteSize.format(disk.size), disk.transport.rawValue]
        if let model = disk.model { parts.append(model) }
        if let serial = disk.serial { parts.append("serial \(serial)") }
        return parts.joined(separator: "  ")
    }
}
