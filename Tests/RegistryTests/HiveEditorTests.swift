import Foundation
import Primitives
@testable import Registry
import TestSupport
import Testing

@Suite("Editing a hive in place, checked with hivex")
struct HiveEditorTests {
    /// A SOFTWARE-like hive whose keys and values hivex itself wrote (hivexsh add/setval).
    static func hivexBuiltSoftware(_ scratch: ScratchDirectory) throws -> String {
        let path = scratch.sub("SOFTWARE")
        _ = try writeHive(RegistryKey(name: "ROOT"), path)
        try Hivex.shell(path, [
            "add Microsoft", "cd Microsoft", "add Windows", "cd Windows", "add CurrentVersion", "cd CurrentVersion",
            "setval 3", "DevicePath", "expandstring:%SystemRoot%\\inf", "ProgramFilesDir", "string:C:\\Program Files",
            "ProductId", "dword:0x00000007",
            "add Run", "cd ..", "cd ..", "add Policies", "commit",
        ], write: true)
        return path
    }

    @Test func replacingAValueKeepsEverythingElse() throws {
        let scratch = ScratchDirectory()
        let path = try Self.hivexBuiltSoftware(scratch)
        let before = try Hive(contentsOf: path).readTree()
        var editor = try HiveEditor(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), file: path)
        let long = "%SystemRoot%\\inf;%SystemDrive%\\Drivers;" + String(repeating: "X", count: 300)
        try editor.setValue(.string("DevicePath", long, type: .expandString), inKey: "Microsoft\\Windows\\CurrentVersion")
        let edited = editor.bytes()
        try Data(edited).write(to: URL(fileURLWithPath: path))

        #expect(try Hivex.get(path, "\\Microsoft\\Windows\\CurrentVersion", "DevicePath") == long)
        #expect(try Hivex.get(path, "\\Microsoft\\Windows\\CurrentVersion", "ProgramFilesDir") == "C:\\Program Files")
        #expect(try Hivex.values(path, "\\Microsoft\\Windows\\CurrentVersion").contains("\"DevicePath\"=str(2):\"" + long.replacingOccurrences(of: "\\", with: "\\\\") + "\""))
        #expect(try Hivex.subkeys(path, "\\Microsoft") == ["Policies", "Windows"])
        try run(["hivexml", path])
        // Only the value changed, and the hive is clean with a new sequence number.
        var expected = before
        var microsoft = try #require(expected.subkey("Microsoft"))
        var windows = try #require(microsoft.subkey("Windows"))
        var current = try #require(windows.subkey("CurrentVersion"))
        current.set(value: .string("DevicePath", long, type: .expandString))
        windows.set(subkey: current)
        microsoft.set(subkey: windows)
        expected.set(subkey: microsoft)
        #expect(try Hive(bytes: edited, file: path).readTree() == expected)
        #expect(edited.le32(4) == edited.le32(8))
        #expect(edited.le32(508) == HiveFormat.checksum(edited))
    }

    @Test func addingValuesAndKeys() throws {
        let scratch = ScratchDirectory()
        let path = try Self.hivexBuiltSoftware(scratch)
        var editor = try HiveEditor(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), file: path)
        try editor.setValue(.dword("NewDword", 42), inKey: "Microsoft\\Windows\\CurrentVersion")
        try editor.setValue(.string("Deep", "value"), inKey: "Microsoft\\Windows\\CurrentVersion\\Imprint\\Nested")
        try editor.setValue(.binary("Blob", [UInt8](repeating: 0x5A, count: 20_000)), inKey: "Microsoft\\Aaa")
        try Data(editor.bytes()).write(to: URL(fileURLWithPath: path))

        #expect(try Hivex.get(path, "\\Microsoft\\Windows\\CurrentVersion", "NewDword") == "42")
        #expect(try Hivex.get(path, "\\Microsoft\\Windows\\CurrentVersion\\Imprint\\Nested", "Deep") == "value")
        #expect(try Hivex.get(path, "\\Microsoft\\Windows\\CurrentVersion", "DevicePath") == "%SystemRoot%\\inf")
        #expect(try Hivex.subkeys(path, "\\Microsoft") == ["Aaa", "Policies", "Windows"])
        #expect(try Hivex.subkeys(path, "\\Microsoft\\Windows\\CurrentVersion") == ["Imprint", "Run"])
        let blob = try Hivex.values(path, "\\Microsoft\\Aaa")
        #expect(blob == ["\"Blob\"=hex(3):" + hex([UInt8](repeating: 0x5A, count: 20_000))], "hivex reads other bytes")
        try run(["hivexml", path])
        // hivex can still write to what we wrote.
        try Hivex.shell(path, ["cd \\Microsoft\\Aaa", "setval 1", "After", "string:hivex", "commit"], write: true)
        #expect(try Hivex.get(path, "\\Microsoft\\Aaa", "After") == "hivex")
    }

    @Test func missingKeyWithoutCreateIsNamed() throws {
        var editor = try HiveEditor(bytes: try HiveWriter.write(RegistryKey(name: "R")), file: "SOFTWARE")
        #expect(throws: RegistryError.keyNotFound(file: "SOFTWARE", path: "\\Microsoft")) {
            try editor.setValue(.dword("X", 1), inKey: "Microsoft\\Windows", createKeys: false)
        }
    }
}
