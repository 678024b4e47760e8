import Foundation
import TestSupport
import Testing
import Registry
@testable import Capture
@testable import WIM

/// `imprint wim capture` from an NTFS volume (an image file, read through libntfs-3g) keeps
/// what wimlib-imagex's NTFS capture keeps: the two WIMs' images agree entry by entry, and each
/// applied to an NTFS volume gives the same files, attributes, streams and links. Also the
/// capture configuration (exclusions, compression exclusions) and the XML WINDOWS element.
@Suite(.serialized)
struct NTFSCaptureTests {
    let ntfs = NTFSApplyTests()

    /// The fixture of the NTFS apply tests plus what only a real volume has: a compressed
    /// folder and file, a sparse file, a file the default exclusion list leaves out.
    func populate(_ m: String) throws {
        try ntfs.populate(m)
        let fm = FileManager.default
        try fm.createDirectory(atPath: m + "/Compressed", withIntermediateDirectories: true)
        // FILE_ATTRIBUTE_COMPRESSED on the folder: files made in it are compressed by ntfs-3g.
        try run(["setfattr", "-n", "system.ntfs_attrib_be", "-v", "0x00000810", m + "/Compressed"])
        try write(testBytes(300_000, seed: 11, compressible: true), to: m + "/Compressed/text.log")
        // Written at 4 MB into an empty file: the clusters before it are a hole.
        try run(["dd", "if=/dev/urandom", "of=" + m + "/sparse.bin", "bs=4096", "count=2", "seek=1000", "status=none"])
        try write(testBytes(10_000, seed: 12), to: m + "/pagefile.sys")
        try fm.createDirectory(atPath: m + "/System Volume Information", withIntermediateDirectories: true)
        try write(testBytes(100, seed: 13), to: m + "/System Volume Information/tracking.log")
    }

