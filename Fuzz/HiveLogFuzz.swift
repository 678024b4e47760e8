// libFuzzer target for transaction log replay: the .LOG1/.LOG2 beside a hive Windows had not
// finished writing, as `imprint disk list`, a capture and `boot show` read them from a disk.
// Compiled into the Registry module by scripts/fuzz (one binary for every target; HiveLogFuzz).
//
// Input: one byte choosing the hive (bit 0: its base block damaged, so it must come from the
// log; bit 1: two logs, the first one's length in the next 4 bytes, little-endian), then the
// log bytes. Every input must be replayed or refused with an error, never crash; a hive whose
// logs were replayed must be a clean hive that loads again without them.
import Foundation
import Primitives

/// The hives the logs are replayed onto, and the trees the seeds' logs turn them into.
private enum HiveLogFuzz {
    static let time = Date(timeIntervalSince1970: 1_700_000_000)

    static func tree(_ value: String, extraKeys: Int) -> RegistryKey {
        RegistryKey(name: "ROOT", subkeys: [
            RegistryKey(name: "Microsoft", subkeys: [RegistryKey(name: "Windows", subkeys: [
                RegistryKey(name: "CurrentVersion", values: [.string("DevicePath", value, type: .expandString)]),
            ])]),
        ] + (0..<extraKeys).map { RegistryKey(name: "Key\($0)", values: [.dword("N", UInt32($0))]) })
    }

    /// Written cleanly (sequence 1), then as Windows leaves a hive mid-write: sequence numbers 2/1.
    static let clean: [UInt8] = (try? HiveWriter.write(tree("%SystemRoot%\\inf", extraKeys: 0), fileName: "fuzz", time: time)) ?? []
    static let dirty: [UInt8] = {
        var bytes = clean
        guard bytes.count >= 4096 else { return bytes }
        bytes.put(UInt32(2), at: 4)
        bytes.put(HiveFormat.checksum(bytes), at: 508)
        return bytes
    }()
    /// The same with a damaged base block (a byte changed, the checksum left as it was).
    static let damaged: [UInt8] = {
        var bytes = dirty
        guard bytes.count >= 4096 else { return bytes }
        bytes[300] ^= 0x5A
        return bytes
    }()
}

/// The 512-byte base block copy a log starts with: file type 6 (new format) or 1 (old).
private func logBaseBlock(_ hive: [UInt8], type: UInt32, sequence: UInt32) -> [UInt8] {
    var block = Array(hive[0..<512])
    block.put(sequence, at: 4)
    block.put(sequence, at: 8)
    block.put(type, at: 28)
    block.put(HiveFormat.checksum(block), at: 508)
    return block
}

/// The 4 KiB pages of `new`'s bins that differ from `old`'s (or that `old` lacks).
private func changedPages(from old: [UInt8], to new: [UInt8]) -> [(offset: Int, bytes: [UInt8])] {
    stride(from: 0, to: Int(new.le32(40)), by: 4096).compactMap { offset in
        let start = 4096 + offset
        let page = Array(new[start..<start + 4096])
        return start + 4096 <= old.count && Array(old[start..<start + 4096]) == page ? nil : (offset, page)
    }
}

/// One new-format log entry: header, page references, pages, padded to 512 bytes, with the
/// Marvin32 hashes Windows checks.
private func logEntry(sequence: UInt32, binsSize: UInt32, pages: [(offset: Int, bytes: [UInt8])]) -> [UInt8] {
    var body = pages.flatMap { UInt32($0.offset).littleEndianBytes + UInt32($0.bytes.count).littleEndianBytes }
    body += pages.flatMap(\.bytes)
    body += [UInt8](repeating: 0, count: HiveFormat.align(40 + body.count, 512) - 40 - body.count)
    var header = Array("HvLE".utf8) + UInt32(40 + body.count).littleEndianBytes + UInt32(0).littleEndianBytes
    header += sequence.littleEndianBytes + binsSize.littleEndianBytes + UInt32(pages.count).littleEndianBytes
    header += Marvin32.hash(body[...]).littleEndianBytes
    header += Marvin32.hash(header[...]).littleEndianBytes
    return header + body
}

