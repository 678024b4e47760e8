#if canImport(Glibc)
import Glibc
#endif
import Digests
import Primitives

/// Writes a new WIM file of one part: blobs (deduplicated by SHA-1), then each image's
/// metadata resource, the blob table and the XML data, and last the header, which stays zero
/// until everything it points at is in place. All of it goes to a temporary file beside the
/// destination (`.NAME.tmp-XXXXXX`), synced and then linked into place only when complete,
/// never over an existing file; on any failure (or `abort`) the temporary file is removed.
///
/// Blob data arrives push-style (`beginBlob`, `blobData`, `endBlob`) and is written as it comes;
/// when its SHA-1 turns out to be one already stored, what was written is cut off again.
public final class WIMWriter {
    public let destination: String
    public let compression: CompressionFormat
    public let chunkSize: Int
    public private(set) var temporaryPath: String
    /// Integrity table, solid resources, pipable format (`PipableLayout.swift`).
    public let layout: WIMLayoutOptions

    private let file: WIMOutputFile
    private let resources: ResourceWriter
    // MARK: Layouts (wim-layouts): blobs go into solid resources; a pipable WIM keeps each
    // image's metadata until the end, when it is written in front of the spooled blobs.
    private var solid: SolidResourceWriter?
    private var pipableMetadata: [[UInt8]] = []
    private let level: CompressionLevel
    private let threads: Int
    private var finished = false

    struct StoredBlob {
        var header: ResourceHeader
        var referenceCount: UInt32
    }
    private var blobs: [SHA1Digest: StoredBlob] = [:]
    private var blobOrder: [SHA1Digest] = []
    private var images: [(header: ResourceHeader, hash: SHA1Digest, info: ImageInfo)] = []
    private var blobSource = ""

    /// Bytes of unique blob data stored, and of duplicates not stored again.
    public private(set) var uniqueBytes: UInt64 = 0
    public private(set) var duplicateBytes: UInt64 = 0
    public var blobCount: Int { blobs.count }

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

