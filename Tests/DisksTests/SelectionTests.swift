import Foundation
import Primitives
import Testing
@testable import DiskModel
@testable import Disks

private let gib: UInt64 = 1 << 30

private enum Fixture {
    static let nvme = Disk(name: "nvme0n1", path: "/dev/nvme0n1", size: 512 * gib, model: "Samsung SSD 970 EVO Plus 500GB",
                           serial: "S4EVNX0N123456", wwn: "eui.0025385891b0a1c2", transport: .nvme)
    static let windowsDisk = Disk(
        name: "sda", path: "/dev/sda", size: 2_000_398_934_016, model: "WDC WD20EZRZ-00Z5HB0   ",
        vendor: "ATA     ", serial: "WD-WCC4M1234567", wwn: "0x50014ee2b5c8a1b2", transport: .sata, rotational: true,
        partitionTable: PartitionTable(type: .gpt, id: nil, partitions: [
            Partition(number: 1, offset: 1 << 20, size: 100 << 20, type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                      filesystem: Filesystem(type: "vfat", label: "SYSTEM")),
            Partition(number: 2, offset: 101 << 20, size: 16 << 20, type: "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"),
            Partition(number: 3, offset: 117 << 20, size: 500 * gib, type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
                      filesystem: Filesystem(type: "ntfs", label: "Windows")),
        ]),
        windows: [WindowsInstallation(partition: 3, label: "Windows", systemRoot: "Windows", hasUsers: true)])
    static let usb = Disk(name: "sdb", path: "/dev/sdb", size: 16 * gib, model: "Cruzer Blade", vendor: "SanDisk",
                          transport: .usb, removable: true)
    static let readOnly = Disk(name: "sdc", path: "/dev/sdc", size: 8 * gib, model: "QEMU HARDDISK",
                               transport: .sata, readOnly: true)
    static let boot = Disk(name: "sdd", path: "/dev/sdd", size: 32 * gib, model: "Ultra Fit", transport: .usb,
                           removable: true, filesystem: Filesystem(type: "iso9660", label: "AGENT"),
                           bootMedium: "/run/live/medium is mounted from it")
    static let mounted = Disk(name: "vda", path: "/dev/vda", size: 64 * gib, transport: .virtio,
                              usage: [DiskUsage(kind: .mounted, device: "/dev/vda1", detail: "/mnt")])
    static let cardReader = Disk(name: "mmcblk0", path: "/dev/mmcblk0", size: 0, model: "Card Reader",
                                 transport: .usb, removable: true)
    static let all = [nvme, windowsDisk, usb, readOnly, boot, mounted, cardReader]
}

private func rules(_ json: String) throws -> DiskRules {
    try JSONInput.decode(DiskRules.self, from: Data(json.utf8), file: "rules.json")
}

private func decodeError(_ json: String) -> DiskError? {
    do {
        _ = try rules(json)
        return nil
    } catch let error as DiskError {
        return error
    } catch {
        return nil
    }
}

private func verdict(_ selection: DiskSelection, _ name: String) -> DiskVerdict? {
    selection.verdicts.first { $0.disk.name == name }
}

private func ruleNames(_ selection: DiskSelection, _ name: String) -> [String] {
    verdict(selection, name)?.rejections.map(\.rule) ?? []
}

@Test func defaultRulesChooseTheOnlySafeDiskAndExplainTheOthers() throws {
    let selection = DiskSelector.evaluate(try rules("{}"), disks: Fixture.all)
    #expect(selection.chosen?.name == "nvme0n1")
    #expect(verdict(selection, "nvme0n1")?.chosen == true)
    #expect(ruleNames(selection, "nvme0n1").isEmpty)
    #expect(ruleNames(selection, "sda") == ["holdsData"])
    #expect(ruleNames(selection, "sdb") == ["removable"])
    #expect(ruleNames(selection, "sdc") == ["readOnly"])
    #expect(ruleNames(selection, "sdd") == ["bootMedium", "removable", "holdsData"])
    #expect(ruleNames(selection, "vda") == ["inUse"])
    #expect(ruleNames(selection, "mmcblk0") == ["empty", "removable"])

    let boot = try #require(verdict(selection, "sdd")?.rejections.first)
    #expect(boot.hard)
    #expect(boot.message == "the agent booted from it (/run/live/medium is mounted from it)")
    #expect(verdict(selection, "vda")?.rejections.first?.message == "in use: /dev/vda1 is mounted on /mnt")
    #expect(verdict(selection, "mmcblk0")?.rejections.first?.message == "no medium (size 0)")
    #expect(verdict(selection, "sdc")?.rejections.first?.message == "read-only")
    let usb = try #require(verdict(selection, "sdb")?.rejections.first)
    #expect(!usb.hard)
    #expect(usb.message == "removable (USB stick, card): allowed only with \"removable\": true")

    let data = try #require(verdict(selection, "sda")?.rejections.first)
    #expect(!data.hard)
    for lost in ["GPT, 3 partitions", "vfat \"SYSTEM\"", "ntfs \"Windows\"", "Windows on partition 3", "\"wipe\": true"] {
        #expect(data.message.contains(lost), "\(data.message) lacks \(lost)")
    }
}

