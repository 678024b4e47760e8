import Foundation
import Primitives

/// A hive's bytes with checked access to its cells. Every offset read from the file is checked
/// against the file before use: a damaged hive ends in `RegistryError.corrupt` naming the file
/// offset, never in a crash.
///
/// A hive Windows had not finished writing (its base block's sequence numbers differ, or its
/// checksum is wrong) needs its transaction logs replayed first, as Windows does when it next
/// loads it. Given its logs, the reader replays them (`LogReplay`) and reads the hive as Windows
/// would; without usable logs, a hive whose base block is whole is read as it is on disk, with
/// `needsLogReplay` set and `dirtyReason` saying why, and one whose base block is damaged cannot
/// be read at all (`RegistryError.needsLogReplay`).
public struct Hive: Sendable {
    public let file: String
    public private(set) var bytes: [UInt8]
    public let rootOffset: UInt32
    public let minorVersion: UInt32
    let binsSize: Int
    /// Why this hive still needs its logs replayed (nil: written cleanly, or its logs were
    /// replayed here). What is read from such a hive is what the file holds, which may lack
    /// Windows' latest changes or be caught half way through them.
    public private(set) var dirtyReason: String?
    /// The logs replayed to read this hive (nil when none were).
    public let replayed: LogReplay?

    public var needsLogReplay: Bool { dirtyReason != nil }

    /// The error for a caller that must not use a hive Windows had not finished writing.
    public var logReplayError: RegistryError? {
        dirtyReason.map { RegistryError.needsLogReplay(file: file, reason: $0) }
    }

    /// Throws `RegistryError.needsLogReplay` when the hive still needs its logs replayed.
    public func requireClean() throws {
        if let error = logReplayError { throw error }
    }

    /// The hive as its bytes are, its logs not looked for.
    public init(bytes: [UInt8], file: String) throws {
        try self.init(bytes: bytes, file: file, logs: [])
    }

    /// The hive with its transaction logs (`SYSTEM.LOG1`, `SYSTEM.LOG2`, `SYSTEM.LOG`) replayed
    /// when its base block says Windows had not finished writing it; logs of a hive written
    /// cleanly are ignored, as Windows ignores them.
    public init(bytes: [UInt8], file: String, logs: [HiveLog]) throws {
        self.file = file
        // Damage found in a hive left dirty, its logs not replayed, may be the unfinished write.
        var staleNote = ""
        func corrupt(_ offset: Int, _ reason: String) -> RegistryError {
            .corrupt(file: file, offset: offset, reason: reason + staleNote)
        }
        guard bytes.count >= HiveFormat.baseBlockSize + HiveFormat.binHeaderSize else {
            throw corrupt(0, "\(bytes.count) bytes is too short for a registry hive (a base block and one bin)")
        }
        guard bytes[0..<4].elementsEqual("regf".utf8) else { throw corrupt(0, "no \"regf\" signature: not a registry hive") }

        // Windows' test for a hive that needs recovery: a damaged base block (wrong checksum),
        // or sequence numbers left apart by a write that did not finish.
        let stored = bytes.le32(508)
        let computed = HiveFormat.checksum(bytes)
        let primary = bytes.le32(4), secondary = bytes.le32(8)
        let baseBlockValid = stored == computed
        var dirty: String?
        if !baseBlockValid {
            dirty = String(format: "its base block is damaged (offset 508: checksum 0x%08X, its bytes give 0x%08X)", stored, computed)
        } else if primary != secondary {
            dirty = "its base block's sequence numbers differ (offset 4: \(primary), offset 8: \(secondary))"
        }
        var bytes = bytes
        var replayed: LogReplay?
        if let reason = dirty {
            switch LogReplayer.replay(bytes, file: file, logs: logs, baseBlockValid: baseBlockValid) {
            case let .replayed(recovered, replay):
                bytes = recovered
                replayed = replay
                dirty = nil
            case let .unusable(problem):
                dirty = reason + "; " + problem
                // Without the base block nothing says where the root key or the bins end.
                if !baseBlockValid { throw RegistryError.needsLogReplay(file: file, reason: dirty ?? reason) }
            }
        }
        self.bytes = bytes
        self.dirtyReason = dirty
        self.replayed = replayed
        if dirty != nil { staleNote = Self.staleNote }

        let fileType = bytes.le32(28)
        guard fileType == 0 else {
            throw corrupt(28, fileType == 1 || fileType == 2 || fileType == 6
                ? "a transaction log (file type \(fileType)), not a hive: open the hive it belongs to, with it beside"
                : "file type \(fileType) is not a hive's (0)")
        }
        let major = bytes.le32(20)
        minorVersion = bytes.le32(24)
        // 1.2 (Windows NT 3.5) to 1.6 (Windows Vista and later); 1.1 and 1.0 have another cell layout.
        guard major == 1, (2...6).contains(minorVersion) else { throw corrupt(20, "unknown hive format version \(major).\(minorVersion)") }
        let size = Int(bytes.le32(40))
        guard size % HiveFormat.binAlignment == 0, size > 0, HiveFormat.baseBlockSize + size <= bytes.count else {
            throw corrupt(40, "hive bins size \(size) does not fit the \(bytes.count)-byte file in 4 KiB bins")
        }
        binsSize = size
        rootOffset = bytes.le32(36)
        guard bytes[HiveFormat.baseBlockSize..<HiveFormat.baseBlockSize + 4].elementsEqual("hbin".utf8) else {
            throw corrupt(HiveFormat.baseBlockSize, "no \"hbin\" signature at the first hive bin")
        }
    }

