import CHivexReference
import Foundation
import Registry
import TestSupport
import Testing

/// hivex (Debian libhivex-bin) as the independent reader and writer the hives are checked with.
enum Hivex {
    /// Runs hivexsh commands on a hive (`-w` to write; commands end with `commit`).
    @discardableResult
    static func shell(_ hive: String, _ commands: [String], write: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let script = hive + ".hivexsh-\(UUID().uuidString.prefix(6))"
        try (commands.joined(separator: "\n") + "\n").write(toFile: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: script) }
        let result = try run(["hivexsh"] + (write ? ["-w"] : []) + ["-f", script, hive], sourceLocation: sourceLocation)
        return result.output
    }

    /// `lsval` of a key: `"Name"=...` lines as hivexsh prints them (regedit's .reg syntax).
    static func values(_ hive: String, _ path: String) throws -> [String] {
        try shell(hive, ["cd " + path, "lsval"]).split(separator: "\n").map(String.init)
    }

    static func subkeys(_ hive: String, _ path: String) throws -> [String] {
        try shell(hive, ["cd " + path, "ls"]).split(separator: "\n").map(String.init)
    }

    static func get(_ hive: String, _ path: String, _ name: String) throws -> String {
        try run(["hivexget", hive, path, name]).output.trimmingCharacters(in: .newlines)
    }
}

/// libhivex itself, in this process: a whole hive as hivex reads it, every value with its raw
/// type number and bytes (hivexsh and hivexml print strings decoded, which hides the bytes).
enum HivexLibrary {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The tree under the root key. Class names are not read (hivex has no call for them).
    static func tree(_ path: String) throws -> RegistryKey {
        guard let handle = hivex_open(path, 0) else {
            throw Failure(description: "hivex_open \(path): \(String(cString: strerror(errno)))")
        }
        defer { hivex_close(handle) }
        return try key(handle, hivex_root(handle), path: "")
    }

    private static func key(_ handle: OpaquePointer, _ node: hive_node_h, path: String) throws -> RegistryKey {
        guard let rawName = hivex_node_name(handle, node) else {
            throw Failure(description: "hivex: no name for the key below \(path): \(String(cString: strerror(errno)))")
        }
        defer { free(rawName) }
        var key = RegistryKey(name: String(cString: rawName))
        let here = path + "\\" + key.name
        guard let values = hivex_node_values(handle, node) else {
            throw Failure(description: "hivex: values of \(here): \(String(cString: strerror(errno)))")
        }
        defer { free(values) }
        var index = 0
        while values[index] != 0 {
            key.values.append(try value(handle, values[index], key: here))
            index += 1
        }
        guard let children = hivex_node_children(handle, node) else {
            throw Failure(description: "hivex: subkeys of \(here): \(String(cString: strerror(errno)))")
        }
        defer { free(children) }
        index = 0
        while children[index] != 0 {
            key.subkeys.append(try self.key(handle, children[index], path: here))
            index += 1
        }
        return key
    }

    private static func value(_ handle: OpaquePointer, _ value: hive_value_h, key: String) throws -> RegistryValue {
        guard let rawName = hivex_value_key(handle, value) else {
            throw Failure(description: "hivex: a value name in \(key): \(String(cString: strerror(errno)))")
        }
        defer { free(rawName) }
        let name = String(cString: rawName)
        var type = hive_type(0)
        var length = 0
        guard let data = hivex_value_value(handle, value, &type, &length) else {
            throw Failure(description: "hivex: the data of \(key)\\\(name): \(String(cString: strerror(errno)))")
        }
        defer { free(data) }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: length))
        return RegistryValue(name: name, type: UInt32(type.rawValue), data: bytes)
    }
}

/// Where two trees first differ (names, values in order with type and bytes, subkeys in order),
/// as a path and what differs there; nil when they are equal. Class names are not compared.
func firstDifference(_ ours: RegistryKey, _ theirs: RegistryKey, path: String = "") -> String? {
    let here = path + "\\" + ours.name
    guard ours.name == theirs.name else { return "\(path): key \"\(ours.name)\" where hivex has \"\(theirs.name)\"" }
    guard ours.values.count == theirs.values.count else {
        return "\(here): \(ours.values.count) values where hivex has \(theirs.values.count)"
    }
    for (mine, other) in zip(ours.values, theirs.values) {
        guard mine.name == other.name else { return "\(here): value \"\(mine.name)\" where hivex has \"\(other.name)\"" }
        guard mine.type == other.type else { return "\(here)\\\(mine.name): type \(mine.type) where hivex has \(other.type)" }
        guard mine.data == other.data else {
            return "\(here)\\\(mine.name): \(mine.data.count) bytes of data where hivex has \(other.data.count)"
                + (mine.data.count == other.data.count ? " (others)" : "")
        }
    }
    guard ours.subkeys.count == theirs.subkeys.count else {
        return "\(here): \(ours.subkeys.count) subkeys where hivex has \(theirs.subkeys.count)"
    }
    for (mine, other) in zip(ours.subkeys, theirs.subkeys) {
        if let difference = firstDifference(mine, other, path: here) { return difference }
    }
    return nil
}

/// How many keys (the root included) and values a tree holds.
func treeCounts(_ key: RegistryKey) -> (keys: Int, values: Int) {
    key.subkeys.map(treeCounts).reduce((1, key.values.count)) { ($0.keys + $1.keys, $0.values + $1.values) }
}

/// A real hive (or log) from `Fixtures/` (`regipy/SYSTEM`, `yarp/NewDirtyHive1/NewDirtyHive.LOG1`;
/// see Fixtures/SOURCES.md), decompressed into `scratch` under its own name.
func realHive(_ name: String, _ scratch: ScratchDirectory) throws -> String {
    let path = scratch.sub(name.replacingOccurrences(of: "/", with: "_"))
    if FileManager.default.fileExists(atPath: path) { return path }
    let source = packageRoot.appendingPathComponent("Tests/RegistryTests/Fixtures/\(name).gz").path
    try run(["gzip", "-dc", source]).stdout.write(to: URL(fileURLWithPath: path))
    return path
}

func writeHive(_ root: RegistryKey, _ path: String, time: Date = Date(timeIntervalSince1970: 1_700_000_000)) throws -> [UInt8] {
    let bytes = try HiveWriter.write(root, fileName: (path as NSString).lastPathComponent, time: time)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return bytes
}

/// The tree as our reader returns it: subkeys in the hive's order (sorted by upper-cased name).
func sortedTree(_ key: RegistryKey) -> RegistryKey {
    var copy = key
    copy.subkeys = key.subkeys.map(sortedTree).sorted {
        $0.name.uppercased().utf16.lexicographicallyPrecedes($1.name.uppercased().utf16)
    }
    return copy
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return bytes.map { String([digits[Int($0 >> 4)], digits[Int($0 & 15)]]) }.joined(separator: ",")
}
