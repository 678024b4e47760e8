import CImprintSystem
import Digests
import Foundation
import TestSupport
import Testing
@testable import Capture
@testable import WIM

/// `imprint wim capture`: the WIM it writes must pass wimlib's verify, show its name and
/// counts in wimlib's info, and apply (by wimlib and by us) to the tree it was captured from.
@Suite(.serialized)
struct WIMWriterTests {
    /// What must survive dir → WIM → dir: kinds, sizes, contents, symlink targets, hard-link
    /// groups and modification times (to the 100 ns a FILETIME holds).
    static func comparable(_ snapshot: TreeSnapshot) -> [String: String] {
        var out: [String: String] = [:]
        for (path, node) in snapshot.nodes {
            out[path] = "\(node.kind) \(node.size) \(node.sha1) \(node.linkTarget) mtime=\(node.kind == "file" ? node.mtime / 100 : 0)"
        }
        out["<links>"] = "\(snapshot.linkGroups)"
        return out
    }

    static func differences(_ a: [String: String], _ b: [String: String]) -> [String] {
        Array(Set(a.keys).union(b.keys).sorted().filter { a[$0] != b[$0] }
            .map { "\($0): \(a[$0] ?? "missing") vs \(b[$0] ?? "missing")" }.prefix(20))
    }

    static func leftovers(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp-") }
    }

    static func infoValue(_ info: String, _ key: String) -> String? {
        for line in info.split(separator: "\n") where line.hasPrefix(key + ":") {
            return line.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    static func size(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1 }

    @Test(arguments: ["none", "xpress", "lzx", "lzms"])
    func captureRoundTrips(_ compression: String) throws {
        let scratch = ScratchDirectory("writer-\(compression)")
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree, largeFileSize: 1 << 20)
        try write(testBytes(100_000, seed: 42, compressible: true), to: tree + "/dup/copy-of-nothing-else.txt")
        let source = Self.comparable(try TreeSnapshot(tree))
        let wim = scratch.sub("ours.wim")
        let name = "Test <image> & \"more\""
        let result = try run([imprintBinary, "wim", "capture", tree, wim, name, "--description", "Captured by Imprint's tests",
                              "--compress", compression, "--progress", "none"])
        #expect(result.output.contains("Captured"))
        #expect(try Self.leftovers(scratch.path) == [])

        // wimlib reads it: verify, and info shows the name, description and wimlib's own counts.
        let verify = try run(["wimlib-imagex", "verify", wim])
        #expect(verify.status == 0)
        let reference = scratch.sub("wimlib.wim")
        let wimlibName = ["none": "None", "xpress": "XPRESS", "lzx": "LZX", "lzms": "LZMS"][compression] ?? compression
        try run(["wimlib-imagex", "capture", tree, reference, "ref", "--compress=" + (compression == "none" ? "none" : wimlibName)])
        let info = try run(["wimlib-imagex", "info", wim]).output
        let referenceInfo = try run(["wimlib-imagex", "info", reference]).output
        #expect(Self.infoValue(info, "Name") == name)
        #expect(Self.infoValue(info, "Description") == "Captured by Imprint's tests")
        #expect(Self.infoValue(info, "Compression") == wimlibName)
        for key in ["Directory Count", "File Count", "Total Bytes", "Hard Link Bytes"] {
            #expect(Self.infoValue(info, key) != nil && Self.infoValue(info, key) == Self.infoValue(referenceInfo, key), "\(key)")
        }
        // Our own reader agrees too.
        #expect(try run([imprintBinary, "wim", "verify", wim, "--progress", "none"]).output.contains("OK"))

        // Applied by wimlib and by us, it is the tree it came from.
        try run(["wimlib-imagex", "apply", wim, "1", scratch.sub("theirs")])
        try run([imprintBinary, "wim", "apply", wim, "1", scratch.sub("ours"), "--progress", "none"])
        #expect(Self.differences(Self.comparable(try TreeSnapshot(scratch.sub("theirs"))), source) == [])
        #expect(Self.differences(Self.comparable(try TreeSnapshot(scratch.sub("ours"))), source) == [])

        // No larger than wimlib's WIM of the same tree (same layout; XPRESS at its ratio; LZMS
        // without wimlib's near-optimal parsing and delta matches, a few percent behind).
        let ours = Self.size(wim), theirs = Self.size(reference)
        print("capture \(compression): imprint \(ours) bytes, wimlib-imagex \(theirs) bytes, ratio \(String(format: "%.4f", Double(ours) / Double(theirs)))")
        let tolerance = compression == "lzms" ? 1.10 : 1.03
        #expect(ours > 0 && Double(ours) <= Double(theirs) * tolerance + 4096)
    }

    /// XPRESS is smaller than none on compressible data, and duplicates are stored once.
    @Test func xpressIsSmallerAndDuplicatesAreStoredOnce() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        let text = testBytes(300_000, seed: 5, compressible: true)
        try write(text, to: tree + "/a.txt")
        try write(text, to: tree + "/sub/b.txt")
        try write(text, to: tree + "/sub/deeper/c.txt")
        try run([imprintBinary, "wim", "capture", tree, scratch.sub("none.wim"), "n", "--compress", "none", "--progress", "none"])
        try run([imprintBinary, "wim", "capture", tree, scratch.sub("xpress.wim"), "x", "--threads", "2", "--progress", "none"])
        let none = Self.size(scratch.sub("none.wim")), xpress = Self.size(scratch.sub("xpress.wim"))
        #expect(none > 300_000 && none < 310_000, "three copies stored once: \(none)")
        #expect(xpress < none / 2, "xpress \(xpress) vs none \(none)")
        try run(["wimlib-imagex", "verify", scratch.sub("xpress.wim")])
        let archive = try WIMArchive(path: scratch.sub("xpress.wim"))
        let hash = SHA1Hasher.digest(text)
        #expect(archive.blobs[hash]?.referenceCount == 3)
    }

