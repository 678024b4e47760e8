import Digests
import Foundation
import TestSupport
import Testing
import CImprintSystem
@testable import WIM

/// Deterministic bytes: incompressible (random) or text-like (compressible).
func testBytes(_ count: Int, seed: UInt64, compressible: Bool = false) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8]()
    out.reserveCapacity(count)
    let words = Array("the quick brown fox jumps over a lazy dog Windows System32 drivers etc registry ".utf8)
    while out.count < count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        if compressible {
            let start = Int(state % UInt64(words.count - 12))
            out.append(contentsOf: words[start..<(start + Int(state >> 61) + 3)])
        } else {
            withUnsafeBytes(of: state) { out.append(contentsOf: $0) }
        }
    }
    return Array(out.prefix(count))
}

func write(_ bytes: [UInt8], to path: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// A tree with every shape the WIM format cares about: empty and 1-byte files, sizes on both
/// sides of chunk boundaries, a large incompressible file, duplicates, hard links, symlinks,
/// Unicode and very long names, deep paths and empty directories.
func makeStandardTree(at root: String, largeFileSize: Int = 3 << 20) throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: root + "/empty dir", withIntermediateDirectories: true)
    try write([], to: root + "/empty.txt")
    try write([0x41], to: root + "/one-byte")
    var seed: UInt64 = 1
    for boundary in [4096, 32768, 65536, 1 << 20] {
        for delta in [-1, 0, 1] {
            seed += 1
            try write(testBytes(boundary + delta, seed: seed, compressible: seed % 2 == 0), to: root + "/sizes/\(boundary + delta).bin")
        }
    }
    try write(testBytes(largeFileSize, seed: 99), to: root + "/large-random.bin")
    try write(testBytes(largeFileSize, seed: 98, compressible: true), to: root + "/large-text.txt")
    let shared = testBytes(50_000, seed: 7, compressible: true)
    try write(shared, to: root + "/dup/one.txt")
    try write(shared, to: root + "/dup/two.txt")
    try write(shared, to: root + "/dup/deeper/three.txt")
    try write(testBytes(12_345, seed: 8, compressible: true), to: root + "/links/original.txt")
    try fm.linkItem(atPath: root + "/links/original.txt", toPath: root + "/links/hardlink.txt")
    try fm.linkItem(atPath: root + "/links/original.txt", toPath: root + "/hardlink-elsewhere.txt")
    try fm.createSymbolicLink(atPath: root + "/links/relative-symlink", withDestinationPath: "original.txt")
    try fm.createSymbolicLink(atPath: root + "/links/dir-symlink", withDestinationPath: "../dup")
    // Absolute, but inside the captured tree: capture fixes it ("rpfix") and apply re-roots it.
    try fm.createSymbolicLink(atPath: root + "/links/absolute-inside", withDestinationPath: root + "/dup/one.txt")
    try write(Array("héllo wörld ✓ 日本語 🚀".utf8), to: root + "/unicode/日本語 ファイル ✓ 🚀.txt")
    let longName = String(repeating: "long-name-", count: 24) + "end"
    try write(Array("long".utf8), to: root + "/unicode/" + longName)
    var deep = root + "/deep"
    for level in 0..<40 { deep += "/level\(level)" }
    try write(Array("bottom".utf8), to: deep + "/bottom.txt")
}

/// Everything `wimlib-imagex apply` and `imprint wim apply` must agree on, for one tree.
struct TreeSnapshot: Equatable, CustomStringConvertible {
    struct Node: Equatable {
        var kind: String
        var size: Int64
        var sha1: String
        var mtime: Int64
        var atime: Int64
        var linkTarget: String
    }
    var nodes: [String: Node] = [:]
    /// Sets of paths that are one file (hard links), sorted.
    var linkGroups: [[String]] = []

    init(_ root: String) throws {
        var inodes: [UInt64: [String]] = [:]
        let fm = FileManager.default
        let enumerator = fm.enumerator(atPath: root)
        var paths: [String] = []
        while let p = enumerator?.nextObject() as? String { paths.append(p) }
        for rel in paths.sorted() {
            var info = stat()
            guard lstat(root + "/" + rel, &info) == 0 else { continue }
            let type = info.st_mode & S_IFMT
            var node = Node(kind: "?", size: 0, sha1: "", mtime: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                            atime: Int64(info.st_atim.tv_sec) * 1_000_000_000 + Int64(info.st_atim.tv_nsec), linkTarget: "")
            switch type {
            case S_IFDIR: node.kind = "dir"; node.size = 0; node.atime = 0  // listing a directory touches it
            case S_IFREG:
                // Contents are read in a second pass: reading one name of a hard-linked file
                // would change the access time the other names show.
                node.kind = "file"
                node.size = Int64(info.st_size)
                if info.st_nlink > 1 { inodes[UInt64(info.st_ino), default: []].append(rel) }
            case S_IFLNK:
                node.kind = "symlink"
                let target = try fm.destinationOfSymbolicLink(atPath: root + "/" + rel)
                node.linkTarget = target.hasPrefix(root) ? "<root>" + target.dropFirst(root.count) : target
                node.mtime = 0  // symlink times are not compared: neither tool promises them
                node.atime = 0
            default: node.kind = "other"
            }
            nodes[rel] = node
        }
        for (rel, node) in nodes where node.kind == "file" {
            let data = try Data(contentsOf: URL(fileURLWithPath: root + "/" + rel))
            nodes[rel]?.sha1 = SHA1Hasher.digest([UInt8](data)).description
        }
        linkGroups = inodes.values.map { $0.sorted() }.sorted { $0[0] < $1[0] }
    }

    var description: String {
        nodes.keys.sorted().map { "\($0): \(nodes[$0]!)" }.joined(separator: "\n") + "\nlinks: \(linkGroups)"
    }

    /// The first few differences, readable in a test failure.
    func differences(from other: TreeSnapshot) -> [String] {
        var out: [String] = []
        for key in Set(nodes.keys).union(other.nodes.keys).sorted() where nodes[key] != other.nodes[key] {
            out.append("\(key): \(nodes[key].map { "\($0)" } ?? "missing") vs \(other.nodes[key].map { "\($0)" } ?? "missing")")
        }
        if linkGroups != other.linkGroups { out.append("hard links: \(linkGroups) vs \(other.linkGroups)") }
        return Array(out.prefix(20))
    }
}

/// Captures `tree` into `wim` with wimlib-imagex.
func capture(_ tree: String, _ wim: String, name: String = "Test image", _ options: [String] = []) throws {
    try run(["wimlib-imagex", "capture", tree, wim, name] + options)
}

/// An extended attribute of `path` itself (not of a symlink's target), or nil if it has none.
func xattr(_ path: String, _ name: String) -> [UInt8]? {
    let size = lgetxattr(path, name, nil, 0)
    guard size >= 0 else { return nil }
    var value = [UInt8](repeating: 0, count: size)
    let n = value.withUnsafeMutableBytes { lgetxattr(path, name, $0.baseAddress, size) }
    return n == size ? value : nil
}
