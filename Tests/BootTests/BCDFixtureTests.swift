import Foundation
@testable import Boot
import Primitives
import Registry
import TestSupport
import Testing

/// BCD stores Windows' own tools wrote, from public repositories (gzip'd; each is a 256 KiB
/// hive, mostly free space):
/// - win10-uefi-winre: `EFI/Microsoft/Boot/BCD` of an installed Windows 10 (Setup, bcdboot,
///   reagentc): partition devices, WinRE loader with a ramdisk, device options, firmware
///   objects. github.com/Fisummer/winefi at 934ebd2ecb72e91c59412080fbf66e4c4c94e871.
/// - win10-recovery: `EFI/Microsoft/Recovery/BCD` of the same machine (KeyName BCD00000001,
///   FirmwareModified). Same repository and commit.
/// - media-uefi, media-bios: `EFI/Microsoft/Boot/BCD` and `boot/BCD` of Windows installation
///   media (boot device, ramdisk on the boot device, integers stored in 1 to 3 bytes).
///   github.com/AREA44/USBboot at 250cc16fceae9d697ceda9604a8f84bf2761acd9.
/// - firmware-entries: an installed Windows' store listing many firmware boot entries (type
///   0x101fffff, FirmwareVariable values) and other loaders. github.com/BlueDruddigon/EFI_backup
///   at ce609aef4b9ac1d32ea33deaa9a3cb895b0bc99c.
@Suite("BCD stores Windows wrote, read by boot show")
struct BCDFixtureTests {
    static let names = ["win10-uefi-winre", "win10-recovery", "media-uefi", "media-bios", "firmware-entries"]

    static func fixture(_ name: String, _ scratch: ScratchDirectory) throws -> String {
        let path = scratch.sub(name + ".bcd")
        let source = packageRoot.appendingPathComponent("Tests/BootTests/Fixtures/\(name).bcd.gz").path
        try run(["gzip", "-dc", source]).stdout.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Every object and every element hivex finds is listed, and nothing is refused.
    @Test(arguments: names) func bootShowListsEveryObjectAndElement(_ name: String) throws {
        let scratch = ScratchDirectory()
        let path = try Self.fixture(name, scratch)
        let shown = try run([imprintBinary, "boot", "show", path])
        #expect(shown.status == 0)
        let lines = shown.output.split(separator: "\n").map(String.init)
        let objects = try hivexsh(path, ["cd \\Objects", "ls"])
        #expect(!objects.isEmpty)
        let objectLines = lines.filter { !$0.hasPrefix(" ") }
        #expect(objectLines.map { String($0.prefix(38)).lowercased() }.sorted() == objects.map { $0.lowercased() }.sorted())
        var elementCount = 0
        for object in objects {
            let elements = try hivexsh(path, ["cd \\Objects\\\(object)\\Elements", "ls"])
            elementCount += elements.count
            guard let start = lines.firstIndex(where: { $0.lowercased().hasPrefix(object.lowercased()) }) else { continue }
            let listed = lines[(start + 1)...].prefix { $0.hasPrefix("  ") }.map { String($0.dropFirst(2).prefix(8)) }
            #expect(listed.map { $0.uppercased() } == elements.map { $0.uppercased() }, "\(name) \(object)")
        }
        #expect(lines.count == objects.count + elementCount)
    }

    @Test func installedStoreWithWinRE() throws {
        let scratch = ScratchDirectory()
        let output = try run([imprintBinary, "boot", "show", try Self.fixture("win10-uefi-winre", scratch)]).output
        for expected in [
            "  11000001  ramdisk=[partition {fb3fd5c6-af83-4c23-9d60-772453d0623d} on GPT disk {d148fb7c-be81-4d12-8dcf-62260299abde}]"
                + "\\Recovery\\WindowsRE\\Winre.wim,{347518e3-f3cc-11ea-911e-c7eaa7d84b6c}",
            "  31000003  partition {fb3fd5c6-af83-4c23-9d60-772453d0623d} on GPT disk {d148fb7c-be81-4d12-8dcf-62260299abde}",
            "  32000004  \\Recovery\\WindowsRE\\boot.sdi",
            "  14000008  {347518e2-f3cc-11ea-911e-c7eaa7d84b6c}",
            "  16000009  Yes",
            "  46000010  Yes",
            "  26000022  Yes",
        ] {
            #expect(output.contains(expected), "\(expected)")
        }
    }

    @Test func installationMediaStores() throws {
        let scratch = ScratchDirectory()
        for name in ["media-uefi", "media-bios"] {
            let output = try run([imprintBinary, "boot", "show", try Self.fixture(name, scratch)]).output
            #expect(output.contains("  11000001  ramdisk=[boot]\\sources\\boot.wim,{7619dcc8-fafe-11d9-b411-000476eba25f}"), "\(output)")
            #expect(output.contains("  31000003  boot"))
            // timeout stored as the single byte 1e, baudrate 115200 as 00 c2 01.
            #expect(output.contains("  25000004  30"))
            #expect(output.contains("  15000014  115200"))
        }
    }

    /// A value whose data does not fit its format is shown raw, never refused.
    @Test func elementsThatDoNotFitAreShownRaw() throws {
        let root = RegistryKey(name: "R", subkeys: [
            RegistryKey(name: "Description", values: [.string("KeyName", "BCD00000000")]),
            RegistryKey(name: "Objects", subkeys: [
                RegistryKey(name: "{9dea862c-5cdd-4e70-acc1-f32b344d4795}", subkeys: [
                    RegistryKey(name: "Description", values: [.dword("Type", 0x1010_0002)]),
                    RegistryKey(name: "Elements", subkeys: [
                        RegistryKey(name: "25000004", values: [.string("Element", "thirty")]),
                        RegistryKey(name: "71000001", values: [.binary("Element", [1, 2])]),
                        RegistryKey(name: "11000001", values: [.binary("Element", [1])]),
                    ]),
                ]),
            ]),
        ])
        let scratch = ScratchDirectory()
        let path = scratch.sub("BCD")
        try Data(try HiveWriter.write(root)).write(to: URL(fileURLWithPath: path))
        let shown = try run([imprintBinary, "boot", "show", path])
        #expect(shown.output.contains("  71000001  raw (registry type 3) hex:01,02"), "\(shown.output)")
        #expect(shown.output.contains("  11000001  raw (registry type 3) hex:01"))
        #expect(shown.output.contains("  25000004  raw (registry type 1) hex:74,00"))
    }
}