    /// Marks a file EFS-encrypted the way only Windows can (ntfs-3g refuses the flag): sets
    /// FILE_ATTRIBUTE_ENCRYPTED (0x4000) in its $STANDARD_INFORMATION, in its MFT record on the
    /// unmounted volume. Record number from ntfsinfo; $MFT's first cluster and the cluster and
    /// record sizes from the boot sector (0x30, 0x0B, 0x0D, 0x40); $MFT is contiguous on a new
    /// volume. In a record: the first attribute at the u16 at 0x14; each attribute's type (u32)
    /// and length (u32 at +4); a resident value at the u16 at +0x14; the flags at value + 0x20.
    func markEncrypted(_ volume: String, _ path: String) throws {
        let info = try run(["ntfsinfo", "-F", path, volume]).output
        let line = try #require(info.split(separator: "\n").first { $0.hasPrefix("Dumping Inode ") })
        let record = try #require(UInt64(line.split(separator: " ")[2]))
        let handle = try #require(FileHandle(forUpdatingAtPath: volume))
        defer { try? handle.close() }
        let boot = [UInt8](try #require(try handle.read(upToCount: 512)))
        func le(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 { (0..<n).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
        let cluster = le(boot, 0x0B, 2) * le(boot, 0x0D, 1)
        let perRecord = Int8(bitPattern: boot[0x40])
        let recordSize = perRecord < 0 ? UInt64(1) << UInt64(-Int(perRecord)) : UInt64(perRecord) * cluster
        let start = le(boot, 0x30, 8) * cluster + record * recordSize
        try handle.seek(toOffset: start)
        var mft = [UInt8](try #require(try handle.read(upToCount: Int(recordSize))))
        var attribute = Int(le(mft, 0x14, 2))
        while le(mft, attribute, 4) != 0x10 { attribute += Int(le(mft, attribute + 4, 4)) }
        let flags = attribute + Int(le(mft, attribute + 0x14, 2)) + 0x20
        mft[flags + 1] |= 0x40
        try handle.seek(toOffset: start + UInt64(flags + 1))
        try handle.write(contentsOf: [mft[flags + 1]])
    }

    /// One entry as both WIMs must agree on it.
    struct EntryState: Equatable, CustomStringConvertible {
        var attributes: UInt32
        var shortName: String
        var times: [UInt64]
        var securityDescriptor: [UInt8]?
        var data: String
        var streams: [String: String]
        var reparseTag: UInt32
        var reparse: String
        var objectID: [UInt8]?
        var description: String {
            "attributes \(String(attributes, radix: 16)) short \(shortName) times \(times) sd \(securityDescriptor?.count ?? -1) data \(data) streams \(streams) reparse \(String(reparseTag, radix: 16)) \(reparse) objectID \(objectID ?? [])"
        }
    }

    func entries(_ wim: String) throws -> (entries: [String: EntryState], links: Set<[String]>) {
        let meta = try WIMArchive(path: wim).metadata(image: 1)
        var out: [String: EntryState] = [:]
        var groups: [UInt64: [String]] = [:]
        for (index, e) in meta.entries.enumerated() {
            let path = meta.path(of: index)
            var streams: [String: String] = [:]
            var data = e.dataHash.description
            for s in e.namedStreams {
                if s.name.isEmpty { data = s.hash.description } else { streams[s.name] = s.hash.description }
            }
            let sd = e.securityID >= 0 && Int(e.securityID) < meta.securityDescriptors.count ? meta.securityDescriptors[Int(e.securityID)] : nil
            out[path] = EntryState(attributes: e.attributes.rawValue, shortName: e.shortName, times: [e.creationTime, e.lastWriteTime, e.lastAccessTime],
                                   securityDescriptor: sd, data: e.isReparsePoint ? data : e.dataHash.description, streams: streams,
                                   reparseTag: e.isReparsePoint ? e.reparseTag : 0, reparse: e.isReparsePoint ? e.reparseHash.description : "",
                                   objectID: e.objectID)
            if e.hardLinkGroup != 0 && !e.isDirectory { groups[e.hardLinkGroup, default: []].append(path) }
        }
        return (out, Set(groups.values.filter { $0.count > 1 }.map { $0.sorted() }))
    }

    @Test func ntfsCaptureMatchesWimlib() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("source.img")
        try ntfs.makeVolume(volume)
        try ntfs.withMount(volume, at: scratch.sub("mnt")) {
            try populate(scratch.sub("mnt"))
            try write(Array("not for us".utf8), to: scratch.sub("mnt") + "/Windows/secret.efs")
        }
        try markEncrypted(volume, "/Windows/secret.efs")

        let ours = scratch.sub("ours.wim"), theirs = scratch.sub("theirs.wim")
        let result = try run([imprintBinary, "wim", "capture", volume, ours, "Windows-like", "--progress", "none"])
        #expect(result.output.contains("Captured \(volume)"), "\(result.output)")
        try run(["wimlib-imagex", "capture", volume, theirs, "Windows-like"])
        try run(["wimlib-imagex", "verify", ours])

        let (expected, expectedLinks) = try entries(theirs)
        let (actual, actualLinks) = try entries(ours)
        // The fixture's features made it into wimlib's image, so the comparison means something.
        #expect(expected["/LongFileName.txt"]?.shortName == "LONGFI~1.TXT")
        #expect(expected["/Compressed/text.log"].map { $0.attributes & 0x800 != 0 } == true)
        #expect(expected["/sparse.bin"].map { $0.attributes & 0x200 != 0 } == true)
        #expect(expected["/Windows/file.txt"]?.objectID != nil)
        #expect(expected["/pagefile.sys"] == nil && expected["/System Volume Information"] == nil)
        #expect(expectedLinks.count == 1)
        #expect(Set(actual.keys) == Set(expected.keys), "only ours: \(Set(actual.keys).subtracting(expected.keys)), only wimlib's: \(Set(expected.keys).subtracting(actual.keys))")
        for (path, want) in expected.sorted(by: { $0.key < $1.key }) {
            guard let got = actual[path] else { continue }
            #expect(got == want, "\(path): ours \(got), wimlib's \(want)")
        }
        #expect(actualLinks == expectedLinks)
        #expect(result.output.contains("excluded by the capture configuration"))
        #expect(result.output.contains("EFS-encrypted file"), "\(result.output)")
        #expect(expected["/Windows/secret.efs"] == nil)

        // NTFS → WIM → NTFS: each WIM applied by wimlib in NTFS mode gives the same volume.
        let byWimlib = scratch.sub("A.img"), byImprint = scratch.sub("B.img")
        try ntfs.makeVolume(byWimlib)
        try ntfs.makeVolume(byImprint)
        try run(["wimlib-imagex", "apply", theirs, "1", byWimlib])
        try run(["wimlib-imagex", "apply", ours, "1", byImprint])
        let a = try ntfs.withMount(byWimlib, at: scratch.sub("a"), readOnly: true) { try ntfs.snapshot(scratch.sub("a")) }
        let b = try ntfs.withMount(byImprint, at: scratch.sub("b"), readOnly: true) { try ntfs.snapshot(scratch.sub("b")) }
        #expect(a.files["sparse.bin"]?.size == 4_104_192)
        ntfs.compare(a.files, b.files)
        #expect(b.linkGroups == a.linkGroups)
    }

    /// A partition inside a disk image: --offset names where it starts.
    @Test func aVolumeInsideADiskImageIsCapturedByOffset() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("part.img"), disk = scratch.sub("disk.img")
        try ntfs.makeVolume(volume)
        try ntfs.withMount(volume, at: scratch.sub("mnt")) { try write(Array("inside".utf8), to: scratch.sub("mnt") + "/hello.txt") }
        try run(["truncate", "-s", "1M", disk])
        try run(["sh", "-c", "cat \"$1\" >> \"$2\"", "sh", volume, disk])
        let wim = scratch.sub("part.wim")
        try run([imprintBinary, "wim", "capture", disk, wim, "part", "--offset", "1048576", "--progress", "none"])
        let meta = try WIMArchive(path: wim).metadata(image: 1)
        #expect(meta.lookup("/hello.txt") != nil)
        let plain = try run([imprintBinary, "wim", "capture", disk, scratch.sub("no.wim"), "x", "--offset", "4096", "--progress", "none"], allowFailure: true)
        #expect(plain.status != 0)
        #expect(plain.stderr.contains("no NTFS boot sector at byte 4096"), "\(plain.stderr)")
    }

    @Test func configurationExcludesAndStoresUncompressed() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try FileManager.default.createDirectory(atPath: tree + "/Windows/Temp/sub", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/Users/a", withIntermediateDirectories: true)
        try write(testBytes(100, seed: 1), to: tree + "/Windows/Temp/junk.tmp")
        try write(testBytes(100, seed: 2), to: tree + "/Windows/Temp/sub/more.tmp")
        try write(testBytes(100, seed: 3), to: tree + "/Windows/Temp/keep.txt")
        try write(testBytes(100, seed: 4), to: tree + "/Users/a/debug.LOG")
        try write(testBytes(100, seed: 5), to: tree + "/Users/a/notes.txt")
        try write(testBytes(200_000, seed: 6, compressible: true), to: tree + "/Users/a/video.mp4")
        try write(testBytes(200_000, seed: 7, compressible: true), to: tree + "/Users/a/text.txt")
        let config = scratch.sub("WimScript.ini")
        // UTF-16LE with a byte-order mark, as DISM writes it; comments, quotes, a drive letter.
        let text = "; DISM capture configuration\r\n[ExclusionList]\r\nC:\\Windows\\Temp\\*\r\n*.log\r\n\r\n[ExclusionException]\r\n\"\\windows\\temp\\KEEP.TXT\"\r\n[CompressionExclusionList]\r\n*.mp4\r\n"
        try Data([0xFF, 0xFE] + text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }).write(to: URL(fileURLWithPath: config))
        let wim = scratch.sub("out.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "x", "--config", config, "--progress", "none"])
        let archive = try WIMArchive(path: wim)
        let meta = try archive.metadata(image: 1)
        let paths = Set(meta.entries.indices.map { meta.path(of: $0) })
        #expect(paths == ["/", "/Windows", "/Windows/Temp", "/Windows/Temp/keep.txt", "/Users", "/Users/a", "/Users/a/notes.txt",
                          "/Users/a/video.mp4", "/Users/a/text.txt"])
        func resource(_ path: String) throws -> Resource {
            let entry = meta.entries[try #require(meta.lookup(path))]
            let blob = try #require(archive.blobs[entry.dataHash])
            return archive.resources[blob.resource]
        }
        #expect(try !resource("/Users/a/video.mp4").isCompressed)
        #expect(try resource("/Users/a/text.txt").isCompressed)
        try run(["wimlib-imagex", "verify", wim])

        // Mistakes are named with the file and line.
        let bad = scratch.sub("bad.ini")
        try Data("[ExclusionList]\n\\a\n[Exclusions]\n".utf8).write(to: URL(fileURLWithPath: bad))
        let refused = try run([imprintBinary, "wim", "capture", tree, scratch.sub("bad.wim"), "x", "--config", bad, "--progress", "none"], allowFailure: true)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("bad.ini, line 3: unknown section [Exclusions]"), "\(refused.stderr)")
        #expect(throws: CaptureConfigError.self) { try CaptureConfig(text: "\\pagefile.sys\n", file: "x.ini") }
    }

