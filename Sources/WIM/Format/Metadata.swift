import Digests
import Primitives

/// Windows file attributes stored with each entry (FILE_ATTRIBUTE_*).
public struct FileAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readOnly = FileAttributes(rawValue: 0x1)
    public static let hidden = FileAttributes(rawValue: 0x2)
    public static let system = FileAttributes(rawValue: 0x4)
    public static let directory = FileAttributes(rawValue: 0x10)
    public static let archive = FileAttributes(rawValue: 0x20)
    public static let device = FileAttributes(rawValue: 0x40)
    public static let normal = FileAttributes(rawValue: 0x80)
    public static let temporary = FileAttributes(rawValue: 0x100)
    public static let sparseFile = FileAttributes(rawValue: 0x200)
    public static let reparsePoint = FileAttributes(rawValue: 0x400)
    public static let compressed = FileAttributes(rawValue: 0x800)
    public static let offline = FileAttributes(rawValue: 0x1000)
    public static let notContentIndexed = FileAttributes(rawValue: 0x2000)
    public static let encrypted = FileAttributes(rawValue: 0x4000)
    public static let integrityStream = FileAttributes(rawValue: 0x8000)
    public static let virtual = FileAttributes(rawValue: 0x10000)
    public static let noScrubData = FileAttributes(rawValue: 0x20000)

    /// The names `wimlib-imagex dir --detailed` prints, in bit order.
    public var names: [String] {
        let all: [(FileAttributes, String)] = [
            (.readOnly, "FILE_ATTRIBUTE_READONLY"), (.hidden, "FILE_ATTRIBUTE_HIDDEN"), (.system, "FILE_ATTRIBUTE_SYSTEM"),
            (.directory, "FILE_ATTRIBUTE_DIRECTORY"), (.archive, "FILE_ATTRIBUTE_ARCHIVE"), (.device, "FILE_ATTRIBUTE_DEVICE"),
            (.normal, "FILE_ATTRIBUTE_NORMAL"), (.temporary, "FILE_ATTRIBUTE_TEMPORARY"), (.sparseFile, "FILE_ATTRIBUTE_SPARSE_FILE"),
            (.reparsePoint, "FILE_ATTRIBUTE_REPARSE_POINT"), (.compressed, "FILE_ATTRIBUTE_COMPRESSED"),
            (.offline, "FILE_ATTRIBUTE_OFFLINE"), (.notContentIndexed, "FILE_ATTRIBUTE_NOT_CONTENT_INDEXED"),
            (.encrypted, "FILE_ATTRIBUTE_ENCRYPTED"), (.integrityStream, "FILE_ATTRIBUTE_INTEGRITY_STREAM"),
            (.virtual, "FILE_ATTRIBUTE_VIRTUAL"), (.noScrubData, "FILE_ATTRIBUTE_NO_SCRUB_DATA"),
        ]
        return all.filter { contains($0.0) }.map(\.1)
    }
}

/// A named data stream (alternate data stream) of a file.
public struct NamedStream: Sendable, Equatable {
    public var name: String
    public var hash: SHA1Digest

    public init(name: String, hash: SHA1Digest) {
        self.name = name
        self.hash = hash
    }
}

/// One directory entry of an image. Entries sharing a non-zero `hardLinkGroup` are names of the
/// same file.
public struct DirectoryEntry: Sendable {
    public var name: String
    public var shortName: String
    /// Index of the parent entry; the root is its own parent (index 0).
    public var parent: Int
    /// Children are stored contiguously: `firstChild ..< firstChild + childCount`.
    public var firstChild: Int = 0
    public var childCount: Int = 0
    public var attributes: FileAttributes
    /// Index into the image's security descriptors, or -1 for none.
    public var securityID: Int32
    /// FILETIME values: 100 ns intervals since 1601-01-01 UTC.
    public var creationTime: UInt64
    public var lastAccessTime: UInt64
    public var lastWriteTime: UInt64
    /// Contents (unnamed data stream); zero for an empty file.
    public var dataHash: SHA1Digest
    /// Reparse data (without its 8-byte header) for reparse points; zero otherwise.
    public var reparseHash: SHA1Digest
    public var reparseTag: UInt32
    /// Bit 0 set: the reparse target was not adjusted ("rpfix") at capture.
    public var reparseFlags: UInt16
    public var hardLinkGroup: UInt64
    public var namedStreams: [NamedStream]
    /// Tagged items after the names (object ID, wimlib's UNIX data), kept raw.
    public var extraData: [UInt8]
    /// Offset of the entry in the uncompressed metadata resource, for error messages.
    public var metadataOffset: Int

