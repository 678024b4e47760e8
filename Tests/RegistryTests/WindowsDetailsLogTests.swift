import Foundation
import InstalledWindows
import Registry
import TestSupport
import Testing

/// What `imprint disk list`, findWindows and a capture read of an installed Windows, from the
/// real SYSTEM hives of Fixtures/ (regipy, MIT; SOURCES.md): a dirty one has its logs read from
/// beside it and replayed; without them it is read as it is and a problem says so.
@Suite("Windows details from hives Windows had not finished writing")
struct WindowsDetailsLogTests {
    static func read(_ system: String, logs: [String: String], _ scratch: ScratchDirectory) throws -> (WindowsDetails, [String], [String]) {
        let hive = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try realHive(system, scratch))))
        var asked: [String] = []
        var logBytes: [String: [UInt8]] = [:]
        for (path, name) in logs { logBytes[path] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try realHive(name, scratch)))) }
        let (details, problems) = WindowsDetails.read(place: "/dev/sdz3", contents: { file in
            file == .system ? hive : nil
        }, logContents: { path in
            asked.append(path)
            return logBytes[path]
        })
        return (details, problems.filter { $0.contains("SYSTEM") }, asked)
    }

    @Test func aDirtySystemHiveIsReplayedFromItsLogs() throws {
        let scratch = ScratchDirectory()
        let (details, problems, asked) = try Self.read("regipy/SYSTEM_B", logs: [
            "System32/config/SYSTEM.LOG1": "regipy/SYSTEM_B.LOG1", "System32/config/SYSTEM.LOG2": "regipy/SYSTEM_B.LOG2",
        ], scratch)
        #expect(asked == ["System32/config/SYSTEM.LOG1", "System32/config/SYSTEM.LOG2", "System32/config/SYSTEM.LOG"])
        #expect(problems.isEmpty, "\(problems)")
        #expect(details.computerName?.isEmpty == false)
    }

    @Test func withoutItsLogsADirtyHiveIsReadAsItIsAndNamed() throws {
        let scratch = ScratchDirectory()
        let (details, problems, _) = try Self.read("regipy/SYSTEM_B", logs: [:], scratch)
        #expect(details.computerName?.isEmpty == false)
        #expect(problems == [
            "/dev/sdz3: Windows/System32/config/SYSTEM: this hive needs its transaction logs replayed: its base block's sequence "
            + "numbers differ (offset 4: 1622, offset 8: 1621); no .LOG1 or .LOG2 was read with it. Windows had not finished "
            + "writing it (it was running or hibernated when the disk was read, or was stopped by a crash or power cut); its "
            + "latest changes are in SYSTEM.LOG1 and SYSTEM.LOG2 beside it, which Windows replays when it next starts. Keep those "
            + "files with the hive for Imprint to replay, or start that Windows once and shut it down fully (what is shown is read "
            + "from the file as it is, without those changes)",
        ])
    }

    /// A clean hive's logs are never read: a listing of a healthy disk costs no more.
    @Test func aCleanHiveLeavesItsLogsUnread() throws {
        let scratch = ScratchDirectory()
        let (details, problems, asked) = try Self.read("regipy/SYSTEM", logs: [:], scratch)
        #expect(asked.isEmpty)
        #expect(problems.isEmpty)
        #expect(details.computerName?.isEmpty == false)
    }
}
