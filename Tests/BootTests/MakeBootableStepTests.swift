import Foundation
@testable import Boot
import Primitives
import Registry
import TestSupport
import Testing

/// The makeBootable step in a whole sequence: a loop disk partitioned as the UEFI layout,
/// a WIM (made by wimlib-imagex) applied, then the ESP filled and the BCD store naming the
/// partitions by the GUIDs the partition step wrote into the GPT.
@Suite("makeBootable in a task sequence", .serialized)
struct MakeBootableStepTests {
    /// The first PCI device of this machine, as an INF hardware ID (`PCI\VEN_1AF4&DEV_1042`).
    static func firstPCIHardwareID() -> String? {
        let root = "/sys/bus/pci/devices"
        func text(_ path: String) -> String? {
            FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        for device in ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted() {
            guard let vendor = text("\(root)/\(device)/vendor"), let id = text("\(root)/\(device)/device") else { continue }
            return "PCI\\VEN_\(vendor.dropFirst(2).uppercased())&DEV_\(id.dropFirst(2).uppercased())"
        }
        return nil
    }

    @Test func sequencePartitionsAppliesAndMakesBootable() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "target", size: 1 << 30)
        let tree = scratch.sub("tree")
        for (path, content) in MakeBootableTests.bootFiles.merging(["Windows/System32/config/SYSTEM": "regf"], uniquingKeysWith: { a, _ in a }) {
            let full = tree + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(content.utf8).write(to: URL(fileURLWithPath: full))
        }
        // A SOFTWARE hive hivex filled, for the DevicePath edit injectDrivers makes.
        let software = tree + "/Windows/System32/config/SOFTWARE"
        try Data(try HiveWriter.write(RegistryKey(name: "ROOT"))).write(to: URL(fileURLWithPath: software))
        try hivexsh(software, ["add Microsoft", "cd Microsoft", "add Windows", "cd Windows", "add CurrentVersion", "cd CurrentVersion",
                               "setval 1", "DevicePath", "expandstring:%SystemRoot%\\inf", "commit"], write: true)
        // A driver for a device of this machine, so injectDrivers copies something.
        let drivers = scratch.sub("drivers")
        let hardwareID = try #require(Self.firstPCIHardwareID(), "this machine shows no PCI device")
        try FileManager.default.createDirectory(atPath: drivers + "/Net", withIntermediateDirectories: true)
        try writeJSON("""
            [Version]
            Signature = "$WINDOWS NT$"
            Class = Net
            Provider = %Vendor%
            DriverVer = 06/01/2024,1.0.0.0
            [Manufacturer]
            %Vendor% = Models, NTamd64
            [Models.NTamd64]
            %Device% = Install, \(hardwareID)
            [Install]
            [Strings]
            Vendor = "Test Vendor"
            Device = "Test device"
            """, drivers + "/Net/net.inf")
        try run(["wimlib-imagex", "capture", tree, scratch.sub("win.wim"), "Windows Test", "--compress=LZX"])
        let sequence = scratch.sub("sequence.json")
        try writeJSON("""
            {"name": "UEFI bootable", "version": "1", "steps": [
              {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "partition", "name": "Layout", "layout": {"table": "gpt", "partitions": [
                {"id": "system", "role": "esp", "size": "100MiB", "format": {"filesystem": "fat32", "label": "SYSTEM"}},
                {"id": "msr", "role": "msr", "size": "16MiB"},
                {"id": "windows", "role": "basic", "size": "rest", "format": {"filesystem": "ntfs", "label": "Windows"}}]}},
              {"type": "applyImage", "name": "Apply", "source": "\(scratch.sub("win.wim"))", "image": "1", "target": "windows"},
              {"type": "makeBootable", "name": "Boot", "windows": "windows", "esp": "system", "locale": "fr-FR", "menuTimeout": 3},
              {"type": "injectDrivers", "name": "Drivers", "source": "\(drivers)", "target": "windows"}]}
            """, sequence)
        let validated = try run([imprintBinary, "sequence", "validate", sequence])
        #expect(validated.output.contains("valid"))
        let plan = try run([imprintBinary, "sequence", "plan", sequence], allowFailure: true)
        #expect(plan.output.contains("write EFI\\Microsoft\\Boot\\BCD"), "\(plan.output)")

