import Digests
import Foundation
import TestSupport
import Testing
@testable import Capture
@testable import WIM

/// The WIM layouts besides the plain one: integrity table (`--check`), solid resources
/// (`--solid`), pipable WIMs (`--pipable`), and split/join. Each WIM written must pass
/// wimlib-imagex verify and apply (by wimlib and by us) to the tree it was captured from.
@Suite(.serialized)
struct WIMLayoutTests {
    typealias W = WIMWriterTests

    /// A standard tree plus a duplicate of its large random file (longer than a batch of
    /// chunks, so a solid capture has to roll written chunks back).
    static func makeTree(_ scratch: ScratchDirectory) throws -> (path: String, comparable: [String: String]) {
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree, largeFileSize: 1 << 20)
        try FileManager.default.copyItem(atPath: tree + "/large-random.bin", toPath: tree + "/dup/large-random-copy.bin")
        try FileManager.default.copyItem(atPath: tree + "/large-text.txt", toPath: tree + "/large-text-copy.txt")
        return (tree, W.comparable(try TreeSnapshot(tree)))
    }

    /// wimlib verifies `wim` and applies image 1 to the tree; so do we.
    static func expectRoundTrip(_ wim: String, _ scratch: ScratchDirectory, source: [String: String], refs: [String] = [], label: String,
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let wimlibRefs = refs.map { "--ref=" + $0 }
        let verify = try run(["wimlib-imagex", "verify", wim] + wimlibRefs, sourceLocation: sourceLocation)
        #expect(verify.status == 0, "\(label): wimlib verify", sourceLocation: sourceLocation)
        let theirs = scratch.sub("theirs-\(label)"), ours = scratch.sub("ours-\(label)")
        try run(["wimlib-imagex", "apply", wim, "1", theirs] + wimlibRefs, sourceLocation: sourceLocation)
        let ourRefs = refs.flatMap { ["--ref", $0] }
        #expect(try run([imprintBinary, "wim", "verify", wim, "--progress", "none"] + ourRefs, sourceLocation: sourceLocation).output.contains("OK"),
                sourceLocation: sourceLocation)
        try run([imprintBinary, "wim", "apply", wim, "1", ours, "--progress", "none"] + ourRefs, sourceLocation: sourceLocation)
        #expect(W.differences(W.comparable(try TreeSnapshot(theirs)), source) == [], "\(label): wimlib's apply", sourceLocation: sourceLocation)
        #expect(W.differences(W.comparable(try TreeSnapshot(ours)), source) == [], "\(label): our apply", sourceLocation: sourceLocation)
    }

    static func header(_ path: String) throws -> WIMHeader {
        let handle = try WIMFileHandle(path: path)
        return try WIMHeader(try handle.read(count: WIMHeader.diskSize, at: 0, what: "header"), path: path)
    }

    @Test(arguments: ["none", "xpress"])
    func integrityTableIsWrittenAndCatchesDamage(_ compression: String) throws {
        let scratch = ScratchDirectory("check-\(compression)")
        let (tree, source) = try Self.makeTree(scratch)
        let wim = scratch.sub("checked.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "checked", "--compress", compression, "--check", "--boot", "--progress", "none"])
        #expect(try !Self.header(wim).integrityTable.isEmpty)
        try Self.expectRoundTrip(wim, scratch, source: source, label: "check")
        let ours = try run([imprintBinary, "wim", "verify", wim, "--check", "--progress", "none"])
        #expect(ours.output.contains("Integrity table: 1 chunks OK"), "\(ours.output)")
        let info = try run(["wimlib-imagex", "info", wim]).output
        #expect(W.infoValue(info, "Attributes")?.contains("Integrity info") == true, "\(info)")
        #expect(W.infoValue(info, "Boot Index") == "1", "\(info)")
        let theirs = try run(["wimlib-imagex", "verify", wim])
        #expect(!theirs.output.contains("No integrity"), "\(theirs.output)")

        // One byte changed inside the blobs: both verifiers name the integrity failure.
        let damaged = scratch.sub("damaged.wim")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: wim)))
        bytes[WIMHeader.diskSize + 1000] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        let oursDamaged = try run([imprintBinary, "wim", "verify", damaged, "--check", "--progress", "none"], allowFailure: true)
        #expect(oursDamaged.status != 0)
        #expect(oursDamaged.stderr.contains("integrity check failed"), "\(oursDamaged.stderr)")
        let theirsDamaged = try run(["wimlib-imagex", "verify", damaged], allowFailure: true)
        #expect(theirsDamaged.status != 0)
        #expect((theirsDamaged.stderr + theirsDamaged.output).lowercased().contains("integrity"), "\(theirsDamaged.stderr)")
    }

    @Test func integrityTableOfManyChunks() throws {
        // Three 10 MiB chunks: the table's count, chunk size and last short chunk.
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try write(testBytes(25 << 20, seed: 3), to: tree + "/big.bin")
        let wim = scratch.sub("big.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "big", "--compress", "none", "--check", "--progress", "none"])
        #expect(try run([imprintBinary, "wim", "verify", wim, "--check", "--progress", "none"]).output.contains("Integrity table: 3 chunks OK"))
        try run(["wimlib-imagex", "verify", wim])
        // The builder agrees with itself on a finished file.
        let header = try Self.header(wim)
        let rebuilt = try IntegrityTable.build(path: wim, end: header.blobTable.offset + header.blobTable.sizeInWIM)
        let handle = try WIMFileHandle(path: wim)
        #expect(try handle.read(count: rebuilt.count, at: header.integrityTable.offset, what: "table") == rebuilt)
    }

    @Test(arguments: ["xpress"])
    func solidResources(_ compression: String) throws {
        let scratch = ScratchDirectory("solid-\(compression)")
        let (tree, source) = try Self.makeTree(scratch)
        let wim = scratch.sub("solid.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "solid", "--solid", "--solid-compress", compression, "--threads", "2", "--progress", "none"])
        let header = try Self.header(wim)
        #expect(header.version == WIMHeader.versionSolid)
        let archive = try WIMArchive(path: wim)
        #expect(archive.resources.contains { $0.isSolid && $0.compression == (compression == "none" ? .none : .xpress) })
        #expect(archive.blobs.values.allSatisfy { archive.resources[$0.resource].isSolid })
        // Each duplicate stored once, counted by every user.
        let large = SHA1Hasher.digest([UInt8](try Data(contentsOf: URL(fileURLWithPath: tree + "/large-random.bin"))))
        #expect(archive.blobs[large]?.referenceCount == 2)
        let stored = archive.resources.filter(\.isSolid).reduce(0) { $0 + $1.uncompressedSize }
        let unique = archive.blobs.values.reduce(0) { $0 + $1.size }
        #expect(stored == unique, "the solid stream holds exactly the unique blobs")
        try Self.expectRoundTrip(wim, scratch, source: source, label: "solid")
        if compression == "xpress" {
            let size = W.size(wim), plain = scratch.sub("plain.wim")
            try run([imprintBinary, "wim", "capture", tree, plain, "plain", "--progress", "none"])
            print("solid xpress: \(size) bytes, non-solid xpress: \(W.size(plain)) bytes")
        }
    }

    /// Uncompressed solid resources: the format has a code for them and our reader takes them,
    /// but wimlib refuses them ("compression type unrecognized"), so the CLI refuses to write
    /// them; the writer still can, for our own use.
    @Test func uncompressedSolidResources() throws {
        let scratch = ScratchDirectory()
        let (tree, source) = try Self.makeTree(scratch)
        let refused = try run([imprintBinary, "wim", "capture", tree, scratch.sub("cli.wim"), "s", "--solid", "--solid-compress", "none",
                               "--progress", "none"], allowFailure: true)
        #expect(refused.status != 0 && refused.stderr.contains("none"), "\(refused.stderr)")
        let wim = scratch.sub("none.wim")
        let writer = try WIMWriter(destination: wim, compression: .xpress, threads: 2,
                                   layout: WIMLayoutOptions(solid: .init(compression: .none, chunkSize: 32768)))
        _ = try Capturer().capture(try DirectorySource(root: tree), to: writer, info: WIMWriter.ImageInfo(name: "none"))
        let archive = try WIMArchive(path: wim)
        #expect(archive.resources.contains { $0.isSolid && $0.compression == .none })
        let stored = archive.resources.filter(\.isSolid).reduce(0) { $0 + $1.sizeInWIM }
        #expect(stored < archive.blobs.values.reduce(0) { $0 + $1.size } + 70_000, "duplicates rolled back, not stored")
        #expect(try run([imprintBinary, "wim", "verify", wim, "--progress", "none"]).output.contains("OK"))
        let ours = scratch.sub("ours")
        try run([imprintBinary, "wim", "apply", wim, "1", ours, "--progress", "none"])
        #expect(W.differences(W.comparable(try TreeSnapshot(ours)), source) == [])
    }

    @Test func solidWithSmallResourcesAndSeveralChunkSizes() throws {
        // 64 KiB chunks; and an LZMS request is refused cleanly while no LZMS encoder exists.
        let scratch = ScratchDirectory()
        let (tree, source) = try Self.makeTree(scratch)
        let wim = scratch.sub("solid64.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "s", "--solid", "--solid-compress", "xpress", "--solid-chunk-size", "65536",
                 "--check", "--progress", "none"])
        #expect(try WIMArchive(path: wim).resources.first { $0.isSolid }?.chunkSize == 65536)
        try Self.expectRoundTrip(wim, scratch, source: source, label: "solid64")
        #expect(try run([imprintBinary, "wim", "verify", wim, "--check", "--progress", "none"]).output.contains("chunks OK"))
        if makeChunkCompressor(.lzms) == nil {
            let refused = try run([imprintBinary, "wim", "capture", tree, scratch.sub("lzms.wim"), "s", "--solid", "--progress", "none"], allowFailure: true)
            #expect(refused.status != 0 && refused.stderr.lowercased().contains("lzms"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: scratch.sub("lzms.wim")))
        }
    }

    @Test(arguments: ["none", "xpress"])
    func pipableWIMs(_ compression: String) throws {
        let scratch = ScratchDirectory("pipable-\(compression)")
        let (tree, source) = try Self.makeTree(scratch)
        let wim = scratch.sub("pipable.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "piped", "--compress", compression, "--pipable", "--check", "--progress", "none"])
        #expect(try Self.header(wim).isPipable)
        try Self.expectRoundTrip(wim, scratch, source: source, label: "pipable")
        // From a pipe: wimlib and we read it front to back.
        let fromPipe = scratch.sub("wimlib-from-pipe")
        let piped = try run(["sh", "-c", "cat \"$0\" | wimlib-imagex apply - 1 \"$1\"", wim, fromPipe])
        #expect(piped.status == 0)
        #expect(W.differences(W.comparable(try TreeSnapshot(fromPipe)), source) == [], "wimlib from a pipe")
        let oursFromPipe = scratch.sub("ours-from-pipe")
        try run([imprintBinary, "wim", "apply", "-", "1", oursFromPipe, "--progress", "none"], stdinFile: wim)
        #expect(W.differences(W.comparable(try TreeSnapshot(oursFromPipe)), source) == [], "ours from a pipe")
        #expect(try run([imprintBinary, "wim", "verify", wim, "--check", "--progress", "none"]).output.contains("chunks OK"))
        // Same shape as wimlib's own pipable WIM: every resource framed, the closing header last.
        let reference = scratch.sub("wimlib-pipable.wim")
        try run(["wimlib-imagex", "capture", tree, reference, "ref", "--pipable", "--compress=" + (compression == "none" ? "none" : "XPRESS")])
        print("pipable \(compression): imprint \(W.size(wim)) bytes, wimlib-imagex \(W.size(reference)) bytes")
    }

    @Test func splitAndJoinOurWIM() throws {
        let scratch = ScratchDirectory()
        let (tree, source) = try Self.makeTree(scratch)
        let wim = scratch.sub("whole.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "whole", "--progress", "none"])
        let first = scratch.sub("part.swm")
        let split = try run([imprintBinary, "wim", "split", wim, first, "--part-size", "1"])
        #expect(split.output.contains("Split"))
        let names = SplitWriter.partNames(first, count: Int(try Self.header(first).totalParts))
        #expect(names.count >= 3, "\(names)")
        let guid = try Self.header(wim).guid
        for (i, name) in names.enumerated() {
            let h = try Self.header(name)
            #expect(h.partNumber == UInt16(i + 1) && h.totalParts == UInt16(names.count) && h.guid == guid && h.flags.contains(.spanned))
        }
        try Self.expectRoundTrip(first, scratch, source: source, refs: Array(names.dropFirst()), label: "split")
        // wimlib joins our parts; we join ours and wimlib's.
        let theirJoin = scratch.sub("their-join.wim")
        try run(["wimlib-imagex", "join", theirJoin] + names)
        try run(["wimlib-imagex", "verify", theirJoin])
        let ourJoin = scratch.sub("our-join.wim")
        try run([imprintBinary, "wim", "join", ourJoin] + names.reversed() + ["--check"])
        try Self.expectRoundTrip(ourJoin, scratch, source: source, label: "join")
        #expect(try run([imprintBinary, "wim", "verify", ourJoin, "--check", "--progress", "none"]).output.contains("chunks OK"))
        #expect(W.size(ourJoin) <= W.size(wim) + 4096)
    }

    @Test func splitAndJoinWimlibWIMsOfSeveralImages() throws {
        let scratch = ScratchDirectory()
        let (tree, source) = try Self.makeTree(scratch)
        let second = scratch.sub("second")
        try write(testBytes(700_000, seed: 77), to: second + "/other.bin")
        try write(testBytes(90_000, seed: 78, compressible: true), to: second + "/text.txt")
        let secondSource = W.comparable(try TreeSnapshot(second))
        for (label, options) in [("xpress", ["--compress=XPRESS"]), ("solid", ["--solid"])] {
            let wim = scratch.sub("\(label).wim")
            try run(["wimlib-imagex", "capture", tree, wim, "one"] + options)
            try run(["wimlib-imagex", "append", second, wim, "two"] + (label == "solid" ? ["--solid"] : []))
            // Our split of wimlib's WIM: wimlib applies both images from the parts.
            let first = scratch.sub("\(label)-ours.swm")
            try run([imprintBinary, "wim", "split", wim, first, "--part-size", "0.5"])
            let names = SplitWriter.partNames(first, count: Int(try Self.header(first).totalParts))
            #expect(names.count >= 2, "\(label): \(names)")
            let refs = names.dropFirst().map { "--ref=" + $0 }
            try run(["wimlib-imagex", "verify", first] + refs)
            try Self.expectRoundTrip(first, scratch, source: source, refs: Array(names.dropFirst()), label: "\(label)-split")
            let two = scratch.sub("\(label)-two")
            try run(["wimlib-imagex", "apply", first, "2", two] + refs)
            #expect(W.differences(W.comparable(try TreeSnapshot(two)), secondSource) == [], "\(label): image 2 from our parts")
            // Our join of wimlib's split parts (wimlib splits no solid WIM: ours joined instead).
            guard label != "solid" else {
                let joined = scratch.sub("solid-joined.wim")
                try run([imprintBinary, "wim", "join", joined] + names)
                try Self.expectRoundTrip(joined, scratch, source: source, label: "solid-joined")
                continue
            }
            let theirFirst = scratch.sub("\(label)-theirs.swm")
            try run(["wimlib-imagex", "split", wim, theirFirst, "0.5"])
            let theirNames = SplitWriter.partNames(theirFirst, count: Int(try Self.header(theirFirst).totalParts))
            let joined = scratch.sub("\(label)-joined.wim")
            try run([imprintBinary, "wim", "join", joined] + theirNames)
            try Self.expectRoundTrip(joined, scratch, source: source, label: "\(label)-joined")
            let ourTwo = scratch.sub("\(label)-ours-two")
            try run([imprintBinary, "wim", "apply", joined, "2", ourTwo, "--progress", "none"])
            #expect(W.differences(W.comparable(try TreeSnapshot(ourTwo)), secondSource) == [], "\(label): image 2 joined")
            #expect(try Self.header(joined).imageCount == 2)
        }
    }

    @Test func splitRefusesToOverwrite() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try write(testBytes(300_000, seed: 1), to: tree + "/a.bin")
        try write(testBytes(300_000, seed: 2), to: tree + "/b.bin")
        let wim = scratch.sub("w.wim")
        try run([imprintBinary, "wim", "capture", tree, wim, "w", "--compress", "none", "--progress", "none"])
        try write([1, 2, 3], to: scratch.sub("p2.swm"))
        let refused = try run([imprintBinary, "wim", "split", wim, scratch.sub("p.swm"), "--part-size", "0.3"], allowFailure: true)
        #expect(refused.status != 0 && refused.stderr.contains("p2.swm"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("p.swm")))
        #expect(try W.leftovers(scratch.path) == [])
    }

    /// Several images through the writer's API: image 2 shares a blob with image 1 and is
    /// written after image 1's metadata (so a solid WIM gets a second solid resource).
    static func writeTwoImages(_ wim: String, layout: WIMLayoutOptions) throws -> [[String: [UInt8]]] {
        let writer = try WIMWriter(destination: wim, compression: .xpress, threads: 2, layout: layout)
        let contents: [[String: [UInt8]]] = [
            ["a.bin": testBytes(200_000, seed: 11), "b.txt": testBytes(150_000, seed: 12, compressible: true)],
            ["c.txt": testBytes(90_000, seed: 13, compressible: true), "a-again.bin": testBytes(200_000, seed: 11)],
        ]
        for (index, files) in contents.enumerated() {
            var root = ImageTree.Entry(name: "", attributes: .directory)
            var entries: [ImageTree.Entry] = [root]
            for (name, bytes) in files.sorted(by: { $0.key < $1.key }) {
                var entry = ImageTree.Entry(name: name, attributes: .archive)
                entry.dataHash = try writer.addBlob(bytes, source: name)
                entry.lastWriteTime = WIMWriter.filetime(seconds: 1_700_000_000, nanoseconds: 0)
                root.children.append(entries.count)
                entries.append(entry)
            }
            entries[0] = root
            try writer.addImage(ImageTree(entries: entries), info: WIMWriter.ImageInfo(name: "image \(index + 1)"))
        }
        try writer.finish()
        return contents
    }

    static func expectFiles(_ folder: String, _ files: [String: [UInt8]], _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, bytes) in files {
            let got = FileManager.default.contents(atPath: folder + "/" + name).map { [UInt8]($0) }
            #expect(got == bytes, "\(label): \(name)", sourceLocation: sourceLocation)
        }
        #expect(Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []) == Set(files.keys), "\(label)", sourceLocation: sourceLocation)
    }

    @Test(arguments: ["check", "solid", "pipable"])
    func severalImages(_ layoutName: String) throws {
        let scratch = ScratchDirectory("images-\(layoutName)")
        let wim = scratch.sub("two.wim")
        let layout = WIMLayoutOptions(integrity: layoutName == "check", solid: layoutName == "solid" ? .init(compression: .xpress) : nil,
                                      pipable: layoutName == "pipable")
        let contents = try Self.writeTwoImages(wim, layout: layout)
        try run(["wimlib-imagex", "verify", wim])
        #expect(try run([imprintBinary, "wim", "verify", wim, "--check", "--progress", "none"]).output.contains("2 image metadata resources"))
        if layoutName == "solid" {
            #expect(try WIMArchive(path: wim).resources.filter(\.isSolid).count == 2)
        }
        for image in 1...2 {
            let theirs = scratch.sub("theirs\(image)"), ours = scratch.sub("ours\(image)")
            try run(["wimlib-imagex", "apply", wim, "\(image)", theirs])
            try run([imprintBinary, "wim", "apply", wim, "\(image)", ours, "--progress", "none"])
            Self.expectFiles(theirs, contents[image - 1], "wimlib, image \(image)")
            Self.expectFiles(ours, contents[image - 1], "ours, image \(image)")
            if layoutName == "pipable" {
                let piped = scratch.sub("piped\(image)")
                try run(["sh", "-c", "cat \"$0\" | wimlib-imagex apply - \"$1\" \"$2\"", wim, "\(image)", piped])
                Self.expectFiles(piped, contents[image - 1], "wimlib from a pipe, image \(image)")
                let ourPiped = scratch.sub("our-piped\(image)")
                try run([imprintBinary, "wim", "apply", "-", "\(image)", ourPiped, "--progress", "none"], stdinFile: wim)
                Self.expectFiles(ourPiped, contents[image - 1], "ours from a pipe, image \(image)")
            }
        }
        // Split (not pipable: refused, named) and applied by wimlib from the parts.
        let first = scratch.sub("two.swm")
        let split = try run([imprintBinary, "wim", "split", wim, first, "--part-size", "0.2"], allowFailure: layoutName == "pipable")
        if layoutName == "pipable" {
            #expect(split.status != 0 && split.stderr.contains("pipable"), "\(split.stderr)")
            return
        }
        let names = SplitWriter.partNames(first, count: Int(try Self.header(first).totalParts))
        #expect(names.count >= 2)
        let refs = names.dropFirst().map { "--ref=" + $0 }
        try run(["wimlib-imagex", "verify", first] + refs)
        let fromParts = scratch.sub("from-parts")
        try run(["wimlib-imagex", "apply", first, "2", fromParts] + refs)
        Self.expectFiles(fromParts, contents[1], "wimlib from our parts, image 2")
    }

    @Test func pipableAndSolidAreRefusedTogether() throws {
        let scratch = ScratchDirectory()
        try FileManager.default.createDirectory(atPath: scratch.sub("tree"), withIntermediateDirectories: true)
        let refused = try run([imprintBinary, "wim", "capture", scratch.sub("tree"), scratch.sub("x.wim"), "x", "--pipable", "--solid",
                               "--solid-compress", "xpress"], allowFailure: true)
        #expect(refused.status != 0 && refused.stderr.contains("--pipable"), "\(refused.stderr)")
        #expect(try WIMWriterTests.leftovers(scratch.path) == [])
    }
}
