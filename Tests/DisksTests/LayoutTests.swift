import Foundation
import Primitives
import Testing
import TestSupport
@testable import DiskModel
@testable import Disks

// MARK: Helpers

private func decodeLayout(_ json: String) throws(DiskError) -> PartitionLayout {
    try JSONInput.decode(PartitionLayout.self, from: Data(json.utf8), file: "layout.json")
}

/// The JSON path and reason of a layout that must not decode.
private func decodeFailure(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) -> (path: String, reason: String)? {
    do {
        _ = try decodeLayout(json)
        Issue.record("decoded although it should not: \(json)", sourceLocation: sourceLocation)
        return nil
    } catch {
        guard case let .invalidJSON(file, path, reason) = error else {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(file == "layout.json", sourceLocation: sourceLocation)
        return (path, reason)
    }
}

private func planLayout(_ json: String, diskSize: UInt64, sectorSize: Int = 512, seed: UInt64 = 1) throws -> PartitionPlan {
    var generator = SplitMix64(seed: seed)
    return try LayoutPlanner.plan(try decodeLayout(json), diskSize: diskSize, sectorSize: sectorSize, generator: &generator)
}

private func planFailure(_ json: String, diskSize: UInt64, sectorSize: Int = 512,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> String? {
    var generator = SplitMix64(seed: 1)
    let layout = try decodeLayout(json)
    do {
        let plan = try LayoutPlanner.plan(layout, diskSize: diskSize, sectorSize: sectorSize, generator: &generator)
        Issue.record("planned although it should not: \(plan)", sourceLocation: sourceLocation)
        return nil
    } catch {
        guard case let .invalidLayout(reason) = error else {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            return nil
        }
        return reason
    }
}

/// A sparse image of `size` bytes holding the plan's table.
private func writeImage(_ plan: PartitionPlan, size: UInt64, in scratch: ScratchDirectory, name: String = "disk.img") throws -> String {
    let path = scratch.sub(name)
    #expect(FileManager.default.createFile(atPath: path, contents: nil))
    let handle = try #require(FileHandle(forWritingAtPath: path))
    defer { try? handle.close() }
    try handle.truncate(atOffset: size)
    for write in try PartitionTableWriter.writes(for: plan) {
        try handle.seek(toOffset: write.offset)
        try handle.write(contentsOf: Data(write.bytes))
    }
    return path
}

/// `sfdisk --json` parsed: the table object and its partitions.
private func sfdiskTable(_ image: String, sectorSize: Int? = nil) throws -> (table: [String: Any], partitions: [[String: Any]]) {
    let arguments = ["sfdisk", "--json"] + (sectorSize.map { ["--sector-size", String($0)] } ?? []) + [image]
    let result = try run(arguments)
    let object = try #require(try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any])
    let table = try #require(object["partitiontable"] as? [String: Any])
    let partitions = try #require(table["partitions"] as? [[String: Any]])
    return (table, partitions)
}

private func number(_ value: Any?) -> UInt64? { (value as? NSNumber)?.uint64Value }

private let windowsUEFI = Examples.windowsUEFI
private let windowsBIOS = Examples.windowsBIOS

private let espGUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
private let msrGUID = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
private let basicGUID = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
private let recoveryGUID = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"

// MARK: Decoding

@Test func layoutDecodesWindowsUEFIExample() throws {
    let layout = try decodeLayout(windowsUEFI)
    #expect(layout.table == .gpt)
    #expect(layout.partitions.map(\.role) == [.esp, .msr, .basic, .recovery])
    #expect(layout.partitions.map(\.size) == [.bytes(260 << 20), .bytes(16 << 20), .rest, .bytes(1 << 30)])
    #expect(layout.partitions[0].format == FormatSpec(filesystem: .fat32, label: "SYSTEM"))
    #expect(layout.partitions[1].id == "msr")
    #expect(layout.partitions[3].attributes == nil)
}

@Test func layoutDecodesAliasesAttributesAndTypes() throws {
    let layout = try decodeLayout("""
    {"table": "dos", "partitions": [
      {"role": "data", "size": 1048576, "type": "0xC"},
      {"role": "linux", "size": "25%", "type": "83"},
      {"role": "swap", "size": "500MB"}]}
    """)
    #expect(layout.table == .mbr)
    #expect(layout.partitions.map(\.role) == [.basic, .linux, .swap])
    #expect(layout.partitions.map(\.type) == ["0x0c", "0x83", nil])
    #expect(layout.partitions.map(\.size) == [.bytes(1 << 20), .percent(25), .bytes(500_000_000)])

    let gpt = try decodeLayout("""
    {"table": "gpt", "partitions": [
      {"role": "basic", "size": "1GiB", "type": "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
       "attributes": ["hidden", "noDriveLetter", "readOnly"], "name": "Data"},
      {"role": "basic", "size": "1GiB", "attributes": 9223372036854775809},
      {"role": "basic", "size": "1GiB", "attributes": "0x4"}]}
    """)
    #expect(gpt.partitions[0].type == basicGUID)
    #expect(gpt.partitions[0].attributes == 1 << 62 | 1 << 63 | 1 << 60)
    #expect(gpt.partitions[1].attributes == 0x8000_0000_0000_0001)
    #expect(gpt.partitions[2].attributes == 4)
    #expect(gpt.partitions[0].name == "Data")
}

@Test func layoutErrorsCarryJSONPaths() {
    let unknown = decodeFailure("""
    {"table": "gpt", "partitions": [{"role": "esp", "size": "260MiB"}, {"role": "msr", "sise": "16MiB"}]}
    """)
    #expect(unknown?.path == "$.partitions[1].sise")
    #expect(unknown?.reason.contains("unknown key") == true)

    let badSize = decodeFailure("""
    {"table": "gpt", "partitions": [{"role": "esp", "size": "260MiB"}, {"role": "msr", "size": "16MiB"},
      {"role": "basic", "size": "lots"}]}
    """)
    #expect(badSize?.path == "$.partitions[2].size")
    #expect(badSize?.reason.contains("\"lots\" is not a size") == true)

    let twoRests = decodeFailure("""
    {"table": "gpt", "partitions": [{"role": "basic", "size": "rest"}, {"role": "basic", "size": "1GiB"},
      {"role": "basic", "size": "REST"}]}
    """)
    #expect(twoRests?.path == "$.partitions[2].size")
    #expect(twoRests?.reason.contains("$.partitions[0] already") == true)

    let five = decodeFailure("""
    {"table": "mbr", "partitions": [{"role": "basic", "size": "1GiB"}, {"role": "basic", "size": "1GiB"},
      {"role": "basic", "size": "1GiB"}, {"role": "basic", "size": "1GiB"}, {"role": "basic", "size": "rest"}]}
    """)
    #expect(five?.path == "$.partitions")
    #expect(five?.reason.contains("at most 4") == true)
    #expect(five?.reason.contains("logical") == true)

    let msr = decodeFailure("""
    {"table": "mbr", "partitions": [{"role": "basic", "size": "1GiB"}, {"role": "msr", "size": "16MiB"}]}
    """)
    #expect(msr?.path == "$.partitions[1].role")
    #expect(msr?.reason.contains("only on GPT") == true)

    let topLevel = decodeFailure(#"{"table": "gpt", "partitions": [{"role": "esp", "size": "1GiB"}], "extra": 1}"#)
    #expect(topLevel?.path == "$.extra")

    let nestedFormat = decodeFailure(#"{"table": "gpt", "partitions": [{"role": "esp", "size": "1GiB", "format": {"filesystem": "fat32", "bogus": 1}}]}"#)
    #expect(nestedFormat?.path == "$.partitions[0].format.bogus")

    let attribute = decodeFailure(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "1GiB", "attributes": ["hidden", "invisible"]}]}"#)
    #expect(attribute?.path == "$.partitions[0].attributes[1]")

    let missingSize = decodeFailure(#"{"table": "gpt", "partitions": [{"role": "basic"}]}"#)
    #expect(missingSize?.path == "$.partitions[0].size")

    let expectations: [(String, String)] = [
        (#"{"table": "apm", "partitions": [{"role": "basic", "size": "1GiB"}]}"#, "$.table"),
        (#"{"table": "gpt", "partitions": []}"#, "$.partitions"),
        (#"{"table": "gpt", "partitions": [{"role": "boot", "size": "1GiB"}]}"#, "$.partitions[0].role"),
        (#"{"table": "gpt", "partitions": [{"role": "basic", "size": "0%"}]}"#, "$.partitions[0].size"),
        (#"{"table": "gpt", "partitions": [{"role": "basic", "size": -5}]}"#, "$.partitions[0].size"),
        (#"{"table": "gpt", "partitions": [{"role": "basic", "size": "60%"}, {"role": "basic", "size": "50%"}]}"#, "$.partitions[1].size"),
        (#"{"table": "gpt", "partitions": [{"id": "a", "role": "basic", "size": "1GiB"}, {"id": "a", "role": "basic", "size": "1GiB"}]}"#, "$.partitions[1].id"),
        (#"{"table": "gpt", "partitions": [{"role": "basic", "size": "1GiB", "type": "0x07"}]}"#, "$.partitions[0].type"),
        (#"{"table": "gpt", "partitions": [{"role": "basic", "size": "1GiB", "active": true}]}"#, "$.partitions[0].active"),
        (#"{"table": "gpt", "partitions": [{"role": "basic", "size": "1GiB", "name": "0123456789012345678901234567890123456"}]}"#, "$.partitions[0].name"),
        (#"{"table": "mbr", "partitions": [{"role": "basic", "size": "1GiB", "type": "0x05"}]}"#, "$.partitions[0].type"),
        (#"{"table": "mbr", "partitions": [{"role": "basic", "size": "1GiB", "type": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"}]}"#, "$.partitions[0].type"),
        (#"{"table": "mbr", "partitions": [{"role": "basic", "size": "1GiB", "name": "x"}]}"#, "$.partitions[0].name"),
        (#"{"table": "mbr", "partitions": [{"role": "basic", "size": "1GiB", "active": true}, {"role": "basic", "size": "1GiB", "active": true}]}"#, "$.partitions[1].active"),
    ]
    for (json, path) in expectations {
        #expect(decodeFailure(json)?.path == path, "\(json)")
    }
}

@Test func layoutMadeInCodeIsCheckedToo() throws {
    #expect(throws: DiskError.self) {
        try PartitionLayout(table: .mbr, partitions: [PartitionSpec(role: .msr, size: .bytes(16 << 20))])
    }
    let layout = try PartitionLayout(table: .mbr, partitions: [PartitionSpec(role: .basic, type: "7", size: .rest)])
    #expect(layout.partitions[0].type == "0x07")
}

// MARK: Planning

@Test func layoutPlansWindowsUEFIOn4GiB() throws {
    let plan = try planLayout(windowsUEFI, diskSize: 4 << 30)
    #expect(plan.table == .gpt)
    #expect(plan.diskSectors == 8_388_608)
    #expect(plan.firstUsableSector == 34)
    #expect(plan.lastUsableSector == 8_388_574)
    let starts = plan.partitions.map(\.firstSector)
    let counts = plan.partitions.map(\.sectorCount)
    #expect(starts == [2048, 534_528, 567_296, 6_289_408])
    #expect(counts == [532_480, 32768, 6_289_408 - 567_296, 2_097_152])
    #expect(plan.partitions.map(\.number) == [1, 2, 3, 4])
    #expect(plan.partitions.map(\.type) == [espGUID, msrGUID, basicGUID, recoveryGUID])
    #expect(plan.partitions.map(\.name) == ["EFI system partition", "Microsoft reserved partition", "Basic data partition", "Recovery"])
    #expect(plan.partitions.map(\.attributes) == [0, 0, 0, 0x8000_0000_0000_0001])
    #expect(plan.partitions[0].offset == 1 << 20)
    #expect(plan.partitions[0].size == 260 << 20)
    // Recovery ends less than 1 MiB before the last usable sector.
    #expect(plan.lastUsableSector - plan.partitions[3].lastSector < 2048)
    for partition in plan.partitions {
        #expect(partition.offset % (1 << 20) == 0)
        #expect((partition.uniqueGUID.flatMap { GUID($0) }?.bytes[6] ?? 0) >> 4 == 4)
    }
    #expect(GUID(plan.diskID) != nil)
    #expect(Set(plan.partitions.compactMap(\.uniqueGUID) + [plan.diskID]).count == 5)
    // The same seed gives the same plan; another gives other GUIDs only.
    #expect(try planLayout(windowsUEFI, diskSize: 4 << 30) == plan)
    let other = try planLayout(windowsUEFI, diskSize: 4 << 30, seed: 2)
    #expect(other.diskID != plan.diskID)
    #expect(other.partitions.map(\.firstSector) == starts)
    // A plan survives a JSON round trip (the agent may store it).
    let data = try JSONEncoder().encode(plan)
    #expect(try JSONDecoder().decode(PartitionPlan.self, from: data) == plan)
}

@Test func layoutPlansBIOSAndPercentages() throws {
    let plan = try planLayout(windowsBIOS, diskSize: 2 << 30)
    #expect(plan.table == .mbr)
    #expect(plan.diskID.hasPrefix("0x") && plan.diskID.count == 10 && plan.diskID != "0x00000000")
    #expect(plan.partitions.map(\.firstSector) == [2048, 2048 + 1_024_000])
    #expect(plan.partitions.map(\.sectorCount) == [1_024_000, 4_194_304 - 2048 - 1_024_000])
    #expect(plan.partitions.map(\.type) == ["0x07", "0x07"])
    #expect(plan.partitions.map(\.active) == [true, false])
    #expect(plan.partitions.map(\.name) == [nil, nil])
    #expect(plan.partitions.map(\.uniqueGUID) == [nil, nil])

    let fat = try planLayout(#"{"table": "mbr", "partitions": [{"role": "esp", "size": "100MiB"}, {"role": "basic", "size": "33%", "format": {"filesystem": "fat32"}}, {"role": "recovery", "size": "10%"}, {"role": "linux", "size": "rest"}]}"#,
                             diskSize: 10_000_000_000)
    #expect(fat.partitions.map(\.type) == ["0xef", "0x0c", "0x27", "0x83"])
    // Percentages are of the usable space (from 1 MiB to the end), rounded down to whole MiB.
    let usable = Double(10_000_000_000 / 512 * 512 - (1 << 20))
    #expect(fat.partitions[1].size == UInt64(usable * 0.33) / (1 << 20) * (1 << 20))
    #expect(fat.partitions[2].size == UInt64(usable * 0.10) / (1 << 20) * (1 << 20))

    // Shares that add up to 100% fill the disk, whatever floating point makes of the sum.
    let thirds = try planLayout(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "33.3%"}, {"role": "basic", "size": "33.3%"}, {"role": "basic", "size": "33.4%"}]}"#, diskSize: 4 << 30)
    #expect(thirds.partitions.count == 3)
    #expect(thirds.lastUsableSector - thirds.partitions[2].lastSector < 3 * 2048)
    let whole = try planLayout(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "100%"}]}"#, diskSize: 4 << 30)
    #expect(whole.partitions[0].firstSector == 2048)
    #expect(whole.lastUsableSector - whole.partitions[0].lastSector < 2048)
    #expect(fat.partitions[3].lastSector == fat.diskSectors - 1)

    // Fixed sizes that are not whole sectors are rounded up to whole sectors.
    let odd = try planLayout(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "500MB"}, {"role": "basic", "size": "1048577"}]}"#, diskSize: 1 << 30)
    #expect(odd.partitions[0].sectorCount == 976_563)
    #expect(odd.partitions[1].sectorCount == 2049)
    #expect(odd.partitions[1].firstSector == 2048 + 976_896)

    // 4K sectors: the same byte offsets, an eighth of the sectors.
    let big = try planLayout(windowsUEFI, diskSize: 4 << 30, sectorSize: 4096)
    #expect(big.firstUsableSector == 6)
    #expect(big.lastUsableSector == 1_048_576 - 6)
    #expect(big.partitions.map(\.offset) == [1 << 20, 261 << 20, 277 << 20, big.partitions[3].offset])
    #expect(big.partitions[3].size == 1 << 30)
    #expect(big.partitions[3].lastSector <= big.lastUsableSector)
}

@Test func layoutPlannerErrorsSayWhatAndHowMuch() throws {
    let tooBig = try planFailure(windowsUEFI, diskSize: 1 << 30)
    #expect(tooBig?.contains("$.partitions[3] (\"recovery\", recovery, 1 GiB) does not fit") == true, "\(tooBig ?? "")")
    #expect(tooBig?.contains("1.3 GiB") == true)
    #expect(tooBig?.contains("1024 MiB usable") == true || tooBig?.contains("1023") == true, "\(tooBig ?? "")")

    let fixed = try planFailure(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "3GiB"}, {"id": "b", "role": "basic", "size": "2GiB"}]}"#, diskSize: 4 << 30)
    #expect(fixed?.contains("$.partitions[1] (\"b\", basic, 2 GiB) does not fit") == true, "\(fixed ?? "")")
    #expect(fixed?.contains("needs at least 5 GiB") == true)

    let tiny = try planFailure(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "512KiB"}]}"#, diskSize: 4 << 30)
    #expect(tiny?.contains("$.partitions[0] (basic, 512 KiB) is 512 KiB; a partition needs at least 1 MiB") == true, "\(tiny ?? "")")

    let tinyPercent = try planFailure(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "0.01%"}]}"#, diskSize: 4 << 30)
    #expect(tinyPercent?.contains("at least 1 MiB") == true)

    let noRest = try planFailure(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "1000MiB"}, {"id": "w", "role": "basic", "size": "rest"}, {"role": "recovery", "size": "22MiB"}]}"#, diskSize: 1 << 30)
    #expect(noRest?.contains("$.partitions[1] (\"w\", basic, rest) takes the rest, but only") == true, "\(noRest ?? "")")

    let mbrLimit = try planFailure(#"{"table": "mbr", "partitions": [{"role": "basic", "size": "rest"}]}"#, diskSize: 3 << 40)
    #expect(mbrLimit?.contains("beyond the 2 TiB an MBR table can address") == true, "\(mbrLimit ?? "")")
    // The same disk with 4K sectors is within reach of 32-bit sector numbers.
    #expect(try planLayout(#"{"table": "mbr", "partitions": [{"role": "basic", "size": "rest"}]}"#, diskSize: 3 << 40, sectorSize: 4096).partitions[0].size > 2 << 40)

    var generator = SplitMix64(seed: 1)
    let over = PartitionLayout(uncheckedTable: .gpt, partitions: [
        PartitionSpec(role: .basic, size: .percent(70)), PartitionSpec(role: .basic, size: .percent(40)),
    ])
    #expect(throws: DiskError.invalidLayout(reason: "the percentages add up to 110%, more than 100%")) {
        try LayoutPlanner.plan(over, diskSize: 4 << 30, sectorSize: 512, generator: &generator)
    }
    #expect(throws: DiskError.self) {
        try LayoutPlanner.plan(over, diskSize: 4 << 30, sectorSize: 520, generator: &generator)
    }
}

// MARK: Bytes

@Test func layoutGUIDAndCRCBasics() throws {
    #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    #expect(CRC32.checksum([UInt8]()) == 0)
    let guid = try #require(GUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"))
    #expect(guid.description == espGUID)
    #expect(guid.onDiskBytes == [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B])
    #expect(GUID(onDisk: guid.onDiskBytes) == guid)
    #expect(GUID("C12A7328F81F11D2BA4B00A0C93EC93B") == nil)
    #expect(GUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93G") == nil)
    #expect(GUID("") == nil)
    var generator = SplitMix64(seed: 7)
    let random = GUID.random(using: &generator)
    #expect(random.bytes[6] >> 4 == 4)
    #expect(random.bytes[8] >> 6 == 2)
    #expect(PartitionTableWriter.chs(0) == [0, 1, 0])
    #expect(PartitionTableWriter.chs(2048) == [32, 33, 0])
    #expect(PartitionTableWriter.chs(16_450_559) == [254, 0xFF, 0xFF])
    #expect(PartitionTableWriter.chs(16_450_560) == [0xFE, 0xFF, 0xFF])
}

@Test func layoutGPTHeadersCheckThemselves() throws {
    let plan = try planLayout(windowsUEFI, diskSize: 4 << 30)
    let writes = try PartitionTableWriter.writes(for: plan)
    let offsets: [UInt64] = [0, 512, 1024, (8_388_608 - 33) * 512, (8_388_608 - 1) * 512]
    #expect(writes.map(\.offset) == offsets)
    #expect(writes.map(\.bytes.count) == [512, 512, 16384, 16384, 512])
    let primary = writes[1].bytes, backup = writes[4].bytes
    func u64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    for header in [primary, backup] {
        var zeroed = Array(header[0..<92])
        zeroed.replaceSubrange(16..<20, with: [0, 0, 0, 0])
        #expect(u32(header, 16) == CRC32.checksum(zeroed))
        #expect(u32(header, 88) == CRC32.checksum(writes[2].bytes))
        #expect(header[92...].allSatisfy { $0 == 0 })
    }
    #expect(u64(primary, 24) == 1 && u64(primary, 32) == 8_388_607 && u64(primary, 72) == 2)
    #expect(u64(backup, 24) == 8_388_607 && u64(backup, 32) == 1 && u64(backup, 72) == 8_388_575)
    #expect(GUID(onDisk: primary[56..<72])?.description == plan.diskID)
    #expect(GUID(onDisk: writes[2].bytes[0..<16])?.description == espGUID)
}

// MARK: Real tools

@Test func layoutWindowsUEFIImagePassesSgdiskAndSfdisk() throws {
    let scratch = ScratchDirectory()
    let plan = try planLayout(windowsUEFI, diskSize: 4 << 30)
    let image = try writeImage(plan, size: 4 << 30, in: scratch)

    let verify = try run(["sgdisk", "-v", image])
    #expect(verify.output.contains("No problems found"), "\(verify.output)")

    let printed = try run(["sgdisk", "-p", image]).output
    #expect(printed.contains("Disk identifier (GUID): \(plan.diskID)"), "\(printed)")
    #expect(printed.contains("EFI system partition"))
    // sgdisk -p cuts names to fit its columns.
    #expect(printed.contains("Microsoft reserved"))

    let recovery = try run(["sgdisk", "-i", "4", image]).output
    #expect(recovery.contains("Partition GUID code: \(recoveryGUID)"), "\(recovery)")
    #expect(recovery.contains("Partition unique GUID: \(plan.partitions[3].uniqueGUID ?? "-")"))
    #expect(recovery.contains("First sector: 6289408"))
    #expect(recovery.contains("Last sector: \(6_289_408 + 2_097_152 - 1)"))
    #expect(recovery.contains("Attribute flags: 8000000000000001"))
    #expect(recovery.contains("Partition name: 'Recovery'"))
    let esp = try run(["sgdisk", "-i", "1", image]).output
    #expect(esp.contains("Partition GUID code: \(espGUID)"), "\(esp)")
    #expect(esp.contains("Attribute flags: 0000000000000000"))
    #expect(esp.contains("Partition name: 'EFI system partition'"))

    let (table, partitions) = try sfdiskTable(image)
    #expect(table["label"] as? String == "gpt")
    #expect(table["id"] as? String == plan.diskID)
    #expect(number(table["firstlba"]) == 34)
    #expect(number(table["lastlba"]) == plan.lastUsableSector)
    #expect(partitions.count == 4)
    for (found, planned) in zip(partitions, plan.partitions) {
        #expect(number(found["start"]) == planned.firstSector)
        #expect(number(found["size"]) == planned.sectorCount)
        #expect(found["type"] as? String == planned.type)
        #expect(found["uuid"] as? String == planned.uniqueGUID)
        #expect(found["name"] as? String == planned.name)
    }
    #expect(partitions[3]["attrs"] as? String == "RequiredPartition GUID:63")
    #expect(partitions[0]["attrs"] == nil)
}

@Test func layoutBIOSImagePassesSfdisk() throws {
    let scratch = ScratchDirectory()
    let plan = try planLayout(windowsBIOS, diskSize: 2 << 30)
    let image = try writeImage(plan, size: 2 << 30, in: scratch)
    let (table, partitions) = try sfdiskTable(image)
    #expect(table["label"] as? String == "dos")
    #expect(table["id"] as? String == plan.diskID)
    #expect(partitions.count == 2)
    #expect(number(partitions[0]["start"]) == 2048)
    #expect(number(partitions[0]["size"]) == 1_024_000)
    #expect(partitions[0]["type"] as? String == "7")
    #expect(partitions[0]["bootable"] as? Bool == true)
    #expect(number(partitions[1]["start"]) == 1_026_048)
    #expect(number(partitions[1]["size"]) == 4_194_304 - 1_026_048)
    #expect(partitions[1]["type"] as? String == "7")
    #expect(partitions[1]["bootable"] == nil)
    // Not sgdisk -v: it checks an MBR as the GPT it would convert it to, and a partition
    // that runs to the last sector (as Windows makes them on MBR) leaves no room for one.
    // sfdisk -V checks the MBR for overlaps and CHS mistakes.
    let check = try run(["sfdisk", "-V", image], allowFailure: true)
    #expect(check.status == 0, "\(check.output) \(check.stderr)")
}

@Test func layoutReplacesAGPTWithMBRCleanly() throws {
    let scratch = ScratchDirectory()
    let gpt = try planLayout(windowsUEFI, diskSize: 2 << 30)
    let image = try writeImage(gpt, size: 2 << 30, in: scratch)
    let mbr = try planLayout(windowsBIOS, diskSize: 2 << 30)
    let handle = try #require(FileHandle(forWritingAtPath: image))
    for write in try PartitionTableWriter.writes(for: mbr) {
        try handle.seek(toOffset: write.offset)
        try handle.write(contentsOf: Data(write.bytes))
    }
    try handle.close()
    let (table, partitions) = try sfdiskTable(image)
    #expect(table["label"] as? String == "dos")
    #expect(partitions.count == 2)
}

/// `fdisk -b 4096 -l` as rows of columns. util-linux 2.38's sfdisk has no --sector-size and
/// sgdisk assumes 512-byte sectors on a plain file, so fdisk is the tool that reads a 4K
/// image as such; it checks both GPT headers' CRCs as it reads them.
private func fdiskRows(_ image: String, columns: String) throws -> (listing: CommandResult, rows: [[String]]) {
    let listing = try run(["fdisk", "-b", "4096", "-l", "-o", columns, image])
    let rows = listing.output.split(separator: "\n")
        .filter { $0.hasPrefix(image) }
        .map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
    return (listing, rows)
}

@Test func layout4KSectorGPTImagePassesFdisk() throws {
    let scratch = ScratchDirectory()
    let plan = try planLayout(windowsUEFI, diskSize: 4 << 30, sectorSize: 4096)
    let image = try writeImage(plan, size: 4 << 30, in: scratch)
    let (listing, rows) = try fdiskRows(image, columns: "Device,Start,Sectors,Type-UUID,Name")
    #expect(listing.output.contains("Sector size (logical/physical): 4096 bytes"), "\(listing.output)")
    #expect(listing.output.contains("Disklabel type: gpt"))
    #expect(listing.output.contains("Disk identifier: \(plan.diskID)"))
    #expect(!listing.stderr.contains("corrupt") && !listing.output.contains("corrupt"), "\(listing.stderr)")
    #expect(rows.count == 4)
    for (row, planned) in zip(rows, plan.partitions) {
        #expect(row.count >= 5, "\(row)")
        guard row.count >= 5 else { continue }
        #expect(row[1] == String(planned.firstSector))
        #expect(row[2] == String(planned.sectorCount))
        #expect(row[3] == planned.type)
        #expect(row[4...].joined(separator: " ") == planned.name)
    }
    let attributes = try fdiskRows(image, columns: "Device,Attrs").rows
    #expect(attributes.last.map { $0.dropFirst().joined(separator: " ") } == "RequiredPartition GUID:63")
    #expect(plan.partitions[3].lastSector <= 1_048_570)
}

@Test func layout4KSectorMBRImagePassesFdisk() throws {
    let scratch = ScratchDirectory()
    let plan = try planLayout(windowsBIOS, diskSize: 4 << 30, sectorSize: 4096)
    let image = try writeImage(plan, size: 4 << 30, in: scratch)
    let (listing, rows) = try fdiskRows(image, columns: "Device,Boot,Start,Sectors,Id")
    #expect(listing.output.contains("Disklabel type: dos"), "\(listing.output)")
    #expect(listing.output.contains("Disk identifier: \(plan.diskID)"))
    #expect(rows == [
        [image + "1", "*", "256", "128000", "7"],
        [image + "2", "128256", String(1_048_576 - 128_256), "7"],
    ])
}
