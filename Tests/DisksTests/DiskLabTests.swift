import Failures
import Foundation
import Testing
import TestSupport
@testable import DiskModel
@testable import Disks

/// The disk layer on real loop devices: what `imprint disk list` finds, why `select` rejects,
/// what `partition` writes (checked with sgdisk, sfdisk and blkid), and every refusal.
@Suite(.serialized)
struct DiskLabTests {
    static let uefiLayout = Examples.windowsUEFI
    static let biosLayout = Examples.windowsBIOS

    /// A 2 GiB disk with an old GPT: an ext4 partition, and a BitLocker volume exactly where the
    /// Windows layout puts its (never formatted) MSR, so a stale signature there would show.
    static func oldGPTDisk(_ scratch: ScratchDirectory) throws -> LoopDisk {
        try LoopDisk(scratch, "oldgpt", size: 2 << 30) { image in
            try run(["sgdisk", "-n1:2048:+200M", "-t1:8300", "-c1:OldData",
                     "-n2:\(261 * 2048):+100M", "-t2:0700", "-c2:Secret", image])
            try run(["mkfs.ext4", "-q", "-F", "-L", "olddata", "-E", "offset=\(1 << 20)", image, "200M"])
            try writeBitLockerHeader(image: image, offset: 261 << 20)
        }
    }

    /// A 1.5 GiB MBR disk whose only partition is an NTFS volume holding Windows and Users.
    static func windowsDisk(_ scratch: ScratchDirectory) throws -> LoopDisk {
        let disk = try LoopDisk(scratch, "windows", size: 1536 << 20) { image in
            try writeJSON("label: dos\nlabel-id: 0x12345678\nstart=2048, type=7, bootable\n", image + ".sfdisk")
            try run(["sfdisk", "-q", image], stdinFile: image + ".sfdisk")
        }
        try makeFakeWindows(on: disk, offset: 1 << 20, size: (1536 << 20) - (1 << 20), scratch: scratch)
        return disk
    }

    /// A small disk whose filesystem carries the Imprint media label: the boot medium.
    static func mediaDisk(_ scratch: ScratchDirectory) throws -> LoopDisk {
        try LoopDisk(scratch, "media", size: 256 << 20) { image in
            try run(["mkfs.ext4", "-q", "-F", "-L", DiskEnvironment.defaultMediaLabel, image])
        }
    }

    /// One disk of each shape: blank, old GPT, MBR with Windows, read-only, the boot medium.
    struct Lab {
        let blank, old, windows, readOnly, media: LoopDisk

        init(_ scratch: ScratchDirectory) throws {
            blank = try LoopDisk(scratch, "blank", size: 1 << 30)
            old = try DiskLabTests.oldGPTDisk(scratch)
            windows = try DiskLabTests.windowsDisk(scratch)
            readOnly = try LoopDisk(scratch, "readonly", size: 512 << 20, readOnly: true)
            media = try DiskLabTests.mediaDisk(scratch)
        }
    }

    @Test func listReportsHardwareTablesFilesystemsWindowsAndBootMedium() throws {
        let scratch = ScratchDirectory()
        let lab = try Lab(scratch)
        let (blank, old, windows, readOnly, media) = (lab.blank, lab.old, lab.windows, lab.readOnly, lab.media)
        let disks = try listDisks()
        func find(_ disk: LoopDisk) throws -> Disk { try #require(disks.first { $0.path == disk.device }) }

        let b = try find(blank)
        #expect(b.size == 1 << 30 && b.logicalSectorSize == 512 && b.transport == .loop)
        #expect(b.backingFile == blank.image && !b.readOnly && !b.removable)
        #expect(b.partitionTable == nil && b.filesystem == nil && b.windows.isEmpty)
        #expect(b.usage.isEmpty && b.bootMedium == nil && !b.holdsData)

        let o = try find(old)
        let gptID = try run(["sgdisk", "-p", old.device]).output.split(separator: "\n")
            .first { $0.hasPrefix("Disk identifier (GUID):") }.map { String($0.split(separator: " ").last ?? "") }
        #expect(o.partitionTable?.type == .gpt && o.partitionTable?.id == gptID)
        let parts = o.partitionTable?.partitions ?? []
        try #require(parts.count == 2)
        #expect(parts[0].number == 1 && parts[0].offset == 1 << 20 && parts[0].size == 200 << 20)
        #expect(parts[0].type == "0FC63DAF-8483-4772-8E79-3D69D8477DE4" && parts[0].name == "OldData")
        #expect(parts[0].filesystem?.type == "ext4" && parts[0].filesystem?.label == "olddata")
        #expect(parts[1].offset == 261 << 20 && parts[1].name == "Secret" && parts[1].typeName == "Microsoft basic data")
        #expect(parts[1].filesystem?.isBitLocker == true)

        let w = try find(windows)
        #expect(w.partitionTable?.type == .mbr && w.partitionTable?.id == "0x12345678")
        let system = try #require(w.partitionTable?.partitions.first)
        #expect(system.type == "0x07" && system.attributes == 0x80 && system.filesystem?.type == "ntfs")
        #expect(system.filesystem?.label == "Windows")
        // Its SYSTEM hive is a four-byte stand-in: found all the same, nothing read of it, and said so.
        var found = w.windows
        let problems = found.indices.flatMap { found[$0].problems }
        for index in found.indices { found[index].problems = [] }
        #expect(found == [WindowsInstallation(partition: 1, label: "Windows", systemRoot: "Windows", hasUsers: true)])
        #expect(problems.contains("\(windows.device) partition 1: Windows/System32/config/SYSTEM: offset 0 (0x0): "
                                  + "4 bytes is too short for a registry hive (a base block and one bin)"), "\(problems)")