@Test func hardRulesCannotBeOverridden() throws {
    let permissive = try rules(#"{"wipe": true, "removable": true}"#)
    let selection = DiskSelector.evaluate(permissive, disks: Fixture.all)
    #expect(selection.chosen?.name == "sdb")
    #expect(ruleNames(selection, "sdd") == ["bootMedium"])
    #expect(ruleNames(selection, "mmcblk0") == ["empty"])
    #expect(ruleNames(selection, "sdc") == ["readOnly", "removable"])
    #expect(ruleNames(selection, "vda") == ["inUse", "removable"])
    #expect(verdict(selection, "sdd")?.rejections.allSatisfy(\.hard) == true)

    // Only the unsafe disks: nothing is chosen, whatever the rules allow.
    let unsafe = [Fixture.readOnly, Fixture.boot, Fixture.mounted, Fixture.cardReader]
    #expect(DiskSelector.evaluate(try rules(#"{"wipe": true}"#), disks: unsafe).chosen == nil)
    #expect(DiskSelector.evaluate(permissive, disks: unsafe).chosen == nil)

    // Every hard reason of one disk is listed, not only the first.
    let everything = Disk(name: "sde", path: "/dev/sde", size: 0, readOnly: true,
                          bootMedium: "kernel command line root=/dev/sde",
                          usage: [DiskUsage(kind: .swap, device: "/dev/sde", detail: "")])
    let unreadable = Disk(name: "sdf", path: "/dev/sdf", size: gib, removable: true, unreadable: "Permission denied")
    let hidden = DiskSelector.evaluate(permissive, disks: [unreadable])
    #expect(hidden.chosen == nil)
    #expect(verdict(hidden, "sdf")?.rejections
        == [Rejection(rule: "unreadable", hard: true, message: "contents could not be read (Permission denied)")])
    let all = DiskSelector.evaluate(permissive, disks: [everything])
    #expect(ruleNames(all, "sde") == ["bootMedium", "readOnly", "inUse", "empty", "removable"])
    #expect(verdict(all, "sde")?.rejections.filter(\.hard).count == 4)
}

