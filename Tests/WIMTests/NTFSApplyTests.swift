import Foundation
import TestSupport
import Testing
import CImprintSystem
@testable import Apply
@testable import WIM

/// `imprint wim apply` to an NTFS volume (an image file here) writes through libntfs-3g what
/// wimlib's NTFS mode writes: the same tree, contents, named streams, hard links, DOS names,
/// security descriptors, attributes, reparse points, object IDs and times, read back through
/// ntfs-3g from two volumes applied side by side.
@Suite(.serialized)
struct NTFSApplyTests {
    /// The system.ntfs_* extended attributes ntfs-3g shows for each file.
    static let ntfsXattrs = ["system.ntfs_acl", "system.ntfs_attrib_be", "system.ntfs_dos_name",
                             "system.ntfs_reparse_data", "system.ntfs_times", "system.ntfs_object_id"]
    /// Named streams the fixture creates (with streams_interface=windows they are not listed,
    /// only opened by name).
    static let streamNames = ["Zone.Identifier", "empty", "big"]

    struct FileState: Equatable {
        var type: mode_t
        var size: Int64
        var contents: Data?
        var streams: [String: Data]
        var xattrs: [String: [UInt8]]
    }

    func makeVolume(_ path: String) throws {
        try run(["truncate", "-s", "64M", path])
        try run(["mkfs.ntfs", "-F", "-Q", path])
    }

    /// Mounts `volume` with ntfs-3g for `body`, unmounting afterwards whatever happens.
    func withMount<R>(_ volume: String, at mount: String, readOnly: Bool = false, _ body: () throws -> R) throws -> R {
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let options = (readOnly ? "ro," : "") + "streams_interface=windows"
        try run(["ntfs-3g", "-o", options, volume, mount])
        defer { _ = try? run(["umount", mount], allowFailure: true) }
        return try body()
    }

