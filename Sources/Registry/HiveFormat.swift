import Foundation
import Primitives

/// The regf layout, as documented by libyal's "Windows NT Registry File (REGF) format" and
/// checked by hivex: a 4 KiB base block, then hive bins ("hbin", 4 KiB multiples) holding cells.
/// Every cell offset stored in the hive is relative to the first hbin, i.e. file offset - 4096.
enum HiveFormat {
    static let baseBlockSize = 4096
    static let binHeaderSize = 32
    static let binAlignment = 4096
    /// Cells are 8-byte aligned; their 4-byte size field is negative while allocated.
    static let cellAlignment = 8
    /// Values larger than this are split into "db" (big data) segments (format 1.4 and later;
    /// 1.3 hives keep them in one cell).
    static let bigDataSegment = 16344
    /// Offsets mean "none" with all bits set.
    static let none: UInt32 = 0xFFFF_FFFF
    /// We write format 1.5 (Windows XP SP2 and later load it): hash leaves ("lh") and big data.
    static let majorVersion: UInt32 = 1
    static let minorVersion: UInt32 = 5
    /// Hash leaves longer than this are split under an index root ("ri"), as Windows does.
    static let maxLeafEntries = 500

    // nk flags
    static let keyHiveEntry: UInt16 = 0x0004
    static let keyNoDelete: UInt16 = 0x0008
    static let keyCompressedName: UInt16 = 0x0020
    // vk flags
    static let valueCompressedName: UInt16 = 0x0001
    /// In a vk's data size: the (at most 4) bytes sit in the data offset field itself.
    static let dataInline: UInt32 = 0x8000_0000

    static let nkFixedSize = 76
    static let vkFixedSize = 20

    /// XOR of the first 127 little-endian dwords of the base block; Windows replaces 0 with 1
    /// and 0xFFFFFFFF with 0xFFFFFFFE.
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var sum: UInt32 = 0
        for index in 0..<127 { sum ^= bytes.le32(index * 4) }
        if sum == 0 { return 1 }
        if sum == 0xFFFF_FFFF { return 0xFFFF_FFFE }
        return sum
    }

    /// The "lh" hash of a key name: h = h * 37 + upcase(unit) over its UTF-16 units.
    static func nameHash(_ name: String) -> UInt32 {
        upcasedUnits(name).reduce(UInt32(0)) { $0 &* 37 &+ UInt32($1) }
    }

    /// Names whose every unit fits in Latin-1 are stored one byte per character ("compressed").
    static func encodeName(_ name: String) -> (bytes: [UInt8], compressed: Bool) {
        let units = Array(name.utf16)
        if units.allSatisfy({ $0 < 0x100 }) { return (units.map { UInt8($0) }, true) }
        return (UTF16LE.encode(name), false)
    }

    static func decodeName(_ bytes: ArraySlice<UInt8>, compressed: Bool) -> String {
        if compressed { return String(decoding: bytes.map { UInt16($0) }, as: UTF16.self) }
        return UTF16LE.decode(bytes)
    }

    /// Windows FILETIME: 100 ns ticks since 1601-01-01.
    static func fileTime(_ date: Date) -> UInt64 {
        UInt64(max(0, (date.timeIntervalSince1970 + 11_644_473_600) * 10_000_000))
    }

    static func align(_ size: Int, _ alignment: Int) -> Int { (size + alignment - 1) / alignment * alignment }

    /// A base block for a hive whose bins take `binsSize` bytes, root key cell at `rootOffset`.
    static func baseBlock(sequence: UInt32, rootOffset: UInt32, binsSize: UInt32, fileName: String, time: UInt64) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: baseBlockSize)
        block.put(Array("regf".utf8), at: 0)
        block.put(sequence, at: 4)
        block.put(sequence, at: 8)
        block.put(time, at: 12)
        block.put(majorVersion, at: 20)
        block.put(minorVersion, at: 24)
        block.put(UInt32(0), at: 28)       // primary file
        block.put(UInt32(1), at: 32)       // direct memory load
        block.put(rootOffset, at: 36)
        block.put(binsSize, at: 40)
        block.put(UInt32(1), at: 44)       // clustering factor
        // The last 31 characters of the file's path, UTF-16LE, as Windows records it.
        let name = Array(UTF16LE.encode(String(fileName.suffix(31))).prefix(62))
        block.put(name, at: 48)
        block.put(checksum(block), at: 508)
        return block
    }

    static func binHeader(offset: UInt32, size: UInt32, time: UInt64) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: binHeaderSize)
        header.put(Array("hbin".utf8), at: 0)
        header.put(offset, at: 4)
        header.put(size, at: 8)
        header.put(time, at: 20)
        return header
    }
}

/// Self-relative security descriptors for new keys.
public enum SecurityDescriptors {
    /// Owner Administrators, group SYSTEM; Administrators and SYSTEM have full control,
    /// inherited by subkeys: what a BCD store created by Windows grants (O:BAG:SYD:(A;CI;KA;;;BA)(A;CI;KA;;;SY)).
    public static let administratorsAndSystem: [UInt8] = {
        let administrators: [UInt8] = [1, 2, 0, 0, 0, 0, 0, 5] + UInt32(32).littleEndianBytes + UInt32(544).littleEndianBytes
        let system: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 5] + UInt32(18).littleEndianBytes
        func ace(_ sid: [UInt8]) -> [UInt8] {
            let size = UInt16(8 + sid.count)
            // ACCESS_ALLOWED_ACE_TYPE, CONTAINER_INHERIT_ACE, size, KEY_ALL_ACCESS
            return [0x00, 0x02] + size.littleEndianBytes + UInt32(0x000F_003F).littleEndianBytes + sid
        }
        let aces = ace(administrators) + ace(system)
        let acl: [UInt8] = [2, 0] + UInt16(8 + aces.count).littleEndianBytes + UInt16(2).littleEndianBytes + [0, 0] + aces
        let header = 20
        let ownerOffset = header
        let groupOffset = ownerOffset + administrators.count
        let daclOffset = groupOffset + system.count
        // Revision 1, SE_SELF_RELATIVE | SE_DACL_PRESENT
        return [1, 0] + UInt16(0x8004).littleEndianBytes + UInt32(ownerOffset).littleEndianBytes
            + UInt32(groupOffset).littleEndianBytes + UInt32(0).littleEndianBytes + UInt32(daclOffset).littleEndianBytes
            + administrators + system + acl
    }()
}