@Test func removableTrueAcceptsOnlyRemovableDisks() throws {
    let selection = DiskSelector.evaluate(try rules(#"{"removable": true}"#), disks: [Fixture.nvme, Fixture.usb])
    #expect(selection.chosen?.name == "sdb")
    #expect(verdict(selection, "nvme0n1")?.rejections.first?.message == "not removable, wanted \"removable\": true")
    #expect(DiskSelector.evaluate(try rules(#"{"removable": false}"#), disks: [Fixture.usb]).chosen == nil)
}

@Test func wipeAllowsADiskThatHoldsData() throws {
    let selection = DiskSelector.evaluate(try rules(#"{"wipe": true, "hasWindows": true}"#), disks: Fixture.all)
    #expect(selection.chosen?.name == "sda")
    #expect(ruleNames(selection, "nvme0n1") == ["hasWindows"])
    #expect(verdict(selection, "nvme0n1")?.rejections.first?.message
        == "no Windows installation found, wanted \"hasWindows\": true")

    let noWindows = DiskSelector.evaluate(try rules(#"{"wipe": true, "hasWindows": false}"#),
                                          disks: [Fixture.windowsDisk])
    #expect(noWindows.verdicts[0].rejections.map(\.message)
        == ["holds Windows on partition 3, wanted \"hasWindows\": false"])
}

@Test func preferencesAndNaturalOrder() throws {
    let names = ["sdaa", "sdb", "nvme10n1", "nvme1n1", "sda", "nvme2n1"]
    let disks = names.enumerated().map { index, name in
        Disk(name: name, path: "/dev/" + name, size: UInt64(100 + index) * gib)
    }
    let sorted = names.sorted(by: KernelName.precedes)
    #expect(sorted == ["nvme1n1", "nvme2n1", "nvme10n1", "sda", "sdb", "sdaa"])
    #expect(KernelName.precedes("nvme0n1", "nvme1n1"))
    #expect(KernelName.precedes("vdz", "vdaa"))
    #expect(KernelName.precedes("sdz", "sdaa"))
    #expect(!KernelName.precedes("sdaa", "sdb"))

    let smallest = DiskSelector.evaluate(try rules("{}"), disks: disks)
    #expect(smallest.chosen?.name == "sdaa")
    #expect(verdict(smallest, "sdb")?.rejections == [
        Rejection(rule: "notPreferred", hard: false, message: "matches, but prefer=smallest chose sdaa (100 GiB)"),
    ])
    #expect(DiskSelector.evaluate(try rules(#"{"prefer": "largest"}"#), disks: disks).chosen?.name == "nvme2n1")
    let first = DiskSelector.evaluate(try rules(#"{"prefer": "first"}"#), disks: disks)
    #expect(first.chosen?.name == "nvme1n1")
    #expect(verdict(first, "sdb")?.rejections.first?.message == "matches, but prefer=first chose nvme1n1 (103 GiB)")
    let scsi = disks.filter { $0.name.hasPrefix("sd") }
    #expect(DiskSelector.evaluate(try rules(#"{"prefer": "first"}"#), disks: scsi).chosen?.name == "sda")
    #expect(DiskSelector.evaluate(try rules(#"{"prefer": "first"}"#), disks: scsi.filter { $0.name != "sda" })
        .chosen?.name == "sdb")

    // Same size: name order decides, never discovery order.
    let twins = [Disk(name: "sdc", path: "/dev/sdc", size: gib), Disk(name: "sdb", path: "/dev/sdb", size: gib)]
    #expect(DiskSelector.evaluate(try rules("{}"), disks: twins).chosen?.name == "sdb")
    #expect(DiskSelector.evaluate(try rules(#"{"prefer": "largest"}"#), disks: twins).chosen?.name == "sdb")
}

@Test func textRulesUseGlobsExactMatchesAndCase() throws {
    let disks = [Fixture.nvme, Fixture.windowsDisk]
    func chosen(_ json: String) throws -> String? {
        DiskSelector.evaluate(try rules(json), disks: disks).chosen?.name
    }
    #expect(try chosen(#"{"model": "samsung*", "wipe": true}"#) == "nvme0n1")
    #expect(try chosen(#"{"model": "WDC WD20EZRZ-00Z5HB0", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"model": "  wdc wd20ezrz-00z5hb0 ", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"model": "WDC", "wipe": true}"#) == nil)
    #expect(try chosen(#"{"vendor": "ata", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"serial": "S4EV*"}"#) == "nvme0n1")
    #expect(try chosen(#"{"serial": "s4ev*"}"#) == nil)
    #expect(try chosen(#"{"serial": "WD-WCC4M123456?", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"wwn": "0x50014EE2*", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"name": "/dev/nvme*"}"#) == "nvme0n1")
    #expect(try chosen(#"{"name": "sd[a-c]", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"name": "nvme0n1"}"#) == "nvme0n1")
    #expect(try chosen(#"{"name": "/dev/sda", "wipe": true}"#) == "sda")

    let selection = DiskSelector.evaluate(try rules(#"{"vendor": "ATA", "model": "Samsung*", "wipe": true}"#),
                                          disks: disks)
    #expect(selection.chosen == nil)
    #expect(verdict(selection, "nvme0n1")?.rejections.map(\.message) == ["vendor unknown, wanted \"ATA\""])
    #expect(verdict(selection, "sda")?.rejections.map(\.message)
        == ["model \"WDC WD20EZRZ-00Z5HB0\" does not match \"Samsung*\""])
    let named = DiskSelector.evaluate(try rules(#"{"name": "/dev/nvme*", "wipe": true}"#), disks: disks)
    #expect(verdict(named, "sda")?.rejections.map(\.message) == ["name /dev/sda does not match \"/dev/nvme*\""])
}

@Test func sizeComparisons() throws {
    let disks = [Fixture.nvme, Fixture.usb] // 512 GiB, 16 GiB
    func chosen(_ json: String) throws -> String? {
        DiskSelector.evaluate(try rules(json), disks: disks).chosen?.name
    }
    #expect(try chosen(#"{"size": ">= 64GiB", "removable": false}"#) == "nvme0n1")
    #expect(try chosen(#"{"size": ">= 512GiB"}"#) == "nvme0n1")
    #expect(try chosen(#"{"size": "> 512GiB"}"#) == nil)
    #expect(try chosen(#"{"size": "<= 2TB"}"#) == "nvme0n1")
    #expect(try chosen(#"{"size": "< 512GiB"}"#) == nil)
    #expect(try chosen(#"{"size": "== 512GiB"}"#) == "nvme0n1")
    #expect(try chosen(#"{"size": "512GiB"}"#) == "nvme0n1")
    #expect(try chosen(#"{"size": "!= 512GiB"}"#) == nil)
    #expect(try chosen(#"{"size": [">= 100GiB", "<= 1TiB"]}"#) == "nvme0n1")
    #expect(try chosen(#"{"size": [">= 100GiB", "< 500GiB"]}"#) == nil)
    #expect(try chosen(#"{"size": "== 16GiB", "removable": true}"#) == "sdb")

    let selection = DiskSelector.evaluate(try rules(#"{"size": [">= 1TiB", "< 2TB", "> 512GiB"]}"#), disks: disks)
    #expect(verdict(selection, "nvme0n1")?.rejections.map(\.message) == [
        "size 512 GiB is not >= 1TiB",
        "size 512 GiB (549755813888 bytes) is not > 512GiB",
    ])
    #expect(try rules(#"{"size": ">=64GiB"}"#).size == [SizeCondition(.atLeast, 64 * gib, sizeText: "64GiB")])
}

@Test func transportAndRotational() throws {
    let disks = [Fixture.nvme, Fixture.windowsDisk, Fixture.usb]
    func chosen(_ json: String) throws -> String? {
        DiskSelector.evaluate(try rules(json), disks: disks).chosen?.name
    }
    #expect(try chosen(#"{"transport": "sata", "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"transport": ["usb", "sata"], "wipe": true, "prefer": "first"}"#) == "sda")
    #expect(try chosen(#"{"transport": ["nvme", "sata"], "wipe": true}"#) == "nvme0n1")
    #expect(try chosen(#"{"rotational": true, "wipe": true}"#) == "sda")
    #expect(try chosen(#"{"rotational": false, "wipe": true, "prefer": "largest"}"#) == "nvme0n1")

    let selection = DiskSelector.evaluate(try rules(#"{"transport": ["nvme", "sas"], "rotational": false, "wipe": true}"#),
                                          disks: disks)
    #expect(verdict(selection, "sda")?.rejections.map(\.message) == [
        "transport sata is not nvme or sas",
        "rotational (spinning disk), wanted \"rotational\": false",
    ])
    #expect(ruleNames(selection, "sdb") == ["removable", "transport"])
}

@Test func decodeErrorsNameThePath() throws {
    #expect(decodeError(#"{"size": ">= 64 GiBs"}"#) == .invalidJSON(file: "rules.json", jsonPath: "$.size",
        reason: "\">= 64 GiBs\" is not a size comparison: expected an operator (>=, <=, >, <, ==, !=) or none, "
            + "then a size such as 64GiB or 2TB"))
    let inArray = try #require(decodeError(#"{"size": [">= 1GiB", "=> 2GiB"]}"#))
    #expect(inArray.description.hasPrefix("rules.json: $.size[1]: \"=> 2GiB\" is not a size comparison"))
    #expect(decodeError(#"{"size": 64}"#)?.description.contains("$.size: 64.0 has no unit") == true)
    #expect(decodeError(#"{"size": ">= 64"}"#)?.description.contains("$.size: \">= 64\" has no unit") == true)
    #expect(decodeError(#"{"size": []}"#)?.description == "rules.json: $.size: an empty list matches no disk")

    let transport = try #require(decodeError(#"{"transport": ["nvme", "firewire"]}"#))
    #expect(transport == .invalidJSON(file: "rules.json", jsonPath: "$.transport[1]",
        reason: "unknown transport \"firewire\" (known: nvme, sata, sas, scsi, usb, virtio, mmc, loop, ata, optical, unknown)"))
    #expect(decodeError(#"{"transport": "pcie"}"#)?.description.hasPrefix("rules.json: $.transport: unknown transport") == true)

    let unknown = try #require(decodeError(#"{"sise": ">= 64GiB"}"#))
    #expect(unknown.description.hasPrefix("rules.json: $.sise: unknown key \"sise\" (known: "))
    #expect(decodeError(#"{"prefer": "fastest"}"#)
        == .invalidJSON(file: "rules.json", jsonPath: "$.prefer", reason: "unknown preference \"fastest\" (known: smallest, largest, first)"))
    #expect(decodeError(#"{"wipe": "yes"}"#) == .invalidJSON(file: "rules.json", jsonPath: "$.wipe", reason: "expected true or false"))
    #expect(decodeError(#"{"model": "  "}"#)?.description.hasPrefix("rules.json: $.model: an empty pattern") == true)
    #expect(decodeError("[]")?.description.hasPrefix("rules.json: $:") == true)
}