    @Test func globsMatchAsWindowsDoes() throws {
        let config = try CaptureConfig(text: "[ExclusionList]\n\\Windows\\CSC\n*.TMP\nlogs\\*.txt\n[ExclusionException]\n\\Windows\\CSC\\keep\\x\n", file: "t.ini")
        func decide(_ path: String, folder: Bool = false) -> Bool {
            if case .include = config.decide(path.split(separator: "/").map(String.init), isDirectory: folder, in: .init()) { return true }
            return false
        }
        let plain = try CaptureConfig(text: "[ExclusionList]\n\\Windows\\CSC\n", file: "p.ini")
        #expect(plain.decide(["windows", "csc"], isDirectory: true, in: .init()) == .exclude)
        #expect(decide("Windows/CSC2", folder: true))
        #expect(!decide("a/b/file.tmp"))
        #expect(decide("a/b/file.tmpx"))
        #expect(!decide("x/Logs/a.TXT"))
        #expect(decide("x/Logs/sub/a.txt"))
        // A folder excluded, but an exception names a path below it: the folder stays (only
        // what the exception names is kept inside).
        guard case let .include(scope) = config.decide(["Windows", "CSC"], isDirectory: true, in: .init()) else {
            Issue.record("the folder holding an exception is kept")
            return
        }
        #expect(config.decide(["Windows", "CSC", "other"], isDirectory: false, in: scope) == .exclude)
        guard case let .include(keepScope) = config.decide(["Windows", "CSC", "keep"], isDirectory: true, in: scope) else {
            Issue.record("keep is on the way to the exception")
            return
        }
        guard case .include = config.decide(["Windows", "CSC", "keep", "x"], isDirectory: false, in: keepScope) else {
            Issue.record("the exception itself is kept")
            return
        }
    }

