import Digests

/// An opened WIM: its header, blob table, XML data and images, across all parts of a split WIM.
/// Reads are `pread`s, so one archive may be read by several threads at once.
public final class WIMArchive: Sendable {
    public let path: String
    public let parts: [WIMFileHandle]
    /// Header of part 1.
    public let header: WIMHeader
    public let resources: [Resource]
    public let blobs: [SHA1Digest: BlobDescriptor]
    /// The metadata resource of each image (index 0 is image 1) and the SHA-1 it must have.
    public let imageMetadata: [(resource: Int, hash: SHA1Digest)]
    public let xml: WIMXMLInfo

    /// Opens `path`. For a split WIM, the other parts are taken from `referenceParts`, or else
    /// looked for beside the first part with the usual names (`name.swm`, `name2.swm`, ...).
    public convenience init(path: String, referenceParts: [String] = []) throws(WIMError) {
        try self.init(first: WIMFileHandle(path: path), referenceParts: referenceParts)
    }

    /// Opens a WIM read through `source` (a single-part WIM), `name` naming it in messages.
    public convenience init(name: String, source: RandomAccessSource) throws(WIMError) {
        try self.init(first: WIMFileHandle(name: name, source: source), referenceParts: [])
    }

    private init(first: WIMFileHandle, referenceParts: [String]) throws(WIMError) {
        let path = first.path
        let head = try first.read(count: min(WIMHeader.diskSize, Int(min(first.size, 208))), at: 0, what: "WIM header")
        var header = try WIMHeader(head, path: path)
        if header.isPipable && header.blobTable.isEmpty {
            // A pipable WIM written to a pipe starts with a header that cannot know where the blob
            // table will be; the complete header is repeated at the end of the file.
            guard first.size >= UInt64(2 * WIMHeader.diskSize) else {
                throw .truncated(path: path, what: "pipable WIM's closing header", offset: first.size, needed: UInt64(WIMHeader.diskSize))
            }
            let tail = try first.read(count: WIMHeader.diskSize, at: first.size - UInt64(WIMHeader.diskSize), what: "pipable WIM's closing header")
            let closing = try WIMHeader(tail, path: path)
            guard closing.guid == header.guid, !closing.blobTable.isEmpty else {
                throw .invalidHeader(path: path, reason: "pipable WIM's closing header is missing or belongs to another WIM (the file may be truncated)")
            }
            header = closing
        }
        self.path = path
        self.header = header

        var handles: [WIMFileHandle] = [first]
        var headers: [WIMHeader] = [header]
        if header.totalParts > 1 {
            let candidates = referenceParts.isEmpty ? WIMArchive.siblingPartNames(of: path, count: Int(header.totalParts)) : referenceParts
            var byNumber: [Int: (WIMFileHandle, WIMHeader)] = [Int(header.partNumber): (first, header)]
            for candidate in candidates where candidate != path {
                guard let handle = try? WIMFileHandle(path: candidate) else { continue }
                let bytes = try handle.read(count: Int(min(handle.size, 208)), at: 0, what: "WIM header")
                let h = try WIMHeader(bytes, path: candidate)
                guard h.guid == header.guid else {
                    throw .splitWIM(path: candidate, reason: "belongs to another WIM (GUID \(h.guidString), expected \(header.guidString))")
                }
                guard h.totalParts == header.totalParts else {
                    throw .splitWIM(path: candidate, reason: "says there are \(h.totalParts) parts, the first part says \(header.totalParts)")
                }
                byNumber[Int(h.partNumber)] = (handle, h)
            }
            let missing = (1...Int(header.totalParts)).filter { byNumber[$0] == nil }
            guard missing.isEmpty else {
                throw .splitWIM(path: path, reason: "part\(missing.count == 1 ? "" : "s") \(missing.map(String.init).joined(separator: ", ")) of \(header.totalParts) not found (give them with --ref)")
            }
            guard header.partNumber == 1, let one = byNumber[1] else {
                throw .splitWIM(path: path, reason: "this is part \(header.partNumber); open part 1, which holds the images")
            }
            handles = (1...Int(header.totalParts)).compactMap { byNumber[$0]?.0 }
            headers = (1...Int(header.totalParts)).compactMap { byNumber[$0]?.1 }
            _ = one
        }
        self.parts = handles

        var resources: [Resource] = []
        var blobs: [SHA1Digest: BlobDescriptor] = [:]
        var metadata: [(Int, SHA1Digest)] = []
        for (index, (handle, h)) in zip(handles, headers).enumerated() {
            let tableResource = try BlobTableContents.plainResource(h.blobTable, header: h, file: handle, partIndex: index, entry: -1, entryOffset: 48)
            let table = try WIMArchive.readWhole(tableResource, from: handle, what: "blob table", limit: 1 << 31)
            let contents = try BlobTableContents.parse(table, header: h, file: handle, partIndex: index, firstResourceIndex: resources.count)
            resources += contents.resources
            for (hash, blob) in contents.blobs where blobs[hash] == nil { blobs[hash] = blob }
            if index == 0 { metadata = contents.metadata }
        }
        self.resources = resources
        self.blobs = blobs
        self.imageMetadata = metadata

        if header.xmlData.sizeInWIM > 0 {
            let xmlResource = try BlobTableContents.plainResource(header.xmlData, header: header, file: first, partIndex: 0, entry: -1, entryOffset: 72)
            let bytes = try WIMArchive.readWhole(xmlResource, from: first, what: "XML data", limit: 1 << 28)
            xml = try WIMXMLInfo(utf16leBytes: bytes, path: path)
        } else {
            xml = .empty
        }
        if metadata.count != Int(header.imageCount) {
            throw .invalidHeader(path: path, reason: "header says \(header.imageCount) images but the blob table has \(metadata.count) metadata resources")
        }
    }

