import Digests
import Foundation
import Primitives
@testable import Registry
import TestSupport
import Testing

/// Transaction logs replayed onto hives Windows had not finished writing, against what Windows
/// itself made of them. Sources (Fixtures/SOURCES.md has each file's repository, path, commit
/// and licence):
/// - github.com/msuhanov/yarp at 125729d78cc1a72cda47e8e5d8ead260ee46a46c, `hives_for_tests/`
///   (GPL-3.0): NewDirtyHive1 and NewDirtyHive2 with new-format logs and the hive Windows 10 made
///   of them (RecoveredHive_Windows10); OldDirtyHive with an old-format log and Windows 7's
///   result (RecoveredHive_Windows7); BadBaseBlockHive (damaged base block, good log);
///   BadLogHive3 (both logs damaged).
/// - github.com/mkorman90/regipy at f315415864889c3ee2a03d8a9e5c52486dcb631b,
///   `regipy_tests/data/` (MIT): SYSTEM_B, UsrClass.dat and transactions_NTUSER.DAT, dirty,
///   with their .LOG1 and .LOG2 (new format, hundreds of dirty pages, hives that grow).
@Suite("Transaction logs replayed as Windows replays them")
struct LogReplayTests {
    static func logs(_ names: [String], _ scratch: ScratchDirectory) throws -> [HiveLog] {
        try names.map { name in
            let path = try realHive(name, scratch)
            return HiveLog(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), file: path)
        }
    }

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    static func bins(_ hive: Hive) -> ArraySlice<UInt8> { hive.bytes[4096..<4096 + hive.binsSize] }

    /// NewDirtyHive1 (3/2) with entry 2 in .LOG1 and entries 3-5 in .LOG2: replayed, its bins
    /// are byte for byte the bins Windows 10 wrote after replaying them, whichever order the logs
    /// are given in, and its keys are the recovered hive's.
    @Test(arguments: [false, true]) func newFormatGivesWhatWindows10Wrote(_ reversed: Bool) throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/NewDirtyHive1/NewDirtyHive", scratch)
        var logs = try Self.logs(["yarp/NewDirtyHive1/NewDirtyHive.LOG1", "yarp/NewDirtyHive1/NewDirtyHive.LOG2"], scratch)
        if reversed { logs.reverse() }
        let dirty = try Hive(bytes: Self.bytes(path), file: path)
        #expect(dirty.needsLogReplay)
        #expect(try dirty.key(at: "Key1") != nil)

        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: logs)
        #expect(!hive.needsLogReplay)
        let replay = try #require(hive.replayed)
        #expect(replay.applied.map(\.file) == [logs[reversed ? 1 : 0].file, logs[reversed ? 0 : 1].file])
        #expect(replay.applied.map { [$0.firstSequence, $0.lastSequence] } == [[2, 2], [3, 5]])
        #expect(replay.applied.map(\.entries) == [1, 3])
        #expect(replay.stoppedEarly.isEmpty)
        #expect(hive.bytes.le32(4) == 5 && hive.bytes.le32(8) == 5 && hive.bytes.le32(508) == HiveFormat.checksum(hive.bytes))

        let windows = try Hive(contentsOf: try realHive("yarp/NewDirtyHive1/RecoveredHive_Windows10", scratch))
        #expect(hive.binsSize == windows.binsSize)
        #expect(Self.bins(hive) == Self.bins(windows), "the replayed bins are not what Windows 10 wrote")
        #expect(hive.rootOffset == windows.rootOffset)
        #expect(firstDifference(try hive.readTree(), try windows.readTree()) == nil)
        // What the logs changed: Key1 and Key2 went, Key3 and its subkeys came.
        #expect(try hive.key(at: "Key1") == nil)
        #expect(try hive.key(at: "Key2\\Key2_1") == nil)
        for key in ["Key3", "Key3\\Key3_1", "Key3\\Key3_2", "key3\\key3_3"] { #expect(try hive.key(at: key) != nil, "\(key)") }
    }

    /// NewDirtyHive2 (4/3) with the same logs: .LOG1 starts at entry 2, already in the hive, so
    /// only .LOG2's entries 3-5 are applied, and the result is again what Windows 10 wrote.
    @Test func aLogAlreadyInTheHiveIsSkipped() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/NewDirtyHive2/NewDirtyHive", scratch)
        let logs = try Self.logs(["yarp/NewDirtyHive2/NewDirtyHive.LOG1", "yarp/NewDirtyHive2/NewDirtyHive.LOG2"], scratch)
        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: logs)
        let replay = try #require(hive.replayed)
        #expect(replay.applied.map(\.file) == [logs[1].file])
        #expect(replay.applied.map { [$0.firstSequence, $0.lastSequence] } == [[3, 5]])
        let windows = try Hive(contentsOf: try realHive("yarp/NewDirtyHive1/RecoveredHive_Windows10", scratch))
        #expect(Self.bins(hive) == Self.bins(windows))
    }

    /// `Hive(contentsOf:)` finds NAME.LOG1 and NAME.LOG2 beside the file and replays them.
    @Test func logsBesideTheFileAreFound() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/NewDirtyHive1/NewDirtyHive", scratch)
        // The fixtures decompress under their own names: NAME, NAME.LOG1, NAME.LOG2.
        for log in ["LOG1", "LOG2"] { #expect(try realHive("yarp/NewDirtyHive1/NewDirtyHive.\(log)", scratch) == path + "." + log) }
        let hive = try Hive(contentsOf: path)
        #expect(hive.replayed?.summary == "yarp_NewDirtyHive1_NewDirtyHive.LOG1 (entry 2, 1 page) and yarp_NewDirtyHive1_NewDirtyHive.LOG2 (entries 3-5, 3 pages)")
        #expect(try Hive(contentsOf: path, replayingLogs: false).needsLogReplay)
    }

    /// A log entry torn by a crash (one byte of a page changed, so its hash no longer matches):
    /// replay stops before it, as Windows does, and says where.
    @Test func aTornEntryStopsTheReplay() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/NewDirtyHive1/NewDirtyHive", scratch)
        var logs = try Self.logs(["yarp/NewDirtyHive1/NewDirtyHive.LOG1", "yarp/NewDirtyHive1/NewDirtyHive.LOG2"], scratch)
        // .LOG2's second entry (sequence 4) starts at 8192; its first page after 8192 + 40 + 8.
        logs[1].bytes[8192 + 48 + 100] ^= 0x55
        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: logs)
        let replay = try #require(hive.replayed)
        #expect(replay.applied.map { [$0.firstSequence, $0.lastSequence] } == [[2, 2], [3, 3]])
        #expect(replay.stoppedEarly == ["yarp_NewDirtyHive1_NewDirtyHive.LOG2 offset 8192: the log entry's hashes do not match its bytes (torn while being written)"])
        #expect(!hive.needsLogReplay)
        _ = try hive.readTree()
    }

    /// Logs of a hive written cleanly are ignored, as Windows ignores them.
    @Test func aCleanHiveIgnoresItsLogs() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/NewDirtyHive1/RecoveredHive_Windows10", scratch)
        let logs = try Self.logs(["yarp/NewDirtyHive1/NewDirtyHive.LOG1", "yarp/NewDirtyHive1/NewDirtyHive.LOG2"], scratch)
        let original = try Self.bytes(path)
        let hive = try Hive(bytes: original, file: path, logs: logs)
        #expect(hive.replayed == nil)
        #expect(hive.bytes == original)
    }

    /// OldDirtyHive with its old-format (Windows 7, "DIRT") log: replayed, it holds what
    /// Windows 7 recovered, key by key.
    @Test func oldFormatGivesWhatWindows7Wrote() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/OldDirtyHive/OldDirtyHive", scratch)
        let logs = try Self.logs(["yarp/OldDirtyHive/OldDirtyHive.LOG1"], scratch)
        let dirty = try Hive(bytes: Self.bytes(path), file: path)
        #expect(try dirty.key(at: "key_with_many_subkeys\\1") != nil)
        #expect(try dirty.key(at: "key_with_many_subkeys\\5000\\find_me_in_log") == nil)

        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: logs)
        let replay = try #require(hive.replayed)
        #expect(replay.applied.map(\.file) == [logs[0].file])
        #expect(replay.summary.hasPrefix("yarp_OldDirtyHive_OldDirtyHive.LOG1 (old format, "))
        #expect(try hive.key(at: "key_with_many_subkeys\\1") == nil)
        #expect(try hive.key(at: "key_with_many_subkeys\\5000\\find_me_in_log") != nil)
        #expect(try hive.key(at: "key_with_many_subkeys\\4500")?.value("v")?.multiStringValue == ["a", "bb", "ccc"])
        let windows = try Hive(contentsOf: try realHive("yarp/OldDirtyHive/RecoveredHive_Windows7", scratch))
        #expect(firstDifference(try hive.readTree(), try windows.readTree()) == nil)
    }

    /// BadBaseBlockHive: its base block's checksum is wrong, so nothing in it can be trusted;
    /// without its log it is refused, naming the offset; with it, the base block comes from the
    /// log and the hive reads whole.
    @Test func aDamagedBaseBlockComesFromTheLog() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/BadBaseBlockHive/BadBaseBlockHive", scratch)
        do {
            _ = try Hive(bytes: Self.bytes(path), file: path)
            Issue.record("read a hive whose base block is damaged")
        } catch let RegistryError.needsLogReplay(file, reason) {
            #expect(file == path)
            #expect(reason.hasPrefix("its base block is damaged (offset 508: checksum 0x"))
        }
        let logs = try Self.logs(["yarp/BadBaseBlockHive/BadBaseBlockHive.LOG1"], scratch)
        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: logs)
        #expect(!hive.needsLogReplay)
        #expect(hive.minorVersion == 3)
        #expect(try hive.key(at: "key_with_many_subkeys") != nil)
        #expect(treeCounts(try hive.readTree()).keys > 5000)
    }

    /// BadLogHive3: dirty, and both logs have damaged base block copies: nothing is replayed,
    /// the hive is read as it is, and the reason names each log and the offset.
    @Test func damagedLogsAreNotReplayed() throws {
        let scratch = ScratchDirectory()
        let path = try realHive("yarp/BadLogHive3/BadLogHive", scratch)
        let logs = try Self.logs(["yarp/BadLogHive3/BadLogHive.LOG1", "yarp/BadLogHive3/BadLogHive.LOG2"], scratch)
        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: logs)
        #expect(hive.replayed == nil)
        #expect(hive.dirtyReason == "its base block's sequence numbers differ (offset 4: 3, offset 8: 2); "
            + "yarp_BadLogHive3_BadLogHive.LOG1 offset 508: the checksum of its base block copy is wrong (torn while being written); "
            + "yarp_BadLogHive3_BadLogHive.LOG2 offset 508: the checksum of its base block copy is wrong (torn while being written)")
        #expect(throws: RegistryError.self) { try HiveEditor(bytes: Self.bytes(path), file: path) }
        _ = try hive.readTree()
    }

    /// Big hives Windows left dirty, with hundreds of dirty pages in their logs, some entries
    /// growing the hive: the entries applied are the ones the logs' sequence numbers call for,
    /// and the replayed bins are, by SHA-256, what yarp's recover_auto (msuhanov/yarp at the
    /// commit above, whose replay of NewDirtyHive1 is byte for byte Windows 10's) makes of them.
    /// The replayed hive, written out, reads in libhivex exactly as in our reader.
    @Test(arguments: [
        ("regipy/SYSTEM_B", ["regipy/SYSTEM_B.LOG1", "regipy/SYSTEM_B.LOG2"], [[2107, 2110], [2111, 2130]], 12_591_104,
         "b6e091176b3d00b7b97efdeaeef519b1adfbaa5f6d8118d5c44fa2dcfeb5029a"),
        ("regipy/UsrClass.dat", ["regipy/UsrClass.dat.LOG1", "regipy/UsrClass.dat.LOG2"], [[287, 290], [291, 300]], 2_830_336,
         "ecc04a58aa3d2467871e80e393eb8469a5fdd425f37fc88f55308efc2f384930"),
        ("regipy/transactions_NTUSER.DAT", ["regipy/transactions_ntuser.dat.log1", "regipy/transactions_ntuser.dat.log2"], [[566, 588]],
         925_696, "9c5e83727e19ff8f7fd95b73ba006dbc20dffbeead9ace35a88753f3fc7e4299"),
    ] as [(String, [String], [[UInt32]], Int, String)])
    func bigDirtyHives(_ name: String, _ logNames: [String], _ sequences: [[UInt32]], _ binsSize: Int, _ sha256: String) throws {
        let scratch = ScratchDirectory()
        let path = try realHive(name, scratch)
        let dirty = try Hive(bytes: Self.bytes(path), file: path)
        #expect(dirty.needsLogReplay)
        let hive = try Hive(bytes: Self.bytes(path), file: path, logs: try Self.logs(logNames, scratch))
        #expect(!hive.needsLogReplay)
        let replay = try #require(hive.replayed)
        #expect(replay.applied.map { [$0.firstSequence, $0.lastSequence] } == sequences)
        #expect(replay.stoppedEarly.isEmpty)
        #expect(hive.binsSize == binsSize)
        #expect(SHA256Hasher.hex(of: Array(Self.bins(hive))) == sha256, "\(name): the replayed bins")

        let replayedPath = scratch.sub("replayed")
        try Data(hive.bytes).write(to: URL(fileURLWithPath: replayedPath))
        let ours = try hive.readTree()
        #expect(firstDifference(ours, try HivexLibrary.tree(replayedPath)) == nil, "\(name)")
        // The logs added keys the file alone lacks.
        #expect(treeCounts(ours).keys > treeCounts(try dirty.readTree()).keys)
    }
}