    /// The hive in `bytes`, read from `path` (shown as `file`), with the logs beside it replayed
    /// when its base block says it needs them: `readFile` reads `path.LOG1`, `path.LOG2` and
    /// `path.LOG` (nil: no such file), only for such a hive, so reading a clean one costs nothing
    /// more. A log that cannot be read counts as missing; if the hive stays dirty its
    /// `dirtyReason` says what could not be read.
    public init(bytes: [UInt8], file: String, path: String, readingLogsWith readFile: (String) throws -> [UInt8]?) throws {
        var logs: [HiveLog] = []
        var unreadable: [String] = []
        if Self.baseBlockNeedsLogReplay(bytes) {
            for suffix in HiveLog.extensions {
                do {
                    if let log = try readFile(path + suffix) { logs.append(HiveLog(bytes: log, file: file + suffix)) }
                } catch {
                    unreadable.append("\(fileName(path + suffix)) could not be read: \(error)")
                }
            }
        }
        do {
            try self.init(bytes: bytes, file: file, logs: logs)
        } catch let RegistryError.needsLogReplay(file, reason) where !unreadable.isEmpty {
            throw RegistryError.needsLogReplay(file: file, reason: ([reason] + unreadable).joined(separator: "; "))
        }
        if let reason = dirtyReason, !unreadable.isEmpty { dirtyReason = ([reason] + unreadable).joined(separator: "; ") }
    }

    /// Whether a hive's base block says Windows had not finished writing it (wrong checksum, or
    /// sequence numbers apart): what decides whether its logs are worth reading.
    public static func baseBlockNeedsLogReplay(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= HiveFormat.baseBlockSize, bytes[0..<4].elementsEqual("regf".utf8) else { return false }
        return bytes.le32(508) != HiveFormat.checksum(bytes) || bytes.le32(4) != bytes.le32(8)
    }

    /// A view of bins being edited (already validated once), for the editor's lookups.
    init(unchecked bytes: [UInt8], file: String, rootOffset: UInt32, minorVersion: UInt32, binsSize: Int) {
        self.file = file
        self.bytes = bytes
        self.rootOffset = rootOffset
        self.minorVersion = minorVersion
        self.binsSize = binsSize
        self.dirtyReason = nil
        self.replayed = nil
    }