        #expect(try find(readOnly).readOnly)
        let m = try find(media)
        #expect(m.filesystem?.label == DiskEnvironment.defaultMediaLabel)
        #expect(m.bootMedium?.contains(DiskEnvironment.defaultMediaLabel) == true)

        let text = try imprintDisk(["list"]).output
        #expect(text.contains("Windows on partition 1 (label Windows), with Users"))
        #expect(text.contains("BitLocker-encrypted volume"))
        #expect(text.contains("boot medium: it holds a filesystem labelled IMPRINT"))
    }

    @Test func selectGivesEveryRejectionReason() throws {
        let scratch = ScratchDirectory()
        let lab = try Lab(scratch)
        let (blank, old, windows, readOnly, media) = (lab.blank, lab.old, lab.windows, lab.readOnly, lab.media)
        let rulesFile = scratch.sub("rules.json")
        try writeJSON(#"{"size": ">= 1GiB", "hasWindows": false}"#, rulesFile)
        let result = try imprintDisk(["select", "--json", rulesFile], allowFailure: true)
        let selection = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        let verdicts = selection?["verdicts"] as? [[String: Any]] ?? []
        func rules(_ disk: LoopDisk) -> Set<String> {
            let verdict = verdicts.first { ($0["disk"] as? [String: Any])?["path"] as? String == disk.device }
            return Set((verdict?["rejections"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String })
        }
        #expect(rules(blank).isSubset(of: ["notPreferred"]))
        #expect(rules(old) == ["holdsData"])
        #expect(rules(windows) == ["holdsData", "hasWindows"])
        #expect(rules(readOnly) == ["readOnly", "size"])
        #expect(rules(media) == ["bootMedium", "holdsData", "size"])

        // The text names each disk and why; wipe and a name choose the old disk.
        let text = try imprintDisk(["select", rulesFile], allowFailure: true).output
        #expect(text.contains("\(readOnly.device)") && text.contains("read-only [never allowed]"))
        try writeJSON(#"{"name": "\#(old.device)", "wipe": true}"#, rulesFile)
        #expect(try imprintDisk(["select", rulesFile]).output.hasPrefix("chosen: \(old.device)"))
    }

    @Test func fakeSysfsTreeGivesTransportsIdentityAndUsage() throws {
        let scratch = ScratchDirectory()
        let blank = try LoopDisk(scratch, "blank", size: 64 << 20)
        let media = try Self.mediaDisk(scratch)
        let tree = try FakeSystem(scratch.sub("root"))
        try tree.disk("sdz", sectors: 64 << 21, node: blank.device, device: "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
                      files: ["device/model": "Samsung SSD 870 EVO 1TB                 ", "device/vendor": "ATA     ",
                              "device/wwid": "naa.5002538e40a1b2c3", "queue/rotational": "0"],
                      vpdSerial: "S6PNNS0T123456")
        try tree.disk("nvme0n1", sectors: 512 << 21, node: blank.device, device: "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0",
                      files: ["device/model": "WDC PC SN730", "device/serial": "21A1B2C3D4  ", "wwid": "eui.0025388b91b2c3d4",
                              "queue/rotational": "0"])
        try tree.disk("sdy", sectors: 16 << 21, node: media.device,
                      device: "pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0",
                      files: ["device/model": "Cruzer Blade", "device/vendor": "SanDisk", "removable": "1"])
        try tree.disk("sdx", sectors: 64 << 21, node: blank.device, device: "pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0",
                      dev: "8:16", partitions: [("sdx1", 1, "8:17")])
        try tree.disk("sdw", sectors: 64 << 21, node: blank.device, device: "pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0",
                      dev: "8:32")
        try tree.disk("sdv", sectors: 64 << 21, node: blank.device, device: "pci0000:00/0000:00:1f.2/ata4/host3/target3:0:0/3:0:0:0",
                      dev: "8:48", holders: ["dm-0"])
        try tree.disk("vda", sectors: 32 << 21, node: blank.device, device: "pci0000:00/0000:00:04.0/virtio1",
                      files: ["serial": "imprint-vm-1"])
        try tree.disk("mmcblk0", sectors: 0, node: blank.device, device: "pci0000:00/0000:00:1e.6/mmc_host/mmc0",
                      files: ["removable": "1"])
        try tree.disk("sr0", sectors: 1_000_000, node: blank.device, device: "pci0000:00/0000:00:1f.2/ata5/host4/target4:0:0/4:0:0:0",
                      files: ["ro": "1", "removable": "1"])
        for virtual in ["ram0", "zram0", "dm-0", "md127"] { try tree.disk(virtual, sectors: 2048, node: blank.device, device: "virtual/block") }
        try tree.proc(mountinfo: "36 25 8:17 / /mnt/data rw,relatime shared:1 - ext4 /dev/sdx1 rw\n",
                      swaps: "Filename\tType\tSize\tUsed\tPriority\n/dev/sdw                                partition\t1024\t0\t-2\n",
                      cmdline: "console=ttyS0 quiet")

        let disks = try listDisks(tree.options)
        #expect(disks.map(\.name) == ["mmcblk0", "nvme0n1", "sdv", "sdw", "sdx", "sdy", "sdz", "sr0", "vda"])
        func find(_ name: String) throws -> Disk { try #require(disks.first { $0.name == name }) }
        let sata = try find("sdz")
        #expect(sata.transport == .sata && sata.model == "Samsung SSD 870 EVO 1TB" && sata.vendor == "ATA")
        #expect(sata.serial == "S6PNNS0T123456" && sata.wwn == "0x5002538e40a1b2c3" && !sata.rotational)
        #expect(sata.size == 64 << 30 && sata.path == tree.dev + "/sdz")
        let nvme = try find("nvme0n1")
        #expect(nvme.transport == .nvme && nvme.serial == "21A1B2C3D4" && nvme.wwn == "eui.0025388b91b2c3d4")
        let usb = try find("sdy")
        #expect(usb.transport == .usb && usb.removable && usb.bootMedium != nil && usb.vendor == "SanDisk")
        #expect(try find("sdx").usage == [DiskUsage(kind: .mounted, device: tree.dev + "/sdx1", detail: "/mnt/data")])
        #expect(try find("sdw").usage.map(\.kind) == [.swap])
        #expect(try find("sdv").usage == [DiskUsage(kind: .holder, device: tree.dev + "/sdv", detail: "dm-0")])
        #expect(try find("vda").transport == .virtio && find("vda").serial == "imprint-vm-1")
        #expect(try find("mmcblk0").transport == .mmc && find("mmcblk0").size == 0)
        #expect(try find("sr0").transport == .optical && find("sr0").readOnly)

        let rulesFile = scratch.sub("rules.json")
        try writeJSON(#"{"size": ">= 1GiB", "transport": ["sata", "nvme"], "prefer": "largest", "wipe": true}"#, rulesFile)
        let result = try imprintDisk(["select", "--json", rulesFile] + tree.options)
        let selection = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        #expect((selection?["chosen"] as? [String: Any])?["name"] as? String == "nvme0n1")
        var reasons: [String: Set<String>] = [:]
        for verdict in selection?["verdicts"] as? [[String: Any]] ?? [] {
            let name = (verdict["disk"] as? [String: Any])?["name"] as? String ?? "?"
            reasons[name] = Set((verdict["rejections"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String })
        }
        #expect(reasons["nvme0n1"] == [])
        #expect(reasons["sdz"] == ["notPreferred"])
        #expect(reasons["sdy"] == ["bootMedium", "removable", "transport"])
        #expect(reasons["sdx"] == ["inUse"] && reasons["sdw"] == ["inUse"] && reasons["sdv"] == ["inUse"])
        #expect(reasons["vda"] == ["transport"])
        #expect(reasons["mmcblk0"]?.isSuperset(of: ["empty", "removable"]) == true)
        #expect(reasons["sr0"]?.isSuperset(of: ["readOnly", "removable", "transport"]) == true)
    }

    @Test func uefiLayoutOnAnOldDiskPassesSgdiskAndLeavesNothingStale() throws {
        let scratch = ScratchDirectory()
        let old = try Self.oldGPTDisk(scratch)
        let layout = scratch.sub("uefi.json"), rules = scratch.sub("rules.json")
        try writeJSON(Self.uefiLayout, layout)
        try writeJSON(#"{"name": "\#(old.device)", "wipe": true}"#, rules)

        let plan = try imprintDisk(["plan", layout, "--disk", rules]).output
        #expect(plan.contains("would WIPE everything on \(old.device)"))
        #expect(plan.contains("partition 2: 100 MiB at 261 MiB, Microsoft basic data \"Secret\", BitLocker"))
        #expect(plan.contains("4  sectors 2095104-4192255  1 GiB at 1023 MiB  Windows recovery environment"))

        let result = try imprintDisk(["partition", layout, "--disk", rules, "--yes", "--json"])
        let output = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        let devices = (output?["partitions"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        try #require(devices.count == 4)

        #expect(try run(["sgdisk", "-v", old.device]).output.contains("No problems found"))
        let recovery = try run(["sgdisk", "-i", "4", old.device]).output
        #expect(recovery.contains("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"))
        #expect(recovery.contains("Attribute flags: 8000000000000001") && recovery.contains("Partition name: 'Recovery'"))
        #expect(try run(["sgdisk", "-i", "2", old.device]).output.contains("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"))
        let sfdisk = try JSONSerialization.jsonObject(with: run(["sfdisk", "--json", old.device]).stdout) as? [String: Any]
        let table = sfdisk?["partitiontable"] as? [String: Any]
        let parts = table?["partitions"] as? [[String: Any]] ?? []
        #expect(table?["label"] as? String == "gpt")
        #expect(parts.compactMap { $0["start"] as? Int } == [2048, 534_528, 567_296, 2_095_104])
        #expect(parts.compactMap { $0["size"] as? Int } == [532_480, 32768, 1_527_808, 2_097_152])

        func blkid(_ device: String) throws -> [String: String] {
            let text = try run(["blkid", "-p", "-o", "export", device], allowFailure: true).output
            return Dictionary(text.split(separator: "\n").compactMap { line in
                let pair = line.split(separator: "=", maxSplits: 1)
                return pair.count == 2 ? (String(pair[0]), String(pair[1])) : nil
            }, uniquingKeysWith: { a, _ in a })
        }
        let seen = try devices.map(blkid)
        #expect(seen[0]["TYPE"] == "vfat" && seen[0]["LABEL"] == "SYSTEM")
        #expect(seen[1]["TYPE"] == nil, "the MSR must show nothing, not the old BitLocker volume: \(seen[1])")
        #expect(seen[2]["TYPE"] == "ntfs" && seen[2]["LABEL"] == "Windows")
        #expect(seen[3]["TYPE"] == "ntfs" && seen[3]["LABEL"] == "Recovery")
        #expect(seen[2]["UUID"] != seen[3]["UUID"], "two NTFS volumes must not share a serial number")

        // Windows boots only from an NTFS volume whose boot sector knows where it starts.
        let boot = try #require(FileHandle(forReadingAtPath: devices[2])?.readData(ofLength: 512))
        let bytes = [UInt8](boot)
        let hiddenSectors = bytes[0x1C..<0x20].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(hiddenSectors == 567_296)
        #expect(bytes[0x1A] == 255 && bytes[0x18] == 63)

        let disk = try #require(try listDisks().first { $0.path == old.device })
        #expect(disk.partitionTable?.partitions.map { $0.filesystem?.type ?? "-" } == ["vfat", "-", "ntfs", "ntfs"])
        #expect(disk.partitionTable?.partitions.map(\.devicePath) == devices.map { Optional($0) })
    }

    @Test func biosLayoutOverAnOldGPTThroughLoopDevices() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "gpt", size: 2 << 30) { image in
            try run(["sgdisk", "-n1:2048:+100M", "-t1:ef00", "-n2:0:0", "-t2:0700", image])
        }
        let layout = scratch.sub("bios.json"), rules = scratch.sub("rules.json")
        try writeJSON(Self.biosLayout, layout)
        try writeJSON(#"{"name": "\#(disk.device)", "wipe": true}"#, rules)
        let result = try imprintDisk(["partition", layout, "--disk", rules, "--yes", "--json", "--partition-methods", "loop"])
        let output = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        #expect(output?["method"] as? String == "loop")
        let loops = (output?["partitions"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        #expect(loops.count == 2)
        for loop in loops {
            let name = (loop as NSString).lastPathComponent
            #expect(!FileManager.default.fileExists(atPath: "/sys/block/\(name)/loop/backing_file"), "\(loop) left attached")
        }

        let sfdisk = try JSONSerialization.jsonObject(with: run(["sfdisk", "--json", disk.device]).stdout) as? [String: Any]
        let table = sfdisk?["partitiontable"] as? [String: Any]
        let parts = table?["partitions"] as? [[String: Any]] ?? []
        #expect(table?["label"] as? String == "dos")
        try #require(parts.count == 2)
        #expect(parts[0]["start"] as? Int == 2048 && parts[0]["size"] as? Int == 1_024_000)
        #expect(parts[0]["bootable"] as? Bool == true && parts[0]["type"] as? String == "7")
        #expect(parts[1]["start"] as? Int == 1_026_048 && parts[1]["type"] as? String == "7")
        #expect(parts[1]["bootable"] == nil)
        // No GPT left anywhere, not even the backup at the end of the disk.
        let signatures = try run(["wipefs", "--no-act", "--json", disk.device]).output
        #expect(!signatures.contains("gpt") && !signatures.contains("PMBR"))

        let listed = try #require(try listDisks().first { $0.path == disk.device })
        #expect(listed.partitionTable?.partitions.map { $0.filesystem?.label } == ["System Reserved", "Windows"])
    }

    @Test func ext4AndPercentagesThroughBLKPG() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "linux", size: 1 << 30)
        let layout = scratch.sub("linux.json"), rules = scratch.sub("rules.json")
        try writeJSON(#"""
            {"table": "gpt", "partitions": [
              {"role": "esp", "size": "64MiB", "format": {"filesystem": "fat32", "label": "EFI"}},
              {"role": "linux", "size": "50%", "format": {"filesystem": "ext4", "label": "data", "clusterSize": 4096}},
              {"role": "swap", "size": "rest"}]}
            """#, layout)
        try writeJSON(#"{"name": "\#(disk.device)"}"#, rules)
        let result = try imprintDisk(["partition", layout, "--disk", rules, "--yes", "--json", "--partition-methods", "blkpg"])
        let output = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any]
        #expect(output?["method"] as? String == "blkpg")
        let paths = (output?["partitions"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        #expect(paths == (1...3).map { "\(disk.device)p\($0)" })
        let ext4 = try run(["blkid", "-p", "-o", "export", "\(disk.device)p2"]).output
        #expect(ext4.contains("TYPE=ext4") && ext4.contains("LABEL=data"))
        #expect(try run(["sgdisk", "-v", disk.device]).output.contains("No problems found"))
        #expect(result.stderr.contains("$ mkfs.ext4 -F -q -b 4096 -L data"), "the tools' commands go to the log")
    }

    @Test func refusalsLeaveTheDiskUntouched() throws {
        let scratch = ScratchDirectory()
        let blank = try LoopDisk(scratch, "blank", size: 1 << 30)
        let windows = try Self.windowsDisk(scratch)
        let readOnly = try LoopDisk(scratch, "readonly", size: 2 << 30, readOnly: true)
        let media = try LoopDisk(scratch, "media", size: 2 << 30) { image in
            try run(["mkfs.ext4", "-q", "-F", "-L", DiskEnvironment.defaultMediaLabel, image])
        }
        let uefi = scratch.sub("uefi.json"), bios = scratch.sub("bios.json"), rules = scratch.sub("rules.json")
        try writeJSON(Self.uefiLayout, uefi)
        try writeJSON(Self.biosLayout, bios)
        func attempt(_ layout: String, _ rulesText: String, yes: Bool = true) throws -> CommandResult {
            try writeJSON(rulesText, rules)
            return try imprintDisk(["partition", layout, "--disk", rules] + (yes ? ["--yes"] : []), allowFailure: true)
        }

        let tooSmall = try attempt(uefi, #"{"name": "\#(blank.device)"}"#)
        #expect(tooSmall.status != 0 && tooSmall.stderr.contains("does not fit"))
        #expect(try run(["blkid", "-p", blank.device], allowFailure: true).status == 2, "the blank disk was written")

        let hasData = try attempt(bios, #"{"name": "\#(windows.device)"}"#)
        #expect(hasData.status != 0 && hasData.stderr.contains("\"wipe\": true"))
        #expect(hasData.stderr.contains("Windows on partition 1"))
        let noYes = try attempt(bios, #"{"name": "\#(windows.device)", "wipe": true}"#, yes: false)
        #expect(noYes.status == 2 && noYes.output.contains("would WIPE") && noYes.output.contains("holds Windows and Users"))
        #expect(try listDisks().first { $0.path == windows.device }?.windows.count == 1, "Windows was touched")

        let ro = try attempt(bios, #"{"name": "\#(readOnly.device)", "wipe": true}"#)
        #expect(ro.status != 0 && ro.stderr.contains("read-only"))
        let boot = try attempt(bios, #"{"name": "\#(media.device)", "wipe": true}"#)
        #expect(boot.status != 0 && boot.stderr.contains("the agent booted from it"))
        #expect(try run(["blkid", "-p", "-s", "LABEL", "-o", "value", media.device]).output.contains("IMPRINT"))

        // A tool that fails is a clear error with its own words, not a crash.
        let badCluster = scratch.sub("bad.json")
        try writeJSON(#"{"table": "gpt", "partitions": [{"role": "basic", "size": "8MiB", "format": {"filesystem": "ntfs", "clusterSize": 2097152}}]}"#, badCluster)
        let mkfsFails = try attempt(badCluster, #"{"name": "\#(blank.device)"}"#)
        #expect(mkfsFails.status == FailureKind.disk.exitStatus && mkfsFails.stderr.contains("mkfs.ntfs") && mkfsFails.stderr.contains("failed (exit status 1)"))
        let tinyESP = scratch.sub("tiny.json")
        try writeJSON(#"{"table": "gpt", "partitions": [{"role": "esp", "size": "2MiB", "format": {"filesystem": "fat32"}}]}"#, tinyESP)
        let fatTooSmall = try attempt(tinyESP, #"{"name": "\#(blank.device)", "wipe": true}"#)
        #expect(fatTooSmall.status != 0 && fatTooSmall.stderr.contains("too small for FAT32"))

        // Mounted: a filesystem inside the disk is in use, so the disk is.
        let inside = try windows.view(offset: 1 << 20, size: 64 << 20)
        try run(["mkfs.ext4", "-q", "-F", inside])
        let mountPoint = scratch.sub("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run(["mount", inside, mountPoint])
        defer { _ = try? run(["umount", mountPoint]) }
        let busy = try attempt(bios, #"{"name": "\#(windows.device)", "wipe": true}"#)
        #expect(busy.status != 0 && busy.stderr.contains("in use"))
    }

    @Test func aDiskThatChangedSinceThePlanIsNotWritten() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "changing", size: 2 << 30)
        let layout = try JSONInput.decode(PartitionLayout.self, from: Data(Self.biosLayout.utf8), file: "bios.json")
        let rules = try JSONInput.decode(DiskRules.self, from: Data(#"{"name": "\#(disk.device)"}"#.utf8), file: "rules.json")
        let plan = try DiskPlan.make(layout: layout, rules: rules)
        #expect(plan.disk.path == disk.device)

        // The image grows and the loop device picks it up: same path, another disk.
        try run(["truncate", "-s", String((2 << 30) + (1 << 20)), disk.image])
        try run(["losetup", "-c", disk.device])
        let message = refusal { () throws(DiskError) in try DiskPreparer.prepare(plan) }
        #expect(message.contains("this is not the disk the plan chose"), "\(message)")
        #expect(message.contains("size was 2 GiB"))
        #expect(try run(["blkid", "-p", disk.device], allowFailure: true).status == 2)
    }
}

/// The message of the DiskError `body` throws, or "" when it does not throw.
func refusal(_ body: () throws(DiskError) -> some Any) -> String {
    do {
        _ = try body()
        return ""
    } catch {
        return error.description
    }
}
