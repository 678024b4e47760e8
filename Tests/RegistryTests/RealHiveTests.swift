import Foundation
import Primitives
@testable import Registry
import TestSupport
import Testing

/// Hives Windows wrote, from public test data (Fixtures/SOURCES.md names each file's repository,
/// path, commit and licence):
/// - github.com/mkorman90/regipy at f315415864889c3ee2a03d8a9e5c52486dcb631b,
///   `regipy_tests/data/` (MIT): SYSTEM (11 MiB, format 1.5), NTUSER.DAT (format 1.3), SAM, BCD.
/// - github.com/msuhanov/yarp at 125729d78cc1a72cda47e8e5d8ead260ee46a46c, `hives_for_tests/`
///   (GPL-3.0): BigDataHive (big data "db" cells), ManySubkeysHive (index roots over index
///   leaves), UnicodeHive (names outside Latin-1), and the hives Windows 10 and Windows 7 left
///   after replaying their logs (RecoveredHive_Windows10, RecoveredHive_Windows7).
/// - Hives Windows had not finished writing (regipy's NTUSER_BAGMRU.DAT of 6 MiB, SECURITY,
///   amcache.hve, SYSTEM_B of 12 MiB, UsrClass.dat, transactions_NTUSER.DAT; yarp's
///   NewDirtyHive1): read as the file is, flagged as needing their logs (LogReplayTests
///   replays them).
///
/// Each is read whole by our reader and by libhivex, and the two trees must be the same: every
/// key name, and every value's name, type and data bytes, in the hive's order.
@Suite("Real Windows hives, read as libhivex reads them")
struct RealHiveTests {
    /// Hives written cleanly: sequence numbers equal, checksum right.
    static let clean = [
        "regipy/SYSTEM", "regipy/NTUSER.DAT", "regipy/SAM", "regipy/BCD",
        "yarp/BigDataHive", "yarp/ManySubkeysHive", "yarp/UnicodeHive",
        "yarp/NewDirtyHive1/RecoveredHive_Windows10", "yarp/OldDirtyHive/RecoveredHive_Windows7",
    ]

    /// Hives whose sequence numbers differ: Windows had changes left to write.
    static let dirty = [
        "regipy/NTUSER_BAGMRU.DAT", "regipy/SECURITY", "regipy/amcache.hve", "regipy/SYSTEM_B", "regipy/UsrClass.dat",
        "regipy/transactions_NTUSER.DAT", "yarp/NewDirtyHive1/NewDirtyHive",
    ]

    @Test(arguments: clean + dirty) func everyKeyAndValueAsHivexReadsThem(_ name: String) throws {
        let scratch = ScratchDirectory()
        let path = try realHive(name, scratch)
        let hive = try Hive(contentsOf: path)
        #expect(hive.needsLogReplay == Self.dirty.contains(name), "\(name): \(hive.dirtyReason ?? "clean")")
        let ours = try hive.readTree()
        let theirs = try HivexLibrary.tree(path)
        let counts = treeCounts(ours)
        #expect(counts == treeCounts(theirs), "\(name): keys and values")
        #expect(counts.keys > 1, "\(name): the root alone")
        #expect(firstDifference(ours, theirs) == nil, "\(name)")
    }

    /// What a technician's tools show of the big SYSTEM hive, found by path as the Windows
    /// details reader finds it.
    @Test func systemHiveKeysByPath() throws {
        let scratch = ScratchDirectory()
        let hive = try Hive(contentsOf: try realHive("regipy/SYSTEM", scratch))
        #expect(hive.minorVersion == 5)
        let select = try #require(try hive.key(at: "Select"))
        let current = try #require(select.value("Current")?.dwordValue)
        let controlSet = String(format: "ControlSet%03d", current)
        let name = try #require(try hive.key(at: controlSet + "\\Control\\ComputerName\\ComputerName"))
        #expect(name.value("ComputerName")?.stringValue?.isEmpty == false)
        #expect(try hive.key(at: controlSet + "\\Services") != nil)
        #expect(try hive.key(at: controlSet + "\\No such key") == nil)
    }

    /// A format 1.3 hive keeps data over 16,344 bytes in one cell (big data "db" lists came with
    /// 1.4): NTUSER.DAT has such a value, and one written by the editor whose bytes begin "db"
    /// is still read as the data, by us and by libhivex.
    @Test func largeDataInAFormat13Hive() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("regipy/NTUSER.DAT", scratch)
        var editor = try HiveEditor(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), file: path)
        let data = Array("db".utf8) + (0..<30_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        try editor.setValue(.binary("Large", data), inKey: "Software\\Imprint")
        let edited = scratch.sub("edited")
        try Data(editor.bytes()).write(to: URL(fileURLWithPath: edited))
        let hive = try Hive(contentsOf: edited)
        #expect(hive.minorVersion == 3)
        #expect(try hive.key(at: "Software\\Imprint")?.value("Large")?.data == data)
        #expect(firstDifference(try hive.readTree(), try HivexLibrary.tree(edited)) == nil)
    }
}
