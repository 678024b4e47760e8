#if canImport(Glibc)
import Glibc
#endif
import Digests
import Failures
import Primitives

/// Writes a WIM of one part, either a new file or new images and edits added to an existing one.
///
/// A new file: blobs (deduplicated by SHA-1), then each image's metadata resource, the blob
/// table and the XML data, and last the header, which stays zero until everything it points at
/// is in place. All of it goes to a temporary file beside the destination (`.NAME.tmp-XXXXXX`),
/// synced and then linked into place only when complete, never over an existing file (or, for
/// `optimize`, renamed over it); on any failure (or `abort`) the temporary file is removed.
///
/// An existing file (`init(appendingTo:)`, as wimlib's in-place overwrite does): its blobs are
/// kept where they are, new blobs and metadata go after the end of the file, then a new blob
/// table and new XML data, all synced; only then is the 208-byte header at offset 0 rewritten
/// in one write and synced. Until that write the old header still points at the old table and
/// XML, which nothing overwrote, so an interruption at any moment (kill, power cut, full disk)
/// leaves the original WIM as it was, plus unreferenced bytes at its end. Deleted images leave
/// their data behind too; `optimize` (a new file) reclaims it. Format facts: the header layout
/// and the blob table's 50-byte entries (resource header, part number, reference count, SHA-1)
/// are as in wimlib's format notes and Microsoft's WIM documentation; the reference count is
/// the number of directory entries (names) using the blob, over all images.
///
/// Blob data arrives push-style (`beginBlob`, `blobData`, `endBlob`) and is written as it comes;
/// when its SHA-1 turns out to be one already stored, what was written is cut off again. Small
/// blobs wait in `ResourceWriter`'s queue to be compressed together (a duplicate one is simply
/// dropped from it); their headers are filled in when the queue is written, which happens
/// before anything else goes into the file.
/// References are counted from the image trees (`addImage`, `replaceImage`, `deleteImage`), so a
/// blob no image uses is left out of the table.
public final class WIMWriter {
    public let destination: String
    public let compression: CompressionFormat
    public let chunkSize: Int
    /// The file being written: the temporary file beside a new WIM, or the WIM itself when
    /// images are added to an existing one.
    public private(set) var temporaryPath: String
    /// True when this writer adds to an existing WIM in place.
    public let isInPlace: Bool
    /// Integrity table, solid resources, pipable format (`PipableLayout.swift`). An in-place
    /// write keeps the WIM's layout: it adds an integrity table when asked or when the WIM had one.
    public let layout: WIMLayoutOptions

    private let file: WIMOutputFile
    private let level: CompressionLevel
    private let threads: Int
    private var resourceWriter: ResourceWriter?
    // Layouts: blobs go into solid resources; a pipable WIM keeps each image's metadata until
    // the end, when it is written in front of the spooled blobs.
    private var solid: SolidResourceWriter?
    private var pipableMetadata: [[UInt8]] = []
    private var finished = false
    /// A new file replaces the destination when finished (optimize) rather than refusing it.
    private let replacesDestination: Bool
    /// The existing WIM: its archive (to read metadata and blobs) and its header's bytes.
    private let base: WIMArchive?
    /// The WIM being changed in place (its blobs can be read back), nil for a new one.
    public var baseArchive: WIMArchive? { base }
    private let baseHeaderBytes: [UInt8]?
    /// XML elements of the root other than TOTALBYTES and IMAGE, kept as they were.
    private var xmlRootExtras: [XMLElement] = []

    struct StoredBlob {
        var header: ResourceHeader
        var referenceCount: UInt32
    }
    private var blobs: [SHA1Digest: StoredBlob] = [:]
    private var blobOrder: [SHA1Digest] = []
    private var images: [StoredImage] = []
    private var blobSource = ""
    private var blobSize: UInt64 = 0
    /// Trees of the existing images already read (an update reads its image once).
    private var baseTrees: [Int: ImageTree] = [:]
    /// The GUID a new file gets (16 bytes; `optimize` keeps the WIM's); random when nil.
    public var guid: [UInt8]?
    /// 1-based index of the bootable image, 0 for none.
    public private(set) var bootIndex = 0

    /// An image of the WIM being written: its metadata resource and its XML element, either
    /// built from `ImageInfo` (a new image) or kept from the existing XML data.
    struct StoredImage {
        var header: ResourceHeader
        var hash: SHA1Digest
        var xml: ImageXML
        /// Image number in `base`, for images the existing WIM already had.
        var baseImage: Int?
    }

    enum ImageXML {
        case fresh(ImageInfo)
        case kept(XMLElement)
    }

    /// Bytes of unique blob data stored, and of duplicates not stored again.
    public private(set) var uniqueBytes: UInt64 = 0
    public private(set) var duplicateBytes: UInt64 = 0
    public var blobCount: Int { blobs.count }
    public var imageCount: Int { images.count }

    /// What the XML says about an image besides what the writer counts itself.
    public struct ImageInfo: Sendable {
        public var name: String
        public var description: String?
        public var creationTime: UInt64
        /// FLAGS (the edition, as `--flags` gives it), DISPLAYNAME and DISPLAYDESCRIPTION.
        public var flags: String?
        public var displayName: String?
        public var displayDescription: String?
        /// The WINDOWS element, for an image holding a Windows installation.
        public var windows: Windows?
        var directoryCount: UInt64 = 0
        var fileCount: UInt64 = 0
        var totalBytes: UInt64 = 0
        var hardLinkBytes: UInt64 = 0

        public init(name: String, description: String? = nil, creationTime: UInt64 = WIMWriter.currentFiletime()) {
            self.name = name
            self.description = description
            self.creationTime = creationTime
        }