    /// Creates the temporary file beside `destination`. Refuses when the destination exists or
    /// its folder does not. `compression` must have an encoder (`makeChunkCompressor`) unless
    /// it is `.none`; `threads` compress chunks.
    /// `chunkSize` (a power of two from 32 KiB) defaults to the format's usual one.
    public init(destination: String, compression: CompressionFormat, level: CompressionLevel = .default, chunkSize: Int? = nil, threads: Int = availableProcessorCount(),
                layout: WIMLayoutOptions = WIMLayoutOptions()) throws {
        if layout.pipable && layout.solid != nil { throw WIMWriteError.unsupportedLayout(path: destination, reason: "a pipable WIM cannot hold solid resources") }
        self.layout = layout
        self.level = level
        self.threads = threads
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
        var info = stat()
        if lstat(destination, &info) == 0 { throw WIMWriteError.destinationExists(path: destination) }
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
            resources = try ResourceWriter(file: file, compression: compression, level: level, chunkSize: chunkSize, threads: threads,
                                           pipable: layout.pipable)
            if let options = layout.solid {
                solid = try SolidResourceWriter(file: file, compression: options.compression, level: options.level,
                                                chunkSize: options.chunkSize ?? SolidResourceWriter.defaultChunkSize(options.compression), threads: threads)
            }
        } catch {
            file.close()
            unlink(temporaryPath)
            throw error
        }
        do {
            try file.appendZeros(WIMHeader.diskSize)
        } catch {
            abort()
            throw error
        }
    }

    deinit { if !finished { abort() } }

    /// The chunk size wimlib-imagex uses for each format (LZMS: its non-solid default).
    public static func defaultChunkSize(_ format: CompressionFormat) -> Int {
        format == .lzms ? 131072 : 32768
    }

    /// Removes the temporary file; the destination is never touched.
    public func abort() {
        guard !finished else { return }
        finished = true
        file.close()
        unlink(temporaryPath)
    }

    // MARK: Blobs

    /// Starts a blob of `size` bytes (more than 0); `source` names it in errors. `compress`
    /// false stores it uncompressed (a capture configuration's [CompressionExclusionList]).
    public func beginBlob(size: UInt64, source: String, compress: Bool = true) throws {
        blobSource = source
        if let solid { return try solid.begin(size: size) }
        try resources.begin(size: size, compress: compress)
    }

    public func blobData(_ data: UnsafeRawBufferPointer) throws {
        if let solid { return try solid.data(data) }
        try resources.data(data)
    }

    /// Ends the blob and returns its SHA-1; a duplicate of a stored blob is cut off again. Each
    /// call counts one reference.
    public func endBlob() throws -> SHA1Digest {
        if let solid {
            // A solid blob's place is kept by the solid writer; the header here only counts its size.
            let (hash, size, duplicate) = try solid.end(source: blobSource) { blobs[$0] != nil }
            if duplicate {
                blobs[hash]!.referenceCount += 1
                duplicateBytes += size
            } else {
                blobs[hash] = StoredBlob(header: ResourceHeader(sizeInWIM: size, flags: .solid, offset: 0, uncompressedSize: size), referenceCount: 1)
                blobOrder.append(hash)
                uniqueBytes += size
            }
            return hash
        }
        let (header, hash) = try resources.end(source: blobSource)
        if blobs[hash] != nil {
            try file.truncate(to: header.offset - UInt64(resources.prefixBytes))
            blobs[hash]!.referenceCount += 1
            duplicateBytes += header.uncompressedSize
        } else {
            blobs[hash] = StoredBlob(header: header, referenceCount: 1)
            blobOrder.append(hash)
            uniqueBytes += header.uncompressedSize
        }
        return hash
    }

    /// Stores a small blob held in memory (reparse data, a named stream); zero for no bytes.
    public func addBlob(_ bytes: [UInt8], source: String) throws -> SHA1Digest {
        guard !bytes.isEmpty else { return .zero }
        let hash = SHA1Hasher.digest(bytes)
        if blobs[hash] != nil {
            blobs[hash]!.referenceCount += 1
            duplicateBytes += UInt64(bytes.count)
            return hash
        }
        try beginBlob(size: UInt64(bytes.count), source: source)
        try bytes.withUnsafeBytes { try blobData($0) }
        return try endBlob()
    }

    /// Counts one more reference to a stored blob (another name of a hard-linked file).
    public func addReference(_ hash: SHA1Digest) {
        guard !hash.isZero else { return }
        blobs[hash]?.referenceCount += 1
    }

    public func size(of hash: SHA1Digest) -> UInt64 { hash.isZero ? 0 : blobs[hash]?.header.uncompressedSize ?? 0 }

    // MARK: Images

    /// Writes an image's metadata resource; its blobs must have been stored already.
    public func addImage(_ tree: ImageTree, info: ImageInfo) throws {
        for entry in tree.entries {
            for hash in [entry.dataHash, entry.reparseHash] + entry.namedStreams.map(\.hash) where !hash.isZero {
                guard blobs[hash] != nil else { throw WIMWriteError.misuse("entry \(entry.name) names blob \(hash), which was not written") }
            }
        }
        let metadata = MetadataWriter.serialize(tree)
        var header: ResourceHeader, hash: SHA1Digest
        if layout.pipable {
            // Written at the end, in front of the blobs (PipableLayout).
            pipableMetadata.append(metadata)
            (header, hash) = (ResourceHeader(sizeInWIM: 0, flags: .metadata, offset: 0, uncompressedSize: UInt64(metadata.count)), SHA1Hasher.digest(metadata))
        } else {
            // Blobs of later images go into a new solid resource behind this metadata.
            try solid?.closeResource()
            try resources.begin(size: UInt64(metadata.count))
            try metadata.withUnsafeBytes { try resources.data($0) }
            (header, hash) = try resources.end(source: "metadata of image \(images.count + 1)", extraFlags: .metadata)
        }
        var info = info
        // Counted as wimlib counts (its info shows these): the root is a directory, reparse
        // points are files; every name of a file adds all its streams (contents, reparse data,
        // named streams) to the total bytes, every name after the first to the hard link bytes.
        var seenGroups = Set<UInt64>()
        for entry in tree.entries {
            if entry.isDirectory { info.directoryCount += 1 } else { info.fileCount += 1 }
            let bytes = size(of: entry.dataHash) + size(of: entry.reparseHash) + entry.namedStreams.reduce(0) { $0 + size(of: $1.hash) }
            info.totalBytes += bytes
            if entry.hardLinkGroup != 0, !seenGroups.insert(entry.hardLinkGroup).inserted {
                info.hardLinkBytes += bytes
            }
        }
        images.append((header, hash, info))
    }

    // MARK: Finishing

    /// Writes the blob table, the XML data and the header, syncs the file and links it into
    /// place. On failure the temporary file is removed.
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
        // MARK: Layouts (wim-layouts): the pipable WIM is written anew behind its metadata.
        try solid?.closeResource()
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
        // then the solid resources with their blobs.
        var table: [UInt8] = []
        table.reserveCapacity((blobOrder.count + images.count) * 50)
        func entry(_ h: ResourceHeader, _ refs: UInt32, _ hash: SHA1Digest) {
            table += Self.encode(h)
            table += UInt16(1).littleEndianBytes
            table += refs.littleEndianBytes
            table += hash.bytes
        }
        for hash in blobOrder where !blobs[hash]!.header.flags.contains(.solid) {
            var header = blobs[hash]!.header
            header.offset = UInt64(Int64(header.offset) + shift)
            entry(header, blobs[hash]!.referenceCount, hash)
        }
        for image in images { entry(image.header, 1, image.hash) }
        if let solid { table += solid.tableEntries { self.blobs[$0]?.referenceCount ?? 1 } }
        let tableHeader = try PipableLayout.appendPlain(table, to: out, pipable: pipable, flags: pipable ? .metadata : [])

        let xml = Self.xml(images: images.map(\.info), totalBytes: out.position)
        let xmlHeader = try PipableLayout.appendPlain(xml, to: out, pipable: pipable, flags: pipable ? .metadata : [])

        var integrityHeader: ResourceHeader?
        if layout.integrity {
            try out.flush()
            let bytes = try IntegrityTable.build(descriptor: out.fd, path: out.path, end: tableHeader.offset + tableHeader.sizeInWIM)
            integrityHeader = try PipableLayout.appendPlain(bytes, to: out, pipable: false, flags: [])
        }
        let guid = Self.randomGUID()
        func header(complete: Bool) -> [UInt8] {
            Self.headerBytes(compression: compression, chunkSize: chunkSize, solid: solid != nil, pipable: pipable, guid: guid,
                             imageCount: images.count, blobTable: complete ? tableHeader : .init(sizeInWIM: 0, flags: [], offset: 0, uncompressedSize: 0),
                             xml: complete ? xmlHeader : .init(sizeInWIM: 0, flags: [], offset: 0, uncompressedSize: 0),
                             integrity: complete ? integrityHeader : nil)
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

        // Into place without ever replacing a file: link() fails on an existing name.
        if link(temporaryPath, destination) != 0 {
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

    // MARK: Layouts (wim-layouts) helpers

    /// Pipable: a new temporary file with the header room, the XML and the images' metadata,
    /// then the blobs spooled so far; returns it and how far every blob moved.
    private func writePipableLead() throws -> (WIMOutputFile, Int64) {
        let out = try PipableLayout.temporaryFile(beside: destination)
        do {
            try out.appendZeros(WIMHeader.diskSize)
            let xml = Self.xml(images: images.map(\.info), totalBytes: 0)
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

    /// The XML data, UTF-16LE with a byte-order mark, as `WIMXMLInfo` (and wimlib) read it.
    static func xml(images: [ImageInfo], totalBytes: UInt64) -> [UInt8] {
        func escape(_ s: String) -> String {
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
        var text = "<WIM><TOTALBYTES>\(totalBytes)</TOTALBYTES>"
        for (i, image) in images.enumerated() {
            text += "<IMAGE INDEX=\"\(i + 1)\">"
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
        }
        text += "</WIM>"
        return [0xFF, 0xFE] + UTF16LE.encode(text)
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
