import Digests
import Primitives

/// A blob: one single-instanced piece of data (a file's contents, a named stream, reparse data),
/// named by its SHA-1 and stored somewhere in a resource.
public struct BlobDescriptor: Sendable {
    public var hash: SHA1Digest
    public var size: UInt64
    /// Index into `WIMArchive.resources`.
    public var resource: Int
    /// Where the blob starts in the resource's uncompressed data (non-zero only in solid resources).
    public var offsetInResource: UInt64
    public var referenceCount: UInt32
}

/// The parsed blob table of one WIM part.
struct BlobTableContents {
    var resources: [Resource] = []
    var blobs: [SHA1Digest: BlobDescriptor] = [:]
    /// Metadata resources in blob-table order, which is image order (as WIMGAPI assigns them),
    /// with the SHA-1 each must hash to.
    var metadata: [(resource: Int, hash: SHA1Digest)] = []
}

extension BlobTableContents {
    static let entrySize = 50

    /// Parses the blob table `table` of part `partIndex` (whose header is `header`), adding
    /// resources starting at `firstResourceIndex`. Solid resources have their headers read from
    /// `file` to learn their real size, chunk size and format.
    static func parse(_ table: [UInt8], header: WIMHeader, file: WIMFileHandle, partIndex: Int,
                      firstResourceIndex: Int) throws(WIMError) -> BlobTableContents {
        var result = BlobTableContents()
        let path = file.path
        let entryCount = table.count / entrySize
        let tableOffset = header.blobTable.offset
        // Solid resources of the current run of solid entries, in order, with the logical offset at
        // which each begins (WIMGAPI numbers blobs as if the run's resources were one).
        var solidRun: [(resource: Int, logicalStart: UInt64, size: UInt64)] = []
        var inSolidRun = false

        func entryOffset(_ i: Int) -> UInt64 { tableOffset + UInt64(i * entrySize) }

        for i in 0..<entryCount {
            let base = i * entrySize
            var reshdr = table.withUnsafeBytes { ResourceHeader($0, at: base) }
            let partNumber = table.le16(base + 24)
            let refCount = table.le32(base + 26)
            let hash = table.sha1(at: base + 30)
            if header.version == WIMHeader.versionDefault { reshdr.flags.remove(.solid) }

            if reshdr.flags.contains(.solid) {
                if !inSolidRun {
                    inSolidRun = true
                    solidRun = []
                    var logical: UInt64 = 0
                    var j = i
                    while j < entryCount {
                        let jb = j * entrySize
                        let h = table.withUnsafeBytes { ResourceHeader($0, at: jb) }
                        guard h.flags.contains(.solid) else { break }
                        if h.uncompressedSize == ResourceHeader.solidResourceMagic {
                            let resource = try solidResource(h, file: file, partIndex: partIndex, entry: j, entryOffset: entryOffset(j))
                            solidRun.append((firstResourceIndex + result.resources.count, logical, resource.uncompressedSize))
                            result.resources.append(resource)
                            logical += resource.uncompressedSize
                        }
                        j += 1
                    }
                }
                if reshdr.uncompressedSize == ResourceHeader.solidResourceMagic { continue }
                // A blob inside a solid resource: its size is in the stored-size field and its offset
                // is logical, counted across the run's resources.
                let size = reshdr.sizeInWIM
                if hash.isZero || size == 0 { continue }
                guard let home = solidRun.last(where: { $0.logicalStart <= reshdr.offset }),
                      reshdr.offset - home.logicalStart <= home.size, size <= home.size - (reshdr.offset - home.logicalStart) else {
                    throw .invalidBlobTable(path: path, entry: i, offset: entryOffset(i),
                                            reason: "blob at offset \(reshdr.offset) (size \(size)) lies outside every solid resource of its run")
                }
                if Int(partNumber) != Int(header.partNumber) || result.blobs[hash] != nil { continue }
                result.blobs[hash] = BlobDescriptor(hash: hash, size: size, resource: home.resource,
                                                    offsetInResource: reshdr.offset - home.logicalStart, referenceCount: refCount)
                continue
            }
            inSolidRun = false

            if hash.isZero { continue }
            let resource = try plainResource(reshdr, header: header, file: file, partIndex: partIndex, entry: i, entryOffset: entryOffset(i))
            if reshdr.flags.contains(.metadata) {
                // Entries with no references are leftovers some Microsoft tools write; they name no image.
                if refCount == 0 || header.partNumber != 1 { continue }
                if result.metadata.count < Int(header.imageCount) {
                    result.metadata.append((firstResourceIndex + result.resources.count, hash))
                    result.resources.append(resource)
                }
                continue
            }
            if reshdr.uncompressedSize == 0 || Int(partNumber) != Int(header.partNumber) || result.blobs[hash] != nil { continue }
            result.blobs[hash] = BlobDescriptor(hash: hash, size: reshdr.uncompressedSize,
                                                resource: firstResourceIndex + result.resources.count,
                                                offsetInResource: 0, referenceCount: refCount)
            result.resources.append(resource)
        }
        try checkSolidBlobsDoNotOverlap(result, firstResourceIndex: firstResourceIndex, path: path)
        return result
    }

