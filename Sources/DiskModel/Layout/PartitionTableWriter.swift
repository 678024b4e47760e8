import Primitives

/// Bytes to put at an offset of the disk.
public struct DiskWrite: Sendable, Equatable {
    public var offset: UInt64
    public var bytes: [UInt8]

    public init(offset: UInt64, bytes: [UInt8]) {
        self.offset = offset
        self.bytes = bytes
    }
}

/// Turns a plan into the sectors of its partition table: for GPT the protective MBR, both
/// headers and both entry arrays (UEFI 2.10 §5.2–5.3); for MBR sector 0.
///
/// The plan must come from `LayoutPlanner` (or be equivalent): a GUID or type it holds that
/// does not parse is a programming error and stops the process rather than write a table
/// nobody can read.
public enum PartitionTableWriter {
    public static func writes(for plan: PartitionPlan) throws(DiskError) -> [DiskWrite] {
        switch plan.table {
        case .gpt: return try gptWrites(plan)
        case .mbr: return try mbrWrites(plan)
        }
    }

    // MARK: GPT

    private static func gptWrites(_ plan: PartitionPlan) throws(DiskError) -> [DiskWrite] {
        let sector = UInt64(plan.sectorSize)
        let arraySectors = GPTGeometry.arraySectors(sectorSize: plan.sectorSize)
        let lastSector = plan.diskSectors - 1
        let backupArray = lastSector - arraySectors

        var entries = [UInt8](repeating: 0, count: Int(arraySectors * sector))
        for partition in plan.partitions {
            var entry = [UInt8](repeating: 0, count: GPTGeometry.entrySize)
            entry.put(try guid(partition.type, "partition \(partition.number) type").onDiskBytes, at: 0)
            entry.put(try guid(partition.uniqueGUID ?? "", "partition \(partition.number) unique GUID").onDiskBytes, at: 16)
            entry.put(partition.firstSector, at: 32)
            entry.put(partition.lastSector, at: 40)
            entry.put(partition.attributes, at: 48)
            // UTF-16LE, NUL-padded; the layout allows at most 36 units, never cut mid-pair.
            var offset = 56
            for unit in (partition.name ?? "").utf16.prefix(36) {
                entry.put(unit, at: offset)
                offset += 2
            }
            entries.put(entry, at: (partition.number - 1) * GPTGeometry.entrySize)
        }
        // The CRC covers the entries the header counts, not the padding of the last sector.
        let arrayCRC = CRC32.checksum(entries[0..<GPTGeometry.arrayBytes])
        let diskGUID = try guid(plan.diskID, "disk GUID")

        func header(my: UInt64, alternate: UInt64, entriesAt: UInt64) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: plan.sectorSize)
            bytes.put(Array("EFI PART".utf8), at: 0)
            bytes.put(UInt32(0x0001_0000), at: 8)
            bytes.put(UInt32(92), at: 12)
            bytes.put(my, at: 24)
            bytes.put(alternate, at: 32)
            bytes.put(plan.firstUsableSector, at: 40)
            bytes.put(plan.lastUsableSector, at: 48)
            bytes.put(diskGUID.onDiskBytes, at: 56)
            bytes.put(entriesAt, at: 72)
            bytes.put(UInt32(GPTGeometry.entryCount), at: 80)
            bytes.put(UInt32(GPTGeometry.entrySize), at: 84)
            bytes.put(arrayCRC, at: 88)
            bytes.put(CRC32.checksum(bytes[0..<92]), at: 16)
            return bytes
        }

        var protective = [UInt8](repeating: 0, count: plan.sectorSize)
        // One 0xEE entry over the whole disk (as far as 32 bits reach) so MBR-only tools see
        // the disk as in use; CHS as the UEFI specification gives it.
        let entry = 446
        protective.put([0x00, 0x02, 0x00], at: entry + 1)
        protective[entry + 4] = 0xEE
        protective.put([0xFF, 0xFF, 0xFF], at: entry + 5)
        protective.put(UInt32(1), at: entry + 8)
        protective.put(UInt32(min(plan.diskSectors - 1, 0xFFFF_FFFF)), at: entry + 12)
        protective.put([0x55, 0xAA], at: 510)

        return [
            DiskWrite(offset: 0, bytes: protective),
            DiskWrite(offset: sector, bytes: header(my: 1, alternate: lastSector, entriesAt: 2)),
            DiskWrite(offset: 2 * sector, bytes: entries),
            DiskWrite(offset: backupArray * sector, bytes: entries),
            DiskWrite(offset: lastSector * sector, bytes: header(my: lastSector, alternate: 1, entriesAt: backupArray)),
        ]
    }

    private static func guid(_ text: String, _ what: String) throws(DiskError) -> GUID {
        guard let value = GUID(text) else { throw DiskError.invalidLayout(reason: "partition plan: \(what) \"\(text)\" is not a GUID") }
        return value
    }

    // MARK: MBR

    private static func mbrWrites(_ plan: PartitionPlan) throws(DiskError) -> [DiskWrite] {
        // Boot code is another component's job; this sector starts from zeros.
        var bytes = [UInt8](repeating: 0, count: plan.sectorSize)
        bytes.put(UInt32(try diskIdentifier(plan.diskID)), at: 440)
        for partition in plan.partitions {
            let entry = 446 + (partition.number - 1) * 16
            guard let type = PartitionLayout.mbrTypeByte(partition.type) else {
                throw DiskError.invalidLayout(reason: "partition plan: partition \(partition.number) type \"\(partition.type)\" is not an MBR type")
            }
            bytes[entry] = partition.active ? 0x80 : 0x00
            bytes.put(chs(partition.firstSector), at: entry + 1)
            bytes[entry + 4] = type
            bytes.put(chs(partition.lastSector), at: entry + 5)
            bytes.put(UInt32(truncatingIfNeeded: partition.firstSector), at: entry + 8)
            bytes.put(UInt32(truncatingIfNeeded: partition.sectorCount), at: entry + 12)
        }
        bytes.put([0x55, 0xAA], at: 510)
        // The sectors up to the first partition are cleared as well, so the header and
        // entries of a GPT the disk held before cannot be mistaken for the current table.
        let gap = Int(LayoutPlanner.alignmentBytes) - plan.sectorSize
        return [
            DiskWrite(offset: 0, bytes: bytes),
            DiskWrite(offset: UInt64(plan.sectorSize), bytes: [UInt8](repeating: 0, count: gap)),
        ]
    }

    private static func diskIdentifier(_ text: String) throws(DiskError) -> UInt32 {
        let lower = text.lowercased()
        guard lower.hasPrefix("0x"), let value = UInt32(lower.dropFirst(2), radix: 16) else {
            throw DiskError.invalidLayout(reason: "partition plan: MBR disk identifier \"\(text)\" is not like 0x1a2b3c4d")
        }
        return value
    }

    /// Cylinder-head-sector for the 255-head, 63-sector geometry every BIOS since LBA
    /// assumes; beyond cylinder 1023 the fields say "use LBA" (1023/254/63).
    static func chs(_ lba: UInt64) -> [UInt8] {
        let cylinder = lba / (255 * 63)
        guard cylinder <= 1023 else { return [0xFE, 0xFF, 0xFF] }
        let head = UInt8(lba / 63 % 255)
        let sector = UInt8(lba % 63 + 1)
        return [head, sector | UInt8((cylinder >> 2) & 0xC0), UInt8(cylinder & 0xFF)]
    }
}