@Test func fullExampleDecodesAndRoundTrips() throws {
    let decoded = try rules("""
        { "size": ">= 64GiB", "model": "Samsung*", "vendor": "ATA", "serial": "S4EV*", "wwn": "0x5002538e*",
          "name": "/dev/nvme*", "transport": ["nvme", "sata"], "rotational": false, "removable": false,
          "hasWindows": true, "prefer": "smallest", "wipe": true }
        """)
    #expect(decoded == DiskRules(
        size: [SizeCondition(.atLeast, 64 * gib, sizeText: "64GiB")],
        model: Glob("Samsung*", .caseInsensitive), vendor: Glob("ATA", .caseInsensitive),
        serial: Glob("S4EV*", .caseSensitive), wwn: Glob("0x5002538e*", .caseInsensitive),
        name: Glob("/dev/nvme*", .caseSensitive), transport: [.nvme, .sata], rotational: false, removable: false,
        hasWindows: true, prefer: .smallest, wipe: true))
    let again = try JSONInput.decode(DiskRules.self, from: try JSONEncoder().encode(decoded), file: "again.json")
    #expect(again == decoded)

    let defaults = try rules("{}")
    #expect(defaults.prefer == .smallest)
    #expect(!defaults.wipe)
    #expect(defaults.size.isEmpty && defaults.transport == nil && defaults.removable == nil)
}