        /// What the WINDOWS element of an image's XML says about the Windows it holds, as
        /// Windows' own tools and wimlib write it: the processor architecture (the Windows API
        /// code: 0 x86, 5 ARM, 6 IA-64, 9 x64, 12 ARM64), names from the registry, the UI
        /// languages and the default one, the version and the system root folder's name.
        public struct Windows: Sendable, Equatable {
            public var architecture: Int?
            public var productName: String?
            public var editionID: String?
            public var installationType: String?
            public var hal: String?
            public var productType: String?
            public var productSuite: String?
            public var languages: [String] = []
            public var defaultLanguage: String?
            public var majorVersion: UInt64?
            public var minorVersion: UInt64?
            public var build: String?
            public var servicePackBuild: UInt64?
            public var servicePackLevel: UInt64?
            public var systemRoot: String?

            public init() {}
        }
    }

    /// Creates the temporary file beside `destination`. Refuses when the destination exists
    /// (unless `replacingDestination`, which renames the finished file over it) or its folder
    /// does not. `threads` compress chunks.
    /// `chunkSize` (a power of two from 32 KiB) defaults to the format's usual one.
    public init(destination: String, compression: CompressionFormat, level: CompressionLevel = .default, chunkSize: Int? = nil,
                threads: Int = availableProcessorCount(), layout: WIMLayoutOptions = WIMLayoutOptions(),
                replacingDestination: Bool = false) throws {
        if layout.pipable && layout.solid != nil { throw WIMWriteError.unsupportedLayout(path: destination, reason: "a pipable WIM cannot hold solid resources") }
        self.layout = layout
        let chunkSize = chunkSize ?? Self.defaultChunkSize(compression)
        guard chunkSize >= 32768, chunkSize & (chunkSize - 1) == 0 else {
            throw WIMWriteError.badChunkSize(chunkSize)
        }
        self.chunkSize = chunkSize
        guard compression == .none || makeChunkCompressor(compression, level: level) != nil else {
            throw WIMWriteError.unsupportedCompression(compression)
        }
        self.destination = destination
        self.compression = compression
        self.level = level
        self.threads = threads
        self.isInPlace = false
        self.replacesDestination = replacingDestination
        self.base = nil
        self.baseHeaderBytes = nil
        var info = stat()
        if !replacingDestination, lstat(destination, &info) == 0 { throw WIMWriteError.destinationExists(path: destination) }
        let slash = destination.lastIndex(of: "/")
        let folder = slash.map { $0 == destination.startIndex ? "/" : String(destination[..<$0]) } ?? "."
        let base = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        guard stat(folder, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw WIMWriteError.destinationFolderMissing(path: folder)
        }
        var template = Array((folder + "/." + base + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw WIMWriteError.io(path: folder, operation: "create a temporary file", errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        temporaryPath = String(cString: template)
        fchmod(fd, 0o644)
        file = WIMOutputFile(path: temporaryPath, fd: fd)
        do {
            try file.appendZeros(WIMHeader.diskSize)
            if let options = layout.solid {
                solid = try SolidResourceWriter(file: file, compression: options.compression, level: options.level,
                                                chunkSize: options.chunkSize ?? SolidResourceWriter.defaultChunkSize(options.compression), threads: threads)
            }
        } catch {
            abort()
            throw error
        }
    }

    /// Opens the existing WIM at `path` to add images to it or edit it in place. Its blobs,
    /// images and XML are kept; nothing already in the file is ever overwritten but the header,
    /// last. Refuses split, pipable and solid WIMs (their layout is not rewritten in place).
    /// `integrity` adds an integrity table; one the WIM had is recomputed either way.
    public init(appendingTo path: String, level: CompressionLevel = .default, threads: Int = availableProcessorCount(), integrity: Bool = false) throws {
        let archive = try WIMArchive(path: path)
        let header = archive.header
        if header.totalParts > 1 { throw WIMEditError.unsupported(path: path, reason: "it is part of a split WIM") }
        if header.isPipable { throw WIMEditError.unsupported(path: path, reason: "it is a pipable WIM (export it to a regular WIM first)") }
        if header.flags.contains(.readOnly) { throw WIMEditError.unsupported(path: path, reason: "its header marks it read-only") }
        if archive.resources.contains(where: \.isSolid) {
            throw WIMEditError.unsupported(path: path, reason: "it holds solid resources (export it to a non-solid WIM first)")
        }
        destination = path
        temporaryPath = path
        layout = WIMLayoutOptions(integrity: integrity || !header.integrityTable.isEmpty)
        isInPlace = true
        replacesDestination = false
        compression = header.compression
        chunkSize = header.chunkSize == 0 ? Self.defaultChunkSize(header.compression) : Int(header.chunkSize)
        self.level = level
        self.threads = threads
        base = archive
        baseHeaderBytes = try archive.parts[0].read(count: WIMHeader.diskSize, at: 0, what: "WIM header")

        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw WIMWriteError.io(path: path, operation: "open for writing", errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw WIMWriteError.io(path: path, operation: "stat", errno: code)
        }
        // New data goes after everything in the file, whatever the header points at.
        file = WIMOutputFile(path: path, fd: fd, position: UInt64(info.st_size))

        // The existing blobs, in file order, with their reference counts.
        let kept = archive.blobs.values.sorted { archive.resources[$0.resource].offset < archive.resources[$1.resource].offset }
        for blob in kept {
            blobs[blob.hash] = StoredBlob(header: Self.header(of: archive.resources[blob.resource], metadata: false), referenceCount: blob.referenceCount)
            blobOrder.append(blob.hash)
        }
        for (number, (resource, hash)) in archive.imageMetadata.enumerated() {
            let element = archive.xmlImage(number + 1)?.element ?? XMLElement(name: "IMAGE", attributes: [], children: [], text: "")
            images.append(StoredImage(header: Self.header(of: archive.resources[resource], metadata: true), hash: hash,
                                      xml: .kept(element), baseImage: number + 1))
        }
        xmlRootExtras = archive.xml.root.children.filter { $0.name != "TOTALBYTES" && $0.name != "IMAGE" }
        bootIndex = Int(header.bootIndex) <= images.count ? Int(header.bootIndex) : 0
    }

    /// The blob-table form of a resource the reader parsed (non-solid only).
    static func header(of resource: Resource, metadata: Bool) -> ResourceHeader {
        var flags: ResourceHeader.Flags = resource.isCompressed ? .compressed : []
        if metadata { flags.insert(.metadata) }
        return ResourceHeader(sizeInWIM: resource.sizeInWIM, flags: flags, offset: resource.offset, uncompressedSize: resource.uncompressedSize)
    }

    /// The resource writer, made on first need: a writer that only copies resources as they
    /// are needs no encoder.
    private func resources() throws -> ResourceWriter {
        if let resourceWriter { return resourceWriter }
        if compression != .none, makeChunkCompressor(compression, level: level) == nil {
            throw WIMWriteError.unsupportedCompression(compression)
        }
        let made = try ResourceWriter(file: file, compression: compression, level: level, chunkSize: chunkSize, threads: threads,
                                      pipable: layout.pipable)
        made.queuedResourceWritten = { [unowned self] hash, header in self.blobs[hash]?.header = header }
        resourceWriter = made
        return made
    }

    deinit { if !finished { abort() } }

    /// The chunk size wimlib-imagex uses for each format (LZMS: its non-solid default).
    public static func defaultChunkSize(_ format: CompressionFormat) -> Int {
        format == .lzms ? 131072 : 32768
    }

    /// Stops writing. A new file's temporary file is removed and the destination never
    /// touched; an existing WIM keeps its old header, so it stays as it was (new bytes written
    /// after its end are cut off again where possible).
    public func abort() {
        guard !finished else { return }
        finished = true
        resourceWriter?.discardQueue()
        if isInPlace {
            // Only what this writer added lies past the old end; the header was not touched.
            if let base { _ = ftruncate(file.fd, off_t(base.parts[0].size)) }
            file.close()
            return
        }
        file.close()
        unlink(temporaryPath)
    }

    // MARK: Blobs

    /// Starts a blob of `size` bytes (more than 0); `source` names it in errors. `compress`
    /// false stores it uncompressed (a capture configuration's [CompressionExclusionList]).
    public func beginBlob(size: UInt64, source: String, compress: Bool = true) throws {
        blobSource = source
        blobSize = size
        if let solid { return try solid.begin(size: size) }
        try resources().begin(size: size, compress: compress, mayQueue: true)
    }

    public func blobData(_ data: UnsafeRawBufferPointer) throws {
        if let solid { return try solid.data(data) }
        try resources().data(data)
    }

    /// Ends the blob and returns its SHA-1; a duplicate of a stored blob (of this write or of
    /// the existing WIM) is cut off again.
    public func endBlob() throws -> SHA1Digest {
        if let solid {
            // A solid blob's place is kept by the solid writer; the header here only counts its size.
            let (hash, size, duplicate) = try solid.end(source: blobSource) { blobs[$0] != nil }
            if duplicate {
                duplicateBytes += size
            } else {
                blobs[hash] = StoredBlob(header: ResourceHeader(sizeInWIM: size, flags: .solid, offset: 0, uncompressedSize: size), referenceCount: 0)
                blobOrder.append(hash)
                uniqueBytes += size
            }
            return hash
        }
        let writer = try resources()
        let (written, hash) = try writer.endQueueable(source: blobSource)
        // A queued blob gets its place when the queue is written (`queuedResourceWritten`).
        let header = written ?? ResourceHeader(sizeInWIM: 0, flags: [], offset: 0, uncompressedSize: blobSize)
        if blobs[hash] != nil {
            if written == nil {
                writer.dropLastQueued()
            } else {
                try file.truncate(to: header.offset - UInt64(writer.prefixBytes))
            }
            duplicateBytes += header.uncompressedSize
        } else {
            blobs[hash] = StoredBlob(header: header, referenceCount: 0)
            blobOrder.append(hash)
            uniqueBytes += header.uncompressedSize
        }
        return hash
    }

    /// Drops the blob begun with `beginBlob` (its source failed part-way); nothing of it stays.
    public func discardBlob() throws {
        if let solid { return try solid.discard() }
        try resources().discard()
    }

    /// Stores a small blob held in memory (reparse data, a named stream); zero for no bytes.
    public func addBlob(_ bytes: [UInt8], source: String) throws -> SHA1Digest {
        guard !bytes.isEmpty else { return .zero }
        let hash = SHA1Hasher.digest(bytes)
        if blobs[hash] != nil {
            duplicateBytes += UInt64(bytes.count)
            return hash
        }
        try beginBlob(size: UInt64(bytes.count), source: source)
        try bytes.withUnsafeBytes { try blobData($0) }
        return try endBlob()
    }

    public func contains(_ hash: SHA1Digest) -> Bool { hash.isZero || blobs[hash] != nil }

    public func size(of hash: SHA1Digest) -> UInt64 { hash.isZero ? 0 : blobs[hash]?.header.uncompressedSize ?? 0 }

    /// Copies a blob's stored bytes from another WIM as they are (no decompression), which is
    /// right when the resource is uncompressed, or compressed in this WIM's format and chunk
    /// size; returns false (copying nothing) when it is not, or is solid or pipable.
    public func copyBlobAsStored(_ blob: BlobDescriptor, from archive: WIMArchive) throws -> Bool {
        guard blobs[blob.hash] == nil else { return true }
        let resource = archive.resources[blob.resource]
        guard let header = try copyResourceAsStored(resource, from: archive, metadata: false) else { return false }
        blobs[blob.hash] = StoredBlob(header: header, referenceCount: 0)
        blobOrder.append(blob.hash)
        uniqueBytes += header.uncompressedSize
        return true
    }

    /// Whether `resource` can be copied into this WIM byte for byte.
    public func canCopyAsStored(_ resource: Resource) -> Bool {
        guard !resource.isSolid, !resource.isPipable, solid == nil, !layout.pipable else { return false }
        return !resource.isCompressed || (resource.compression == compression && resource.chunkSize == chunkSize)
    }

    private func copyResourceAsStored(_ resource: Resource, from archive: WIMArchive, metadata: Bool) throws -> ResourceHeader? {
        guard canCopyAsStored(resource) else { return nil }
        try resourceWriter?.flushQueue()
        let start = file.position
        let part = archive.parts[resource.part]
        var done: UInt64 = 0
        let piece: UInt64 = 4 << 20
        while done < resource.sizeInWIM {
            let count = Int(min(piece, resource.sizeInWIM - done))
            try file.append(try part.read(count: count, at: resource.offset + done, what: "resource at offset \(resource.offset)"))
            done += UInt64(count)
        }
        var header = Self.header(of: resource, metadata: metadata)
        header.offset = start
        return header
    }

    // MARK: Images

    /// Every blob the tree's names use, once per name (as the blob table counts references).
    static func references(of tree: ImageTree) -> [SHA1Digest: UInt32] {
        var counts: [SHA1Digest: UInt32] = [:]
        for entry in tree.entries {
            for hash in [entry.dataHash, entry.reparseHash] + entry.namedStreams.map(\.hash) where !hash.isZero {
                counts[hash, default: 0] += 1
            }
        }
        return counts
    }

    private func addReferences(_ counts: [SHA1Digest: UInt32]) {
        for (hash, n) in counts { blobs[hash]?.referenceCount += n }
    }

    private func removeReferences(_ counts: [SHA1Digest: UInt32]) {
        for (hash, n) in counts {
            guard let old = blobs[hash]?.referenceCount else { continue }
            blobs[hash]!.referenceCount = old > n ? old - n : 0
        }
    }

    /// Writes an image's metadata resource; its blobs must have been stored already. The image
    /// becomes the last one.
    public func addImage(_ tree: ImageTree, info: ImageInfo) throws {
        let (header, hash) = try writeMetadata(tree, number: images.count + 1)
        var info = info
        (info.directoryCount, info.fileCount, info.totalBytes, info.hardLinkBytes) = counts(of: tree)
        addReferences(Self.references(of: tree))
        images.append(StoredImage(header: header, hash: hash, xml: .fresh(info)))
    }

    private func writeMetadata(_ tree: ImageTree, number: Int) throws -> (ResourceHeader, SHA1Digest) {
        for entry in tree.entries {
            for hash in [entry.dataHash, entry.reparseHash] + entry.namedStreams.map(\.hash) where !hash.isZero {
                guard blobs[hash] != nil else { throw WIMWriteError.misuse("entry \(entry.name) names blob \(hash), which was not written") }
            }
        }
        return try storeMetadata(MetadataWriter.serialize(tree), number: number)
    }

    /// Writes an image's metadata resource (a pipable WIM's waits for the end, PipableLayout).
    private func storeMetadata(_ metadata: [UInt8], number: Int) throws -> (ResourceHeader, SHA1Digest) {
        if layout.pipable {
            pipableMetadata.append(metadata)
            return (ResourceHeader(sizeInWIM: 0, flags: .metadata, offset: 0, uncompressedSize: UInt64(metadata.count)), SHA1Hasher.digest(metadata))
        }
        // Blobs of later images go into a new solid resource behind this metadata.
        try solid?.closeResource()
        let writer = try resources()
        try writer.begin(size: UInt64(metadata.count))
        try metadata.withUnsafeBytes { try writer.data($0) }
        return try writer.end(source: "metadata of image \(number)", extraFlags: .metadata)
    }

    /// Counted as wimlib counts (its info shows these): the root is a directory, reparse
    /// points are files; every name of a file adds all its streams (contents, reparse data,
    /// named streams) to the total bytes, every name after the first to the hard link bytes.
    private func counts(of tree: ImageTree) -> (directories: UInt64, files: UInt64, totalBytes: UInt64, hardLinkBytes: UInt64) {
        var result: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var seenGroups = Set<UInt64>()
        for entry in tree.entries {
            if entry.isDirectory { result.0 += 1 } else { result.1 += 1 }
            let bytes = size(of: entry.dataHash) + size(of: entry.reparseHash) + entry.namedStreams.reduce(0) { $0 + size(of: $1.hash) }
            result.2 += bytes
            if entry.hardLinkGroup != 0, !seenGroups.insert(entry.hardLinkGroup).inserted {
                result.3 += bytes
            }
        }
        return result
    }

    private func checkImage(_ index: Int) throws {
        guard index >= 1, index <= images.count else {
            throw WIMEditError.noSuchImage(path: destination, index: index, imageCount: images.count)
        }
    }

    /// The directory tree of image `index` (1-based) of the existing WIM, read from its metadata.
    public func imageTree(_ index: Int) throws -> ImageTree {
        try checkImage(index)
        guard let base, let number = images[index - 1].baseImage else {
            throw WIMWriteError.misuse("image \(index) was added by this writer; its tree is the caller's")
        }
        if let known = baseTrees[number] { return known }
        let tree = ImageTree(try base.metadata(image: number))
        baseTrees[number] = tree
        return tree
    }

    /// Replaces image `index`'s tree (an update): writes its new metadata, moves the blob
    /// references from the old tree to the new one and refreshes the counts and modification
    /// time in its XML, keeping every other property.
    public func replaceImage(_ index: Int, with tree: ImageTree) throws {
        let old = try imageTree(index)
        let (header, hash) = try writeMetadata(tree, number: index)
        removeReferences(Self.references(of: old))
        addReferences(Self.references(of: tree))
        let (directories, files, totalBytes, hardLinkBytes) = counts(of: tree)
        images[index - 1].header = header
        images[index - 1].hash = hash
        images[index - 1].baseImage = nil
        if case var .kept(element) = images[index - 1].xml {
            element.setChild("DIRCOUNT", String(directories))
            element.setChild("FILECOUNT", String(files))
            element.setChild("TOTALBYTES", String(totalBytes))
            element.setChild("HARDLINKBYTES", String(hardLinkBytes))
            element.setFiletime("LASTMODIFICATIONTIME", Self.currentFiletime())
            images[index - 1].xml = .kept(element)
        }
    }

    /// Removes image `index` (1-based); later images move down by one. Blobs only it used are
    /// left out of the new blob table (their bytes stay in the file until `optimize`).
    public func deleteImage(_ index: Int) throws {
        try checkImage(index)
        guard let base, let number = images[index - 1].baseImage else {
            throw WIMWriteError.misuse("deleting image \(index), which this writer added or rewrote")
        }
        removeReferences(Self.references(of: ImageTree(try base.metadata(image: number))))
        images.remove(at: index - 1)
        if bootIndex == index { bootIndex = 0 } else if bootIndex > index { bootIndex -= 1 }
    }

    /// Copies image `image` of `archive` as its last image: the blobs it uses that this WIM
    /// lacks (as stored when `canCopyAsStored` allows and `recompress` is false, else decoded
    /// and compressed anew), its metadata and its XML element, verbatim. Returns the bytes of
    /// blob data copied as stored and recompressed.
    @discardableResult
    public func exportImage(_ image: Int, from archive: WIMArchive, recompress: Bool = false,
                            progress: ((UInt64) -> Void)? = nil) throws -> (asStored: UInt64, recompressed: UInt64) {
        let metadata = try archive.metadata(image: image)
        let tree = ImageTree(metadata)
        var copied: (UInt64, UInt64) = (0, 0)
        var toDecode: [BlobDescriptor] = []
        var needed: [BlobDescriptor] = []
        for hash in Self.references(of: tree).keys where blobs[hash] == nil {
            guard let blob = archive.blobs[hash] else {
                throw WIMEditError.missingBlob(path: archive.path, image: image, hash: hash.description)
            }
            needed.append(blob)
        }
        // In the source's file order: one pass front to back.
        needed.sort { (archive.resources[$0.resource].offset, $0.offsetInResource) < (archive.resources[$1.resource].offset, $1.offsetInResource) }
        for blob in needed {
            if !recompress, try copyBlobAsStored(blob, from: archive) {
                copied.0 += blob.size
                progress?(copied.0 + copied.1)
            } else {
                toDecode.append(blob)
            }
        }
        if !toDecode.isEmpty {
            let sink = WriterSink(writer: self)
            var reader = BlobReader(archive: archive, threads: max(1, threads))
            reader.verifyHashes = true
            try reader.read(toDecode, into: sink)
            copied.1 = toDecode.reduce(0) { $0 + $1.size }
            progress?(copied.0 + copied.1)
        }
        // The metadata as stored when possible, so it stays byte for byte what it was.
        let (resourceIndex, metadataHash) = archive.imageMetadata[image - 1]
        var header: ResourceHeader
        if !recompress, let stored = try copyResourceAsStored(archive.resources[resourceIndex], from: archive, metadata: true) {
            header = stored
        } else {
            let resource = archive.resources[resourceIndex]
            let bytes = try WIMArchive.readWhole(resource, from: archive.parts[resource.part], what: "metadata of image \(image)", limit: 1 << 32)
            (header, _) = try storeMetadata(bytes, number: images.count + 1)
        }
        addReferences(Self.references(of: tree))
        let element = archive.xmlImage(image)?.element ?? XMLElement(name: "IMAGE", attributes: [], children: [], text: "")
        images.append(StoredImage(header: header, hash: metadataHash, xml: .kept(element)))
        return copied
    }

    /// Feeds blobs the reader decodes into the writer.
    private final class WriterSink: BlobSink {
        let writer: WIMWriter
        init(writer: WIMWriter) { self.writer = writer }
        func beginBlob(_ blob: BlobDescriptor) throws { try writer.beginBlob(size: blob.size, source: "blob \(blob.hash)") }
        func blobData(_ data: UnsafeRawBufferPointer) throws { try writer.blobData(data) }
        func endBlob(_ blob: BlobDescriptor) throws {
            let hash = try writer.endBlob()
            guard hash == blob.hash else { throw WIMWriteError.misuse("blob \(blob.hash) read back as \(hash)") }
        }
    }

    // MARK: Image properties

    /// The image names in order (for checks such as a name used twice).
    public var imageNames: [String?] {
        images.map { image in
            switch image.xml {
            case let .fresh(info): return info.name
            case let .kept(element): return element.childText("NAME")
            }
        }
    }

    /// Changes what the XML says about image `index`; nil leaves a property as it is, an empty
    /// string removes it. Every other element of the image (WINDOWS, times, counts) is kept.
    public func setImageProperties(_ index: Int, name: String? = nil, description: String? = nil, flags: String? = nil) throws {
        try checkImage(index)
        var element: XMLElement
        switch images[index - 1].xml {
        case let .kept(kept): element = kept
        case let .fresh(info):
            element = XMLParser.parseOrEmpty(Self.imageXML(info, index: index))
        }
        if let name { element.setChild("NAME", name, removeIfEmpty: true) }
        if let description { element.setChild("DESCRIPTION", description, removeIfEmpty: true) }
        if let flags { element.setChild("FLAGS", flags, removeIfEmpty: true) }
        images[index - 1].xml = .kept(element)
    }

    /// Makes image `index` the bootable one (0: none); the header's boot metadata follows it.
    public func setBootImage(_ index: Int) throws {
        if index != 0 { try checkImage(index) }
        bootIndex = index
    }

    // MARK: Finishing

    /// Test-only: with `IMPRINT_TEST_KILL_AT` naming this point, the process kills itself
    /// (SIGKILL) here, so tests can check that an interrupted in-place write left the WIM whole.
    static func testKillPoint(_ point: String) {
        guard let wanted = getenv("IMPRINT_TEST_KILL_AT"), String(cString: wanted) == point else { return }
        kill(getpid(), SIGKILL)
    }

    /// Writes the blob table, the XML data and the header, and syncs: a new file is then
    /// linked into place (on failure its temporary file is removed); an existing WIM gets its
    /// header rewritten last (on failure before that it stays as it was).
    public func finish() throws {
        guard !finished else { throw WIMWriteError.misuse("finish after finish or abort") }
        do {
            try writeTail()
        } catch {
            abort()
            throw error
        }
    }

    private func writeTail() throws {
        // Queued blobs get their places before anything that points at them is written.
        try resourceWriter?.flushQueue()
        if isInPlace { try file.flush() }
        Self.testKillPoint("after-blobs")
        try solid?.closeResource()
        // A pipable WIM is written anew behind its metadata (PipableLayout).
        var out = file
        var shift: Int64 = 0
        if layout.pipable {
            (out, shift) = try writePipableLead()
            // The spool is no longer needed; from here on a failure removes the new file.
            file.close()
            unlink(temporaryPath)
            temporaryPath = out.path
        }
        let pipable = layout.pipable
        // Blob table: the blobs in the order written, then the images' metadata in image order,
        // then the solid resources with their blobs; blobs no image uses any more are left out.
        var table: [UInt8] = []
        table.reserveCapacity((blobOrder.count + images.count) * 50)
        func entry(_ h: ResourceHeader, _ refs: UInt32, _ hash: SHA1Digest) {
            table += Self.encode(h)
            table += UInt16(1).littleEndianBytes
            table += refs.littleEndianBytes
            table += hash.bytes
        }
        for hash in blobOrder {
            guard let blob = blobs[hash], blob.referenceCount > 0, !blob.header.flags.contains(.solid) else { continue }
            var header = blob.header
            header.offset = UInt64(Int64(header.offset) + shift)
            entry(header, blob.referenceCount, hash)
        }
        for image in images { entry(image.header, 1, image.hash) }
        if let solid { table += solid.tableEntries { self.blobs[$0]?.referenceCount ?? 1 } }
        let tableHeader = try PipableLayout.appendPlain(table, to: out, pipable: pipable, flags: pipable ? .metadata : [])

        let xml = Self.xml(images: images.map(\.xml), totalBytes: out.position, rootExtras: xmlRootExtras)
        let xmlHeader = try PipableLayout.appendPlain(xml, to: out, pipable: pipable, flags: pipable ? .metadata : [])

        // The integrity table covers the file after the header up to the blob table's end.
        var integrity: ResourceHeader?
        if layout.integrity {
            try out.flush()
            let bytes = try IntegrityTable.build(descriptor: out.fd, path: out.path, end: tableHeader.offset + tableHeader.sizeInWIM)
            integrity = try PipableLayout.appendPlain(bytes, to: out, pipable: false, flags: [])
        }
        if isInPlace { try file.flush() }
        Self.testKillPoint("after-table")

        let hasBoot = bootIndex >= 1 && bootIndex <= images.count
        // One GUID for both headers of a pipable WIM (a reader matches them).
        let guid = self.guid.flatMap { $0.count == 16 ? $0 : nil } ?? Self.randomGUID()
        func header(complete: Bool) -> [UInt8] {
            let empty = ResourceHeader(sizeInWIM: 0, flags: [], offset: 0, uncompressedSize: 0)
            var bytes = Self.headerBytes(compression: compression, chunkSize: chunkSize, solid: solid != nil, pipable: pipable,
                                         guid: guid,
                                         imageCount: images.count, blobTable: complete ? tableHeader : empty,
                                         xml: complete ? xmlHeader : empty, integrity: complete ? integrity : nil,
                                         bootIndex: UInt32(hasBoot ? bootIndex : 0),
                                         bootMetadata: hasBoot ? images[bootIndex - 1].header : nil)
            if let baseHeaderBytes {
                // An existing WIM keeps its signature, version, flags, chunk size, GUID and part
                // numbers; what this write changed is put over them.
                var kept = baseHeaderBytes
                kept.replaceSubrange(44..<WIMHeader.diskSize, with: bytes[44..<WIMHeader.diskSize])
                bytes = kept
            }
            return bytes
        }

        if isInPlace {
            // Everything the new header points at must be on disk before the header is.
            try file.sync()
            Self.testKillPoint("before-header")
            // From here on the file may already be the new WIM: abort must not cut it.
            finished = true
            defer { file.close() }
            try file.patch(header(complete: true), at: 0)
            try file.sync()
            return
        }
        if pipable {
            // As wimlib: the first header as a pipe reader sees it, the complete one at the end.
            try out.append(header(complete: true))
            try out.patch(header(complete: false), at: 0)
        } else {
            try out.patch(header(complete: true), at: 0)
        }
        try out.sync()
        out.close()
        if replacesDestination {
            guard rename(temporaryPath, destination) == 0 else {
                throw WIMWriteError.io(path: destination, operation: "rename the rewritten WIM into place", errno: errno)
            }
        } else if link(temporaryPath, destination) != 0 {
            // Into place without ever replacing a file: link() fails on an existing name.
            let code = errno
            if code == EEXIST { throw WIMWriteError.destinationExists(path: destination) }
            // Filesystems without hard links: rename, after checking once more.
            var info = stat()
            if lstat(destination, &info) == 0 { throw WIMWriteError.destinationExists(path: destination) }
            guard rename(temporaryPath, destination) == 0 else {
                throw WIMWriteError.io(path: destination, operation: "rename the finished WIM into place", errno: errno)
            }
        } else {
            unlink(temporaryPath)
        }
        finished = true
        // The new name must survive a power cut too.
        let folder = destination.lastIndex(of: "/").map { String(destination[..<$0]) } ?? "."
        let dirFD = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    // MARK: Layouts

    /// Pipable: a new temporary file with the header room, the XML and the images' metadata,
    /// then the blobs spooled so far; returns it and how far every blob moved.
    private func writePipableLead() throws -> (WIMOutputFile, Int64) {
        let out = try PipableLayout.temporaryFile(beside: destination)
        do {
            try out.appendZeros(WIMHeader.diskSize)
            let xml = Self.xml(images: images.map(\.xml), totalBytes: 0, rootExtras: xmlRootExtras)
            _ = try PipableLayout.appendPlain(xml, to: out, pipable: true, flags: .metadata)
            let writer = try ResourceWriter(file: out, compression: compression, level: level, chunkSize: chunkSize, threads: threads, pipable: true)
            for (i, metadata) in pipableMetadata.enumerated() {
                try writer.begin(size: UInt64(metadata.count))
                try metadata.withUnsafeBytes { try writer.data($0) }
                (images[i].header, images[i].hash) = try writer.end(source: "metadata of image \(i + 1)", extraFlags: .metadata)
            }
            let spoolEnd = file.position
            let shift = Int64(out.position) - Int64(WIMHeader.diskSize)
            try PipableLayout.copy(UInt64(WIMHeader.diskSize)..<spoolEnd, of: file, to: out)
            return (out, shift)
        } catch {
            out.close()
            unlink(out.path)
            throw error
        }
    }

    static func encode(_ h: ResourceHeader) -> [UInt8] {
        (h.sizeInWIM | UInt64(h.flags.rawValue) << 56).littleEndianBytes + h.offset.littleEndianBytes + h.uncompressedSize.littleEndianBytes
    }

    /// The XML data, UTF-16LE with a byte-order mark, as `WIMXMLInfo` (and wimlib) read it:
    /// new images from their `ImageInfo`, kept ones as they were (renumbered).
    static func xml(images: [ImageXML], totalBytes: UInt64, rootExtras: [XMLElement] = []) -> [UInt8] {
        var text = "<WIM><TOTALBYTES>\(totalBytes)</TOTALBYTES>"
        for (i, image) in images.enumerated() {
            switch image {
            case let .fresh(info): text += imageXML(info, index: i + 1)
            case var .kept(element):
                element.setAttribute("INDEX", String(i + 1))
                text += element.xmlText
            }
        }
        for extra in rootExtras { text += extra.xmlText }
        text += "</WIM>"
        return [0xFF, 0xFE] + UTF16LE.encode(text)
    }

    static func xml(images: [ImageInfo], totalBytes: UInt64) -> [UInt8] {
        xml(images: images.map { .fresh($0) }, totalBytes: totalBytes)
    }

    /// One new image's IMAGE element.
    static func imageXML(_ image: ImageInfo, index: Int) -> String {
        func escape(_ s: String) -> String { XMLElement.escape(s) }
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16, uppercase: true)
            return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
        }
        func time(_ tag: String, _ t: UInt64) -> String {
            "<\(tag)><HIGHPART>\(hex(t >> 32))</HIGHPART><LOWPART>\(hex(t & 0xFFFF_FFFF))</LOWPART></\(tag)>"
        }
        func element(_ tag: String, _ value: String?) -> String {
            value.map { "<\(tag)>\(escape($0))</\(tag)>" } ?? ""
        }
        func windowsElement(_ w: ImageInfo.Windows) -> String {
            var out = "<WINDOWS>"
            out += element("ARCH", w.architecture.map(String.init))
            out += element("PRODUCTNAME", w.productName) + element("EDITIONID", w.editionID)
            out += element("INSTALLATIONTYPE", w.installationType) + element("HAL", w.hal)
            out += element("PRODUCTTYPE", w.productType) + element("PRODUCTSUITE", w.productSuite)
            if !w.languages.isEmpty || w.defaultLanguage != nil {
                out += "<LANGUAGES>" + w.languages.map { element("LANGUAGE", $0) }.joined() + element("DEFAULT", w.defaultLanguage) + "</LANGUAGES>"
            }
            if let major = w.majorVersion {
                out += "<VERSION>" + element("MAJOR", String(major)) + element("MINOR", w.minorVersion.map(String.init))
                out += element("BUILD", w.build) + element("SPBUILD", w.servicePackBuild.map(String.init))
                out += element("SPLEVEL", w.servicePackLevel.map(String.init)) + "</VERSION>"
            }
            out += element("SYSTEMROOT", w.systemRoot)
            return out + "</WINDOWS>"
        }
        var text = "<IMAGE INDEX=\"\(index)\">"
        text += "<DIRCOUNT>\(image.directoryCount)</DIRCOUNT><FILECOUNT>\(image.fileCount)</FILECOUNT>"
        text += "<TOTALBYTES>\(image.totalBytes)</TOTALBYTES><HARDLINKBYTES>\(image.hardLinkBytes)</HARDLINKBYTES>"
        text += time("CREATIONTIME", image.creationTime) + time("LASTMODIFICATIONTIME", image.creationTime)
        if let w = image.windows { text += windowsElement(w) }
        text += "<NAME>\(escape(image.name))</NAME>"
        if let d = image.description { text += "<DESCRIPTION>\(escape(d))</DESCRIPTION>" }
        if let f = image.flags { text += "<FLAGS>\(escape(f))</FLAGS>" }
        if let d = image.displayName { text += "<DISPLAYNAME>\(escape(d))</DISPLAYNAME>" }
        if let d = image.displayDescription { text += "<DISPLAYDESCRIPTION>\(escape(d))</DISPLAYDESCRIPTION>" }
        text += "</IMAGE>"
        return text
    }

    /// Now as a FILETIME.
    public static func currentFiletime() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return filetime(seconds: Int64(now.tv_sec), nanoseconds: Int64(now.tv_nsec))
    }

    /// A POSIX time as a FILETIME (100 ns since 1601-01-01); times before 1601 become 0.
    public static func filetime(seconds: Int64, nanoseconds: Int64) -> UInt64 {
        let value = (seconds + 11_644_473_600) * 10_000_000 + nanoseconds / 100
        return value < 0 ? 0 : UInt64(value)
    }
}

/// Failures of changing an existing WIM, phrased with the path they concern.
public enum WIMEditError: Error, CustomStringConvertible, Sendable {
    /// The WIM's layout is not one that can be changed in place.
    case unsupported(path: String, reason: String)
    case noSuchImage(path: String, index: Int, imageCount: Int)
    /// An image uses a blob the WIM does not hold.
    case missingBlob(path: String, image: Int, hash: String)
    /// An update command that cannot be carried out (a missing path, a name in use).
    case badCommand(String)
    /// Two images would have the same name.
    case nameInUse(path: String, name: String)