    /// The hive in a file, with the logs beside it (`PATH.LOG1`, `PATH.LOG2`, `PATH.LOG`)
    /// replayed when it needs them and `replayingLogs` is true.
    public init(contentsOf path: String, replayingLogs: Bool = true) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RegistryError.corrupt(file: path, offset: 0, reason: "cannot read the file")
        }
        guard replayingLogs else {
            try self.init(bytes: [UInt8](data), file: path)
            return
        }
        try self.init(bytes: [UInt8](data), file: path, path: path) { log in
            guard FileManager.default.fileExists(atPath: log) else { return nil }
            guard let bytes = FileManager.default.contents(atPath: log) else { throw RegistryError.corrupt(file: log, offset: 0, reason: "cannot read the file") }
            return [UInt8](bytes)
        }
    }

    /// Said after damage found in a hive read without the logs it needed.
    static let staleNote = " (the hive was not cleanly written and its logs were not replayed, which may be why)"

    func corrupt(_ cell: UInt32, _ reason: String) -> RegistryError {
        // Damage in a hive read without its logs may be a write Windows had not finished.
        .corrupt(file: file, offset: Int(cell) + HiveFormat.baseBlockSize, reason: reason + (needsLogReplay ? Self.staleNote : ""))
    }

    /// The payload of the allocated cell at `offset` (relative to the first bin), as file
    /// offsets.
    func cell(_ offset: UInt32, _ what: String) throws -> Range<Int> {
        let start = Int(offset) + HiveFormat.baseBlockSize
        guard offset != HiveFormat.none, offset % 8 == 0, Int(offset) + 4 <= binsSize else {
            throw corrupt(offset, "\(what): cell offset 0x\(String(offset, radix: 16)) is outside the hive bins")
        }
        let size = Int32(bitPattern: bytes.le32(start))
        guard size < 0 else { throw corrupt(offset, "\(what): the cell is marked free") }
        let length = Int(-Int64(size))
        guard length >= 8, Int(offset) + length <= binsSize else {
            throw corrupt(offset, "\(what): cell size \(length) runs past the end of the hive bins")
        }
        return (start + 4)..<(start + length)
    }

    /// A cell's payload beginning with `signature`, at least `minimum` bytes long.
    func signedCell(_ offset: UInt32, _ signature: String, minimum: Int, _ what: String) throws -> Range<Int> {
        let range = try cell(offset, what)
        guard range.count >= minimum else { throw corrupt(offset, "\(what): \(range.count)-byte cell is too small for a \(signature) cell") }
        guard bytes[range.lowerBound..<range.lowerBound + 2].elementsEqual(signature.utf8) else {
            let found = String(decoding: bytes[range.lowerBound..<range.lowerBound + 2].map { $0 >= 0x20 && $0 < 0x7F ? $0 : 0x3F }, as: UTF8.self)
            throw corrupt(offset, "\(what): expected a \"\(signature)\" cell, found \"\(found)\"")
        }
        return range
    }

    /// The fields of a key node ("nk") that reading and editing use.
    struct KeyNode {
        var offset: UInt32
        var payload: Range<Int>
        var name: String
        var subkeyCount: UInt32
        var subkeyList: UInt32
        var valueCount: UInt32
        var valueList: UInt32
        var security: UInt32
        var classOffset: UInt32
        var classLength: Int
    }

    func keyNode(_ offset: UInt32, _ what: String = "key") throws -> KeyNode {
        let range = try signedCell(offset, "nk", minimum: HiveFormat.nkFixedSize, what)
        let base = range.lowerBound
        let flags = bytes.le16(base + 2)
        let nameLength = Int(bytes.le16(base + 72))
        guard HiveFormat.nkFixedSize + nameLength <= range.count else {
            throw corrupt(offset, "\(what): key name of \(nameLength) bytes runs past its cell")
        }
        let nameBytes = bytes[(base + HiveFormat.nkFixedSize)..<(base + HiveFormat.nkFixedSize + nameLength)]
        return KeyNode(offset: offset, payload: range,
                       name: HiveFormat.decodeName(nameBytes, compressed: flags & HiveFormat.keyCompressedName != 0),
                       subkeyCount: bytes.le32(base + 20), subkeyList: bytes.le32(base + 28),
                       valueCount: bytes.le32(base + 36), valueList: bytes.le32(base + 40),
                       security: bytes.le32(base + 44), classOffset: bytes.le32(base + 48),
                       classLength: Int(bytes.le16(base + 74)))
    }

    /// The offsets of a key's subkeys, through lf/lh/li leaves and ri roots.
    func subkeyOffsets(_ node: KeyNode) throws -> [UInt32] {
        guard node.subkeyCount > 0 else { return [] }
        var result: [UInt32] = []
        try collectSubkeys(node.subkeyList, depth: 0, into: &result, "subkey list of \(node.name)")
        guard result.count == Int(node.subkeyCount) else {
            throw corrupt(node.offset, "key \(node.name) says it has \(node.subkeyCount) subkeys, its list holds \(result.count)")
        }
        return result
    }

    private func collectSubkeys(_ offset: UInt32, depth: Int, into result: inout [UInt32], _ what: String) throws {
        let range = try cell(offset, what)
        guard range.count >= 4 else { throw corrupt(offset, "\(what): cell too small for a subkey list") }
        let base = range.lowerBound
        let signature = String(decoding: bytes[base..<base + 2], as: UTF8.self)
        let count = Int(bytes.le16(base + 2))
        let entrySize: Int
        switch signature {
        case "lf", "lh": entrySize = 8
        case "li": entrySize = 4
        case "ri":
            guard depth == 0 else { throw corrupt(offset, "\(what): an index root inside an index root") }
            guard 4 + count * 4 <= range.count else { throw corrupt(offset, "\(what): \(count) entries run past the cell") }
            for index in 0..<count {
                try collectSubkeys(bytes.le32(base + 4 + index * 4), depth: 1, into: &result, what)
            }
            return
        default: throw corrupt(offset, "\(what): expected an lf, lh, li or ri cell, found \"\(signature)\"")
        }
        guard 4 + count * entrySize <= range.count else { throw corrupt(offset, "\(what): \(count) entries run past the cell") }
        for index in 0..<count { result.append(bytes.le32(base + 4 + index * entrySize)) }
    }

    func valueOffsets(_ node: KeyNode) throws -> [UInt32] {
        guard node.valueCount > 0 else { return [] }
        let range = try cell(node.valueList, "value list of \(node.name)")
        guard Int(node.valueCount) * 4 <= range.count else {
            throw corrupt(node.valueList, "value list of \(node.name): \(node.valueCount) values run past the cell")
        }
        return (0..<Int(node.valueCount)).map { bytes.le32(range.lowerBound + $0 * 4) }
    }

    /// A value node ("vk") and where its data lives.
    struct ValueNode {
        var offset: UInt32
        var name: String
        var type: UInt32
        var dataSize: UInt32
        var dataOffset: UInt32
        var isInline: Bool { dataSize & HiveFormat.dataInline != 0 }
        var length: Int { Int(dataSize & ~HiveFormat.dataInline) }
    }

    func valueNode(_ offset: UInt32, _ what: String) throws -> ValueNode {
        let range = try signedCell(offset, "vk", minimum: HiveFormat.vkFixedSize, what)
        let base = range.lowerBound
        let nameLength = Int(bytes.le16(base + 2))
        guard HiveFormat.vkFixedSize + nameLength <= range.count else {
            throw corrupt(offset, "\(what): value name of \(nameLength) bytes runs past its cell")
        }
        let flags = bytes.le16(base + 16)
        let name = HiveFormat.decodeName(bytes[(base + 20)..<(base + 20 + nameLength)], compressed: flags & HiveFormat.valueCompressedName != 0)
        return ValueNode(offset: offset, name: name, type: bytes.le32(base + 12),
                         dataSize: bytes.le32(base + 4), dataOffset: bytes.le32(base + 8))
    }

    func data(_ value: ValueNode, _ what: String) throws -> [UInt8] {
        let length = value.length
        if value.isInline {
            guard length <= 4 else { throw corrupt(value.offset, "\(what): inline data of \(length) bytes (at most 4 fit)") }
            return Array(value.dataOffset.littleEndianBytes.prefix(length))
        }
        if length == 0 { return [] }
        let range = try cell(value.dataOffset, what + " data")
        if isBigData(length: length, cell: range) {
            let count = Int(bytes.le16(range.lowerBound + 2))
            let list = try cell(bytes.le32(range.lowerBound + 4), what + " big data segment list")
            guard count * 4 <= list.count else { throw corrupt(value.dataOffset, "\(what): \(count) big data segments run past their list") }
            var result: [UInt8] = []
            for index in 0..<count {
                let segment = try cell(bytes.le32(list.lowerBound + index * 4), what + " big data segment \(index)")
                let take = min(segment.count, HiveFormat.bigDataSegment, length - result.count)
                result += bytes[segment.lowerBound..<segment.lowerBound + take]
                if result.count == length { break }
            }
            guard result.count == length else {
                throw corrupt(value.dataOffset, "\(what): big data segments hold \(result.count) of \(length) bytes")
            }
            return result
        }
        guard length <= range.count else {
            throw corrupt(value.dataOffset, "\(what): \(length) bytes of data do not fit the \(range.count)-byte cell")
        }
        return Array(bytes[range.lowerBound..<range.lowerBound + length])
    }

    /// Whether value data of `length` bytes in `cell` is a big data ("db") list of segments:
    /// only from format 1.4 (Windows XP) on; a 1.3 hive (Windows 2000, and hives Windows keeps
    /// at 1.3, such as many NTUSER.DAT) holds large data in one cell, which may begin "db" too.
    /// A cell that holds the whole data is the data whatever it begins with.
    func isBigData(length: Int, cell range: Range<Int>) -> Bool {
        minorVersion >= 4 && length > HiveFormat.bigDataSegment && range.count >= 8 && range.count < length
            && bytes[range.lowerBound..<range.lowerBound + 2].elementsEqual("db".utf8)
    }

    /// The whole tree under the root key.
    public func readTree() throws -> RegistryKey {
        var visited = Set<UInt32>()
        return try readKey(rootOffset, path: "", depth: 0, visited: &visited)
    }

    /// The key at `path` (below the root), or nil.
    public func key(at path: String) throws -> RegistryKey? {
        guard let offset = try find(keyPathComponents(path)) else { return nil }
        var visited = Set<UInt32>()
        return try readKey(offset, path: path, depth: 0, visited: &visited)
    }

    /// The offset of the key reached by following `parts` from the root.
    func find(_ parts: [String]) throws -> UInt32? {
        var offset = rootOffset
        for part in parts {
            let node = try keyNode(offset)
            var next: UInt32?
            for child in try subkeyOffsets(node) where namesEqual(try keyNode(child).name, part) {
                next = child
                break
            }
            guard let found = next else { return nil }
            offset = found
        }
        return offset
    }

    private func readKey(_ offset: UInt32, path: String, depth: Int, visited: inout Set<UInt32>) throws -> RegistryKey {
        guard depth < 512 else { throw corrupt(offset, "keys nested more than 512 deep under \(path)") }
        guard visited.insert(offset).inserted else { throw corrupt(offset, "key \(path) appears twice in the tree (a loop)") }
        let node = try keyNode(offset, path.isEmpty ? "root key" : "key \(path)")
        let here = path + "\\" + node.name
        var key = RegistryKey(name: node.name)
        if node.classLength > 0, node.classOffset != HiveFormat.none {
            let range = try cell(node.classOffset, "class name of \(here)")
            guard node.classLength <= range.count else { throw corrupt(node.classOffset, "class name of \(here) runs past its cell") }
            key.className = UTF16LE.decode(bytes[range.lowerBound..<range.lowerBound + node.classLength])
        }
        for valueOffset in try valueOffsets(node) {
            let value = try valueNode(valueOffset, "value of \(here)")
            key.values.append(RegistryValue(name: value.name, type: value.type, data: try data(value, "value \(here)\\\(value.name)")))
        }
        for child in try subkeyOffsets(node) {
            key.subkeys.append(try readKey(child, path: here, depth: depth + 1, visited: &visited))
        }
        return key
    }
}