    public var isDirectory: Bool { attributes.contains(.directory) && !attributes.contains(.reparsePoint) }
    public var isReparsePoint: Bool { attributes.contains(.reparsePoint) }

    /// The object ID tagged item (16-byte GUID and optional extra IDs), if present.
    public var objectID: [UInt8]? { taggedItem(0x1) }

    func taggedItem(_ wanted: UInt32) -> [UInt8]? {
        var p = 0
        while p + 8 <= extraData.count {
            let tag = extraData.le32(p)
            let length = Int(extraData.le32(p + 4))
            guard length <= extraData.count - p - 8 else { return nil }
            if tag == wanted { return Array(extraData[(p + 8)..<(p + 8 + length)]) }
            p = (p + 8 + length + 7) & ~7
        }
        return nil
    }
}

/// The parsed metadata resource of one image: security descriptors and the directory tree.
public struct ImageMetadata: Sendable {
    public var securityDescriptors: [[UInt8]]
    /// Entry 0 is the root directory; children of each directory are contiguous.
    public var entries: [DirectoryEntry]

    public func children(of index: Int) -> Range<Int> {
        let e = entries[index]
        return e.firstChild..<(e.firstChild + e.childCount)
    }

    /// The entry's path inside the image, with "/" separators and a leading "/" (the root is "/").
    public func path(of index: Int) -> String {
        if index == 0 { return "/" }
        var parts: [String] = []
        var i = index
        var guardCount = 0
        while i != 0, guardCount < 100_000 {
            parts.append(entries[i].name)
            i = entries[i].parent
            guardCount += 1
        }
        return "/" + parts.reversed().joined(separator: "/")
    }

    /// Finds the entry at `path` ("/", "/Windows/System32", "Windows\\System32"): exact names
    /// first, then a case-insensitive match as Windows would.
    public func lookup(_ path: String) -> Int? {
        let components = path.split(whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init)
        var current = 0
        for component in components {
            let range = children(of: current)
            if let exact = range.first(where: { entries[$0].name == component }) {
                current = exact
            } else if let folded = range.first(where: { entries[$0].name.lowercased() == component.lowercased() }) {
                current = folded
            } else {
                return nil
            }
        }
        return current
    }
}

extension ImageMetadata {
    static let dentryFixedSize = 102
    static let streamEntryFixedSize = 38

