#if canImport(Glibc)
import Glibc
#endif
import Digests
import Primitives

/// `split` and `join`: a WIM into parts of a given size, and parts back into one WIM.
///
/// Format (wimlib's split layout, as `wimlib-imagex split` writes it and `WIMArchive` reads
/// it): every part is a complete WIM file with its own header, blob table and XML data. All
/// parts carry the same GUID, the total number of parts (header offset 42) and their own
/// number (offset 40), and the spanned flag (0x8). The images' metadata resources are in part
/// 1; each part's blob table lists the resources stored in that part, each entry with the part
/// number (entry offset 24) of its part. The XML data (all images) is repeated in every part.
/// The names are `NAME.swm`, `NAME2.swm`, `NAME3.swm`...
///
/// Resources are copied as they are stored (compressed chunks, solid resources whole): nothing
/// is decompressed or compressed again, so splitting and joining cost one read and one write.
/// A solid resource, or one blob, larger than the part size gets a part of its own, as wimlib
/// does. Pipable WIMs are refused (their resources are framed differently).
public enum SplitWriter {
    /// One unit copied together: a resource and the blobs or the image it holds.
    struct Unit {
        var resource: Resource
        /// Blobs in it (one for a plain resource, many for a solid one).
        var blobs: [BlobDescriptor]
        /// The image whose metadata it is (1-based), if it is a metadata resource.
        var image: Int?
        var hash: SHA1Digest
        var cost: UInt64 { resource.sizeInWIM + UInt64(50 * (blobs.count + 1)) }
    }

    /// The names of the parts: `PART.swm`, then the stem with 2, 3... before the extension.
    public static func partNames(_ first: String, count: Int) -> [String] {
        guard count > 1 else { return [first] }
        let dot = first.lastIndex(of: ".").flatMap { first[$0...].contains("/") ? nil : $0 }
        let stem = dot.map { String(first[..<$0]) } ?? first
        let ext = dot.map { String(first[$0...]) } ?? ""
        return [first] + (2...count).map { "\(stem)\($0)\(ext)" }
    }

    /// Splits `archive` into parts of at most `partSize` bytes (a single larger resource makes
    /// a larger part); the first is `destination`. Returns the paths written. No file that
    /// exists is replaced; on failure nothing is left.
    @discardableResult
    public static func split(_ archive: WIMArchive, to destination: String, partSize: UInt64, integrity: Bool = false) throws -> [String] {
        let units = try collectUnits(archive)
        let xml = try xmlBytes(archive)
        let overhead = UInt64(WIMHeader.diskSize + xml.count + (integrity ? 4096 : 0))
        // Part 1 first takes the metadata, then blobs in stored order fill parts in turn.
        var parts: [[Unit]] = [[]]
        var used = overhead
        for unit in units.filter({ $0.image != nil }) + units.filter({ $0.image == nil }) {
            if used + unit.cost > partSize, !(parts.last!.isEmpty || (parts.count == 1 && parts[0].allSatisfy { $0.image != nil })) {
                parts.append([])
                used = overhead
            }
            parts[parts.count - 1].append(unit)
            used += unit.cost
        }
        guard parts.count <= Int(UInt16.max) else {
            throw WIMWriteError.unsupportedLayout(path: archive.path, reason: "splitting into \(parts.count) parts is more than a WIM can number; choose a larger part size")
        }
        let names = partNames(destination, count: parts.count)
        for name in names {
            var info = stat()
            if lstat(name, &info) == 0 { throw WIMWriteError.destinationExists(path: name) }
        }
        var written: [String] = []
        do {
            for (index, units) in parts.enumerated() {
                try writePart(archive, units: units, xml: xml, to: names[index], part: (UInt16(index + 1), UInt16(parts.count)), integrity: integrity)
                written.append(names[index])
            }
        } catch {
            for name in written { unlink(name) }
            throw error
        }
        return names
    }

    /// Writes all parts of `archive` (opened with every part) as one WIM `destination`.
    public static func join(_ archive: WIMArchive, to destination: String, integrity: Bool = false) throws {
        var info = stat()
        if lstat(destination, &info) == 0 { throw WIMWriteError.destinationExists(path: destination) }
        let units = try collectUnits(archive)
        try writePart(archive, units: units.filter { $0.image != nil } + units.filter { $0.image == nil }, xml: try xmlBytes(archive),
                      to: destination, part: (1, 1), integrity: integrity)
    }

    static func xmlBytes(_ archive: WIMArchive) throws -> [UInt8] {
        let header = archive.header
        guard header.xmlData.sizeInWIM > 0 else { return [] }
        let resource = try BlobTableContents.plainResource(header.xmlData, header: header, file: archive.parts[0], partIndex: 0, entry: -1, entryOffset: 72)
        return try WIMArchive.readWhole(resource, from: archive.parts[0], what: "XML data", limit: 1 << 28)
    }

