import Foundation
import Primitives
@testable import Registry
import TestSupport
import Testing

@Suite("Hive writer and reader, checked with hivex")
struct HiveWriterTests {
    /// A tree with every kind of cell: compressed and UTF-16 names, inline, ordinary and
    /// big-data values, a class name, and a key with enough subkeys for an index root.
    static func sampleTree() -> RegistryKey {
        let big = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let many = (0..<1_200).map { RegistryKey(name: String(format: "Child%04d", $0), values: [.dword("Index", UInt32($0))]) }
        return RegistryKey(name: "ROOT", subkeys: [
            RegistryKey(name: "Values", className: "TestClass", values: [
                .string("Text", "héllo wörld"),
                .string("Expand", "%SystemRoot%\\inf", type: .expandString),
                .multiString("Multi", ["one", "two", "three"]),
                .dword("Number", 0xDEAD_BEEF),
                RegistryValue(name: "Quad", type: .qword, data: [1, 2, 3, 4, 5, 6, 7, 8]),
                .binary("Small", [0xAB]),
                .binary("Empty", []),
                .binary("Big", big),
                .string("", "default value"),
                .string("Ünïcode ☃", "snow"),
            ]),
            RegistryKey(name: "Many", subkeys: many),
            RegistryKey(name: "zeta"), RegistryKey(name: "Alpha"), RegistryKey(name: "ключ"),
        ])
    }

    @Test func hivexReadsEveryValueAsWritten() throws {
        let scratch = ScratchDirectory()
        let path = scratch.sub("sample.hive")
        let bytes = try writeHive(Self.sampleTree(), path)
        #expect(bytes.count % 4096 == 0)
        #expect(try Hivex.get(path, "\\Values", "Text") == "héllo wörld")
        #expect(try Hivex.get(path, "\\Values", "Expand") == "%SystemRoot%\\inf")
        #expect(try Hivex.get(path, "\\Values", "Ünïcode ☃") == "snow")
        let values = try Hivex.values(path, "\\Values")
        #expect(values.contains("\"Small\"=hex(3):ab"))
        #expect(values.contains("\"Number\"=dword:deadbeef"))
        #expect(values.contains("\"Expand\"=str(2):\"%SystemRoot%\\\\inf\""))
        #expect(values.contains("\"Multi\"=hex(7):" + hex(RegistryValue.multiString("Multi", ["one", "two", "three"]).data)))
        #expect(values.contains("\"Quad\"=hex(11):01,02,03,04,05,06,07,08"))
        #expect(values.contains("\"@\"=\"default value\""))
        // Big data (40,000 bytes in db segments) read back whole by hivex.
        let big = try #require(values.first { $0.hasPrefix("\"Big\"=hex(3):") })
        #expect(big == "\"Big\"=hex(3):" + hex((0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }), "hivex reads other bytes")
        // 1,200 subkeys through an ri index root of lh leaves, each found by name.
        let many = try Hivex.subkeys(path, "\\Many")
        #expect(many.count == 1_200)
        #expect(try Hivex.get(path, "\\Many\\Child0777", "Index") == "777")
        #expect(try Hivex.subkeys(path, "\\") == ["Alpha", "Many", "Values", "zeta", "ключ"])
        // hivexml walks every cell and checks it.
        let xml = try run(["hivexml", path]).output
        #expect(xml.contains("TestClass") || xml.contains("Values"))
    }

    @Test func ourReaderGivesBackTheSameTree() throws {
        let tree = Self.sampleTree()
        let bytes = try HiveWriter.write(tree)
        let read = try Hive(bytes: bytes, file: "sample").readTree()
        #expect(read == sortedTree(tree))
    }

    @Test func baseBlockIsWhatWindowsChecks() throws {
        let bytes = try HiveWriter.write(RegistryKey(name: "R"), fileName: "BCD")
        #expect(Array(bytes[0..<4]) == Array("regf".utf8))
        #expect(bytes.le32(4) == bytes.le32(8))               // clean: sequence numbers equal
        #expect(bytes.le32(20) == 1 && bytes.le32(24) == 5)   // format 1.5
        #expect(bytes.le32(508) == HiveFormat.checksum(bytes))
        #expect(Int(bytes.le32(40)) == bytes.count - 4096)
        #expect(Array(bytes[4096..<4100]) == Array("hbin".utf8))
        // The root's security cell is a ring of one, referenced once.
        let hive = try Hive(bytes: bytes, file: "BCD")
        let root = try hive.keyNode(hive.rootOffset)
        let sk = try hive.signedCell(root.security, "sk", minimum: 20, "security")
        #expect(bytes.le32(sk.lowerBound + 4) == root.security)
        #expect(bytes.le32(sk.lowerBound + 8) == root.security)
        #expect(bytes.le32(sk.lowerBound + 12) == 1)
    }

    @Test func lhHashIsWindowsNameHash() {
        // h = h * 37 + upcase(c): "ab" → 'A' * 37 + 'B' = 65 * 37 + 66.
        #expect(HiveFormat.nameHash("ab") == 65 * 37 + 66)
        #expect(HiveFormat.nameHash("Objects") == HiveFormat.nameHash("OBJECTS"))
    }

    @Test func duplicateNamesAreRefused() {
        let tree = RegistryKey(name: "R", subkeys: [RegistryKey(name: "A"), RegistryKey(name: "a")])
        #expect(throws: RegistryError.duplicateName(key: "\\R", name: "a")) { try HiveWriter.write(tree) }
    }
}
