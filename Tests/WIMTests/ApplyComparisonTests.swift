import Foundation
import TestSupport
import Testing
@testable import Apply
@testable import WIM

/// `imprint wim apply` must produce exactly what `wimlib-imagex apply` produces from the same WIM.
@Suite(.serialized)
struct ApplyComparisonTests {
    static let variants: [(String, [String])] = [
        ("none", ["--compress=none"]),
        ("xpress", ["--compress=XPRESS"]),
        ("xpress-4k", ["--compress=XPRESS", "--chunk-size=4096"]),
        ("lzx", ["--compress=LZX"]),
        ("lzx-2m", ["--compress=LZX", "--chunk-size=2097152"]),
        ("lzms", ["--compress=LZMS"]),
        ("lzms-solid", ["--solid"]),
        ("lzx-solid", ["--solid", "--solid-compress=LZX", "--solid-chunk-size=1048576"]),
        ("pipable", ["--pipable", "--compress=LZX"]),
        ("integrity", ["--compress=XPRESS", "--check"]),
    ]

    @Test(arguments: variants.map(\.0))
    func applyMatchesWimlib(_ variant: String) throws {
        let options = Self.variants.first { $0.0 == variant }!.1
        let scratch = ScratchDirectory(variant)
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree)
        let wim = scratch.sub("image.wim")
        try capture(tree, wim, options)

        let ours = scratch.sub("ours"), theirs = scratch.sub("theirs")
        try run([imprintBinary, "wim", "apply", wim, "1", ours, "--progress", "none"])
        try run(["wimlib-imagex", "apply", wim, "1", theirs])
        let a = try TreeSnapshot(ours), b = try TreeSnapshot(theirs)
        #expect(a.nodes.count > 60)
        #expect(a.differences(from: b) == [])
        #expect(!a.linkGroups.isEmpty)

        let verify = try run([imprintBinary, "wim", "verify", wim, "--progress", "none"] + (variant == "integrity" ? ["--check"] : []))
        #expect(verify.output.contains("OK"))
        if variant == "integrity" { #expect(verify.output.contains("Integrity table:")) }
    }

