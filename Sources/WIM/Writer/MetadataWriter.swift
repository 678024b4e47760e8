import Digests
import Primitives

/// An image to be written: its directory tree (entry 0 is the root; each entry lists its
/// children) and its security descriptors, named by index from the entries.
public struct ImageTree: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var shortName: String = ""
        public var attributes: FileAttributes
        /// Index into `securityDescriptors`, or -1 for none.
        public var securityID: Int32 = -1
        /// FILETIME values: 100 ns intervals since 1601-01-01 UTC.
        public var creationTime: UInt64 = 0
        public var lastAccessTime: UInt64 = 0
        public var lastWriteTime: UInt64 = 0
        /// Contents (unnamed data stream); zero for an empty file or a directory.
        public var dataHash: SHA1Digest = .zero
        /// Reparse data (the reparse buffer without its 8-byte header) for reparse points.
        public var reparseHash: SHA1Digest = .zero
        public var reparseTag: UInt32 = 0
        /// Bit 0 set: an absolute target was not fixed ("rpfix") at capture.
        public var reparseFlags: UInt16 = 0
        /// Entries sharing a non-zero group are names of one file.
        public var hardLinkGroup: UInt64 = 0
        public var namedStreams: [NamedStream] = []
        /// The object ID (16-byte GUID and optional extra IDs), written as a tagged item.
        public var objectID: [UInt8]? = nil
        public var children: [Int] = []

        public init(name: String, attributes: FileAttributes) {
            self.name = name
            self.attributes = attributes
        }

        public var isDirectory: Bool { attributes.contains(.directory) && !attributes.contains(.reparsePoint) }
    }

    public var entries: [Entry]
    public var securityDescriptors: [[UInt8]]

    public init(entries: [Entry], securityDescriptors: [[UInt8]] = []) {
        self.entries = entries
        self.securityDescriptors = securityDescriptors
    }
}

/// Serializes an image's metadata resource exactly as `ImageMetadata` parses it (and as
/// Microsoft's WIM documentation lays it out): the security data (total length, count, the
/// size of each descriptor, the descriptors, padded to 8 bytes), the root entry and an 8-byte
/// end marker, then each directory's children in a row ending with an 8-byte zero, in
/// breadth-first order, every directory entry pointing at its row. Each entry is 8-aligned
/// and followed by its named stream entries.
enum MetadataWriter {
    static func serialize(_ tree: ImageTree) -> [UInt8] {
        var out: [UInt8] = []
        // Security data.
        let descriptors = tree.securityDescriptors
        let rawLength = 8 + 8 * descriptors.count + descriptors.reduce(0) { $0 + $1.count }
        let total = (rawLength + 7) & ~7
        out += UInt32(total).littleEndianBytes
        out += UInt32(descriptors.count).littleEndianBytes
        for d in descriptors { out += UInt64(d.count).littleEndianBytes }
        for d in descriptors { out += d }
        out += [UInt8](repeating: 0, count: total - rawLength)

        // Where each entry's subdirectory-offset field is, to patch once its row is written.
        var entryOffsets = [Int](repeating: 0, count: tree.entries.count)
        entryOffsets[0] = out.count
        appendEntry(tree.entries[0], isRoot: true, to: &out)
        out += [UInt8](repeating: 0, count: 8)
        var queue = [0]
        var next = 0
        while next < queue.count {
            let directory = queue[next]
            next += 1
            out.put(UInt64(out.count), at: entryOffsets[directory] + 16)
            for child in tree.entries[directory].children {
                entryOffsets[child] = out.count
                appendEntry(tree.entries[child], isRoot: false, to: &out)
                if tree.entries[child].isDirectory { queue.append(child) }
            }
            out += [UInt8](repeating: 0, count: 8)
        }
        return out
    }

    private static func pad8(_ out: inout [UInt8]) {
        let padding = (8 - out.count % 8) % 8
        out += [UInt8](repeating: 0, count: padding)
    }

    static func appendEntry(_ e: ImageTree.Entry, isRoot: Bool, to out: inout [UInt8]) {
        let start = out.count
        let name = isRoot ? [] : UTF16LE.encode(e.name)
        let short = isRoot ? [] : UTF16LE.encode(e.shortName)
        let isReparse = e.attributes.contains(.reparsePoint)
        var d = [UInt8](repeating: 0, count: ImageMetadata.dentryFixedSize)
        d.put(e.attributes.rawValue, at: 8)
        d.put(e.securityID, at: 12)
        // 16: subdirectory offset, patched by the caller; 24, 32: unused.
        d.put(e.creationTime, at: 40)
        d.put(e.lastAccessTime, at: 48)
        d.put(e.lastWriteTime, at: 56)
        // The main hash: the reparse data for a reparse point, else the contents.
        d.put((isReparse ? e.reparseHash : e.dataHash).bytes, at: 64)
        if isReparse {
            d.put(e.reparseTag, at: 88)
            d.put(e.reparseFlags, at: 94)
        } else {
            d.put(e.hardLinkGroup, at: 88)
        }
        // A reparse point that also has contents lists them as an unnamed stream entry.
        let extraUnnamed = isReparse && !e.dataHash.isZero
        d.put(UInt16(e.namedStreams.count + (extraUnnamed ? 1 : 0)), at: 96)
        d.put(UInt16(short.count), at: 98)
        d.put(UInt16(name.count), at: 100)
        if !name.isEmpty { d += name + [0, 0] }
        if !short.isEmpty { d += short + [0, 0] }
        out += d
        pad8(&out)
        if let objectID = e.objectID {
            out += UInt32(1).littleEndianBytes
            out += UInt32(objectID.count).littleEndianBytes
            out += objectID
            pad8(&out)
        }
        out.put(UInt64(out.count - start), at: start)

        func stream(_ streamName: String, _ hash: SHA1Digest) {
            let s = out.count
            let n = UTF16LE.encode(streamName)
            var entry = [UInt8](repeating: 0, count: ImageMetadata.streamEntryFixedSize)
            entry.put(hash.bytes, at: 16)
            entry.put(UInt16(n.count), at: 36)
            if !n.isEmpty { entry += n + [0, 0] }
            out += entry
            pad8(&out)
            out.put(UInt64(out.count - s), at: s)
        }
        if extraUnnamed { stream("", e.dataHash) }
        for named in e.namedStreams { stream(named.name, named.hash) }
    }
}
