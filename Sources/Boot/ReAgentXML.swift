import Foundation
import Primitives

/// `Windows\System32\Recovery\ReAgent.xml`: where Windows finds its recovery environment
/// (`reagentc /info` reads it; `reagentc /enable` and Setup write it). Microsoft documents no
/// schema; the facts below are from files Windows wrote, quoted in public scripts and
/// articles (Windows 8.1 and 10 GPT machines, and a Windows 11 disk image of 2023):
/// - UTF-8 with a byte-order mark, `<?xml version='1.0' encoding='utf-8'?>`, an empty line,
///   then `<WindowsRE version="2.0">` with one element per line, indented by two spaces, LF
///   line ends;
/// - `WinreBCD id` is the WinRE loader's object in the BCD store;
/// - `WinreLocation path` is the folder holding Winre.wim on the recovery partition,
///   `offset` the partition's first byte on the disk, `guid` the GPT disk GUID and `id` 0 on a
///   GPT disk; on an MBR disk `guid` is zero and `id` the disk signature (in decimal);
/// - `InstallState 1`: WinRE is enabled; `IsAutoRepairOn 1`: Windows starts it after failed
///   boots; `ScheduledOperation 4`: nothing scheduled;
/// - the other locations (push-button reset images) are empty, with zero ids, offsets, GUIDs.
public struct ReAgentXML: Sendable, Equatable {
    /// Where the file lives on the Windows volume.
    public static let path = "Windows/System32/Recovery/ReAgent.xml"

    public enum Disk: Sendable, Equatable {
        case gpt(GUID)
        case mbr(signature: UInt32)
    }

    public var winreLoader: GUID
    public var winreFolder: String
    public var partitionOffset: UInt64
    public var disk: Disk

    public init(winreLoader: GUID, winreFolder: String = RecoveryEnvironment.folder, partitionOffset: UInt64, disk: Disk) {
        self.winreLoader = winreLoader
        self.winreFolder = winreFolder
        self.partitionOffset = partitionOffset
        self.disk = disk
    }

    /// The configuration of a store's WinRE: the loader, the recovery partition's disk and offset.
    public init?(_ recovery: RecoveryEnvironment) {
        switch recovery.partition {
        case let .gptPartition(_, disk): self.init(winreLoader: recovery.loaderID, partitionOffset: recovery.partitionOffset, disk: .gpt(disk))
        case let .mbrPartition(offset, signature):
            self.init(winreLoader: recovery.loaderID, partitionOffset: offset, disk: .mbr(signature: signature))
        default: return nil
        }
    }

    public var text: String {
        let none = "{00000000-0000-0000-0000-000000000000}"
        let (id, guid): (String, String)
        switch disk {
        case let .gpt(disk): (id, guid) = ("0", disk.braced)
        case let .mbr(signature): (id, guid) = (String(signature), none)
        }
        let empty = "path=\"\" id=\"0\" offset=\"0\" guid=\"\(none)\""
        let lines = [
            "<WinreBCD id=\"\(winreLoader.braced)\"/>",
            "<WinreLocation path=\"\(Self.escaped(winreFolder))\" id=\"\(id)\" offset=\"\(partitionOffset)\" guid=\"\(guid)\"/>",
            "<ImageLocation \(empty)/>",
            "<PBRImageLocation \(empty) index=\"0\"/>",
            "<PBRCustomImageLocation \(empty) index=\"0\"/>",
            "<InstallState state=\"1\"/>",
            "<OsInstallAvailable state=\"0\"/>",
            "<CustomImageAvailable state=\"0\"/>",
            "<IsAutoRepairOn state=\"1\"/>",
            "<WinREStaged state=\"0\"/>",
            "<OperationParam path=\"\"/>",
            "<OperationPermanent state=\"0\"/>",
            "<OsBuildVersion path=\"\"/>",
            "<OemTool state=\"0\"/>",
            "<IsServer state=\"0\"/>",
            "<DownlevelWinreLocation \(empty)/>",
            "<IsWimBoot state=\"0\"/>",
            "<NarratorScheduled state=\"0\"/>",
            "<ScheduledOperation state=\"4\"/>",
        ]
        return "<?xml version='1.0' encoding='utf-8'?>\n\n<WindowsRE version=\"2.0\">\n"
            + lines.map { "  " + $0 + "\n" }.joined() + "</WindowsRE>\n"
    }

    /// The file's bytes: the UTF-8 byte-order mark, then the text.
    public var bytes: [UInt8] { [0xEF, 0xBB, 0xBF] + Array(text.utf8) }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "<", with: "&lt;")
    }
}
