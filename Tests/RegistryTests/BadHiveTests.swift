import Failures
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

    /// A damaged base block cannot be read without a log to take it from; a hive whose sequence
    /// numbers differ is read as it is, marked as needing its logs, and not edited.
    @Test func checksumAndDirtyHive() throws {
        var bad = Self.good
        bad[100] ^= 0xFF
        do {
            _ = try Hive(bytes: bad, file: "h")
            Issue.record("accepted a bad checksum")
        } catch let error as RegistryError {
            guard case let .needsLogReplay(file, reason) = error else { throw error }
            #expect(file == "h")
            #expect(reason.hasPrefix("its base block is damaged (offset 508: checksum 0x"))
            #expect(reason.hasSuffix("; no .LOG1 or .LOG2 was read with it"))
            #expect(error.description.contains("h.LOG1 and h.LOG2 beside it, which Windows replays when it next starts"))
            #expect(error.failureKind == .refused)
        }
        var dirty = Self.good
        dirty.put(UInt32(7), at: 4)
        dirty.put(HiveFormat.checksum(dirty), at: 508)
        let hive = try Hive(bytes: dirty, file: "h")
        #expect(hive.needsLogReplay)
        #expect(hive.dirtyReason == "its base block's sequence numbers differ (offset 4: 7, offset 8: 1); no .LOG1 or .LOG2 was read with it")
        #expect(try hive.readTree() == (try Hive(bytes: Self.good, file: "h").readTree()))
        #expect(throws: RegistryError.needsLogReplay(file: "h", reason: hive.dirtyReason ?? "")) { try hive.requireClean() }
        #expect(throws: RegistryError.needsLogReplay(file: "h", reason: hive.dirtyReason ?? "")) { try HiveEditor(bytes: dirty, file: "h") }
        #expect(!(try Hive(bytes: Self.good, file: "h").needsLogReplay))
        // Damage in such a hive is named as damage, with the unfinished write as a likely cause.
        var cut = Array(dirty.prefix(8192))
        cut.put(HiveFormat.checksum(cut), at: 508)
        do {
            _ = try Hive(bytes: cut, file: "h")
            Issue.record("read a hive cut short")
        } catch let RegistryError.corrupt(_, offset, reason) {
            #expect(offset == 40)
            #expect(reason.hasSuffix("(the hive was not cleanly written and its logs were not replayed, which may be why)"))
        }
    }

    /// A log given where the hive was expected is named for what it is.
    @Test func logInPlaceOfTheHive() throws {
        var log = Self.good
        log.put(UInt32(6), at: 28)
        log.put(HiveFormat.checksum(log), at: 508)
        #expect(throws: RegistryError.corrupt(file: "h.LOG1", offset: 28,
                                             reason: "a transaction log (file type 6), not a hive: open the hive it belongs to, with it beside")) {
            try Hive(bytes: log, file: "h.LOG1")
        }
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