@Test func chooseThrowsOneLinePerDisk() throws {
    let small = Disk(name: "sdb", path: "/dev/sdb", size: 8 * gib, model: "QEMU HARDDISK", readOnly: true)
    let strict = try rules(#"{"size": ">= 1TiB"}"#)
    #expect(throws: DiskError.noDiskMatches(reasons: [
        "sdb (8 GiB, QEMU HARDDISK): read-only; size 8 GiB is not >= 64 GiB",
    ])) {
        try DiskSelector.choose(try rules(#"{"size": ">= 64 GiB"}"#), disks: [small])
    }
    do {
        _ = try DiskSelector.choose(strict, disks: Fixture.all)
        Issue.record("expected no disk to match")
    } catch let DiskError.noDiskMatches(reasons) {
        #expect(reasons.count == Fixture.all.count)
        #expect(reasons.contains("nvme0n1 (512 GiB, Samsung SSD 970 EVO Plus 500GB): size 512 GiB is not >= 1TiB"))
        #expect(reasons.contains { $0.hasPrefix("mmcblk0 (0 B, Card Reader): no medium (size 0)") })
    } catch {
        Issue.record("unexpected \(error)")
    }
    #expect(throws: DiskError.noDiskMatches(reasons: ["no disks found"])) {
        try DiskSelector.choose(strict, disks: [])
    }
    #expect(try DiskSelector.choose(try rules("{}"), disks: Fixture.all) == Fixture.nvme)
}

@Test func reportAndJSON() throws {
    let selection = DiskSelector.evaluate(try rules(#"{"size": ">= 64GiB"}"#), disks: Fixture.all)
    let report = selection.report()
    let lines = report.split(separator: "\n").map(String.init)
    #expect(lines.first == "chosen: /dev/nvme0n1  512 GiB  Samsung SSD 970 EVO Plus 500GB  serial S4EVNX0N123456  nvme")
    for disk in Fixture.all {
        #expect(report.contains(disk.path), "report lacks \(disk.path)")
    }
    #expect(lines.contains("rejected: /dev/sdc  8 GiB  QEMU HARDDISK  sata"))
    #expect(lines.contains("    - read-only [never allowed]"))
    #expect(lines.contains("    - size 8 GiB is not >= 64GiB"))
    #expect(DiskSelector.evaluate(try rules("{}"), disks: []).report() == "chosen: none (no disks found)")
    #expect(DiskSelector.evaluate(try rules("{}"), disks: [Fixture.readOnly]).report().hasPrefix("chosen: none\n"))

    let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(selection)) as? [String: Any]
    let verdicts = try #require(json?["verdicts"] as? [[String: Any]])
    #expect(verdicts.count == Fixture.all.count)
    #expect((json?["chosen"] as? [String: Any])?["name"] as? String == "nvme0n1")
    let rejection = (verdicts[3]["rejections"] as? [[String: Any]])?.first
    #expect(rejection?["rule"] as? String == "readOnly")
    #expect(rejection?["hard"] as? Bool == true)
}
