import Foundation
import TestSupport
import Testing
import CImprintSystem
@testable import Apply
import DiskModel
@testable import WIM

/// Refresh: `imprint wim apply ... --cleanup move|delete` onto an NTFS volume that already
/// holds an old Windows and a user's files. The user's files must come out byte-identical with
/// the same security descriptors and times, the old folders in Windows.old (or gone), and the
/// new image complete (compared with wimlib's apply of the same WIM to a fresh volume).
@Suite(.serialized)
struct RefreshTests {
    /// The NTFS helpers (mount, xattrs, snapshots, comparison) of the NTFS apply tests.
    let ntfs = NTFSApplyTests()

    /// What must survive a refresh untouched, per user file.
    struct UserFile: Equatable {
        var contents: Data?
        var zoneIdentifier: Data?
        var acl: [UInt8]?
        var times: [UInt8]?
    }

    /// A second descriptor, different from the shared custom one: owner SYSTEM, Alice-like
    /// user SID with full access.
    var aliceSecurityDescriptor: [UInt8] {
        let owner: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 5] + ntfs.le32(18)
        let group: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 5] + ntfs.le32(18)
        let alice: [UInt8] = [1, 5, 0, 0, 0, 0, 0, 5] + ntfs.le32(21) + ntfs.le32(1111) + ntfs.le32(2222) + ntfs.le32(3333) + ntfs.le32(1001)
        let ace: [UInt8] = [0, 3] + ntfs.le16(8 + alice.count) + ntfs.le32(0x1F01FF) + alice
        let dacl: [UInt8] = [2, 0] + ntfs.le16(8 + ace.count) + ntfs.le16(1) + ntfs.le16(0) + ace
        let header: [UInt8] = [1, 0] + ntfs.le16(0x8004) + ntfs.le32(20) + ntfs.le32(UInt32(20 + owner.count)) + ntfs.le32(0)
            + ntfs.le32(UInt32(20 + owner.count + group.count))
        return header + owner + group + dacl
    }

    /// creation, last write, last access (FILETIME, little-endian), as system.ntfs_times takes them.
    func times(_ seed: UInt64) -> [UInt8] {
        let base: UInt64 = 131_000_000_000_000_000 + seed * 10_000_000_000
        return [base, base + 12_345_678, base + 99_999_999].flatMap { v in (0..<8).map { UInt8(v >> ($0 * 8) & 0xff) } }
    }

    static let userFiles = ["Users/Alice/Documents/report.docx", "Users/Alice/Pictures/photo.jpg",
                            "Users/Alice/Desktop/notes.txt", "Users/Alice/empty.txt", "Users/Public/readme.txt"]

    /// Alice's file that also has a name under Windows\System32 (a hard link).
    static let linkedUserFile = "Users/Alice/AppData/linked.dat"

    /// The old installation: Windows, Program Files (with a DOS name), ProgramData, a file at
    /// the root, and Alice's profile with her own descriptors, times and a named stream.
    func makeOldVolume(_ volume: String, _ mount: String) throws {
        try ntfs.makeVolume(volume)
        try ntfs.withMount(volume, at: mount) {
            let m = mount
            try write(testBytes(150_000, seed: 11), to: m + "/Windows/System32/kernel32.dll")
            try write(testBytes(3000, seed: 12, compressible: true), to: m + "/Windows/System32/drivers/etc/hosts")
            try write(Array("[old]".utf8), to: m + "/Windows/win.ini")
            try write(testBytes(300_000, seed: 13), to: m + "/Program Files/App/app.exe")
            try write(testBytes(2000, seed: 14, compressible: true), to: m + "/ProgramData/Vendor/settings.dat")
            try write(Array("root file".utf8), to: m + "/bootmgr")
            try run(["setfattr", "-n", "system.ntfs_dos_name", "-v", "PROGRA~1", m + "/Program Files"])
            try run(["setfattr", "-n", "system.ntfs_acl", "-v", ntfs.hex(ntfs.customSecurityDescriptor), m + "/Windows"])
            try write(testBytes(500_000, seed: 21), to: m + "/" + RefreshTests.userFiles[0])
            try write(testBytes(1 << 20, seed: 22), to: m + "/" + RefreshTests.userFiles[1])
            try write(testBytes(900, seed: 23, compressible: true), to: m + "/" + RefreshTests.userFiles[2])
            try write([], to: m + "/" + RefreshTests.userFiles[3])
            try write(Array("public".utf8), to: m + "/" + RefreshTests.userFiles[4])
            try write(Array("[ZoneTransfer]\r\nZoneId=3".utf8), to: m + "/" + RefreshTests.userFiles[0] + ":Zone.Identifier")
            // Traps for a clean-up that would reach into Users: a file of Alice's with a second
            // name under Windows, and a junction under Windows pointing at Users.
            try write(testBytes(5000, seed: 24), to: m + "/" + RefreshTests.linkedUserFile)
            try FileManager.default.linkItem(atPath: m + "/" + RefreshTests.linkedUserFile, toPath: m + "/Windows/System32/linked.dat")
            try FileManager.default.createDirectory(atPath: m + "/Windows/UsersLink", withIntermediateDirectories: true)
            try run(["setfattr", "-n", "system.ntfs_reparse_data", "-v", ntfs.hex(ntfs.junctionData("C:\\Users")), m + "/Windows/UsersLink"])
            for (n, file) in RefreshTests.userFiles.enumerated() {
                let sd = n % 2 == 0 ? aliceSecurityDescriptor : ntfs.customSecurityDescriptor
                try run(["setfattr", "-n", "system.ntfs_acl", "-v", ntfs.hex(sd), m + "/" + file])
                try run(["setfattr", "-n", "system.ntfs_times", "-v", ntfs.hex(times(UInt64(n + 1))), m + "/" + file])
            }
        }
    }

    /// The new image: another Windows, captured by wimlib from an NTFS volume.
    func makeNewImage(_ scratch: ScratchDirectory) throws -> String {
        let volume = scratch.sub("new.img"), mount = scratch.sub("new")
        try ntfs.makeVolume(volume)
        try ntfs.withMount(volume, at: mount) {
            let m = mount
            try write(testBytes(160_000, seed: 31), to: m + "/Windows/System32/kernel32.dll")
            try write(testBytes(40_000, seed: 32, compressible: true), to: m + "/Windows/explorer.exe")
            try write(testBytes(70_000, seed: 33), to: m + "/Program Files/NewApp/new.exe")
            try write(Array("new".utf8), to: m + "/ProgramData/Microsoft/state.dat")
            try write(testBytes(8000, seed: 34), to: m + "/Users/Default/NTUSER.DAT")
            try run(["setfattr", "-n", "system.ntfs_acl", "-v", ntfs.hex(ntfs.customSecurityDescriptor), m + "/Windows/explorer.exe"])
        }
        let wim = scratch.sub("new.wim")
        try run(["wimlib-imagex", "capture", volume, wim, "New Windows"])
        return wim
    }

    func userState(_ root: String) -> [String: UserFile] {
        var state: [String: UserFile] = [:]
        for file in RefreshTests.userFiles {
            let path = root + "/" + file
            state[file] = UserFile(contents: FileManager.default.contents(atPath: path),
                                   zoneIdentifier: FileManager.default.contents(atPath: path + ":Zone.Identifier"),
                                   acl: xattr(path, "system.ntfs_acl"), times: xattr(path, "system.ntfs_times"))
        }
        return state
    }

    /// The entries of `files` under `prefix/`, keyed without it.
    func subtree(_ files: [String: NTFSApplyTests.FileState], _ prefix: String) -> [String: NTFSApplyTests.FileState] {
        var out: [String: NTFSApplyTests.FileState] = [:]
        for (path, state) in files where path == prefix || path.hasPrefix(prefix + "/") {
            out[String(path.dropFirst(prefix.count))] = state
        }
        return out
    }

    /// The new image as wimlib applies it to a fresh volume.
    func wimlibApply(_ wim: String, _ scratch: ScratchDirectory) throws -> [String: NTFSApplyTests.FileState] {
        let volume = scratch.sub("wimlib.img")
        try ntfs.makeVolume(volume)
        try run(["wimlib-imagex", "apply", wim, "1", volume])
        return try ntfs.withMount(volume, at: scratch.sub("w"), readOnly: true) { try ntfs.snapshot(scratch.sub("w")).files }
    }

    /// Checks that every path of the new image is on `actual` as wimlib writes it. Root and
    /// Users also list what the refresh kept; their metadata must still match.
    func expectNewImageComplete(_ expected: [String: NTFSApplyTests.FileState], _ actual: [String: NTFSApplyTests.FileState]) {
        let extra = Set(actual.keys).subtracting(expected.keys)
        ntfs.compare(expected, actual, ignoring: extra)
    }

    @Test func refreshMovesTheOldInstallationAndKeepsUserFiles() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("old.img"), mount = scratch.sub("m")
        try makeOldVolume(volume, mount)
        let wim = try makeNewImage(scratch)
        let (usersBefore, oldBefore) = try ntfs.withMount(volume, at: mount, readOnly: true) {
            (userState(mount), try ntfs.snapshot(mount).files)
        }
        // The fixture holds what the checks below rely on.
        #expect(usersBefore[RefreshTests.userFiles[0]]?.acl == aliceSecurityDescriptor)
        #expect(usersBefore[RefreshTests.userFiles[0]]?.times?.prefix(24) == times(1)[...])
        #expect(usersBefore[RefreshTests.userFiles[0]]?.zoneIdentifier == Data("[ZoneTransfer]\r\nZoneId=3".utf8))
        #expect(oldBefore["Program Files"]?.xattrs["system.ntfs_dos_name"] == Array("PROGRA~1".utf8))

        let result = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "move", "--progress", "none"])
        #expect(result.output.contains("Clean-up: moved Windows, Program Files, ProgramData into Windows.old"), "\(result.output)")
        #expect(result.output.contains("not on the volume, skipped: Program Files (x86)"), "\(result.output)")

        let (usersAfter, after) = try ntfs.withMount(volume, at: mount, readOnly: true) {
            (userState(mount), try ntfs.snapshot(mount).files)
        }
        // User files: same bytes, stream, descriptor and all four times (not even the MFT
        // record's change time moves: nothing touched them).
        for file in RefreshTests.userFiles { #expect(usersAfter[file] == usersBefore[file], "\(file)") }
        #expect(after["bootmgr"]?.contents == Data("root file".utf8))
        // The old folders, whole, in Windows.old: a rename, so contents, descriptors, times
        // and streams are those they had. The moved folder's DOS name went with its old name.
        for folder in ["Windows", "Program Files", "ProgramData"] {
            var old = subtree(oldBefore, folder)
            old[""]?.xattrs["system.ntfs_dos_name"] = nil
            let moved = subtree(after, "Windows.old/" + folder)
            #expect(!moved.isEmpty, "Windows.old/\(folder)")
            ntfs.compare(old, moved)
        }
        // Windows.old is guarded as the old Windows folder was, not open to everyone.
        #expect(after["Windows.old"]?.xattrs["system.ntfs_acl"] == ntfs.customSecurityDescriptor)
        #expect(after["Windows/win.ini"] == nil)
        #expect(after["Program Files/App/app.exe"] == nil)
        expectNewImageComplete(try wimlibApply(wim, scratch), after)
    }

    @Test func anExistingWindowsOldGetsANumberedSibling() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("old.img"), mount = scratch.sub("m")
        try makeOldVolume(volume, mount)
        let wim = try makeNewImage(scratch)
        try ntfs.withMount(volume, at: mount) {
            try write(Array("from an earlier refresh".utf8), to: mount + "/windows.OLD/Windows/marker.txt")
        }
        let result = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "move", "--cleanup-folder", "WINDOWS",
                              "--cleanup-folder", "programdata", "--progress", "none"])
        #expect(result.output.contains("moved Windows, ProgramData into Windows.old.000"), "\(result.output)")
        let after = try ntfs.withMount(volume, at: mount, readOnly: true) { try ntfs.snapshot(mount).files }
        #expect(after["windows.OLD/Windows/marker.txt"]?.contents == Data("from an earlier refresh".utf8))
        #expect(after["Windows.old.000/Windows/System32/kernel32.dll"]?.contents == Data(testBytes(150_000, seed: 11)))
        #expect(after["Windows.old.000/ProgramData/Vendor/settings.dat"] != nil)
        // Not listed: stays where it was, and the image's files join it.
        #expect(after["Program Files/App/app.exe"]?.contents == Data(testBytes(300_000, seed: 13)))
        #expect(after["Windows.old.000/Program Files"] == nil)
        // The reused folder keeps the short name it had (the image gives it none): preserve.
        var reused = after
        #expect(reused["Program Files"]?.xattrs.removeValue(forKey: "system.ntfs_dos_name") == Array("PROGRA~1".utf8))
        expectNewImageComplete(try wimlibApply(wim, scratch), reused)
    }

    /// The record a cut-off refresh leaves (`_ImprintTaskSequence/refresh.json`), written by hand
    /// with the volume in the state the cut left it.
    func writeRecord(complete: Bool, _ mount: String) throws {
        let record = RefreshRecord(mode: .move, destination: "Windows.old", folders: RefreshCleanup.defaultFolders,
                                   complete: complete, started: "2026-12-05T10:00:00Z")
        try write(Array(try JSONEncoder().encode(record)), to: mount + "/" + RefreshRecord.path)
    }

    @Test func aRefreshCutDuringItsCleanUpGoesOnIntoTheSameWindowsOld() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("old.img"), mount = scratch.sub("m")
        try makeOldVolume(volume, mount)
        let wim = try makeNewImage(scratch)
        let (usersBefore, oldBefore) = try ntfs.withMount(volume, at: mount, readOnly: true) { (userState(mount), try ntfs.snapshot(mount).files) }
        // Cut after Windows had moved, before Program Files and ProgramData did.
        try ntfs.withMount(volume, at: mount) {
            try FileManager.default.createDirectory(atPath: mount + "/Windows.old", withIntermediateDirectories: true)
            try FileManager.default.moveItem(atPath: mount + "/Windows", toPath: mount + "/Windows.old/Windows")
            try writeRecord(complete: false, mount)
        }
        let result = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "move", "--progress", "none"])
        #expect(result.output.contains("cut off before its clean-up ended: going on with it"), "\(result.output)")
        #expect(result.output.contains("moved Program Files, ProgramData into Windows.old"), "\(result.output)")
        let (usersAfter, after) = try ntfs.withMount(volume, at: mount, readOnly: true) { (userState(mount), try ntfs.snapshot(mount).files) }
        for file in RefreshTests.userFiles { #expect(usersAfter[file] == usersBefore[file], "\(file)") }
        #expect(!after.keys.contains { $0.hasPrefix("Windows.old.") }, "a second Windows.old was made")
        #expect(after["Windows.old/Windows/System32/kernel32.dll"]?.contents == oldBefore["Windows/System32/kernel32.dll"]?.contents)
        #expect(after["Windows.old/Program Files/App/app.exe"]?.contents == oldBefore["Program Files/App/app.exe"]?.contents)
        #expect(after["Windows.old/ProgramData/Vendor/settings.dat"] != nil)
        #expect(after[RefreshRecord.folder] == nil, "the record outlived the finished refresh")
        expectNewImageComplete(try wimlibApply(wim, scratch), after)
    }

    @Test func aRefreshCutDuringItsApplyLeavesTheNewSystemWhereItIs() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("old.img"), mount = scratch.sub("m")
        try makeOldVolume(volume, mount)
        let wim = try makeNewImage(scratch)
        let oldBefore = try ntfs.withMount(volume, at: mount, readOnly: true) { try ntfs.snapshot(mount).files }
        // Cut during the apply: the clean-up was done, the new Windows half there.
        try ntfs.withMount(volume, at: mount) {
            try FileManager.default.createDirectory(atPath: mount + "/Windows.old", withIntermediateDirectories: true)
            for folder in ["Windows", "Program Files", "ProgramData"] {
                try FileManager.default.moveItem(atPath: mount + "/" + folder, toPath: mount + "/Windows.old/" + folder)
            }
            try writeRecord(complete: true, mount)
            try write(testBytes(1000, seed: 99), to: mount + "/Windows/explorer.exe")
        }
        let result = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "move", "--progress", "none"])
        #expect(result.output.contains("done by an earlier run of this refresh"), "\(result.output)")
        let after = try ntfs.withMount(volume, at: mount, readOnly: true) { try ntfs.snapshot(mount).files }
        #expect(!after.keys.contains { $0.hasPrefix("Windows.old.") }, "the half-applied system was moved into a second Windows.old")
        #expect(after["Windows.old/Windows/System32/kernel32.dll"]?.contents == oldBefore["Windows/System32/kernel32.dll"]?.contents)
        #expect(after["Windows.old/Windows/explorer.exe"] == nil)
        #expect(after[RefreshRecord.folder] == nil)
        expectNewImageComplete(try wimlibApply(wim, scratch), after)
    }

    @Test func deleteRemovesTheListedFoldersAndKeepsUsers() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("old.img"), mount = scratch.sub("m")
        try makeOldVolume(volume, mount)
        let wim = try makeNewImage(scratch)
        let (usersBefore, linkedBefore) = try ntfs.withMount(volume, at: mount, readOnly: true) {
            (userState(mount), try ntfs.snapshot(mount).files[RefreshTests.linkedUserFile])
        }

        // Refused before anything is touched: Users in the list, a directory target.
        let refused = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "delete", "--cleanup-folder", "Windows",
                               "--cleanup-folder", "users", "--progress", "none"], allowFailure: true)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("never moved or deleted"), "\(refused.stderr)")
        let directory = scratch.sub("dir")
        let notVolume = try run([imprintBinary, "wim", "apply", wim, "1", directory, "--cleanup", "move"], allowFailure: true)
        #expect(notVolume.status != 0)
        #expect(notVolume.stderr.contains("--cleanup works on an NTFS volume"), "\(notVolume.stderr)")

        let result = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "delete", "--progress", "none"])
        #expect(result.output.contains("Clean-up: deleted Windows, Program Files, ProgramData"), "\(result.output)")
        let (usersAfter, after) = try ntfs.withMount(volume, at: mount, readOnly: true) {
            (userState(mount), try ntfs.snapshot(mount).files)
        }
        for file in RefreshTests.userFiles { #expect(usersAfter[file] == usersBefore[file], "\(file)") }
        #expect(after["bootmgr"]?.contents == Data("root file".utf8))
        // The hard-linked file lost its name under Windows only; the junction went, not what
        // it pointed at. (Removing a name sets the file's MFT change time, the 4th time.)
        let linked = RefreshTests.linkedUserFile
        #expect(after[linked]?.contents == Data(testBytes(5000, seed: 24)))
        #expect(after[linked]?.xattrs["system.ntfs_times"] == linkedBefore?.xattrs["system.ntfs_times"])
        #expect(after[linked]?.xattrs["system.ntfs_acl"] == linkedBefore?.xattrs["system.ntfs_acl"])
        #expect(after["Windows/UsersLink"] == nil && after["Windows/System32/linked.dat"] == nil)
        // kernel32.dll, hosts, win.ini, linked.dat, app.exe, settings.dat; Windows, System32,
        // drivers, etc, UsersLink, Program Files, App, ProgramData, Vendor.
        #expect(result.output.contains("deleted Windows, Program Files, ProgramData (6 files, 9 folders)"), "\(result.output)")
        // Only the image's files are left under the listed folders; nothing was moved.
        let expected = try wimlibApply(wim, scratch)
        for path in after.keys where path.hasPrefix("Windows") || path.hasPrefix("Program") {
            #expect(expected[path] != nil, "\(path) should have been deleted")
        }
        expectNewImageComplete(expected, after)
    }
}
