import DiskModel
import Disks
import Foundation

/// The UEFI boot entry bcdboot adds: "Windows Boot Manager" → \EFI\Microsoft\Boot\bootmgfw.efi
/// on the ESP, first in BootOrder (efibootmgr does both). Without EFI variables (BIOS, a
/// container, the build host) nothing is written and the log says why; the fallback path
/// \EFI\Boot\bootx64.efi still starts Windows on UEFI firmware.
public enum FirmwareBootEntry {
    public static let label = "Windows Boot Manager"
    public static let loader = "\\EFI\\Microsoft\\Boot\\bootmgfw.efi"

    /// Returns what was done, for the log.
    public static func add(disk: String?, partition: Int?, efivars: String = "/sys/firmware/efi/efivars") throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: efivars, isDirectory: &isDirectory), isDirectory.boolValue,
              let names = try? FileManager.default.contentsOfDirectory(atPath: efivars), !names.isEmpty else {
            return "no EFI variables at \(efivars) (BIOS boot, or not running on UEFI firmware): no firmware boot entry added; "
                + "UEFI firmware finds Windows through \\EFI\\Boot\\bootx64.efi"
        }
        guard let disk, let partition else {
            return "the ESP's disk and partition number are unknown: no firmware boot entry added; "
                + "UEFI firmware finds Windows through \\EFI\\Boot\\bootx64.efi"
        }
        let listing = try efibootmgr([])
        // Replace our earlier entries rather than piling up duplicates on every deployment.
        for line in listing.split(separator: "\n") where line.hasPrefix("Boot") && line.contains(label) {
            let number = line.dropFirst(4).prefix(4)
            if number.count == 4, number.allSatisfy(\.isHexDigit) { _ = try efibootmgr(["--bootnum", String(number), "--delete-bootnum"]) }
        }
        _ = try efibootmgr(["--create", "--disk", disk, "--part", String(partition), "--label", label, "--loader", loader])
        return "firmware boot entry \"\(label)\" added for \(disk) partition \(partition), first in BootOrder"
    }

    private static func efibootmgr(_ arguments: [String]) throws -> String { try BootTool.run(["efibootmgr"] + arguments) }
}