        let result = try run([imprintBinary, "run", sequence, "--yes", "--spool", scratch.sub("spool"), "--cache", scratch.sub("cache")],
                             allowFailure: true)
        #expect(result.status == 0, "\(result.output)\n\(result.stderr)")
        let log = (try? String(contentsOfFile: sequence + ".log", encoding: .utf8)) ?? ""
        #expect(log.contains("no EFI variables"), "\(log)")

        // injectDrivers added the Drivers folder to DevicePath in the applied SOFTWARE hive.
        #expect(log.contains("DevicePath: %SystemRoot%\\inf → %SystemRoot%\\inf;%SystemDrive%\\Drivers"), "\(log)")
        let edited = scratch.sub("SOFTWARE.after")
        try run(["ntfscat", disk.device + "p3", "Windows/System32/config/SOFTWARE"]).stdout.write(to: URL(fileURLWithPath: edited))
        #expect(try hivexsh(edited, ["cd \\Microsoft\\Windows\\CurrentVersion", "lsval"])
                == ["\"DevicePath\"=str(2):\"%SystemRoot%\\\\inf;%SystemDrive%\\\\Drivers\""])

        // The GUIDs as libblkid reads them from the GPT the step wrote.
        func blkid(_ device: String, _ tag: String) throws -> GUID? {
            GUID(try run(["blkid", "-p", "-o", "value", "-s", tag, device]).output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let diskGUID = try #require(try blkid(disk.device, "PTUUID"))
        let espGUID = try #require(try blkid(disk.device + "p1", "PART_ENTRY_UUID"))
        let windowsGUID = try #require(try blkid(disk.device + "p3", "PART_ENTRY_UUID"))

        let bcd = scratch.sub("BCD")
        try run(["mcopy", "-i", disk.device + "p1", "::/EFI/Microsoft/Boot/BCD", bcd])
        let store = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bcd))), file: bcd)
        let loader = try #require(store.objects.first { $0.type == BCDObjectType.osLoader })
        #expect(loader[.osDevice] == .device(.gptPartition(partition: windowsGUID, disk: diskGUID)))
        #expect(loader[.preferredLocale] == .string("fr-FR"))
        #expect(store[BCDObjectID.bootManager]?[.applicationDevice] == .device(.gptPartition(partition: espGUID, disk: diskGUID)))
        #expect(store[BCDObjectID.bootManager]?[.timeout] == .integer(3))
        // `imprint boot make` finds the same GUIDs with libblkid when none are given.
        let probed = try run([imprintBinary, "boot", "make", "--windows", disk.device + "p3", "--esp", disk.device + "p1",
                              "--efivars", scratch.sub("no-efivars")])
        #expect(probed.output.contains("BCD store: 11 objects"))
        try run(["mcopy", "-o", "-i", disk.device + "p1", "::/EFI/Microsoft/Boot/BCD", bcd])
        let again = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bcd))), file: bcd)
        #expect(again.objects.first { $0.type == BCDObjectType.osLoader }?[.osDevice] == .device(.gptPartition(partition: windowsGUID, disk: diskGUID)))
        #expect(again[BCDObjectID.bootManager]?[.applicationDevice] == .device(.gptPartition(partition: espGUID, disk: diskGUID)))
        let bootx64 = scratch.sub("bootx64.efi")
        try run(["mcopy", "-i", disk.device + "p1", "::/EFI/Boot/bootx64.efi", bootx64])
        #expect(FileManager.default.contents(atPath: bootx64) == Data("fake boot manager".utf8))
    }

    /// The BIOS layout in a sequence: MBR with an active System Reserved partition, the image
    /// applied, makeBootable with firmware left to `auto`: the MBR table makes it BIOS, the
    /// partitions are named by the signature and offsets the partition step wrote, and SeaBIOS
    /// starts the image's bootmgr (the lab's stand-in) from the disk.
    @Test func biosSequenceMakesTheDiskBootable() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "bios-target", size: 512 << 20)
        try run([packageRoot.appendingPathComponent("Initramfs/lab/standins/build").path, scratch.sub("standins")])
        let tree = scratch.sub("tree")
        var files = MakeBootableTests.pcatFiles.mapValues { Data($0.utf8) }
        files["Windows/Boot/PCAT/bootmgr"] = try Data(contentsOf: URL(fileURLWithPath: scratch.sub("standins/bootmgr")))
        files["Windows/System32/config/SYSTEM"] = Data("regf".utf8)
        for (path, content) in files {
            let full = tree + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(to: URL(fileURLWithPath: full))
        }
        try run(["wimlib-imagex", "capture", tree, scratch.sub("win.wim"), "Windows Test", "--compress=XPRESS"])
        func sequence(firmware: String) throws -> String {
            let path = scratch.sub("bios-\(firmware.filter(\.isLetter)).json")
            try writeJSON("""
                {"name": "BIOS bootable", "version": "1", "steps": [
                  {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
                  {"type": "partition", "name": "Layout", "layout": {"table": "mbr", "partitions": [
                    {"id": "system", "role": "basic", "size": "64MiB", "active": true, "format": {"filesystem": "ntfs", "label": "System Reserved"}},
                    {"id": "windows", "role": "basic", "size": "rest", "format": {"filesystem": "ntfs", "label": "Windows"}}]}},
                  {"type": "applyImage", "name": "Apply", "source": "\(scratch.sub("win.wim"))", "image": "1", "target": "windows"},
                  {"type": "makeBootable", "name": "Boot", "windows": "windows", "esp": "system", "firmware": "\(firmware)"}]}
                """, path)
            return path
        }
        let wrong = try run([imprintBinary, "sequence", "validate", try sequence(firmware: "efi")], allowFailure: true)
        #expect(wrong.status != 0 && (wrong.output + wrong.stderr).contains("$.steps[3].firmware"), "\(wrong.output)\(wrong.stderr)")
        let path = try sequence(firmware: "auto")
        let plan = try run([imprintBinary, "sequence", "plan", path], allowFailure: true)
        #expect(plan.output.contains("on an MBR disk (BIOS) would copy bootmgr"), "\(plan.output)")

        let result = try run([imprintBinary, "run", path, "--yes", "--spool", scratch.sub("spool"), "--cache", scratch.sub("cache")], allowFailure: true)
        #expect(result.status == 0, "\(result.output)\n\(result.stderr)")
        let log = (try? String(contentsOfFile: path + ".log", encoding: .utf8)) ?? ""
        #expect(log.contains("BIOS boot code (GRUB i386-pc, ntldr /bootmgr): MBR and the boot sector of partition 1"), "\(log)")

        let bcd = scratch.sub("BCD")
        try run(["ntfscat", disk.device + "p1", "Boot/BCD"]).stdout.write(to: URL(fileURLWithPath: bcd))
        let store = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bcd))), file: bcd)
        let signature = try #require(UInt32(try run(["blkid", "-p", "-o", "value", "-s", "PTUUID", disk.device]).output
            .trimmingCharacters(in: .whitespacesAndNewlines), radix: 16))
        let loader = try #require(store.objects.first { $0.type == BCDObjectType.osLoader })
        guard case let .device(.mbrPartition(offset, loaderSignature))? = loader[.osDevice] else {
            Issue.record("the loader's osdevice is no MBR partition: \(String(describing: loader[.osDevice]))"); return
        }
        #expect(loaderSignature == signature && offset == (1 << 20) + (64 << 20))
        #expect(store[BCDObjectID.bootManager]?[.applicationDevice] == .device(.mbrPartition(offset: 1 << 20, signature: signature)))

        let console = try MakeBootableTests.bootUnderSeaBIOS(disk.image, scratch)
        #expect(console.contains(MakeBootableTests.standinMarker), "SeaBIOS did not reach the stand-in bootmgr; console:\n\(console.suffix(2000))")
    }
}