    /// A resource described directly by its header (metadata, XML, blob table or one blob).
    static func plainResource(_ h: ResourceHeader, header: WIMHeader, file: WIMFileHandle, partIndex: Int,
                              entry: Int, entryOffset: UInt64) throws(WIMError) -> Resource {
        let compressed = h.flags.contains(.compressed)
        let (end, overflow) = h.offset.addingReportingOverflow(h.sizeInWIM)
        guard !overflow, end <= file.size else {
            throw .invalidBlobTable(path: file.path, entry: entry, offset: entryOffset,
                                    reason: "resource at offset \(h.offset) of \(h.sizeInWIM) bytes ends past the end of the file (\(file.size) bytes)")
        }
        if compressed && header.compression == .none {
            throw .invalidBlobTable(path: file.path, entry: entry, offset: entryOffset,
                                    reason: "resource is marked compressed but the WIM header names no compression format")
        }
        if !compressed && h.sizeInWIM != h.uncompressedSize && !header.isPipable {
            throw .invalidBlobTable(path: file.path, entry: entry, offset: entryOffset,
                                    reason: "uncompressed resource stores \(h.sizeInWIM) bytes but holds \(h.uncompressedSize)")
        }
        guard h.uncompressedSize < 1 << 48 else {
            throw .invalidBlobTable(path: file.path, entry: entry, offset: entryOffset,
                                    reason: "uncompressed size \(h.uncompressedSize) is absurd")
        }
        return Resource(part: partIndex, offset: h.offset, sizeInWIM: h.sizeInWIM, uncompressedSize: h.uncompressedSize,
                        compression: compressed ? header.compression : .none, chunkSize: Int(header.chunkSize),
                        isSolid: false, isPipable: header.isPipable)
    }

    /// A solid resource: its own 16-byte header gives the real size, chunk size and format.
    static func solidResource(_ h: ResourceHeader, file: WIMFileHandle, partIndex: Int,
                              entry: Int, entryOffset: UInt64) throws(WIMError) -> Resource {
        let (end, overflow) = h.offset.addingReportingOverflow(h.sizeInWIM)
        guard !overflow, end <= file.size, h.sizeInWIM >= 16 else {
            throw .invalidBlobTable(path: file.path, entry: entry, offset: entryOffset,
                                    reason: "solid resource at offset \(h.offset) of \(h.sizeInWIM) bytes does not fit in the file (\(file.size) bytes)")
        }
        let head = try file.read(count: 16, at: h.offset, what: "solid resource header", standalone: true)
        let usize = head.le64(0)
        let chunkSize = head.le32(8)
        let formatCode = head.le32(12)
        let formats: [CompressionFormat] = [.none, .xpress, .lzx, .lzms]
        guard Int(formatCode) < formats.count else {
            throw .invalidResource(path: file.path, offset: h.offset, reason: "solid resource names unknown compression format \(formatCode)")
        }
        guard chunkSize >= 4096, chunkSize <= 1 << 30, chunkSize & (chunkSize - 1) == 0 else {
            throw .invalidResource(path: file.path, offset: h.offset, reason: "solid resource chunk size \(chunkSize) is not a power of two between 4 KiB and 1 GiB")
        }
        guard usize < 1 << 48 else {
            throw .invalidResource(path: file.path, offset: h.offset, reason: "solid resource claims an absurd size of \(usize) bytes")
        }
        let chunks = (usize + UInt64(chunkSize) - 1) / UInt64(chunkSize)
        guard 16 + 4 * chunks <= h.sizeInWIM else {
            throw .invalidResource(path: file.path, offset: h.offset, reason: "solid resource's table of \(chunks) chunks does not fit in its \(h.sizeInWIM) bytes")
        }
        return Resource(part: partIndex, offset: h.offset, sizeInWIM: h.sizeInWIM, uncompressedSize: usize,
                        compression: formats[Int(formatCode)], chunkSize: Int(chunkSize), isSolid: true, isPipable: false)
    }

    static func checkSolidBlobsDoNotOverlap(_ contents: BlobTableContents, firstResourceIndex: Int, path: String) throws(WIMError) {
        var byResource: [Int: [(UInt64, UInt64)]] = [:]
        for blob in contents.blobs.values where contents.resources[blob.resource - firstResourceIndex].isSolid {
            byResource[blob.resource, default: []].append((blob.offsetInResource, blob.size))
        }
        for (index, spans) in byResource {
            let sorted = spans.sorted { $0.0 < $1.0 }
            for k in 1..<max(sorted.count, 1) where sorted[k - 1].0 + sorted[k - 1].1 > sorted[k].0 {
                throw .invalidResource(path: path, offset: contents.resources[index - firstResourceIndex].offset,
                                       reason: "blobs at offsets \(sorted[k - 1].0) and \(sorted[k].0) of the solid resource overlap")
            }
        }
    }
}
