import Primitives

/// A layout placed on one particular disk: every partition with its sectors, type and GUIDs,
/// ready for `PartitionTableWriter`.
public struct PartitionPlan: Sendable, Equatable, Codable {
    public var table: PartitionTableType
    public var sectorSize: Int
    public var diskSectors: UInt64
    /// The GPT disk GUID (upper case) or the MBR disk identifier (`0x1a2b3c4d`).
    public var diskID: String
    public var partitions: [PlannedPartition]

    public init(table: PartitionTableType, sectorSize: Int, diskSectors: UInt64, diskID: String, partitions: [PlannedPartition]) {
        self.table = table
        self.sectorSize = sectorSize
        self.diskSectors = diskSectors
        self.diskID = diskID
        self.partitions = partitions
    }

    /// GPT: the first sector a partition may use, after the protective MBR, header and entries.
    public var firstUsableSector: UInt64 {
        table == .gpt ? 2 + GPTGeometry.arraySectors(sectorSize: sectorSize) : LayoutPlanner.alignmentBytes / UInt64(sectorSize)
    }

    /// The last sector a partition may use: before the backup entries and header on GPT.
    public var lastUsableSector: UInt64 {
        let reserved = table == .gpt ? 1 + GPTGeometry.arraySectors(sectorSize: sectorSize) : 0
        return diskSectors >= reserved + 1 ? diskSectors - 1 - reserved : 0
    }
}

public struct PlannedPartition: Sendable, Equatable, Codable {
    /// 1-based, as the kernel numbers partitions.
    public var number: Int
    public var id: String?
    public var role: PartitionRole
    public var firstSector: UInt64
    public var sectorCount: UInt64
    /// GPT type GUID (upper case) or MBR type (`0x07`).
    public var type: String
    /// The GPT name; nil on MBR.
    public var name: String?
    /// GPT attribute bits; 0 on MBR.
    public var attributes: UInt64
    /// The MBR boot flag.
    public var active: Bool
    /// The GPT unique partition GUID (upper case); nil on MBR.
    public var uniqueGUID: String?
    public var format: FormatSpec?
    /// The sector size of the plan, so offsets need no other context.
    public var sectorSize: Int

    public init(number: Int, id: String?, role: PartitionRole, firstSector: UInt64, sectorCount: UInt64,
                type: String, name: String?, attributes: UInt64, active: Bool, uniqueGUID: String?,
                format: FormatSpec?, sectorSize: Int) {
        self.number = number
        self.id = id
        self.role = role
        self.firstSector = firstSector
        self.sectorCount = sectorCount
        self.type = type
        self.name = name
        self.attributes = attributes
        self.active = active
        self.uniqueGUID = uniqueGUID
        self.format = format
        self.sectorSize = sectorSize
    }

    /// Bytes from the start of the disk.
    public var offset: UInt64 { firstSector * UInt64(sectorSize) }
    /// Size in bytes.
    public var size: UInt64 { sectorCount * UInt64(sectorSize) }
    public var lastSector: UInt64 { firstSector + sectorCount - 1 }
}

/// Places a layout on a disk of a given size.
///
/// Every partition starts on a 1 MiB boundary, as Windows and parted do, so that it lines up
/// with flash erase blocks and RAID stripes whatever the sector size. Partitions before a
/// `rest` one are placed from the start of the disk, those after it are packed against the
/// end, so a recovery partition listed last ends at the end of the disk and `rest` takes
/// the space between.
public enum LayoutPlanner {
    public static let alignmentBytes: UInt64 = 1 << 20
    /// 65,525 clusters of 512 bytes plus the FATs and reserved sectors, rounded up to a MiB.
    public static let minimumFAT32Size: UInt64 = 33 << 20
    /// An MBR entry holds 32-bit sector numbers.
    static let mbrSectorLimit: UInt64 = 1 << 32