    /// Many small files: the writer queues them and compresses a batch of them at a time.
    /// 3,000 files of 1 byte to 40 KiB, text and random, every ninth a copy of an earlier file
    /// (in the same batch or one written already), and a few files too large for the queue
    /// (streamed between batches, except with LZMS's larger chunks). wimlib must verify and
    /// apply the WIM, we must apply it, and every content must be stored exactly once.
    @Test(arguments: ["xpress", "lzx", "lzms", "pipable"])
    func manySmallFilesAreBatchedAcrossBlobs(_ variant: String) throws {
        let scratch = ScratchDirectory("batches-\(variant)")
        let tree = scratch.sub("tree")
        var state: UInt64 = 0x5EED
        func random(_ bound: Int) -> Int {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Int(state % UInt64(bound))
        }
        var contents: [[UInt8]] = []
        for i in 0..<3000 {
            let bytes: [UInt8]
            if i > 0 && i % 9 == 0 {
                bytes = contents[random(contents.count)]
            } else if i % 1500 == 700 {
                bytes = testBytes(540_000 + random(20_000), seed: UInt64(i), compressible: true)
            } else {
                let size = 1 + (i % 40 == 0 ? random(40 * 1024) : random(1000))
                bytes = testBytes(size, seed: UInt64(i), compressible: i % 3 != 0)
            }
            contents.append(bytes)
            try write(bytes, to: tree + "/d\(i % 37)/f\(i)")
        }
        let source = Self.comparable(try TreeSnapshot(tree))
        let wim = scratch.sub("ours.wim")
        let options = variant == "pipable" ? ["--compress", "xpress", "--pipable"] : ["--compress", variant]
        try run([imprintBinary, "wim", "capture", tree, wim, "batches", "--threads", "2", "--progress", "none"] + options)

        #expect(try run(["wimlib-imagex", "verify", wim]).status == 0)
        try run(["wimlib-imagex", "apply", wim, "1", scratch.sub("theirs")])
        try run([imprintBinary, "wim", "apply", wim, "1", scratch.sub("ours"), "--progress", "none"])
        #expect(Self.differences(Self.comparable(try TreeSnapshot(scratch.sub("theirs"))), source) == [])
        #expect(Self.differences(Self.comparable(try TreeSnapshot(scratch.sub("ours"))), source) == [])
        let archive = try WIMArchive(path: wim)
        #expect(archive.blobs.count == Set(contents).count)
        #expect(archive.blobs.values.allSatisfy { $0.referenceCount >= 1 })
    }

