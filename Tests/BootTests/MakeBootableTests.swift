import Failures
import Foundation
import Primitives
@testable import Boot
import Registry
import TestSupport
import Testing

/// `imprint boot make` on real filesystems: an NTFS Windows volume (mkfs.ntfs, filled through
/// ntfs-3g) and a FAT32 ESP (mkfs.fat, read back with mtools), each on a loop device.
@Suite("Making an applied Windows bootable", .serialized)
struct MakeBootableTests {
    static let bootFiles: [String: String] = [
        "Windows/Boot/EFI/bootmgfw.efi": "fake boot manager",
        "Windows/Boot/EFI/bootmgr.efi": "fake bootmgr.efi",
        "Windows/Boot/EFI/memtest.efi": "fake memtest",
        "Windows/Boot/EFI/en-US/bootmgfw.efi.mui": "fake english resources",
        "Windows/Boot/EFI/de-DE/bootmgfw.efi.mui": "fake german resources",
        "Windows/Boot/Fonts/wgl4_boot.ttf": "fake font",
        "Windows/Boot/Resources/bootres.dll": "fake resources",
    ]

    /// An NTFS volume holding the boot files and a SOFTWARE hive hivex filled.
    static func windowsVolume(_ scratch: ScratchDirectory) throws -> LoopDisk {
        let volume = try LoopDisk(scratch, "windows", size: 64 << 20)
        try run(["mkfs.ntfs", "-Q", "-q", "-F", "-L", "Windows", volume.device])
        let mountPoint = scratch.sub("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run(["ntfs-3g", volume.device, mountPoint])
        defer { _ = try? run(["umount", mountPoint], allowFailure: true) }
        for (path, content) in bootFiles {
            let full = mountPoint + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(content.utf8).write(to: URL(fileURLWithPath: full))
        }
        let hive = scratch.sub("SOFTWARE")
        try Data(try HiveWriter.write(RegistryKey(name: "ROOT"))).write(to: URL(fileURLWithPath: hive))
        try hivexsh(hive, ["add Microsoft", "cd Microsoft", "add Windows", "cd Windows", "add CurrentVersion", "cd CurrentVersion",
                           "setval 1", "DevicePath", "expandstring:%SystemRoot%\\inf", "commit"], write: true)
        try FileManager.default.createDirectory(atPath: mountPoint + "/Windows/System32/config", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: hive, toPath: mountPoint + "/Windows/System32/config/SOFTWARE")
        try run(["umount", mountPoint])
        return volume
    }

    static func espVolume(_ scratch: ScratchDirectory) throws -> LoopDisk {
        let esp = try LoopDisk(scratch, "esp", size: 64 << 20)
        try run(["mkfs.fat", "-F", "32", "-n", "SYSTEM", esp.device])
        return esp
    }

    static func fatFile(_ esp: LoopDisk, _ path: String, _ scratch: ScratchDirectory) throws -> Data {
        let local = scratch.sub("out-\(UUID().uuidString.prefix(6))")
        try run(["mcopy", "-i", esp.device, "::/" + path, local])
        return try Data(contentsOf: URL(fileURLWithPath: local))
    }

    @Test func bootMakeWritesTheESP() throws {
        let scratch = ScratchDirectory()
        let windows = try Self.windowsVolume(scratch)
        let esp = try Self.espVolume(scratch)
        // An ESP that already holds another loader: it stays.
        try run(["mmd", "-i", esp.device, "::/EFI", "::/EFI/debian"])
        try Data("grub".utf8).write(to: URL(fileURLWithPath: scratch.sub("grubx64.efi")))
        try run(["mcopy", "-i", esp.device, scratch.sub("grubx64.efi"), "::/EFI/debian/"])

        let result = try run([imprintBinary, "boot", "make", "--windows", windows.device, "--esp", esp.device,
                              "--disk-guid", BCDStoreTests.disk.description, "--windows-partition-guid", BCDStoreTests.windows.description,
                              "--esp-partition-guid", BCDStoreTests.esp.description, "--locale", "de-DE", "--timeout", "5",
                              "--description", "Windows 11", "--efivars", scratch.sub("no-efivars")])
        #expect(result.output.contains("no EFI variables"))

        let listing = try run(["mdir", "-b", "-i", esp.device, "::/EFI/Microsoft/Boot"]).output
        for name in ["BCD", "bootmgfw.efi", "bootmgr.efi", "memtest.efi", "en-US", "de-DE", "Fonts", "Resources"] {
            #expect(listing.contains("/" + name), "EFI/Microsoft/Boot/\(name) missing:\n\(listing)")
        }
        #expect(try Self.fatFile(esp, "EFI/Boot/bootx64.efi", scratch) == Data("fake boot manager".utf8))
        #expect(try Self.fatFile(esp, "EFI/Microsoft/Boot/en-US/bootmgfw.efi.mui", scratch) == Data("fake english resources".utf8))
        #expect(try Self.fatFile(esp, "EFI/Microsoft/Boot/Fonts/wgl4_boot.ttf", scratch) == Data("fake font".utf8))
        #expect(try Self.fatFile(esp, "EFI/debian/grubx64.efi", scratch) == Data("grub".utf8))

        let bcd = scratch.sub("BCD")
        try Self.fatFile(esp, "EFI/Microsoft/Boot/BCD", scratch).write(to: URL(fileURLWithPath: bcd))
        let written = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bcd))), file: bcd)
        let loader = try #require(written.objects.first { $0.type == BCDObjectType.osLoader })
        let resume = try #require(written.objects.first { $0.type == BCDObjectType.resume })
        var configuration = BCDStoreTests.configuration()
        configuration.loaderID = loader.id
        configuration.resumeID = resume.id
        let expected = BCDBuilder.store(configuration)
        #expect(written == canonical(expected))
        try BCDStoreTests.checkWithHivex(bcd, expected)

        // Run again: the files are replaced, nothing piles up.
        try run([imprintBinary, "boot", "make", "--windows", windows.device, "--esp", esp.device,
                 "--disk-guid", BCDStoreTests.disk.description, "--windows-partition-guid", BCDStoreTests.windows.description,
                 "--esp-partition-guid", BCDStoreTests.esp.description, "--efivars", scratch.sub("no-efivars")])
        #expect(try run(["mdir", "-b", "-i", esp.device, "::/EFI/Microsoft/Boot"]).output == listing)
    }

    @Test func aVolumeWithoutWindowsIsNamed() throws {
        let scratch = ScratchDirectory()
        let empty = try LoopDisk(scratch, "empty", size: 32 << 20)
        try run(["mkfs.ntfs", "-Q", "-q", "-F", empty.device])
        let esp = try Self.espVolume(scratch)
        let result = try run([imprintBinary, "boot", "make", "--windows", empty.device, "--esp", esp.device,
                              "--disk-guid", UUID().uuidString, "--windows-partition-guid", UUID().uuidString,
                              "--esp-partition-guid", UUID().uuidString], allowFailure: true)
        #expect(result.status == FailureKind.badInput.exitStatus)
        #expect(result.stderr.contains("no Windows\\Boot\\EFI\\bootmgfw.efi"), "\(result.stderr)")
    }

    @Test func devicePathOnTheNTFSVolume() throws {
        let scratch = ScratchDirectory()
        let windows = try Self.windowsVolume(scratch)
        let result = try run([imprintBinary, "boot", "driver-path", "--windows", windows.device])
        #expect(result.output.contains("%SystemRoot%\\inf;%SystemDrive%\\Drivers"))
        let hive = scratch.sub("SOFTWARE.after")
        let software = try run(["ntfscat", windows.device, "Windows/System32/config/SOFTWARE"]).stdout
        try software.write(to: URL(fileURLWithPath: hive))
        #expect(try run(["hivexget", hive, "\\Microsoft\\Windows\\CurrentVersion", "DevicePath"]).output
                == "%SystemRoot%\\inf;%SystemDrive%\\Drivers\n")
        #expect(try hivexsh(hive, ["cd \\Microsoft\\Windows\\CurrentVersion", "lsval"])
                == ["\"DevicePath\"=str(2):\"%SystemRoot%\\\\inf;%SystemDrive%\\\\Drivers\""])
        // A second run finds the folder there and changes nothing.
        let again = try run([imprintBinary, "boot", "driver-path", "--windows", windows.device])
        #expect(again.output.contains("→ %SystemRoot%\\inf;%SystemDrive%\\Drivers"))
        #expect(try run(["ntfscat", windows.device, "Windows/System32/config/SOFTWARE"]).stdout == software)
    }

    /// Windows RE from Linux: Winre.wim (3 MiB, so it is copied in several pieces) and boot.sdi
    /// from the image go to \Recovery\WindowsRE of an NTFS recovery volume, ReAgent.xml on the
    /// Windows volume names the WinRE loader of the new store, nothing temporary stays.
    static let pcatFiles: [String: String] = [
        "Windows/Boot/PCAT/bootmgr": "fake BIOS boot manager",
        "Windows/Boot/PCAT/memtest.exe": "fake BIOS memtest",
        "Windows/Boot/PCAT/en-US/bootmgr.exe.mui": "fake english BIOS resources",
        "Windows/Boot/Fonts/wgl4_boot.ttf": "fake font",
    ]

    static let standinMarker = "IMPRINT-STANDIN bootmgr started"

    /// Boots a disk image (left unchanged: snapshot=on) under SeaBIOS until the lab's stand-in
    /// bootmgr prints its marker (it then halts) or 60 s pass; the serial console's text.
    static func bootUnderSeaBIOS(_ image: String, _ scratch: ScratchDirectory) throws -> String {
        let console = scratch.sub("console-\(UUID().uuidString.prefix(6)).log")
        let qemu = "qemu-system-x86_64 -accel tcg -machine pc -m 128 -display none -no-reboot -monitor none "
            + "-drive file=\(image),format=raw,if=ide,snapshot=on -serial file:\(console)"
        return try run(["sh", "-c", "\(qemu) & machine=$!; for i in $(seq 240); do grep -qa '\(standinMarker)' \(console) && break; "
                        + "sleep 0.25; done; kill $machine; wait $machine; cat \(console)"], allowFailure: true).output
    }

    /// An MBR disk as the BIOS layout writes it: an active System Reserved partition at 1 MiB,
    /// Windows after it, each NTFS, each also a loop device of its own (the host has no
    /// partition-table support: libblkid cannot name them, the test gives signature and offsets).
    struct BIOSDisk {
        static let signature: UInt32 = 0x1A2B_3C4D
        static let systemOffset: UInt64 = 1 << 20
        static let systemSize: UInt64 = 32 << 20
        static let windowsOffset = systemOffset + systemSize
        static let windowsSize: UInt64 = 64 << 20
        let disk: LoopDisk
        let system: String
        let windows: String

        init(_ scratch: ScratchDirectory, files: [String: Data]) throws {
            disk = try LoopDisk(scratch, "bios-disk", size: Self.windowsOffset + Self.windowsSize) { image in
                let table = scratch.sub("table.sfdisk")
                try Data("""
                    label: dos
                    label-id: 0x1a2b3c4d
                    start=\(Self.systemOffset / 512), size=\(Self.systemSize / 512), type=7, bootable
                    start=\(Self.windowsOffset / 512), type=7

                    """.utf8).write(to: URL(fileURLWithPath: table))
                try run(["sfdisk", "-q", image], stdinFile: table)
            }
            system = try disk.view(offset: Self.systemOffset, size: Self.systemSize)
            windows = try disk.view(offset: Self.windowsOffset, size: Self.windowsSize)
            try run(["mkfs.ntfs", "-Q", "-q", "-F", "-L", "System Reserved", system])
            try run(["mkfs.ntfs", "-Q", "-q", "-F", "-L", "Windows", windows])
            let mountPoint = scratch.sub("mnt-bios")
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            try run(["ntfs-3g", windows, mountPoint])
            defer { _ = try? run(["umount", mountPoint], allowFailure: true) }
            for (path, content) in files {
                let full = mountPoint + "/" + path
                try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try content.write(to: URL(fileURLWithPath: full))
            }
            try run(["umount", mountPoint])
        }

        func sectors(_ offset: UInt64, _ count: Int) throws -> [UInt8] {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: disk.image))
            defer { try? handle.close() }
            try handle.seek(toOffset: offset)
            return [UInt8](try handle.read(upToCount: count * 512) ?? Data())
        }

        var bootMake: [String] {
            [imprintBinary, "boot", "make", "--firmware", "bios", "--windows", windows, "--esp", system,
             "--disk-signature", "0x1a2b3c4d", "--windows-offset", String(Self.windowsOffset), "--esp-offset", String(Self.systemOffset),
             "--disk", disk.device, "--esp-number", "1"]
        }
    }

    /// bcdboot /f BIOS and bootsect /nt60, from Linux: bootmgr at the root of the active
    /// partition, the PCAT files and the store under \Boot, a BIOS store naming partitions by
    /// signature and offset, and GRUB's boot code (with the NTFS BPB and the partition table
    /// kept) that chains bootmgr: SeaBIOS boots the disk and the lab's stand-in bootmgr (a
    /// real-mode program, Initramfs/lab/standins) prints its marker on the serial console.
    @Test func bootMakeWritesABIOSDisk() throws {
        let scratch = ScratchDirectory()
        try run([packageRoot.appendingPathComponent("Initramfs/lab/standins/build").path, scratch.sub("standins")])
        let standin = try Data(contentsOf: URL(fileURLWithPath: scratch.sub("standins/bootmgr")))
        var files = Self.pcatFiles.mapValues { Data($0.utf8) }
        files["Windows/Boot/PCAT/bootmgr"] = standin
        let bios = try BIOSDisk(scratch, files: files)
        let before = try bios.sectors(0, 1)
        let systemBefore = try bios.sectors(BIOSDisk.systemOffset, 1)

        let result = try run(bios.bootMake)
        #expect(result.output.contains("BIOS boot code"), "\(result.output)")

        #expect(try run(["ntfscat", bios.system, "bootmgr"]).stdout == standin)
        #expect(try run(["ntfscat", bios.system, "Boot/memtest.exe"]).stdout == Data("fake BIOS memtest".utf8))
        #expect(try run(["ntfscat", bios.system, "Boot/en-US/bootmgr.exe.mui"]).stdout == Data("fake english BIOS resources".utf8))
        #expect(try run(["ntfscat", bios.system, "Boot/Fonts/wgl4_boot.ttf"]).stdout == Data("fake font".utf8))
        let boot = try run(["ntfsls", "-p", "/Boot", bios.system]).output.split(separator: "\n").map(String.init).filter { $0 != "." }.sorted()
        #expect(boot == ["BCD", "Fonts", "en-US", "memtest.exe"], "\(boot)")

        let bcd = scratch.sub("BCD")
        try run(["ntfscat", bios.system, "Boot/BCD"]).stdout.write(to: URL(fileURLWithPath: bcd))
        let store = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bcd))), file: bcd)
        let system = BCDDevice.mbrPartition(offset: BIOSDisk.systemOffset, signature: BIOSDisk.signature)
        let windows = BCDDevice.mbrPartition(offset: BIOSDisk.windowsOffset, signature: BIOSDisk.signature)
        let manager = try #require(store[BCDObjectID.bootManager])
        #expect(manager[.applicationDevice] == .device(system))
        #expect(manager[.applicationPath] == nil)
        let loader = try #require(store.objects.first { $0.type == BCDObjectType.osLoader })
        #expect(loader[.applicationPath] == .string("\\Windows\\system32\\winload.exe"))
        #expect(loader[.osDevice] == .device(windows) && loader[.applicationDevice] == .device(windows))
        #expect(store[BCDObjectID.memoryDiagnostic]?[.applicationPath] == .string("\\boot\\memtest.exe"))
        try BCDStoreTests.checkWithHivex(bcd, store)

        // The boot code: GRUB's boot.img before the partition table, which stays as it was.
        let grubBoot = [UInt8](try Data(contentsOf: URL(fileURLWithPath: BIOSBootCode.grubDirectory + "/boot.img")))
        let mbr = try bios.sectors(0, 1)
        #expect(Array(mbr[0x68..<0x1B8]) == Array(grubBoot[0x68..<0x1B8]) && mbr[0x66] == 0x90 && mbr[0x67] == 0x90)
        #expect(Array(mbr[0x1B8..<512]) == Array(before[0x1B8..<512]), "the disk signature and partition table must stay")
        #expect(mbr.le64(0x5C) == 1, "boot.img loads core.img from sector 1")
        // core.img in the gap: GRUB's diskboot.img first, its block list naming the sectors after it.
        let gap = try bios.sectors(512, 2047)
        let diskboot = [UInt8](try Data(contentsOf: URL(fileURLWithPath: BIOSBootCode.grubDirectory + "/diskboot.img")))
        #expect(Array(gap[0..<0x1F4]) == Array(diskboot[0..<0x1F4]))
        let coreSectors = Int(gap.le16(0x1F4 + 8)) + 1
        #expect(gap.le64(0x1F4) == 2 && coreSectors > 20 && coreSectors < 200, "block list: \(gap.le64(0x1F4)), \(coreSectors) sectors")
        #expect(gap[(coreSectors * 512)...].allSatisfy { $0 == 0 }, "nothing is written past core.img")
        // The system partition's boot sector: the same code, its NTFS parameter block kept
        // (ntfs-3g still reads the volume, and bootmgr's files through it above).
        let pbr = try bios.sectors(BIOSDisk.systemOffset, 1)
        #expect(Array(pbr[0x03..<0x5A]) == Array(systemBefore[0x03..<0x5A]))
        #expect(Array(pbr[0x68..<0x1B8]) == Array(grubBoot[0x68..<0x1B8]))
        #expect(pbr[510] == 0x55 && pbr[511] == 0xAA)

        // The firmware starts it: SeaBIOS → GRUB's boot.img → core.img → ntldr /bootmgr.
        let console = try Self.bootUnderSeaBIOS(bios.disk.image, scratch)
        #expect(console.contains(Self.standinMarker), "SeaBIOS did not reach the stand-in bootmgr within 60 s; console:\n\(console.suffix(2000))")

        // Again on the same disk: the same result, nothing added to \Boot.
        try run(bios.bootMake)
        #expect(try run(["ntfsls", "-p", "/Boot", bios.system]).output.split(separator: "\n").map(String.init).filter { $0 != "." }.sorted() == boot)
        #expect(try bios.sectors(0, 1)[0x1B8..<512] == before[0x1B8..<512])

        // Not the disk the store names: refused (checked before any file is written).
        let other = try run(bios.bootMake.map { $0 == "0x1a2b3c4d" ? "0x11112222" : $0 }, allowFailure: true)
        #expect(other.status != 0 && other.stderr.contains("not 0x11112222"), "\(other.stderr)")
    }

    @Test func bootMakeInstallsWindowsRE() throws {
        let scratch = ScratchDirectory()
        let windows = try Self.windowsVolume(scratch)
        var winre = [UInt8](repeating: 0, count: 3 << 20)
        for index in winre.indices { winre[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 13) }
        let mountPoint = scratch.sub("mnt-re")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run(["ntfs-3g", windows.device, mountPoint])
        for folder in ["Windows/System32/Recovery", "Windows/Boot/DVD/EFI"] {
            try FileManager.default.createDirectory(atPath: mountPoint + "/" + folder, withIntermediateDirectories: true)
        }
        try Data(winre).write(to: URL(fileURLWithPath: mountPoint + "/Windows/System32/Recovery/Winre.wim"))
        try Data("fake sdi".utf8).write(to: URL(fileURLWithPath: mountPoint + "/Windows/Boot/DVD/EFI/boot.sdi"))
        try run(["umount", mountPoint])
        let recovery = try LoopDisk(scratch, "recovery", size: 32 << 20)
        try run(["mkfs.ntfs", "-Q", "-q", "-F", "-L", "Recovery", recovery.device])
        let esp = try Self.espVolume(scratch)
        let recoveryGUID = BCDRecoveryStoreTests.recoveryPartition

        let result = try run([imprintBinary, "boot", "make", "--windows", windows.device, "--esp", esp.device,
                              "--disk-guid", BCDStoreTests.disk.description, "--windows-partition-guid", BCDStoreTests.windows.description,
                              "--esp-partition-guid", BCDStoreTests.esp.description, "--recovery", recovery.device,
                              "--recovery-partition-guid", recoveryGUID.description, "--recovery-offset", "1048576",
                              "--efivars", scratch.sub("no-efivars")])
        #expect(result.output.contains("Winre.wim and boot.sdi"), "\(result.output)")

        #expect(try run(["ntfscat", recovery.device, "Recovery/WindowsRE/Winre.wim"]).stdout == Data(winre))
        #expect(try run(["ntfscat", recovery.device, "Recovery/WindowsRE/boot.sdi"]).stdout == Data("fake sdi".utf8))
        let listing = try run(["ntfsls", "-a", "-p", "/Recovery/WindowsRE", recovery.device]).output
        #expect(listing.split(separator: "\n").filter { $0 != "." && $0 != ".." }.sorted() == ["Winre.wim", "boot.sdi"], "\(listing)")
        // The image keeps its copy, as Setup's copy does.
        #expect(try run(["ntfscat", windows.device, "Windows/System32/Recovery/Winre.wim"]).stdout.count == winre.count)

        let bcd = scratch.sub("BCD")
        try Self.fatFile(esp, "EFI/Microsoft/Boot/BCD", scratch).write(to: URL(fileURLWithPath: bcd))
        let store = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bcd))), file: bcd)
        let winreLoader = try #require(store.objects.first { $0[.winPE] == .boolean(true) })
        let loader = try #require(store.objects.first { $0.type == BCDObjectType.osLoader && $0.id != winreLoader.id })
        #expect(loader[.recoverySequence] == .objectList([winreLoader.id]))
        #expect(loader[.recoveryEnabled] == .boolean(true))
        let partition = BCDDevice.gptPartition(partition: recoveryGUID, disk: BCDStoreTests.disk)
        guard case let .device(.ramdisk(image, path, options))? = winreLoader[.osDevice] else {
            Issue.record("the WinRE loader's osdevice is no ramdisk"); return
        }
        #expect(image == partition && path == "\\Recovery\\WindowsRE\\Winre.wim")
        #expect(store[options]?[.ramdiskSdiDevice] == .device(partition))
        #expect(store[options]?[.ramdiskSdiPath] == .string("\\Recovery\\WindowsRE\\boot.sdi"))
        try BCDStoreTests.checkWithHivex(bcd, store)

        let reagent = try run(["ntfscat", windows.device, "Windows/System32/Recovery/ReAgent.xml"]).stdout
        let expected = ReAgentXML(winreLoader: winreLoader.id, partitionOffset: 1 << 20, disk: .gpt(BCDStoreTests.disk))
        #expect([UInt8](reagent) == expected.bytes)
        let recoveryFolder = try run(["ntfsls", "-a", "-p", "/Windows/System32/Recovery", windows.device]).output
        #expect(!recoveryFolder.contains("imprint-partial"), "\(recoveryFolder)")

        // An image without Winre.wim, WinRE asked for by name: the error names the file.
        let empty = try Self.windowsVolume(ScratchDirectory())
        let refused = try run([imprintBinary, "boot", "make", "--windows", empty.device, "--esp", esp.device,
                               "--disk-guid", BCDStoreTests.disk.description, "--windows-partition-guid", BCDStoreTests.windows.description,
                               "--esp-partition-guid", BCDStoreTests.esp.description, "--recovery", recovery.device,
                               "--recovery-partition-guid", recoveryGUID.description, "--recovery-offset", "1048576",
                               "--efivars", scratch.sub("no-efivars")], allowFailure: true)
        #expect(refused.status == FailureKind.badInput.exitStatus)
        #expect(refused.stderr.contains("no Windows\\System32\\Recovery\\Winre.wim"), "\(refused.stderr)")
    }
}