    public static func plan(_ layout: PartitionLayout, diskSize: UInt64, sectorSize: Int,
                            generator: inout some RandomNumberGenerator) throws(DiskError) -> PartitionPlan {
        guard sectorSize >= 512, sectorSize <= 4096, sectorSize & (sectorSize - 1) == 0 else {
            throw DiskError.invalidLayout(reason: "sector size \(sectorSize) is not 512, 1024, 2048 or 4096 bytes")
        }
        guard !layout.partitions.isEmpty else { throw DiskError.invalidLayout(reason: "the layout has no partitions") }
        let sector = UInt64(sectorSize)
        let align = alignmentBytes / sector
        let diskSectors = diskSize / sector
        var plan = PartitionPlan(table: layout.table, sectorSize: sectorSize, diskSectors: diskSectors, diskID: "", partitions: [])
        let firstUsable = plan.firstUsableSector
        let lastUsable = plan.lastUsableSector
        let start = alignUp(firstUsable, align)
        // The exclusive end of the space partitions may use.
        let end = lastUsable + 1
        guard diskSectors > firstUsable + align, start < end else {
            throw DiskError.invalidLayout(reason: "the disk (\(ByteSize.format(diskSize))) is too small for any partition table and partition")
        }
        let available = (end - start) * sector

        let percentTotal = layout.partitions.reduce(0.0) { total, partition in
            if case let .percent(value) = partition.size { return total + value }
            return total
        }
        if percentTotal > 100 + PartitionLayout.percentTolerance {
            throw DiskError.invalidLayout(reason: "the percentages add up to \(PartitionSize.percent(percentTotal)), more than 100%")
        }

        // Sizes in sectors, nil for rest.
        var counts: [UInt64?] = []
        for (index, partition) in layout.partitions.enumerated() {
            switch partition.size {
            case .rest:
                counts.append(nil)
            case let .bytes(bytes):
                let count = bytes / sector + (bytes % sector == 0 ? 0 : 1)
                guard count * sector >= alignmentBytes else {
                    throw DiskError.invalidLayout(reason: "\(describe(index, partition)) is \(ByteSize.format(bytes)); a partition needs at least 1 MiB")
                }
                counts.append(count)
            case let .percent(value):
                // A share of the space partitions can use rather than of the raw disk, and
                // rounded down to whole MiB, so that shares adding up to 100% fit exactly.
                let bytes = UInt64(Double(available) * value / 100)
                let count = bytes / sector / align * align
                guard count * sector >= alignmentBytes else {
                    throw DiskError.invalidLayout(reason: "\(describe(index, partition)) is \(partition.size) of the \(ByteSize.format(available)) usable, \(ByteSize.format(bytes)); a partition needs at least 1 MiB")
                }
                counts.append(count)
            }
        }
        let restIndex = layout.partitions.firstIndex { $0.size == .rest }
        let needed = counts.reduce(UInt64(0)) { $0 + ($1 ?? align) } * sector
        func doesNotFit(_ index: Int) -> DiskError {
            DiskError.invalidLayout(reason: "\(describe(index, layout.partitions[index])) does not fit: the layout needs at least \(ByteSize.format(needed))"
                + (restIndex == nil ? "" : " (counting 1 MiB for \"rest\")")
                + " but a \(ByteSize.format(diskSize)) disk has \(ByteSize.format(available)) usable")
        }

        var firstSectors = [UInt64](repeating: 0, count: counts.count)
        var cursor = start
        for index in 0..<(restIndex ?? counts.count) {
            let count = counts[index] ?? 0
            cursor = alignUp(cursor, align)
            guard cursor < end, count <= end - cursor else { throw doesNotFit(index) }
            firstSectors[index] = cursor
            cursor += count
        }
        if let restIndex {
            // Packed from the end backwards, each on the highest boundary that still fits.
            var tail = end
            for index in stride(from: counts.count - 1, to: restIndex, by: -1) {
                let count = counts[index] ?? 0
                guard count <= tail, alignDown(tail - count, align) >= alignUp(cursor, align) else { throw doesNotFit(index) }
                tail = alignDown(tail - count, align)
                firstSectors[index] = tail
            }
            let restStart = alignUp(cursor, align)
            guard restStart < tail, (tail - restStart) * sector >= alignmentBytes else {
                let left = restStart < tail ? (tail - restStart) * sector : 0
                throw DiskError.invalidLayout(reason: "\(describe(restIndex, layout.partitions[restIndex])) takes the rest, but only \(ByteSize.format(left)) is left of the \(ByteSize.format(available)) usable on a \(ByteSize.format(diskSize)) disk; a partition needs at least 1 MiB")
            }
            firstSectors[restIndex] = restStart
            counts[restIndex] = tail - restStart
        }

        for (index, partition) in layout.partitions.enumerated() {
            let first = firstSectors[index]
            let count = counts[index] ?? 0
            if layout.table == .mbr, first + count > mbrSectorLimit {
                throw DiskError.invalidLayout(reason: "\(describe(index, partition)) would end at \(ByteSize.format((first + count) * sector)), beyond the \(ByteSize.format(mbrSectorLimit * sector)) an MBR table can address; use a GPT table or a smaller size")
            }
            var planned = PlannedPartition(number: index + 1, id: partition.id, role: partition.role,
                                           firstSector: first, sectorCount: count, type: "", name: nil,
                                           attributes: 0, active: false, uniqueGUID: nil,
                                           format: partition.format, sectorSize: sectorSize)
            switch layout.table {
            case .gpt:
                planned.type = partition.type ?? partition.role.gptType.description
                planned.name = partition.name ?? partition.role.defaultName
                planned.attributes = partition.attributes ?? partition.role.defaultAttributes
                planned.uniqueGUID = GUID.random(using: &generator).description
            case .mbr:
                if let type = partition.type {
                    planned.type = type
                } else if let byte = partition.role.mbrType(format: partition.format) {
                    planned.type = PartitionLayout.mbrTypeText(byte)
                } else {
                    throw DiskError.invalidLayout(reason: "\(describe(index, partition)): a \(partition.role.rawValue) partition exists only on GPT disks")
                }
                planned.active = partition.active
            }
            // FAT32 needs 65,525 clusters; below that mkfs.fat only warns, and firmware may
            // then refuse the volume (or see FAT16): better said now than at boot.
            if partition.format?.filesystem == .fat32, planned.size < Self.minimumFAT32Size {
                throw DiskError.invalidLayout(reason: "\(describe(index, partition)) is \(ByteSize.format(planned.size)), "
                    + "too small for FAT32 (at least \(ByteSize.format(Self.minimumFAT32Size)); an ESP is usually 260 MiB)")
            }
            plan.partitions.append(planned)
        }

        switch layout.table {
        case .gpt:
            plan.diskID = GUID.random(using: &generator).description
        case .mbr:
            var id: UInt32 = 0
            // Zero means "no signature" to Windows, which would then write one of its own.
            while id == 0 { id = UInt32.random(in: .min ... .max, using: &generator) }
            let hex = String(id, radix: 16)
            plan.diskID = "0x" + String(repeating: "0", count: 8 - hex.count) + hex
        }
        return plan
    }

    /// `$.partitions[2] ("windows", rest)`: the same index the JSON path uses.
    private static func describe(_ index: Int, _ partition: PartitionSpec) -> String {
        "$.partitions[\(index)] (" + (partition.id.map { "\"\($0)\", " } ?? "") + "\(partition.role.rawValue), \(partition.size))"
    }

    private static func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        (value + alignment - 1) / alignment * alignment
    }

    private static func alignDown(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        value / alignment * alignment
    }
}