    @Test func anExistingWIMIsNotOverwritten() throws {
        let scratch = ScratchDirectory()
        try write(Array("hello".utf8), to: scratch.sub("tree/file.txt"))
        try write(Array("precious".utf8), to: scratch.sub("existing.wim"))
        let result = try run([imprintBinary, "wim", "capture", scratch.sub("tree"), scratch.sub("existing.wim"), "x", "--progress", "none"],
                             allowFailure: true)
        #expect(result.status == 2)
        #expect(result.stderr.contains(scratch.sub("existing.wim")) && result.stderr.contains("exists already"))
        #expect(try String(contentsOfFile: scratch.sub("existing.wim"), encoding: .utf8) == "precious")
        #expect(try Self.leftovers(scratch.path) == [])
    }

    @Test func missingFoldersAreNamed() throws {
        let scratch = ScratchDirectory()
        try write(Array("hello".utf8), to: scratch.sub("tree/file.txt"))
        let noFolder = try run([imprintBinary, "wim", "capture", scratch.sub("tree"), scratch.sub("nowhere/x.wim"), "x"], allowFailure: true)
        #expect(noFolder.status == 4 && noFolder.stderr.contains(scratch.sub("nowhere")))
        let noSource = try run([imprintBinary, "wim", "capture", scratch.sub("missing"), scratch.sub("x.wim"), "x"], allowFailure: true)
        #expect(noSource.status == 4 && noSource.stderr.contains(scratch.sub("missing")))
        let notAFolder = try run([imprintBinary, "wim", "capture", scratch.sub("tree/file.txt"), scratch.sub("x.wim"), "x"], allowFailure: true)
        #expect(notAFolder.status == 4 && notAFolder.stderr.contains(scratch.sub("tree/file.txt") + ": cannot capture it: not a folder"))
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("x.wim")))
        #expect(try Self.leftovers(scratch.path) == [])
    }

    /// A source that fails half-way (a file shorter than it said): the error names the file,
    /// and neither the WIM nor its temporary file is left.
    final class ShrinkingSource: CaptureSource {
        var summary = CaptureSummary()
        func scan(progress: (Int) -> Void) throws -> [CaptureItem] {
            var root = CaptureItem(path: "", name: "", attributes: .directory)
            root.children = [1]
            var file = CaptureItem(path: "shrinks.bin", name: "shrinks.bin", attributes: .normal)
            file.dataSize = 100_000
            return [root, file]
        }
        func readData(of item: CaptureItem, stream: String?, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
            try testBytes(60_000, seed: 1).withUnsafeBytes { try consume($0) }
        }
    }

    @Test func aFailedCaptureLeavesNothing() throws {
        let scratch = ScratchDirectory()
        let wim = scratch.sub("failed.wim")
        let writer = try WIMWriter(destination: wim, compression: .xpress, threads: 2)
        #expect(FileManager.default.fileExists(atPath: writer.temporaryPath))
        #expect {
            try Capturer().capture(ShrinkingSource(), to: writer, info: .init(name: "x"))
        } throws: { error in
            "\(error)".contains("shrinks.bin") && "\(error)".contains("changed while it was captured")
        }
        #expect(!FileManager.default.fileExists(atPath: wim))
        #expect(try Self.leftovers(scratch.path) == [])
    }

    /// A directory whose file `b.bin` fails with EIO part-way through its data.
    final class UnreadableFileSource: CaptureSource {
        let inner: DirectorySource
        init(_ root: String) throws { inner = try DirectorySource(root: root) }
        var summary: CaptureSummary { inner.summary }
        func scan(progress: (Int) -> Void) throws -> [CaptureItem] { try inner.scan(progress: progress) }
        func readData(of item: CaptureItem, stream: String?, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
            guard item.name == "b.bin" || item.name == "b-link.bin" else { return try inner.readData(of: item, stream: stream, into: consume) }
            try testBytes(70_000, seed: 8).withUnsafeBytes { try consume($0) }
            throw WIMWriteError.io(path: item.path, operation: "read", errno: EIO)
        }
    }

    /// An unreadable file stops the capture with its name; with continueOnError it is left
    /// out (with its other names), listed, and what was written of it is gone: wimlib verifies
    /// the WIM and its image is the tree without it.
    @Test(arguments: ["xpress", "solid"])
    func anUnreadableFileIsNamedOrLeftOut(_ layout: String) throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try write(testBytes(100_000, seed: 5, compressible: true), to: tree + "/a.txt")
        try write(testBytes(300_000, seed: 6), to: tree + "/b.bin")
        try FileManager.default.linkItem(atPath: tree + "/b.bin", toPath: tree + "/b-link.bin")
        try write(testBytes(90_000, seed: 7, compressible: true), to: tree + "/sub/c.txt")
        let options = layout == "solid" ? WIMLayoutOptions(solid: .init(compression: .xpress)) : WIMLayoutOptions()
        let failing = scratch.sub("failing.wim")
        #expect {
            try Capturer().capture(UnreadableFileSource(tree), to: WIMWriter(destination: failing, compression: .xpress, threads: 2, layout: options), info: .init(name: "x"))
        } throws: { "\($0)".contains("b") && "\($0)".contains("read") }
        #expect(!FileManager.default.fileExists(atPath: failing))
        #expect(try Self.leftovers(scratch.path) == [])

        let wim = scratch.sub("skipped.wim")
        var capturer = Capturer()
        capturer.continueOnError = true
        let summary = try capturer.capture(UnreadableFileSource(tree), to: WIMWriter(destination: wim, compression: .xpress, threads: 2, layout: options), info: .init(name: "x"))
        let listed = summary.notKept.values.flatMap { $0 }
        #expect(listed.count == 2 && listed.allSatisfy { $0.contains("b.bin") || $0.contains("b-link.bin") }, "\(summary.notKept)")
        try run(["wimlib-imagex", "verify", wim])
        try FileManager.default.removeItem(atPath: tree + "/b.bin")
        try FileManager.default.removeItem(atPath: tree + "/b-link.bin")
        let applied = scratch.sub("applied")
        try run(["wimlib-imagex", "apply", wim, "1", applied])
        #expect(try Self.differences(Self.comparable(TreeSnapshot(applied)), Self.comparable(TreeSnapshot(tree))) == [])
    }

    /// A WIM written into the folder being captured leaves itself out; an empty folder is an
    /// image with only its root.
    @Test func theWIMInsideTheTreeIsLeftOut() throws {
        let scratch = ScratchDirectory()
        try write(testBytes(200_000, seed: 4, compressible: true), to: scratch.sub("tree/a.txt"))
        let result = try run([imprintBinary, "wim", "capture", scratch.sub("tree"), scratch.sub("tree/self.wim"), "self", "--progress", "none"])
        #expect(result.status == 0)
        let meta = try WIMArchive(path: scratch.sub("tree/self.wim")).metadata(image: 1)
        #expect(meta.entries.map(\.name) == ["", "a.txt"])
        #expect(try Self.leftovers(scratch.sub("tree")) == [])
        try FileManager.default.createDirectory(atPath: scratch.sub("empty"), withIntermediateDirectories: true)
        try run([imprintBinary, "wim", "capture", scratch.sub("empty"), scratch.sub("empty.wim"), "empty", "--progress", "none"])
        try run(["wimlib-imagex", "verify", scratch.sub("empty.wim")])
        #expect(try WIMArchive(path: scratch.sub("empty.wim")).metadata(image: 1).entries.count == 1)
    }

    /// A stop request (a signal) half-way through a file's data: nothing is left.
    @Test func aStoppedCaptureLeavesNothing() throws {
        let scratch = ScratchDirectory()
        try write(testBytes(3 << 20, seed: 3), to: scratch.sub("tree/big.bin"))
        let wim = scratch.sub("stopped.wim")
        let writer = try WIMWriter(destination: wim, compression: .xpress, threads: 2)
        var capturer = Capturer()
        var asked = 0
        capturer.stopRequested = {
            asked += 1
            return asked > 2 ? SIGTERM : 0
        }
        #expect(throws: CaptureInterrupted.self) {
            try capturer.capture(DirectorySource(root: scratch.sub("tree")), to: writer, info: .init(name: "x"))
        }
        #expect(!FileManager.default.fileExists(atPath: wim))
        #expect(try Self.leftovers(scratch.path) == [])
    }

    /// A capture killed (SIGKILL, as a power cut) at any moment never leaves a file under the
    /// WIM's name: only the temporary file beside it, whose zero header no reader takes for a WIM.
    /// Killed after the rename (while it exits), the WIM is there and whole.
    @Test func aKilledCaptureLeavesNoWIM() throws {
        let scratch = ScratchDirectory()
        // Text, so that every chunk is parsed and compressed (random bytes are left raw at once
        // and the capture would be over before the first kill).
        let megabyte = LZXTestData.make(.text, count: 1 << 20, seed: 90)
        for n in 0..<3 { try write(Array([[UInt8]](repeating: megabyte, count: 8).joined()) + [UInt8(n)], to: scratch.sub("tree/part\(n).bin")) }
        for delay in [0.05, 0.2, 0.5] {
            let wim = scratch.sub("killed-\(delay).wim")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: imprintBinary)
            process.arguments = ["wim", "capture", scratch.sub("tree"), wim, "Killed", "--compress", "lzx", "--threads", "1", "--progress", "none"]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            if process.terminationReason == .uncaughtSignal && FileManager.default.fileExists(atPath: wim) {
                print("capture killed after \(delay) s, once its WIM was renamed into place")
                try run(["wimlib-imagex", "verify", wim])
            } else if process.terminationReason == .uncaughtSignal {
                for leftover in try Self.leftovers(scratch.path) {
                    let info = try run([imprintBinary, "wim", "info", scratch.sub(leftover)], allowFailure: true)
                    #expect(info.status != 0, "\(leftover) read as a WIM")
                    try FileManager.default.removeItem(atPath: scratch.sub(leftover))
                }
            } else {
                print("capture finished within \(delay) s")
                try run(["wimlib-imagex", "verify", wim])
            }
        }
    }

    /// Windows metadata an apply kept in user.wim.* xattrs goes back into the image.
    @Test func windowsMetadataInXattrsIsCaptured() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try write(Array("hidden".utf8), to: tree + "/Hidden File.txt")
        let path = tree + "/Hidden File.txt"
        func set(_ name: String, _ value: [UInt8]) -> Int32 { value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, $0.count, 0) } }
        guard set("user.wim.dos_name", Array("HIDDEN~1.TXT".utf8)) == 0 else { return }  // no user xattrs here
        #expect(set("user.wim.attributes", Array("22".utf8)) == 0)
        let descriptor: [UInt8] = [1, 0, 4, 0x80] + [UInt8](repeating: 0, count: 16)
        #expect(set("user.wim.security_descriptor", descriptor) == 0)
        #expect(set("user.wim.stream.Zone.Identifier", Array("[ZoneTransfer]".utf8)) == 0)
        let wim = scratch.sub("meta.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "meta", "--progress", "none"])
        let archive = try WIMArchive(path: wim)
        let meta = try archive.metadata(image: 1)
        let index = try #require(meta.lookup("/Hidden File.txt"))
        let entry = meta.entries[index]
        #expect(entry.shortName == "HIDDEN~1.TXT")
        #expect(entry.attributes == [.hidden, .archive])
        #expect(entry.securityID >= 0 && meta.securityDescriptors[Int(entry.securityID)] == descriptor)
        #expect(entry.namedStreams.map(\.name) == ["Zone.Identifier"])
        try run(["wimlib-imagex", "verify", wim])
        // And back out through our apply, the xattrs are what they were.
        try run([imprintBinary, "wim", "apply", wim, "1", scratch.sub("out"), "--progress", "none"])
        let out = scratch.sub("out/Hidden File.txt")
        #expect(xattr(out, "user.wim.dos_name") == Array("HIDDEN~1.TXT".utf8))
        #expect(xattr(out, "user.wim.attributes") == Array("22".utf8))
        #expect(xattr(out, "user.wim.security_descriptor") == descriptor)
        #expect(xattr(out, "user.wim.stream.Zone.Identifier") == Array("[ZoneTransfer]".utf8))
    }
}
