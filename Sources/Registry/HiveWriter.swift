import Foundation
import Primitives

/// Writes a new hive from a key tree: what Windows' RegSaveKey produces, cell by cell, so that
/// Windows (and hivex) load it. Every key shares one security cell.
public enum HiveWriter {
    /// - Parameters:
    ///   - root: the root key (its name is stored, e.g. "NewStoreRoot" for a BCD store).
    ///   - fileName: recorded in the base block (Windows keeps the hive's path there).
    ///   - security: a self-relative security descriptor for every key.
    public static func write(_ root: RegistryKey, fileName: String = "BCD", time: Date = Date(),
                             security: [UInt8] = SecurityDescriptors.administratorsAndSystem) throws -> [UInt8] {
        let stamp = HiveFormat.fileTime(time)
        var arena = CellArena(time: stamp)
        var writer = Writer(arena: arena, security: 0, keyCount: 0, fileName: fileName, descriptor: security)
        let rootOffset = try writer.key(root, parent: nil, path: "\\" + root.name)
        // The single security cell: a ring of one, referenced by every key.
        var sk = Array("sk".utf8) + [0, 0] + writer.security.littleEndianBytes + writer.security.littleEndianBytes
        sk += UInt32(writer.keyCount).littleEndianBytes + UInt32(security.count).littleEndianBytes + security
        arena = writer.arena
        arena.write(sk, cell: writer.security, at: 0)
        let bins = arena.finish()
        guard bins.count < Int(UInt32.max) else { throw RegistryError.tooLarge(file: fileName, what: "the hive") }
        let base = HiveFormat.baseBlock(sequence: 1, rootOffset: rootOffset, binsSize: UInt32(bins.count), fileName: fileName, time: stamp)
        return base + bins
    }

    private struct Writer {
        var arena: CellArena
        var security: UInt32
        var keyCount: Int
        let fileName: String
        let descriptor: [UInt8]

        mutating func key(_ key: RegistryKey, parent: UInt32?, path: String) throws -> UInt32 {
            let (name, compressed) = HiveFormat.encodeName(key.name)
            guard name.count <= 0xFFFF, key.values.count < 0x10_0000, key.subkeys.count < 0x10_0000 else {
                throw RegistryError.tooLarge(file: fileName, what: "key \(path)")
            }
            let nk = arena.allocate(HiveFormat.nkFixedSize + name.count)
            keyCount += 1
            if parent == nil {
                // Reserved now, filled when the number of keys is known.
                security = arena.allocate(20 + descriptor.count)
            }

            try checkUnique(key.values.map(\.name), path)
            try checkUnique(key.subkeys.map(\.name), path)
            var valueList = HiveFormat.none
            if !key.values.isEmpty {
                let offsets = key.values.map { arena.storeValue($0) }
                valueList = arena.store(offsets.flatMap { $0.littleEndianBytes })
            }
            var subkeyList = HiveFormat.none
            let children = key.subkeys.sorted { upcasedUnits($0.name).lexicographicallyPrecedes(upcasedUnits($1.name)) }
            if !children.isEmpty {
                var entries: [(offset: UInt32, hash: UInt32)] = []
                for child in children {
                    entries.append((try self.key(child, parent: nk, path: path + "\\" + child.name), HiveFormat.nameHash(child.name)))
                }
                subkeyList = arena.storeSubkeyList(entries)
            }
            var classOffset = HiveFormat.none
            var classLength = 0
            if let className = key.className, !className.isEmpty {
                let bytes = UTF16LE.encode(className)
                classLength = bytes.count
                classOffset = arena.store(bytes)
            }

            var flags = parent == nil ? HiveFormat.keyHiveEntry | HiveFormat.keyNoDelete : 0
            if compressed { flags |= HiveFormat.keyCompressedName }
            var cell = Array("nk".utf8) + flags.littleEndianBytes + arena.time.littleEndianBytes + UInt32(0).littleEndianBytes
            cell += (parent ?? 0).littleEndianBytes + UInt32(children.count).littleEndianBytes + UInt32(0).littleEndianBytes
            cell += subkeyList.littleEndianBytes + HiveFormat.none.littleEndianBytes
            cell += UInt32(key.values.count).littleEndianBytes + valueList.littleEndianBytes
            cell += security.littleEndianBytes + classOffset.littleEndianBytes
            // Largest subkey name, subkey class, value name (bytes as UTF-16) and value data.
            cell += (UInt32(children.map { $0.name.utf16.count * 2 }.max() ?? 0)).littleEndianBytes
            cell += (UInt32(children.map { ($0.className ?? "").utf16.count * 2 }.max() ?? 0)).littleEndianBytes
            cell += (UInt32(key.values.map { $0.name.utf16.count * 2 }.max() ?? 0)).littleEndianBytes
            cell += (UInt32(key.values.map(\.data.count).max() ?? 0)).littleEndianBytes
            cell += UInt32(0).littleEndianBytes
            cell += UInt16(name.count).littleEndianBytes + UInt16(classLength).littleEndianBytes
            arena.write(cell + name, cell: nk, at: 0)
            return nk
        }

        private func checkUnique(_ names: [String], _ path: String) throws {
            var seen = Set<[UInt16]>()
            for name in names where !seen.insert(upcasedUnits(name)).inserted {
                throw RegistryError.duplicateName(key: path, name: name)
            }
        }
    }
}