    /// Parses an uncompressed metadata resource. Every length, offset and name is checked; a
    /// subdirectory offset that was already visited (a loop) is an error.
    public init(_ data: [UInt8], image: Int, path: String) throws(WIMError) {
        func bad(_ offset: Int, _ reason: String) -> WIMError {
            .invalidMetadata(path: path, image: image, offset: UInt64(offset), reason: reason)
        }
        guard data.count >= 8 else { throw bad(0, "metadata resource is only \(data.count) bytes") }
        // Security data: total length, count, then the sizes and the descriptors themselves.
        let totalLength = Int(data.le32(0))
        let count = Int(data.le32(4))
        var descriptors: [[UInt8]] = []
        var treeStart = 8
        if totalLength != 0 {
            guard totalLength >= 8, totalLength <= data.count, count <= (totalLength - 8) / 8 else {
                throw bad(0, "security data length \(totalLength) with \(count) descriptors does not fit in \(data.count) bytes")
            }
            var p = 8 + 8 * count
            descriptors.reserveCapacity(count)
            for i in 0..<count {
                let size = data.le64(8 + 8 * i)
                guard size <= UInt64(totalLength - p) else {
                    throw bad(8 + 8 * i, "security descriptor \(i) of \(size) bytes runs past the security data")
                }
                descriptors.append(Array(data[p..<(p + Int(size))]))
                p += Int(size)
            }
            treeStart = (totalLength + 7) & ~7
        }
        securityDescriptors = descriptors

        var entries: [DirectoryEntry] = []
        guard var root = try Self.readEntry(data, at: treeStart, parent: 0, bad: bad) else {
            throw bad(treeStart, "the image has no root directory entry")
        }
        guard root.entry.isDirectory else { throw bad(treeStart, "the root entry is not a directory") }
        root.entry.name = ""
        root.entry.shortName = ""
        entries.append(root.entry)
        var subdirOffsets: [Int: UInt64] = [0: root.subdirOffset]
        var visited = Set<UInt64>()
        // Breadth-first, so each directory's children land contiguously in `entries`.
        var queue = 0
        while queue < entries.count {
            let dirIndex = queue
            queue += 1
            guard entries[dirIndex].isDirectory, let subdir = subdirOffsets[dirIndex], subdir != 0 else { continue }
            guard subdir < UInt64(data.count) else {
                throw bad(entries[dirIndex].metadataOffset, "directory's children offset \(subdir) is past the end of the metadata (\(data.count) bytes)")
            }
            guard visited.insert(subdir).inserted else {
                throw bad(entries[dirIndex].metadataOffset, "directory's children offset \(subdir) was already used by another directory (a loop in the tree)")
            }
            entries[dirIndex].firstChild = entries.count
            var offset = Int(subdir)
            var names = Set<String>()
            while let child = try Self.readEntry(data, at: offset, parent: dirIndex, bad: bad) {
                let name = child.entry.name
                try Self.validateName(name, offset: offset, bad: bad)
                guard names.insert(name).inserted else {
                    throw bad(offset, "two entries named \"\(name)\" in the same directory")
                }
                if child.entry.isDirectory { subdirOffsets[entries.count] = child.subdirOffset }
                entries.append(child.entry)
                offset = child.next
                guard entries.count <= data.count / 8 else { throw bad(offset, "more entries than the metadata can hold") }
            }
            entries[dirIndex].childCount = entries.count - entries[dirIndex].firstChild
        }
        self.entries = entries
    }

    /// Names that could not be created safely, or at all, on the target are rejected here so no
    /// later stage can be tricked into writing outside its target.
    static func validateName(_ name: String, offset: Int, bad: (Int, String) -> WIMError) throws(WIMError) {
        if name.isEmpty { throw bad(offset, "an entry has an empty name") }
        if name == "." || name == ".." { throw bad(offset, "an entry is named \"\(name)\"") }
        if name.contains("/") { throw bad(offset, "entry name \"\(name)\" contains \"/\"") }
        if name.unicodeScalars.contains("\u{0}") { throw bad(offset, "entry name contains a NUL character") }
    }

