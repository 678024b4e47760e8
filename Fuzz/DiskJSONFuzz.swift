// libFuzzer target for what a technician's JSON reaches in the disk layer: selection rules,
// partition layouts, the planner that places a layout on disks of several sizes and sector
// sizes, and the table writer. Compiled into the DiskModel module by scripts/fuzz, which links
// every target into one binary (Fuzz/FuzzMain.swift picks this one by name: DiskJSONFuzz).
//
// Every input must decode or be rejected with an error naming a JSON path; every plan must
// stay inside its disk, with partitions in order and apart; every write must land on the disk.
import Foundation

private let disks: [Disk] = [
    Disk(name: "nvme0n1", path: "/dev/nvme0n1", size: 512 << 30, model: "WDC PC SN730", serial: "21A1", transport: .nvme),
    Disk(name: "sda", path: "/dev/sda", size: 2_000_398_934_016, model: "ST2000DM008", transport: .sata, rotational: true,
         partitionTable: PartitionTable(type: .mbr, id: "0x12345678", partitions: [
             Partition(number: 1, offset: 1 << 20, size: 500 << 20, type: "0x07", filesystem: Filesystem(type: "ntfs"))]),
         windows: [WindowsInstallation(partition: 1, label: nil, systemRoot: "Windows", hasUsers: true)]),
    Disk(name: "sdb", path: "/dev/sdb", size: 16 << 30, transport: .usb, removable: true, bootMedium: "label IMPRINT"),
    Disk(name: "mmcblk0", path: "/dev/mmcblk0", size: 0, transport: .mmc, removable: true),
]

private struct FixedGenerator: RandomNumberGenerator {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func checkJSONError(_ error: DiskError) {
    guard case let .invalidJSON(_, path, reason) = error, path.hasPrefix("$"), !reason.isEmpty else {
        fatalError("a decoding error without a JSON path: \(error)")
    }
}

public func fuzzDiskJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Data(bytes: data, count: size)
    do throws(DiskError) {
        let rules = try JSONInput.decode(DiskRules.self, from: input, file: "fuzz.json")
        let selection = DiskSelector.evaluate(rules, disks: disks)
        if let chosen = selection.chosen, chosen.bootMedium != nil || chosen.size == 0 {
            fatalError("a hard rule was overridden: \(chosen.name) chosen by \(rules)")
        }
        _ = selection.report()
    } catch {
        checkJSONError(error)
    }
    let layout: PartitionLayout
    do throws(DiskError) {
        layout = try JSONInput.decode(PartitionLayout.self, from: input, file: "fuzz.json")
    } catch {
        checkJSONError(error)
        return 0
    }
    for (diskSize, sectorSize) in [(UInt64(1) << 30, 512), (UInt64(64) << 30, 4096), (UInt64(3) << 40, 512), (UInt64(1) << 20, 512)] {
        var generator = FixedGenerator()
        guard let plan = try? LayoutPlanner.plan(layout, diskSize: diskSize, sectorSize: sectorSize, generator: &generator) else { continue }
        var previousEnd: UInt64 = 0
        for partition in plan.partitions {
            if partition.sectorCount == 0 || partition.firstSector < max(previousEnd, plan.firstUsableSector)
                || partition.lastSector > plan.lastUsableSector {
                fatalError("partition \(partition.number) out of place in \(plan)")
            }
            previousEnd = partition.lastSector + 1
        }
        guard let writes = try? PartitionTableWriter.writes(for: plan) else { fatalError("a plan the writer refuses: \(plan)") }
        for write in writes where write.offset + UInt64(write.bytes.count) > diskSize {
            fatalError("a write past the end of a \(diskSize)-byte disk at \(write.offset)")
        }
    }
    return 0
}
