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