    /// Reads one entry and its stream entries at `offset`; nil at an end-of-directory marker.
    static func readEntry(_ data: [UInt8], at offset: Int, parent: Int,
                          bad: (Int, String) -> WIMError) throws(WIMError) -> (entry: DirectoryEntry, subdirOffset: UInt64, next: Int)? {
        guard offset >= 0, offset <= data.count - 8 else { throw bad(offset, "entry runs past the end of the metadata") }
        let rawLength = data.le64(offset)
        guard rawLength < UInt64(data.count) else { throw bad(offset, "entry length \(rawLength) is larger than the metadata") }
        let length = (Int(rawLength) + 7) & ~7
        if length <= 8 { return nil }
        guard length >= dentryFixedSize, length <= data.count - offset else {
            throw bad(offset, "entry length \(rawLength) is too small or runs past the end of the metadata")
        }
        return try withBytes(data) { (raw) throws(WIMError) in
            let d = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)])
            let attributes = FileAttributes(rawValue: d.le32(8))
            let securityID = Int32(bitPattern: d.le32(12))
            let subdirOffset = d.le64(16)
            let times = (d.le64(40), d.le64(48), d.le64(56))
            let mainHash = SHA1Digest(bytes: UnsafeRawBufferPointer(rebasing: d[64..<84]))
            let isReparse = attributes.contains(.reparsePoint)
            let reparseTag = isReparse ? d.le32(88) : 0
            let reparseFlags = isReparse ? d.le16(94) : 0
            let hardLinkGroup = isReparse ? 0 : d.le64(88)
            let streamCount = Int(d.le16(96))
            let shortBytes = Int(d.le16(98))
            let nameBytes = Int(d.le16(100))
            guard nameBytes & 1 == 0, shortBytes & 1 == 0 else { throw bad(offset, "name length is odd") }
            let needed = dentryFixedSize + (nameBytes > 0 ? nameBytes + 2 : 0) + (shortBytes > 0 ? shortBytes + 2 : 0)
            guard needed <= length else { throw bad(offset, "entry of \(length) bytes is too short for its names (\(needed) bytes)") }
            var p = dentryFixedSize
            let name = UTF16LE.decode(UnsafeRawBufferPointer(rebasing: d[p..<(p + nameBytes)]))
            if nameBytes > 0 { p += nameBytes + 2 }
            let shortName = UTF16LE.decode(UnsafeRawBufferPointer(rebasing: d[p..<(p + shortBytes)]))
            if shortBytes > 0 { p += shortBytes + 2 }
            p = (p + 7) & ~7
            let extra = p < length ? Array(d[p..<length]) : []

            // Stream entries follow the entry.
            var streams: [(String, SHA1Digest)] = []
            var s = offset + length
            for _ in 0..<streamCount {
                guard s <= data.count - streamEntryFixedSize else { throw bad(s, "stream entry runs past the end of the metadata") }
                let sLength = (Int(min(raw.le64(s), UInt64(data.count))) + 7) & ~7
                guard sLength >= streamEntryFixedSize, sLength <= data.count - s else {
                    throw bad(s, "stream entry length \(raw.le64(s)) is invalid")
                }
                let hash = SHA1Digest(bytes: UnsafeRawBufferPointer(rebasing: raw[(s + 16)..<(s + 36)]))
                let streamNameBytes = Int(raw.le16(s + 36))
                guard streamNameBytes & 1 == 0, streamEntryFixedSize + streamNameBytes <= sLength else {
                    throw bad(s, "stream name of \(streamNameBytes) bytes does not fit its entry")
                }
                let streamName = UTF16LE.decode(UnsafeRawBufferPointer(rebasing: raw[(s + 38)..<(s + 38 + streamNameBytes)]))
                streams.append((streamName, hash))
                s += sLength
            }

            // Which hash is the contents and which the reparse data: the main hash comes first,
            // then unnamed stream entries; a zero main hash is ignored when an unnamed entry exists.
            var dataHash = SHA1Digest.zero
            var reparseHash = SHA1Digest.zero
            var named: [NamedStream] = []
            var unnamed: [SHA1Digest] = []
            if !mainHash.isZero || !streams.contains(where: { $0.0.isEmpty }) { unnamed.append(mainHash) }
            for (streamName, hash) in streams {
                if streamName.isEmpty { unnamed.append(hash) } else {
                    if streamName.contains("/") || streamName.unicodeScalars.contains("\u{0}") {
                        throw bad(offset, "stream name \"\(streamName)\" contains \"/\" or NUL")
                    }
                    named.append(NamedStream(name: streamName, hash: hash))
                }
            }
            var u = unnamed.makeIterator()
            if isReparse { reparseHash = u.next() ?? .zero }
            dataHash = u.next() ?? .zero

            let entry = DirectoryEntry(
                name: name, shortName: shortName, parent: parent, attributes: attributes, securityID: securityID,
                creationTime: times.0, lastAccessTime: times.1, lastWriteTime: times.2,
                dataHash: dataHash, reparseHash: reparseHash, reparseTag: reparseTag, reparseFlags: reparseFlags,
                hardLinkGroup: hardLinkGroup, namedStreams: named, extraData: extra, metadataOffset: offset)
            return (entry, subdirOffset, s)
        }
    }
}
