import Foundation
import Primitives

/// Changes an existing hive in place, as Windows would: cells already there stay where they
/// are, new cells go into one bin appended at the end, replaced cells are marked free, and the
/// base block gets a new sequence number, time and checksum. Keys, values, security and
/// everything else not touched stay byte for byte.
///
/// A hive Windows had not finished writing is refused (`RegistryError.needsLogReplay`): its
/// latest changes are in its .LOG1/.LOG2, and the file itself may be half written. Saving it
/// with our change would mark it clean, so Windows would ignore the logs at its next start:
/// its pending changes lost, a half-written hive kept as if whole.
public struct HiveEditor {
    public let file: String
    private let baseBlock: [UInt8]
    private let rootOffset: UInt32
    private let minorVersion: UInt32
    private var arena: CellArena
    private var changed = false

    public init(bytes: [UInt8], file: String, time: Date = Date()) throws {
        let hive = try Hive(bytes: bytes, file: file)
        try hive.requireClean()
        self.file = file
        baseBlock = Array(bytes[0..<HiveFormat.baseBlockSize])
        rootOffset = hive.rootOffset
        minorVersion = hive.minorVersion
        // Anything after the declared bins (slack Windows leaves) is dropped.
        arena = CellArena(existing: Array(bytes[HiveFormat.baseBlockSize..<HiveFormat.baseBlockSize + hive.binsSize]),
                          time: HiveFormat.fileTime(time))
    }

    private var hive: Hive {
        Hive(unchecked: baseBlock + arena.bins, file: file, rootOffset: rootOffset, minorVersion: minorVersion, binsSize: arena.bins.count)
    }

    /// Sets `value` in the key at `path` (below the root: `Microsoft\Windows\CurrentVersion`),
    /// creating missing keys when `createKeys` is true.
    public mutating func setValue(_ value: RegistryValue, inKey path: String, createKeys: Bool = true) throws {
        var offset = rootOffset
        var walked = ""
        for part in keyPathComponents(path) {
            walked += "\\" + part
            let view = hive
            let node = try view.keyNode(offset)
            var next: UInt32?
            for child in try view.subkeyOffsets(node) where namesEqual(try view.keyNode(child).name, part) {
                next = child
                break
            }
            if let next {
                offset = next
            } else if createKeys {
                offset = try addSubkey(part, to: node)
            } else {
                throw RegistryError.keyNotFound(file: file, path: walked)
            }
        }
        try set(value, in: offset)
        changed = true
    }

    /// The value at `path`\`name`, read back from the edited bytes.
    public func value(_ name: String, inKey path: String) throws -> RegistryValue? {
        try hive.key(at: path)?.value(name)
    }

    /// The hive's new bytes (unchanged when nothing was set).
    public func bytes(time: Date = Date()) -> [UInt8] {
        var arena = self.arena
        let bins = arena.finish()
        var block = baseBlock
        guard changed else { return baseBlock + bins }
        let sequence = block.le32(4) &+ 1
        block.put(sequence, at: 4)
        block.put(sequence, at: 8)
        block.put(HiveFormat.fileTime(time), at: 12)
        block.put(UInt32(bins.count), at: 40)
        block.put(HiveFormat.checksum(block), at: 508)
        return block + bins
    }

    private mutating func set(_ value: RegistryValue, in keyOffset: UInt32) throws {
        let view = hive
        let node = try view.keyNode(keyOffset)
        let bigData = minorVersion >= 4
        let offsets = try view.valueOffsets(node)
        var existing: Hive.ValueNode?
        for offset in offsets {
            let candidate = try view.valueNode(offset, "value of \(node.name)")
            if namesEqual(candidate.name, value.name) { existing = candidate; break }
        }
        if let existing {
            try freeData(existing, view)
            let (size, dataOffset) = arena.storeData(value.data, bigData: bigData)
            arena.write(size, cell: existing.offset, at: 4)
            arena.write(dataOffset, cell: existing.offset, at: 8)
            arena.write(value.type, cell: existing.offset, at: 12)
        } else {
            let vk = arena.storeValue(value, bigData: bigData)
            let list = arena.store((offsets + [vk]).flatMap { $0.littleEndianBytes })
            if node.valueCount > 0 { arena.free(node.valueList) }
            arena.write(UInt32(offsets.count + 1), cell: keyOffset, at: 36)
            arena.write(list, cell: keyOffset, at: 40)
        }
        let base = node.payload.lowerBound
        let nameSize = UInt32(value.name.utf16.count * 2)
        if nameSize > view.bytes.le32(base + 60) { arena.write(nameSize, cell: keyOffset, at: 60) }
        if UInt32(value.data.count) > view.bytes.le32(base + 64) { arena.write(UInt32(value.data.count), cell: keyOffset, at: 64) }
        arena.write(arena.time, cell: keyOffset, at: 4)
    }