    public var imageCount: Int { imageMetadata.count }

    /// `name.swm` → `name2.swm`, `name3.swm`, ...: the names `wimlib-imagex split` and DISM give.
    static func siblingPartNames(of path: String, count: Int) -> [String] {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return [] }
        let stem = path[..<dot]
        let ext = path[dot...]
        return (2...max(count, 2)).map { "\(stem)\($0)\(ext)" }
    }

    /// Resolves an image given as a 1-based index or a name (exact, then case-insensitive).
    public func image(_ selector: String) throws(WIMError) -> Int {
        guard let index = xml.imageIndex(selector, imageCount: imageCount) else {
            throw .noSuchImage(path: path, selector: selector, imageCount: imageCount)
        }
        return index
    }

    /// Reads, checks (SHA-1) and parses the metadata of image `image` (1-based).
    public func metadata(image: Int) throws(WIMError) -> ImageMetadata {
        guard image >= 1, image <= imageCount else { throw .noSuchImage(path: path, selector: String(image), imageCount: imageCount) }
        let (resourceIndex, hash) = imageMetadata[image - 1]
        let resource = resources[resourceIndex]
        let bytes = try WIMArchive.readWhole(resource, from: parts[resource.part], what: "metadata of image \(image)", limit: 1 << 32)
        let actual = SHA1Hasher.digest(bytes)
        guard actual == hash else {
            throw .hashMismatch(path: path, blob: hash, resourceOffset: resource.offset, actual: actual, usedBy: ["the metadata of image \(image)"])
        }
        return try ImageMetadata(bytes, image: image, path: path)
    }

    /// The XML properties of image `image`, if the XML data describes it.
    public func xmlImage(_ image: Int) -> WIMXMLInfo.Image? { xml.images.first { $0.index == image } }

    /// Reads a whole resource into memory on the calling thread (for metadata, XML and tables).
    static func readWhole(_ resource: Resource, from file: WIMFileHandle, what: String, limit: UInt64) throws(WIMError) -> [UInt8] {
        guard resource.uncompressedSize <= limit else {
            throw .invalidResource(path: file.path, offset: resource.offset, reason: "\(what) claims \(resource.uncompressedSize) bytes, more than the \(limit) allowed")
        }
        if !resource.isCompressed && !resource.isSolid {
            return try file.read(count: Int(resource.uncompressedSize), at: resource.offset, what: what)
        }
        let stored = try file.read(count: Int(resource.sizeInWIM), at: resource.offset, what: what)
        // The output grows only as chunks decode: a size field claiming gigabytes in a small,
        // damaged file costs one chunk's buffer, not the claimed size.
        var output = [UInt8]()
        output.reserveCapacity(Int(min(resource.uncompressedSize, UInt64(64 << 20))))
        var scratch = [UInt8](repeating: 0, count: min(resource.chunkSize, Int(resource.uncompressedSize)))
        var decoders = DecoderSet()
        try withBytes(stored) { (raw) throws(WIMError) in
            let table = try resource.parseChunkTable(resourceBytes: raw, path: file.path)
            for (i, chunk) in table.chunks.enumerated() {
                let start = Int(chunk.fileOffset - resource.offset)
                let input = UnsafeRawBufferPointer(rebasing: raw[start..<(start + chunk.storedSize)])
                try withMutableBytes(&scratch) { (out) throws(WIMError) in
                    let target = UnsafeMutableRawBufferPointer(rebasing: out[0..<chunk.uncompressedSize])
                    do throws(DecompressionError) {
                        try decoders.decode(resource.compression, chunkSize: resource.chunkSize, input, into: target)
                    } catch {
                        throw .corruptChunk(path: file.path, chunkOffset: chunk.fileOffset + UInt64(error.offset), chunkIndex: i,
                                            resourceOffset: resource.offset, reason: error.reason)
                    }
                }
                output.append(contentsOf: scratch[0..<chunk.uncompressedSize])
            }
        }
        return output
    }
}