    /// The metadata resources and every resource holding blobs, in stored order.
    static func collectUnits(_ archive: WIMArchive) throws -> [Unit] {
        if archive.header.isPipable {
            throw WIMWriteError.unsupportedLayout(path: archive.path, reason: "a pipable WIM cannot be split or joined here (its resources are framed for a stream); split a regular WIM")
        }
        var byResource: [Int: [BlobDescriptor]] = [:]
        for blob in archive.blobs.values { byResource[blob.resource, default: []].append(blob) }
        var units: [Unit] = []
        for (i, meta) in archive.imageMetadata.enumerated() {
            units.append(Unit(resource: archive.resources[meta.resource], blobs: [], image: i + 1, hash: meta.hash))
        }
        for (index, blobs) in byResource {
            let sorted = blobs.sorted { $0.offsetInResource < $1.offsetInResource }
            units.append(Unit(resource: archive.resources[index], blobs: sorted, image: nil, hash: sorted[0].hash))
        }
        units.sort { ($0.image ?? Int.max, $0.resource.part, $0.resource.offset) < ($1.image ?? Int.max, $1.resource.part, $1.resource.offset) }
        return units
    }

    static func writePart(_ archive: WIMArchive, units: [Unit], xml: [UInt8], to destination: String,
                          part: (number: UInt16, total: UInt16), integrity: Bool) throws {
        let out = try PipableLayout.temporaryFile(beside: destination)
        do {
            try out.appendZeros(WIMHeader.diskSize)
            var plainEntries: [UInt8] = [], metadataEntries: [UInt8] = [], solidEntries: [UInt8] = []
            var logicalStart: UInt64 = 0
            var bootMetadata: ResourceHeader?
            func entry(_ h: ResourceHeader, refs: UInt32, hash: SHA1Digest) -> [UInt8] {
                WIMWriter.encode(h) + part.number.littleEndianBytes + refs.littleEndianBytes + hash.bytes
            }
            for unit in units {
                let r = unit.resource
                let offset = out.position
                try copy(r, of: archive, to: out)
                if let image = unit.image {
                    let h = ResourceHeader(sizeInWIM: r.sizeInWIM, flags: r.isCompressed ? [.metadata, .compressed] : .metadata,
                                           offset: offset, uncompressedSize: r.uncompressedSize)
                    metadataEntries += entry(h, refs: 1, hash: unit.hash)
                    if UInt32(image) == archive.header.bootIndex { bootMetadata = h }
                } else if r.isSolid {
                    solidEntries += entry(ResourceHeader(sizeInWIM: r.sizeInWIM, flags: .solid, offset: offset,
                                                         uncompressedSize: ResourceHeader.solidResourceMagic), refs: 1, hash: .zero)
                    for blob in unit.blobs {
                        solidEntries += entry(ResourceHeader(sizeInWIM: blob.size, flags: .solid, offset: logicalStart + blob.offsetInResource,
                                                             uncompressedSize: 0), refs: blob.referenceCount, hash: blob.hash)
                    }
                    logicalStart += r.uncompressedSize
                } else if let blob = unit.blobs.first {
                    let h = ResourceHeader(sizeInWIM: r.sizeInWIM, flags: r.isCompressed ? .compressed : [], offset: offset, uncompressedSize: r.uncompressedSize)
                    plainEntries += entry(h, refs: blob.referenceCount, hash: blob.hash)
                }
            }
            let table = plainEntries + metadataEntries + solidEntries
            let tableHeader = try PipableLayout.appendPlain(table, to: out, pipable: false, flags: [])
            let xmlHeader = try PipableLayout.appendPlain(xml, to: out, pipable: false, flags: [])
            var integrityHeader: ResourceHeader?
            if integrity {
                try out.flush()
                let bytes = try IntegrityTable.build(descriptor: out.fd, path: out.path, end: tableHeader.offset + tableHeader.sizeInWIM)
                integrityHeader = try PipableLayout.appendPlain(bytes, to: out, pipable: false, flags: [])
            }
            let source = archive.header
            var extra = WIMHeader.Flags(rawValue: source.flags.rawValue & ~(WIMHeader.Flags.compressionBits.rawValue
                | WIMHeader.Flags.spanned.rawValue | WIMHeader.Flags.writeInProgress.rawValue))
            if part.total > 1 { extra.insert(.spanned) }
            let header = WIMWriter.headerBytes(compression: source.compression, chunkSize: Int(source.chunkSize),
                                               solid: source.version == WIMHeader.versionSolid, pipable: false, guid: source.guid,
                                               part: part, imageCount: Int(source.imageCount), blobTable: tableHeader, xml: xmlHeader,
                                               integrity: integrityHeader, bootIndex: source.bootIndex,
                                               bootMetadata: part.number == 1 ? bootMetadata : nil, extraFlags: extra)
            try out.patch(header, at: 0)
            try out.sync()
            out.close()
            if link(out.path, destination) != 0 {
                throw errno == EEXIST ? WIMWriteError.destinationExists(path: destination)
                    : WIMWriteError.io(path: destination, operation: "link the finished part into place", errno: errno)
            }
            unlink(out.path)
        } catch {
            out.close()
            unlink(out.path)
            throw error
        }
    }

    /// Appends a resource's stored bytes as they are.
    static func copy(_ r: Resource, of archive: WIMArchive, to out: WIMOutputFile) throws {
        let file = archive.parts[r.part]
        var position = r.offset
        while position < r.end {
            let count = Int(min(UInt64(4 << 20), r.end - position))
            let bytes = try file.read(count: count, at: position, what: "resource at offset \(r.offset)")
            try out.append(bytes)
            position += UInt64(count)
        }
    }
}

extension WIMHeader.Flags {
    static let compressionBits: WIMHeader.Flags = [.compression, .compressReserved, .compressXPRESS, .compressLZX, .compressLZMS, .compressXPRESS2]
}
