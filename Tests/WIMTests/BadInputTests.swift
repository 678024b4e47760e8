import Digests
import Foundation
import Primitives
import TestSupport
import Testing
@testable import Apply
@testable import WIM

/// Damaged and hostile WIMs: each must end in a clear error naming what and where, never a
/// crash, and never a write outside the target.
@Suite(.serialized)
struct BadInputTests {
    /// A small WIM captured by wimlib from a tree with names the tests can find and patch.
    static func smallWIM(_ scratch: ScratchDirectory, compress: String = "none") throws -> String {
        let tree = scratch.sub("tree")
        try write(Array("first".utf8), to: tree + "/aa")
        try write(Array("second".utf8), to: tree + "/a_b")
        try write(testBytes(100_000, seed: 3, compressible: true), to: tree + "/sub/dir/text.txt")
        try write(testBytes(70_000, seed: 4), to: tree + "/sub/random.bin")
        let wim = scratch.sub("small.wim")
        try capture(tree, wim, ["--compress=\(compress)"])
        return wim
    }

    func openError(_ bytes: [UInt8], _ scratch: ScratchDirectory) -> WIMError? {
        let path = scratch.sub("bad-\(UUID().uuidString.prefix(6)).wim")
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        do {
            let wim = try WIMArchive(path: path)
            _ = try Verifier(archive: wim).run()
            return nil
        } catch let error as WIMError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    @Test func emptyAndForeignFiles() throws {
        let scratch = ScratchDirectory()
        let empty = openError([], scratch)
        #expect("\(empty.map { "\($0)" } ?? "")".contains("truncated"))
        let foreign = openError(Array("PK\u{3}\u{4} this is a zip file, not a WIM at all".utf8) + [UInt8](repeating: 0, count: 300), scratch)
        #expect("\(foreign.map { "\($0)" } ?? "")".contains("not a WIM file"))
    }

    @Test func truncatedAtEveryPlace() throws {
        let scratch = ScratchDirectory()
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Self.smallWIM(scratch, compress: "LZX"))))
        for cut in [100, 207, 208, 1000, good.count / 2, good.count - 200, good.count - 1] {
            let error = openError(Array(good.prefix(cut)), scratch)
            #expect(error != nil, "cut at \(cut) was accepted")
        }
    }

    @Test func absurdHeaderFields() throws {
        let scratch = ScratchDirectory()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try Self.smallWIM(scratch))))
        var copy = bytes
        copy.replaceSubrange(44..<48, with: [0xFF, 0xFF, 0xFF, 0x7F])  // image count
        #expect("\(openError(copy, scratch).map { "\($0)" } ?? "")".contains("image count"))
        copy = bytes
        copy.replaceSubrange(8..<12, with: [0x10, 0, 0, 0])  // header size
        #expect("\(openError(copy, scratch).map { "\($0)" } ?? "")".contains("header size"))
        // Blob table offset far past the end of the file.
        bytes.replaceSubrange(56..<64, with: [0, 0, 0, 0, 0, 0, 0, 0x40])
        #expect("\(openError(bytes, scratch).map { "\($0)" } ?? "")".contains("offset"))
    }

    @Test func blobTableEntryPastTheEnd() throws {
        let scratch = ScratchDirectory()
        let path = try Self.smallWIM(scratch)
        let wim = try WIMArchive(path: path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let tableOffset = Int(wim.header.blobTable.offset)
        // Entry 1's resource offset (bytes 8..16 of the entry) → 2^40.
        bytes.replaceSubrange((tableOffset + 50 + 8)..<(tableOffset + 50 + 16), with: [0, 0, 0, 0, 0, 1, 0, 0])
        let error = openError(bytes, scratch)
        #expect("\(error.map { "\($0)" } ?? "")".contains("blob table entry 1"))
    }

    @Test func badChunkTable() throws {
        let scratch = ScratchDirectory()
        let path = try Self.smallWIM(scratch, compress: "XPRESS")
        let wim = try WIMArchive(path: path)
        // The 100 KB text file is a multi-chunk resource: scramble its chunk table.
        let resource = try #require(wim.resources.first { !$0.isSolid && $0.uncompressedSize == 100_000 })
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let at = Int(resource.offset)
        bytes.replaceSubrange(at..<(at + 4), with: [0xFF, 0xFF, 0xFF, 0x00])
        let error = openError(bytes, scratch)
        #expect("\(error.map { "\($0)" } ?? "")".contains("chunk table entry 0"))
    }

    /// Every flipped byte inside stored data is caught by `verify`, as a decode error or a SHA-1
    /// mismatch naming the blob, its offset and the paths that use it.
    @Test(arguments: ["none", "XPRESS", "LZX", "LZMS"])
    func verifyCatchesFlippedBytes(_ compress: String) throws {
        let scratch = ScratchDirectory(compress)
        let path = try Self.smallWIM(scratch, compress: compress)
        let wim = try WIMArchive(path: path)
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var generator = SystemRandomNumberGenerator()
        var flips = 0
        for blob in wim.blobs.values {
            let r = wim.resources[blob.resource]
            // Stay clear of the last bytes of every compressed chunk: each chunk is coded on its
            // own, and its end-of-data symbol and padding bits, which decoders need not read
            // once the chunk's bytes are out, mean nothing.
            let stored = Int(r.offset)..<Int(r.offset + r.sizeInWIM)
            var candidates = Array(stored)
            if r.isCompressed {
                let table = try good.withUnsafeBytes { raw throws(WIMError) -> ChunkTable in
                    try r.parseChunkTable(resourceBytes: UnsafeRawBufferPointer(rebasing: raw[stored]), path: "small.wim")
                }
                let tails: [Range<Int>] = table.chunks.map { chunk in
                    let end = Int(chunk.fileOffset) + chunk.storedSize
                    return max(end - 8, Int(chunk.fileOffset))..<end
                }
                candidates.removeAll { position in tails.contains { $0.contains(position) } }
            }
            guard !candidates.isEmpty else { continue }
            for _ in 0..<6 {
                guard let position = candidates.randomElement(using: &generator) else { break }
                var bytes = good
                bytes[position] ^= 0xA5
                let error = openError(bytes, scratch)
                #expect(error != nil, "flip at \(position) (\(compress)) went unnoticed")
                if case let .hashMismatch(_, hash, _, _, users)? = error {
                    #expect(hash == blob.hash)
                    #expect(users.contains { $0.hasPrefix("image 1: /") })
                }
                flips += 1
            }
        }
        #expect(flips >= 18)
    }

    // MARK: Hostile metadata

    /// Rewrites the metadata of image 1 of an uncompressed WIM and fixes its SHA-1 in the blob
    /// table, so only the parser's own checks can catch what was done.
    func patchedMetadata(_ scratch: ScratchDirectory, _ patch: (inout [UInt8], ImageMetadata) throws -> Void) throws -> String {
        let path = try Self.smallWIM(scratch)
        let wim = try WIMArchive(path: path)
        let (index, oldHash) = wim.imageMetadata[0]
        let r = wim.resources[index]
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var meta = Array(bytes[Int(r.offset)..<Int(r.offset + r.sizeInWIM)])
        try patch(&meta, try wim.metadata(image: 1))
        bytes.replaceSubrange(Int(r.offset)..<Int(r.offset + r.sizeInWIM), with: meta)
        let newHash = SHA1Hasher.digest(meta).bytes
        let old = oldHash.bytes
        let table = Int(wim.header.blobTable.offset)
        for e in 0..<Int(wim.header.blobTable.uncompressedSize) / 50 where Array(bytes[(table + 50 * e + 30)..<(table + 50 * e + 50)]) == old {
            bytes.replaceSubrange((table + 50 * e + 30)..<(table + 50 * e + 50), with: newHash)
        }
        let out = scratch.sub("patched.wim")
        _ = FileManager.default.createFile(atPath: out, contents: Data(bytes))
        return out
    }

    func nameOffset(_ meta: [UInt8], _ m: ImageMetadata, _ name: String) throws -> Int {
        let entry = try #require(m.entries.first { $0.name == name })
        return entry.metadataOffset + 102
    }

    @Test func dotDotAndSlashNamesAreRejected() throws {
        for (original, hostile) in [("aa", ".."), ("a_b", "a/b")] {
            let scratch = ScratchDirectory()
            let path = try patchedMetadata(scratch) { meta, m in
                let at = try nameOffset(meta, m, original)
                let units = Array(hostile.utf16)
                for (k, u) in units.enumerated() { meta[at + 2 * k] = UInt8(u & 0xFF); meta[at + 2 * k + 1] = UInt8(u >> 8) }
            }
            let result = try run([imprintBinary, "wim", "apply", path, "1", scratch.sub("target")], allowFailure: true)
            #expect(result.status != 0)
            #expect(result.stderr.contains("invalid metadata of image 1 at byte"), "\(result.stderr)")
            #expect(result.stderr.contains(hostile == ".." ? "named \"..\"" : "contains \"/\""))
            #expect(!FileManager.default.fileExists(atPath: scratch.path + "/first"))
        }
    }

    @Test func directoryLoopIsRejected() throws {
        let scratch = ScratchDirectory()
        let path = try patchedMetadata(scratch) { meta, m in
            // Point /sub/dir's children at the root's children list: a cycle.
            let dir = try #require(m.entries.firstIndex { $0.name == "dir" })
            let rootChildren = meta.withUnsafeBytes { $0.le64(m.entries[0].metadataOffset + 16) }
            let at = m.entries[dir].metadataOffset + 16
            for k in 0..<8 { meta[at + k] = UInt8(truncatingIfNeeded: rootChildren >> (8 * UInt64(k))) }
        }
        let result = try run([imprintBinary, "wim", "dir", path, "1"], allowFailure: true)
        #expect(result.status != 0)
        #expect(result.stderr.contains("loop"), "\(result.stderr)")
    }

    // MARK: The target directory

    /// A symlink already in the target must not lead a write outside it, and files the image
    /// does not contain survive.
    @Test func existingSymlinksAreNeverFollowed() throws {
        let scratch = ScratchDirectory()
        let path = try Self.smallWIM(scratch)
        let target = scratch.sub("target"), outside = scratch.sub("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try write(Array("keep me".utf8), to: outside + "/precious")
        try FileManager.default.createSymbolicLink(atPath: target + "/sub", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: target + "/aa", withDestinationPath: outside + "/precious")
        try write(Array("user file".utf8), to: target + "/not-in-image.txt")
        try write(Array("old".utf8), to: target + "/a_b")
        try run([imprintBinary, "wim", "apply", path, "1", target, "--progress", "none"])
        // Nothing outside changed; the symlinks were replaced by what the image holds.
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["precious"])
        #expect(try String(contentsOfFile: outside + "/precious", encoding: .utf8) == "keep me")
        var info = stat()
        #expect(lstat(target + "/sub", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR)
        #expect(try String(contentsOfFile: target + "/aa", encoding: .utf8) == "first")
        #expect(try String(contentsOfFile: target + "/a_b", encoding: .utf8) == "second")
        #expect(try String(contentsOfFile: target + "/not-in-image.txt", encoding: .utf8) == "user file")
        #expect(FileManager.default.fileExists(atPath: target + "/sub/dir/text.txt"))
    }

    @Test func aDirectoryIsNeverReplacedByAFile() throws {
        let scratch = ScratchDirectory()
        let path = try Self.smallWIM(scratch)
        let target = scratch.sub("target")
        try write(Array("user data".utf8), to: target + "/aa/inside.txt")
        let result = try run([imprintBinary, "wim", "apply", path, "1", target], allowFailure: true)
        #expect(result.status != 0)
        #expect(result.stderr.contains("is a directory, but the image has a file there"))
        #expect(try String(contentsOfFile: target + "/aa/inside.txt", encoding: .utf8) == "user data")
    }

    @Test func symlinksThatLeaveTheTargetAreListedNotCreated() throws {
        let scratch = ScratchDirectory()
        let tree = scratch.sub("tree")
        try write(Array("x".utf8), to: tree + "/dir/file")
        try FileManager.default.createSymbolicLink(atPath: tree + "/dir/escape", withDestinationPath: "../../../../etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: tree + "/dir/fine", withDestinationPath: "../dir/file")
        try FileManager.default.createSymbolicLink(atPath: tree + "/dir/host-path", withDestinationPath: "/etc/passwd")
        let wim = scratch.sub("links.wim")
        try capture(tree, wim)
        let target = scratch.sub("target")
        let result = try run([imprintBinary, "wim", "apply", wim, "1", target, "--progress", "none"])
        #expect(result.output.contains("symlink pointing outside the target"))
        #expect(result.output.contains("/dir/escape"))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: target + "/dir/escape")) == nil)
        // An absolute target capture did not fix names the source machine's /etc, not the target's.
        #expect(result.output.contains("/dir/host-path -> /etc/passwd"))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: target + "/dir/host-path")) == nil)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: target + "/dir/fine") == "../dir/file")
    }
}
