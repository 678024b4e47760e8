import Foundation
import TestSupport

/// The example layouts users start from (TaskSequences/disks), so the tests check what ships.
enum Examples {
    static let windowsUEFI = text("windows-uefi.json")
    static let windowsBIOS = text("windows-bios.json")

    private static func text(_ name: String) -> String {
        let path = packageRoot.appendingPathComponent("TaskSequences/disks/" + name).path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? "missing \(path)"
    }
}