    func hex(_ bytes: [UInt8]) -> String { "0x" + bytes.map { String(format: "%02x", $0) }.joined() }

    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(v >> ($0 * 8) & 0xff) } }
    func utf16le(_ s: String) -> [UInt8] { s.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] } }

    /// A directory junction (mount point) to an absolute Windows path.
    func junctionData(_ target: String) -> [UInt8] {
        let substitute = utf16le("\\??\\" + target), print = utf16le(target)
        var body = le16(0) + le16(substitute.count) + le16(substitute.count + 2) + le16(print.count)
        body += substitute + [0, 0] + print + [0, 0]
        return le32(0xA000_0003) + le16(body.count) + le16(0) + body
    }

    /// A relative symbolic link.
    func symlinkData(_ target: String) -> [UInt8] {
        let name = utf16le(target)
        var body = le16(0) + le16(name.count) + le16(name.count) + le16(name.count) + le32(1)
        body += name + name
        return le32(0xA000_000C) + le16(body.count) + le16(0) + body
    }

    /// Owner Administrators, group SYSTEM, a DACL granting Everyone full access: unlike any
    /// descriptor ntfs-3g gives a new file.
    var customSecurityDescriptor: [UInt8] {
        let owner: [UInt8] = [1, 2, 0, 0, 0, 0, 0, 5] + le32(32) + le32(544)
        let group: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 5] + le32(18)
        let everyone: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 1] + le32(0)
        let ace: [UInt8] = [0, 0] + le16(8 + everyone.count) + le32(0x1F01FF) + everyone
        let dacl: [UInt8] = [2, 0] + le16(8 + ace.count) + le16(1) + le16(0) + ace
        let header: [UInt8] = [1, 0] + le16(0x8004) + le32(20) + le32(UInt32(20 + owner.count)) + le32(0)
            + le32(UInt32(20 + owner.count + group.count))
        return header + owner + group + dacl
    }

    /// Windows-like content on a freshly formatted volume mounted at `m`.
    func populate(_ m: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: m + "/Program Files/App/bin", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: m + "/Windows/System32", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: m + "/Junction", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: m + "/Empty Dir", withIntermediateDirectories: true)
        try write([], to: m + "/empty.txt")
        try write([0x41], to: m + "/one-byte")
        try write(testBytes(700, seed: 1), to: m + "/Windows/resident.bin")
        try write(testBytes(5000, seed: 2, compressible: true), to: m + "/Windows/System32/five-k.txt")
        try write(testBytes(70_000, seed: 3), to: m + "/Windows/System32/seventy-k.bin")
        try write(testBytes(2 << 20, seed: 4), to: m + "/Program Files/App/bin/large.bin")
        // The same contents twice, not linked: one blob, two files.
        let shared = testBytes(40_000, seed: 5, compressible: true)
        try write(shared, to: m + "/Windows/dup-one.txt")
        try write(shared, to: m + "/Program Files/dup-two.txt")
        try write(Array("main data".utf8), to: m + "/Windows/file.txt")
        try write(Array("[ZoneTransfer]\r\nZoneId=3".utf8), to: m + "/Windows/file.txt:Zone.Identifier")
        try write([], to: m + "/Windows/file.txt:empty")
        try write(testBytes(20_000, seed: 6), to: m + "/Program Files/App/bin/large.bin:big")
        try fm.linkItem(atPath: m + "/Windows/System32/seventy-k.bin", toPath: m + "/Windows/hard-link.bin")
        try fm.linkItem(atPath: m + "/Windows/System32/seventy-k.bin", toPath: m + "/Program Files/App/hard-link-2.bin")
        try write(Array("hello".utf8), to: m + "/LongFileName.txt")
        try run(["setfattr", "-n", "system.ntfs_dos_name", "-v", "LONGFI~1.TXT", m + "/LongFileName.txt"])
        try run(["setfattr", "-n", "system.ntfs_dos_name", "-v", "PROGRA~1", m + "/Program Files"])
        try run(["setfattr", "-n", "system.ntfs_attrib_be", "-v", "0x00000023", m + "/LongFileName.txt"])
        try run(["setfattr", "-n", "system.ntfs_attrib_be", "-v", "0x00000016", m + "/Windows/System32"])
        try write(Array("secret".utf8), to: m + "/Secured.txt")
        try run(["setfattr", "-n", "system.ntfs_acl", "-v", hex(customSecurityDescriptor), m + "/Secured.txt"])
        try run(["setfattr", "-n", "system.ntfs_object_id", "-v", hex(testBytes(16, seed: 7)), m + "/Windows/file.txt"])
        try run(["setfattr", "-n", "system.ntfs_reparse_data", "-v", hex(junctionData("C:\\Windows")), m + "/Junction"])
        try write([], to: m + "/Windows/link-to-file")
        try run(["setfattr", "-n", "system.ntfs_reparse_data", "-v", hex(symlinkData("file.txt")), m + "/Windows/link-to-file"])
    }

    /// Every path under `root` with what ntfs-3g shows of it, and the hard-link groups.
    func snapshot(_ root: String) throws -> (files: [String: FileState], linkGroups: Set<[String]>) {
        var files: [String: FileState] = [:]
        var byInode: [UInt64: [String]] = [:]
        var pending = [""]
        while let rel = pending.popLast() {
            let full = rel.isEmpty ? root : root + "/" + rel
            var info = stat()
            guard lstat(full, &info) == 0 else { Issue.record("lstat \(full) failed"); continue }
            let type = info.st_mode & S_IFMT
            var state = FileState(type: type, size: type == S_IFREG ? Int64(info.st_size) : 0, contents: nil, streams: [:], xattrs: [:])
            for name in NTFSApplyTests.ntfsXattrs {
                guard var value = xattr(full, name) else { continue }
                // ntfs_times holds creation, last write, last access and the MFT record's
                // change time; the last one is when the record was last written (during the
                // apply), set by libntfs-3g and by neither tool: it always differs.
                if name == "system.ntfs_times" { value = Array(value.prefix(24)) }
                state.xattrs[name] = value
            }
            if type == S_IFREG {
                state.contents = FileManager.default.contents(atPath: full)
                for stream in NTFSApplyTests.streamNames {
                    if let data = FileManager.default.contents(atPath: full + ":" + stream) { state.streams[stream] = data }
                }
                byInode[UInt64(info.st_ino), default: []].append(rel)
            }
            files[rel.isEmpty ? "/" : rel] = state
            if type == S_IFDIR {
                for child in try FileManager.default.contentsOfDirectory(atPath: full) {
                    pending.append(rel.isEmpty ? child : rel + "/" + child)
                }
            }
        }
        // Inode numbers differ (wimlib creates every directory before any file); which names
        // share an inode must not.
        let groups = Set(byInode.values.filter { $0.count > 1 }.map { $0.sorted() })
        return (files, groups)
    }

    func compare(_ wimlib: [String: FileState], _ imprint: [String: FileState], ignoring extra: Set<String> = []) {
        #expect(Set(wimlib.keys) == Set(imprint.keys).subtracting(extra))
        for (path, expected) in wimlib.sorted(by: { $0.key < $1.key }) {
            guard let actual = imprint[path] else { continue }
            #expect(actual.type == expected.type, "type of \(path)")
            #expect(actual.size == expected.size, "size of \(path)")
            #expect(actual.contents == expected.contents, "contents of \(path)")
            #expect(actual.streams == expected.streams, "named streams of \(path)")
            for name in Set(expected.xattrs.keys).union(actual.xattrs.keys).sorted() {
                #expect(actual.xattrs[name] == expected.xattrs[name], "\(name) of \(path)")
            }
        }
    }

    @Test func applyToNTFSVolumeMatchesWimlib() throws {
        let scratch = ScratchDirectory()
        let source = scratch.sub("source.img"), mount = scratch.sub("mnt")
        try makeVolume(source)
        try withMount(source, at: mount) { try populate(mount) }
        let wim = scratch.sub("out.wim")
        try run(["wimlib-imagex", "capture", source, wim, "Windows-like"])

        let byWimlib = scratch.sub("A.img"), byImprint = scratch.sub("B.img")
        try makeVolume(byWimlib)
        try makeVolume(byImprint)
        try run(["wimlib-imagex", "apply", wim, "1", byWimlib])
        let result = try run([imprintBinary, "wim", "apply", wim, "1", byImprint, "--progress", "none"])
        #expect(result.output.contains("Applied to \(byImprint)"))

        let expected = try withMount(byWimlib, at: scratch.sub("a"), readOnly: true) { try snapshot(scratch.sub("a")) }
        let actual = try withMount(byImprint, at: scratch.sub("b"), readOnly: true) { try snapshot(scratch.sub("b")) }
        // The fixture's features made it through wimlib, so the comparison below means something.
        #expect(expected.files["LongFileName.txt"]?.xattrs["system.ntfs_dos_name"] == Array("LONGFI~1.TXT".utf8))
        #expect(expected.files["Junction"]?.xattrs["system.ntfs_reparse_data"] == junctionData("C:\\Windows"))
        #expect(expected.files["Windows/link-to-file"]?.xattrs["system.ntfs_reparse_data"] == symlinkData("file.txt"))
        #expect(expected.files["Secured.txt"]?.xattrs["system.ntfs_acl"] == customSecurityDescriptor)
        #expect(expected.files["Windows/file.txt"]?.xattrs["system.ntfs_object_id"] != nil)
        #expect(expected.files["Windows/file.txt"]?.streams["Zone.Identifier"] == Data("[ZoneTransfer]\r\nZoneId=3".utf8))
        #expect(expected.linkGroups == [["Program Files/App/hard-link-2.bin", "Windows/System32/seventy-k.bin", "Windows/hard-link.bin"]])
        compare(expected.files, actual.files)
        #expect(actual.linkGroups == expected.linkGroups)

        // Applied again onto a volume in use: files the image has are replaced, others stay.
        try withMount(byImprint, at: scratch.sub("b")) {
            try write(Array("kept".utf8), to: scratch.sub("b") + "/Windows/not-in-image.txt")
            try write(testBytes(9000, seed: 42), to: scratch.sub("b") + "/Windows/file.txt")
            try write(Array("changed".utf8), to: scratch.sub("b") + "/LongFileName.txt")
        }
        try run([imprintBinary, "wim", "apply", wim, "1", byImprint, "--progress", "none"])
        let again = try withMount(byImprint, at: scratch.sub("b"), readOnly: true) { try snapshot(scratch.sub("b")) }
        #expect(again.files["Windows/not-in-image.txt"]?.contents == Data("kept".utf8))
        // The directory that gained a file shows it; nothing else may differ from wimlib's apply.
        var expectedAgain = expected.files
        expectedAgain["Windows"] = again.files["Windows"]
        compare(expectedAgain, again.files, ignoring: ["Windows/not-in-image.txt"])
        #expect(again.linkGroups == expected.linkGroups)

        // A non-empty directory where the image has a file: an error naming it, and the volume
        // is still unmounted cleanly (ntfs-3g mounts it again, the directory intact).
        try withMount(byImprint, at: scratch.sub("b")) {
            try FileManager.default.removeItem(atPath: scratch.sub("b") + "/one-byte")
            try write(Array("mine".utf8), to: scratch.sub("b") + "/one-byte/inside.txt")
        }
        let refused = try run([imprintBinary, "wim", "apply", wim, "1", byImprint, "--progress", "none"], allowFailure: true)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("/one-byte is a directory that is not empty"), "\(refused.stderr)")
        let kept = try withMount(byImprint, at: scratch.sub("b"), readOnly: true) {
            FileManager.default.contents(atPath: scratch.sub("b") + "/one-byte/inside.txt")
        }
        #expect(kept == Data("mine".utf8))
    }

    @Test func aFileWithoutNTFSIsNotTakenForAVolume() throws {
        let scratch = ScratchDirectory()
        let plain = scratch.sub("plain.img")
        try write([UInt8](repeating: 0, count: 4096), to: plain)
        #expect(!NTFSTarget.isVolume(plain))
        #expect(throws: NTFSApplyError.self) { try NTFSTarget(device: plain) }
        try makeVolume(scratch.sub("ntfs.img"))
        #expect(NTFSTarget.isVolume(scratch.sub("ntfs.img")))
    }
}
