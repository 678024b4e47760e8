import Failures
import Foundation
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
}