    @Test func pipableWIMFromStandardInput() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree, largeFileSize: 1 << 20)
        let wim = scratch.sub("pipe.wim")
        try capture(tree, wim, ["--pipable", "--compress=XPRESS"])
        try run([imprintBinary, "wim", "apply", "-", "1", scratch.sub("ours"), "--progress", "none"], stdinFile: wim)
        try run(["wimlib-imagex", "apply", wim, "1", scratch.sub("theirs")])
        try expectSameTrees(scratch)
    }

    /// Small files stored as is (random bytes: wimlib keeps them uncompressed) travel in batches
    /// with their compressed neighbours, not as a unit each (a read and two thread hand-offs
    /// for a few KiB), and come out whole.
    @Test func smallStoredFilesAreBatched() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        for i in 0..<120 {
            try write(testBytes(3000 + i, seed: UInt64(i)), to: tree + "/random-\(i).bin")
            try write(testBytes(5000 + i, seed: UInt64(i), compressible: true), to: tree + "/text-\(i).txt")
        }
        let wim = scratch.sub("small.wim")
        try capture(tree, wim, ["--compress=XPRESS"])
        let archive = try WIMArchive(path: wim)
        let storedAsIs = archive.resources.filter { !$0.isCompressed && !$0.isSolid && $0.uncompressedSize > 0 }
        #expect(storedAsIs.count >= 120, "wimlib stored the random files as is")
        let blobs = Dictionary(grouping: archive.blobs.values, by: \.resource)
        let order = blobs.keys.sorted { archive.resources[$0].offset < archive.resources[$1].offset }
        let units = try BlobReader(archive: archive).plan(order, blobs)
        #expect(order.count >= 240 && units.count <= 3, "\(order.count) resources, \(units.count) units")
        try run([imprintBinary, "wim", "apply", wim, "1", scratch.sub("ours"), "--progress", "none"])
        try run(["wimlib-imagex", "apply", wim, "1", scratch.sub("theirs")])
        try expectSameTrees(scratch)
    }

    /// A regular WIM applied through HTTP Range requests (from nginx) crosses the network about
    /// once: the chunk tables read while the apply plans (each a few KiB ahead of its resource,
    /// one every 3 MiB here) are sent as they are, not as a run of 4 MiB blocks that the data
    /// pass would fetch again once they are evicted. The apply checks every blob's SHA-1.
    @Test func rangeApplyFetchesTheWIMOnce() throws {
        let scratch = ScratchDirectory()
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom")).readData(ofLength: 48 << 20)
        for i in 0..<16 {
            // Three quarters random, a quarter zeros: XPRESS stores each file compressed (with a
            // chunk table) in about 3 MiB.
            var bytes = Data(capacity: 4 << 20)
            for start in stride(from: i * (3 << 20), to: (i + 1) * (3 << 20), by: 3 << 12) {
                bytes += random[start..<(start + (3 << 12))]
                bytes += Data(count: 1 << 12)
            }
            try write(Array(bytes), to: scratch.sub("tree/large-\(i).bin"))
        }
        let wim = scratch.sub("large.wim")
        try capture(scratch.sub("tree"), wim, ["--compress=XPRESS"])
        let size = (try FileManager.default.attributesOfItem(atPath: wim)[.size] as? Int) ?? 0
        #expect(size > 44 << 20, "more than the Range reader keeps (40 MiB of blocks)")
        let log = scratch.sub("access.log")
        let nginx = try Nginx(scratch, port: try Loopback.freePort(), server: "root \(scratch.path); access_log \(log) sent;",
                              http: "log_format sent '$body_bytes_sent';")
        try run([imprintBinary, "wim", "apply", "http://127.0.0.1:\(nginx.port)/large.wim", "1", scratch.sub("ours"), "--progress", "none"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.sub("ours")).count == 16)
        let sent = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").reduce(0) { $0 + (Int($1) ?? 0) }
        // The last blocks hold the metadata, read first and again when the data pass gets there.
        #expect(sent >= size && sent <= size + 2 * (4 << 20), "\(sent) bytes sent for a WIM of \(size)")
    }

    @Test func splitWIMParts() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree)
        try capture(tree, scratch.sub("whole.wim"), ["--compress=LZX"])
        try run(["wimlib-imagex", "split", scratch.sub("whole.wim"), scratch.sub("part.swm"), "2"])
        #expect(FileManager.default.fileExists(atPath: scratch.sub("part3.swm")))
        try run([imprintBinary, "wim", "apply", scratch.sub("part.swm"), "1", scratch.sub("ours"), "--progress", "none"])
        try run(["wimlib-imagex", "apply", scratch.sub("whole.wim"), "1", scratch.sub("theirs")])
        try expectSameTrees(scratch)
        // A missing part is named.
        try FileManager.default.removeItem(atPath: scratch.sub("part2.swm"))
        let missing = try run([imprintBinary, "wim", "info", scratch.sub("part.swm")], allowFailure: true)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("part 2 of"))
    }

    @Test func severalImagesByIndexAndName() throws {
        let scratch = ScratchDirectory()
        let first = scratch.sub("first"), second = scratch.sub("second")
        try makeStandardTree(at: first, largeFileSize: 100_000)
        try write(testBytes(70_000, seed: 5), to: second + "/only-in-two.bin")
        try write(testBytes(50_000, seed: 7, compressible: true), to: second + "/shared-with-one.txt")
        let wim = scratch.sub("multi.wim")
        try capture(first, wim, name: "Windows Pro", ["--compress=LZX"])
        try run(["wimlib-imagex", "append", second, wim, "Windows Home"])
        try run([imprintBinary, "wim", "apply", wim, "Windows Home", scratch.sub("ours"), "--progress", "none"])
        try run(["wimlib-imagex", "apply", wim, "2", scratch.sub("theirs")])
        try expectSameTrees(scratch)
        let info = try run([imprintBinary, "wim", "info", wim, "--json"])
        let object = try JSONSerialization.jsonObject(with: info.stdout) as? [String: Any]
        #expect(object?["imageCount"] as? Int == 2)
        let images = object?["images"] as? [[String: Any]]
        #expect(images?.map { $0["name"] as? String } == ["Windows Pro", "Windows Home"])
        let bad = try run([imprintBinary, "wim", "apply", wim, "Windows Server", scratch.sub("x")], allowFailure: true)
        #expect(bad.status != 0 && bad.stderr.contains("no image \"Windows Server\""))
    }

    @Test func extractSelectedPaths() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree, largeFileSize: 100_000)
        let wim = scratch.sub("x.wim")
        try capture(tree, wim, ["--compress=XPRESS"])
        try run([imprintBinary, "wim", "extract", wim, "1", "/dup", "\\links\\original.txt", "--dest", scratch.sub("ours"), "--progress", "none"])
        try run(["wimlib-imagex", "extract", wim, "1", "/dup", "/links/original.txt", "--dest-dir=" + scratch.sub("theirs")])
        try expectSameTrees(scratch)
        let missing = try run([imprintBinary, "wim", "extract", wim, "1", "/nope", "--dest", scratch.sub("x")], allowFailure: true)
        #expect(missing.status != 0 && missing.stderr.contains("no path \"/nope\""))
    }

    /// `imprint wim dir --json` agrees with `wimlib-imagex dir --detailed`: paths, attributes,
    /// sizes and hashes.
    @Test func dirAgreesWithWimlib() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try makeStandardTree(at: tree, largeFileSize: 100_000)
        let wim = scratch.sub("x.wim")
        try capture(tree, wim, ["--compress=LZX"])
        let ours = try run([imprintBinary, "wim", "dir", wim, "1", "--json"])
        let rows = try JSONSerialization.jsonObject(with: ours.stdout) as? [[String: Any]] ?? []
        let theirs = try run(["wimlib-imagex", "dir", wim, "1", "--detailed"]).output

        struct Row: Equatable { var attributes: UInt32; var size: UInt64; var sha1: String }
        var wimlib: [String: Row] = [:]
        var path = "", attributes: UInt32 = 0, size: UInt64 = 0, hash = "", inUnnamed = false
        func flush() {
            if !path.isEmpty { wimlib[path] = Row(attributes: attributes, size: size, sha1: hash) }
        }
        for line in theirs.split(separator: "\n").map(String.init) {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if line.hasPrefix("Full Path") {
                flush()
                path = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                size = 0; hash = ""; inUnnamed = false
            } else if line.hasPrefix("Attributes") {
                attributes = UInt32(parts[1].dropFirst(2), radix: 16) ?? 0
            } else if line.contains("Unnamed data stream") {
                inUnnamed = true
            } else if line.contains("stream") && line.contains(":") {
                inUnnamed = false
            } else if inUnnamed, line.hasPrefix("Hash") {
                let h = String(parts[1].dropFirst(2))
                hash = h.allSatisfy { $0 == "0" } ? "" : h
            } else if inUnnamed, line.hasPrefix("Uncompressed size") {
                size = UInt64(parts[1].split(separator: " ")[0]) ?? 0
            }
        }
        flush()
        var mine: [String: Row] = [:]
        for row in rows {
            let p = row["path"] as? String ?? ""
            let isLink = (row["attributeNames"] as? [String] ?? []).contains("FILE_ATTRIBUTE_REPARSE_POINT")
            mine[p] = Row(attributes: UInt32(row["attributes"] as? Int ?? 0),
                          size: isLink ? UInt64(row["reparseSize"] as? Int ?? 0) : UInt64(row["size"] as? Int ?? 0),
                          sha1: row["sha1"] as? String ?? "")
        }
        #expect(Set(mine.keys) == Set(wimlib.keys))
        for (p, row) in wimlib where !(mine[p]?.attributes ?? 0 & 0x400 != 0) {
            #expect(mine[p]?.attributes == row.attributes, "attributes of \(p)")
            if row.attributes & 0x400 == 0 {
                #expect(mine[p]?.size == row.size, "size of \(p)")
                #expect(mine[p]?.sha1 == row.sha1, "hash of \(p)")
            }
        }
        let plain = try run(["wimlib-imagex", "dir", wim, "1"]).output.split(separator: "\n").map(String.init)
        #expect(Set(plain) == Set(mine.keys))
    }

    /// `ours` (imprint's apply) and `theirs` (wimlib's) in `scratch` hold the same tree.
    func expectSameTrees(_ scratch: ScratchDirectory, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let differences = try TreeSnapshot(scratch.sub("ours")).differences(from: TreeSnapshot(scratch.sub("theirs")))
        #expect(differences == [], sourceLocation: sourceLocation)
    }
}
