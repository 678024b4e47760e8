import Foundation
import Primitives
@testable import Registry
import Testing

@Suite("Damaged hives end in errors naming the offset")
struct BadHiveTests {
    static let good: [UInt8] = (try? HiveWriter.write(HiveWriterTests.sampleTree(), fileName: "sample")) ?? []

    @Test func truncatedAndWrongMagic() {
        #expect(throws: RegistryError.corrupt(file: "h", offset: 0, reason: "100 bytes is too short for a registry hive (a base block and one bin)")) {
            try Hive(bytes: Array(Self.good.prefix(100)), file: "h")
        }
        var wrong = Self.good
        wrong[0] = UInt8(ascii: "x")
        #expect(throws: RegistryError.corrupt(file: "h", offset: 0, reason: "no \"regf\" signature: not a registry hive")) {
            try Hive(bytes: wrong, file: "h")
        }
    }

    @Test func checksumAndDirtyHive() {
        var bad = Self.good
        bad[100] ^= 0xFF
        do {
            _ = try Hive(bytes: bad, file: "h")
            Issue.record("accepted a bad checksum")
        } catch let error as RegistryError {
            #expect(error.description.hasPrefix("h: offset 508 (0x1fc): base block checksum"))
        } catch { Issue.record("\(error)") }
        var dirty = Self.good
        dirty.put(UInt32(7), at: 4)
        dirty.put(HiveFormat.checksum(dirty), at: 508)
        #expect(throws: RegistryError.dirty(file: "h", primary: 7, secondary: 1)) { try Hive(bytes: dirty, file: "h") }
    }

    @Test func truncatedBinsAndBadRoot() throws {
        // The header promises more bins than the file holds.
        let short = Array(Self.good.prefix(8192))
        #expect(throws: RegistryError.self) { try Hive(bytes: short, file: "h") }
        var badRoot = Self.good
        badRoot.put(UInt32(0x7FFF_FFF8), at: 36)
        badRoot.put(HiveFormat.checksum(badRoot), at: 508)
        let hive = try Hive(bytes: badRoot, file: "h")
        do {
            _ = try hive.readTree()
            Issue.record("read a tree from a bad root offset")
        } catch let error as RegistryError {
            #expect(error.description.contains("outside the hive bins"))
        }
    }

    /// Every byte of the bins damaged in turn (sampled): the reader returns or throws, never traps.
    @Test func damagedCellsNeverCrash() throws {
        var generator = SystemRandomNumberGenerator()
        var errors = 0
        for _ in 0..<400 {
            var bytes = Self.good
            for _ in 0..<4 {
                let index = Int.random(in: 4096..<bytes.count, using: &generator)
                bytes[index] = UInt8.random(in: 0...255, using: &generator)
            }
            do { _ = try Hive(bytes: bytes, file: "h").readTree() } catch is RegistryError { errors += 1 }
        }
        #expect(errors > 0)
    }

    /// The editor on damaged hives: each edit succeeds or throws, never traps, and what it
    /// writes after a success reads back.
    @Test func editingDamagedHivesNeverCrashes() throws {
        let small = try HiveWriter.write(RegistryKey(name: "R", subkeys: [
            RegistryKey(name: "Microsoft", subkeys: [RegistryKey(name: "Windows", values: [.string("DevicePath", "%SystemRoot%\\inf")])]),
        ]))
        var generator = SystemRandomNumberGenerator()
        var edited = 0
        for _ in 0..<2_000 {
            var bytes = small
            for _ in 0..<3 {
                bytes[Int.random(in: 4096..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            do {
                var editor = try HiveEditor(bytes: bytes, file: "h")
                try editor.setValue(.string("DevicePath", "%SystemRoot%\\inf;%SystemDrive%\\Drivers", type: .expandString),
                                    inKey: "Microsoft\\Windows")
                _ = try Hive(bytes: editor.bytes(), file: "h").key(at: "Microsoft\\Windows")
                edited += 1
            } catch is RegistryError {}
        }
        #expect(edited > 0)
    }
}