    public var description: String {
        switch self {
        case let .unsupported(path, reason): return "\(path): cannot be changed in place: \(reason); it was left untouched"
        case let .noSuchImage(path, index, count): return "\(path): there is no image \(index) (the WIM has \(count))"
        case let .missingBlob(path, image, hash): return "\(path): image \(image) uses blob \(hash), which the WIM does not hold"
        case let .badCommand(what): return what
        case let .nameInUse(path, name): return "\(path): an image is already named \"\(name)\"; nothing was changed"
        }
    }
}

extension WIMEditError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .unsupported, .nameInUse: return .refused
        case .noSuchImage, .badCommand: return .badInput
        case .missingBlob: return .badInput
        }
    }
}

extension ImageTree {
    /// The tree of a parsed image, entry for entry (tagged items other than the object ID,
    /// such as wimlib's UNIX data, are not carried over).
    public init(_ metadata: ImageMetadata) {
        var entries: [Entry] = []
        entries.reserveCapacity(metadata.entries.count)
        for (i, e) in metadata.entries.enumerated() {
            var entry = Entry(name: e.name, attributes: e.attributes)
            entry.shortName = e.shortName
            entry.securityID = e.securityID
            entry.creationTime = e.creationTime
            entry.lastAccessTime = e.lastAccessTime
            entry.lastWriteTime = e.lastWriteTime
            entry.dataHash = e.dataHash
            entry.reparseHash = e.reparseHash
            entry.reparseTag = e.reparseTag
            entry.reparseFlags = e.reparseFlags
            entry.hardLinkGroup = e.hardLinkGroup
            entry.namedStreams = e.namedStreams
            entry.objectID = e.objectID
            entry.children = e.isDirectory ? Array(metadata.children(of: i)) : []
            entries.append(entry)
        }
        self.init(entries: entries, securityDescriptors: metadata.securityDescriptors)
    }
}