/// An old-format log: the base block copy, the "DIRT" bitmap (a bit per 512-byte page) and the
/// dirty pages from the next sector on.
private func oldLog(_ base: [UInt8], from old: [UInt8], to new: [UInt8]) -> [UInt8] {
    let binsSize = Int(new.le32(40))
    var bitmap = [UInt8](repeating: 0, count: binsSize / 4096)
    let pages = changedPages(from: old, to: new)
    for page in pages { bitmap[page.offset / 4096] = 0xFF }
    // The copy is of the base block in memory, which already has the grown hive's bins size.
    var copy = base
    copy.put(UInt32(binsSize), at: 40)
    var log = logBaseBlock(copy, type: 1, sequence: base.le32(4)) + Array("DIRT".utf8) + bitmap
    log += [UInt8](repeating: 0, count: HiveFormat.align(log.count, 512) - log.count)
    return log + pages.flatMap(\.bytes)
}

/// Seeds: logs that turn the dirty hive into a grown one (keys added, a value changed), in one
/// entry, two entries, two logs, the old format, and with the hive's base block damaged.
public func writeHiveLogFuzzSeeds(to folder: String) {
    let dirty = HiveLogFuzz.dirty
    guard dirty.count >= 4096,
          let grown = try? HiveWriter.write(HiveLogFuzz.tree("%SystemRoot%\\inf;%SystemDrive%\\Drivers", extraKeys: 30),
                                            fileName: "fuzz", time: HiveLogFuzz.time),
          let more = try? HiveWriter.write(HiveLogFuzz.tree("%SystemRoot%\\inf;D:\\Drivers", extraKeys: 60),
                                           fileName: "fuzz", time: HiveLogFuzz.time) else { return }
    let first = logEntry(sequence: 1, binsSize: grown.le32(40), pages: changedPages(from: dirty, to: grown))
    let second = logEntry(sequence: 2, binsSize: more.le32(40), pages: changedPages(from: grown, to: more))
    let log1 = logBaseBlock(dirty, type: 6, sequence: 1) + first
    let log2 = logBaseBlock(dirty, type: 6, sequence: 2) + second
    let seeds: [(String, [UInt8])] = [
        ("one-entry", [0] + log1),
        ("two-entries", [0] + log1 + second),
        ("two-logs", [2] + UInt32(log1.count).littleEndianBytes + log1 + log2),
        ("old-format", [0] + oldLog(dirty, from: dirty, to: grown)),
        ("damaged-base-block", [1] + log1),
        ("damaged-base-block-old-format", [1] + oldLog(dirty, from: dirty, to: grown)),
    ]
    for (name, bytes) in seeds {
        _ = FileManager.default.createFile(atPath: folder + "/" + name + ".log", contents: Data(bytes))
    }
}

public func fuzzHiveLog(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard let selector = input.first else { return 0 }
    let primary = selector & 1 == 0 ? HiveLogFuzz.dirty : HiveLogFuzz.damaged
    var logs: [HiveLog]
    if selector & 2 != 0, input.count >= 5 {
        let split = min(input.count, 5 + Int(input.le32(1)))
        logs = [HiveLog(bytes: Array(input[5..<split]), file: "fuzz.LOG1"), HiveLog(bytes: Array(input[split...]), file: "fuzz.LOG2")]
    } else {
        logs = [HiveLog(bytes: Array(input.dropFirst()), file: "fuzz.LOG1")]
    }
    guard let hive = try? Hive(bytes: primary, file: "fuzz", logs: logs) else { return 0 }
    _ = try? hive.readTree()
    _ = hive.replayed?.summary
    if hive.replayed != nil {
        // Replayed, it is the hive Windows would write back: clean, loading without its logs.
        guard !Hive.baseBlockNeedsLogReplay(hive.bytes), let again = try? Hive(bytes: hive.bytes, file: "replayed"), !again.needsLogReplay else {
            fatalError("a replayed hive still needs its logs, or no longer loads")
        }
    } else if !hive.needsLogReplay {
        fatalError("a dirty hive neither replayed nor flagged as needing its logs")
    }
    return 0
}