    private mutating func freeData(_ value: Hive.ValueNode, _ view: Hive) throws {
        guard !value.isInline, value.length > 0 else { return }
        let range = try view.cell(value.dataOffset, "data of \(value.name)")
        if view.isBigData(length: value.length, cell: range) {
            let count = Int(view.bytes.le16(range.lowerBound + 2))
            let listOffset = view.bytes.le32(range.lowerBound + 4)
            let list = try view.cell(listOffset, "big data list of \(value.name)")
            for index in 0..<min(count, list.count / 4) { arena.free(view.bytes.le32(list.lowerBound + index * 4)) }
            arena.free(listOffset)
        }
        arena.free(value.dataOffset)
    }

    private mutating func addSubkey(_ name: String, to parent: Hive.KeyNode) throws -> UInt32 {
        let view = hive
        let (nameBytes, compressed) = HiveFormat.encodeName(name)
        guard nameBytes.count <= 510 else { throw RegistryError.tooLarge(file: file, what: "key name \(name)") }
        var cell = Array("nk".utf8) + (compressed ? HiveFormat.keyCompressedName : 0).littleEndianBytes + arena.time.littleEndianBytes
        cell += UInt32(0).littleEndianBytes + parent.offset.littleEndianBytes + [UInt8](repeating: 0, count: 8)
        cell += HiveFormat.none.littleEndianBytes + HiveFormat.none.littleEndianBytes + UInt32(0).littleEndianBytes
        cell += HiveFormat.none.littleEndianBytes + parent.security.littleEndianBytes + HiveFormat.none.littleEndianBytes
        cell += [UInt8](repeating: 0, count: 20) + UInt16(nameBytes.count).littleEndianBytes + [0, 0]
        let child = arena.store(cell + nameBytes)

        // The new key shares its parent's security cell: one more reference to it.
        let sk = try view.signedCell(parent.security, "sk", minimum: 20, "security of \(parent.name)")
        arena.write(view.bytes.le32(sk.lowerBound + 12) &+ 1, cell: parent.security, at: 12)

        var entries: [(offset: UInt32, hash: UInt32, key: [UInt16])] = []
        for offset in try view.subkeyOffsets(parent) {
            let sibling = try view.keyNode(offset).name
            entries.append((offset, HiveFormat.nameHash(sibling), upcasedUnits(sibling)))
        }
        entries.append((child, HiveFormat.nameHash(name), upcasedUnits(name)))
        entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
        let list = arena.storeSubkeyList(entries.map { ($0.offset, $0.hash) })
        if parent.subkeyCount > 0 { try freeSubkeyList(parent.subkeyList, view) }
        arena.write(UInt32(entries.count), cell: parent.offset, at: 20)
        arena.write(list, cell: parent.offset, at: 28)
        let nameSize = UInt32(name.utf16.count * 2)
        if nameSize > view.bytes.le32(parent.payload.lowerBound + 52) { arena.write(nameSize, cell: parent.offset, at: 52) }
        arena.write(arena.time, cell: parent.offset, at: 4)
        return child
    }

    private mutating func freeSubkeyList(_ offset: UInt32, _ view: Hive) throws {
        let range = try view.cell(offset, "subkey list")
        if view.bytes[range.lowerBound..<range.lowerBound + 2].elementsEqual("ri".utf8) {
            let count = Int(view.bytes.le16(range.lowerBound + 2))
            for index in 0..<min(count, (range.count - 4) / 4) { arena.free(view.bytes.le32(range.lowerBound + 4 + index * 4)) }
        }
        arena.free(offset)
    }
}