extension XMLElement {
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// The element as XML text (WIM XML has no mixed content: text or children).
    var xmlText: String {
        var text = "<" + name
        for (key, value) in attributes { text += " \(key)=\"\(Self.escape(value))\"" }
        text += ">" + Self.escape(self.text)
        for child in children { text += child.xmlText }
        return text + "</\(name)>"
    }

    mutating func setAttribute(_ key: String, _ value: String) {
        if let i = attributes.firstIndex(where: { $0.0 == key }) { attributes[i].1 = value } else { attributes.insert((key, value), at: 0) }
    }

    /// Sets a child's text, adding the child at the end when missing.
    mutating func setChild(_ name: String, _ value: String, removeIfEmpty: Bool = false) {
        if removeIfEmpty && value.isEmpty {
            children.removeAll { $0.name == name }
            return
        }
        if let i = children.firstIndex(where: { $0.name == name }) {
            children[i].text = value
            children[i].children = []
        } else {
            children.append(XMLElement(name: name, attributes: [], children: [], text: value))
        }
    }

    mutating func setFiletime(_ name: String, _ time: UInt64) {
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16, uppercase: true)
            return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
        }
        let high = XMLElement(name: "HIGHPART", attributes: [], children: [], text: hex(time >> 32))
        let low = XMLElement(name: "LOWPART", attributes: [], children: [], text: hex(time & 0xFFFF_FFFF))
        let element = XMLElement(name: name, attributes: [], children: [high, low], text: "")
        if let i = children.firstIndex(where: { $0.name == name }) { children[i] = element } else { children.append(element) }
    }
}

extension XMLParser {
    /// Parses XML this module wrote itself; an element named IMAGE with nothing in it otherwise.
    static func parseOrEmpty(_ text: String) -> XMLElement {
        (try? parse(text)) ?? XMLElement(name: "IMAGE", attributes: [], children: [], text: "")
    }
}