    /// A Windows-like tree with SOFTWARE and SYSTEM hives and a kernel32.dll: our WINDOWS
    /// element says what wimlib's says for the same tree.
    @Test func windowsElementMatchesWimlib() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        let config = tree + "/Windows/System32/config"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        var pe = [UInt8](repeating: 0, count: 0x200)
        pe[0] = 0x4D; pe[1] = 0x5A; pe[0x3C] = 0x80
        pe[0x80] = 0x50; pe[0x81] = 0x45; pe[0x84] = 0x64; pe[0x85] = 0x86
        try write(pe, to: tree + "/Windows/System32/kernel32.dll")
        let software = RegistryKey(name: "ROOT", subkeys: [
            RegistryKey(name: "Microsoft", subkeys: [RegistryKey(name: "Windows NT", subkeys: [RegistryKey(name: "CurrentVersion", values: [
                .string("ProductName", "Windows 10 Pro"), .string("EditionID", "Professional"), .string("InstallationType", "Client"),
                .dword("CurrentMajorVersionNumber", 10), .dword("CurrentMinorVersionNumber", 0), .string("CurrentVersion", "6.3"),
                .string("CurrentBuild", "19045"), .string("CurrentBuildNumber", "19045"), .dword("UBR", 3803),
            ])])]),
        ])
        let system = RegistryKey(name: "ROOT", subkeys: [
            RegistryKey(name: "ControlSet001", subkeys: [RegistryKey(name: "Control", subkeys: [
                RegistryKey(name: "ProductOptions", values: [.string("ProductType", "WinNT"), .multiString("ProductSuite", ["Terminal Server"])]),
                RegistryKey(name: "Windows", values: [.dword("CSDBuildNumber", 1), .dword("CSDVersion", 0x200)]),
                RegistryKey(name: "MUI", subkeys: [RegistryKey(name: "UILanguages", subkeys: [RegistryKey(name: "en-US"), RegistryKey(name: "de-DE")])]),
                RegistryKey(name: "Nls", subkeys: [RegistryKey(name: "Language", values: [.string("InstallLanguage", "0409"), .string("Default", "0409")])]),
            ])]),
        ])
        try Data(HiveWriter.write(software, fileName: "SOFTWARE")).write(to: URL(fileURLWithPath: config + "/SOFTWARE"))
        try Data(HiveWriter.write(system, fileName: "SYSTEM")).write(to: URL(fileURLWithPath: config + "/SYSTEM"))

        let ours = scratch.sub("ours.wim"), theirs = scratch.sub("theirs.wim")
        try run([imprintBinary, "wim", "capture", tree, ours, "win", "--progress", "none"])
        try run(["wimlib-imagex", "capture", tree, theirs, "win"])
        func properties(_ wim: String) throws -> [String] {
            let image = try #require(try WIMArchive(path: wim).xml.images.first)
            return image.properties.filter { $0.0.hasPrefix("WINDOWS") || ["FLAGS", "DISPLAYNAME", "DISPLAYDESCRIPTION"].contains($0.0) }
                .map { "\($0.0)=\($0.1)" }.sorted()
        }
        let expected = try properties(theirs)
        #expect(expected.contains("WINDOWS/ARCH=9") && expected.contains("WINDOWS/LANGUAGES/DEFAULT=en-US"), "\(expected)")
        #expect(try properties(ours) == expected)

        // --flags wins over the EditionID.
        let flagged = scratch.sub("flagged.wim")
        try run([imprintBinary, "wim", "capture", tree, flagged, "win", "--flags", "Enterprise", "--progress", "none"])
        #expect(try WIMArchive(path: flagged).xml.images.first?.flags == "Enterprise")
        try run(["wimlib-imagex", "verify", ours])
    }
}
