#if canImport(Glibc)
import Glibc
#endif
import Digests
import Primitives

/// The layouts a new WIM can take besides the plain one: with an integrity table (`--check`),
/// with its blobs in solid resources (`--solid`), or pipable (`--pipable`).
public struct WIMLayoutOptions: Sendable {
    /// Write an integrity table (`IntegrityTable.build`) after the XML data.
    public var integrity: Bool
    /// Write every blob into solid resources (WIM version 0xE00).
    public var solid: Solid?
    /// Write wimlib's pipable format, which can be applied from a pipe.
    public var pipable: Bool

    public struct Solid: Sendable {
        public var compression: CompressionFormat
        public var level: CompressionLevel
        /// Nil: 64 MiB for LZMS, else the format's usual chunk size.
        public var chunkSize: Int?

        public init(compression: CompressionFormat, level: CompressionLevel = .default, chunkSize: Int? = nil) {
            self.compression = compression
            self.level = level
            self.chunkSize = chunkSize
        }
    }

    public init(integrity: Bool = false, solid: Solid? = nil, pipable: Bool = false) {
        self.integrity = integrity
        self.solid = solid
        self.pipable = pipable
    }
}

/// wimlib's pipable WIM format, as written here.
///
/// Format (wimlib's docs for `--pipable` and its write.c description; `PipableStream` reads it
/// from a stream, `WIMArchive` from a file): magic "WLPWM\0\0\0" instead of "MSWIM\0\0\0", and
/// the file in the order a reader from a pipe needs it:
///
///     header (its blob table, XML and integrity entries zero: a pipe cannot seek back)
///     the XML data
///     each image's metadata resource (flag 0x02)
///     the blobs
///     the blob table, then the XML data again, then (with --check) the integrity table
///     the header again, complete
///
/// Every resource is preceded by a 40-byte resource header: u64 magic 0x2b9b9ba2443db9d8, u64
/// uncompressed size, SHA-1 (20 bytes), u32 resource flags (metadata 0x02, compressed 0x04; the
/// blob table and XML data are flagged metadata, as wimlib flags them). Offsets in the blob table
/// and header point past it. In a compressed WIM every blob and metadata resource is chunked,
/// each chunk preceded by its u32 stored size and the classic chunk table following the chunks.
///
/// Blobs reach `WIMWriter` before the metadata (which is complete only when the capture is), so
/// the writer spools blobs, already in pipable form, into its temporary file, and at the end
/// writes the real file: header, XML, metadata, then the spooled blobs copied behind them (every
/// blob offset shifts by one constant), then the tail.
enum PipableLayout {
    static let resourceHeaderSize = 40
    static let resourceMagic: UInt64 = 0x2b9b_9ba2_443d_b9d8

    static func resourceHeader(size: UInt64, hash: SHA1Digest, flags: ResourceHeader.Flags) -> [UInt8] {
        resourceMagic.littleEndianBytes + size.littleEndianBytes + hash.bytes + UInt32(flags.rawValue).littleEndianBytes
    }

    /// Appends `bytes` as an uncompressed resource (with the pipable resource header in front
    /// when `pipable`); returns where it is.
    static func appendPlain(_ bytes: [UInt8], to file: WIMOutputFile, pipable: Bool, flags: ResourceHeader.Flags) throws -> ResourceHeader {
        if pipable { try file.append(resourceHeader(size: UInt64(bytes.count), hash: SHA1Hasher.digest(bytes), flags: flags)) }
        let offset = file.position
        try file.append(bytes)
        return ResourceHeader(sizeInWIM: UInt64(bytes.count), flags: flags, offset: offset, uncompressedSize: UInt64(bytes.count))
    }

    /// A new, empty temporary file beside `destination` (`.NAME.tmp-XXXXXX`, mode 0644).
    static func temporaryFile(beside destination: String) throws -> WIMOutputFile {
        let slash = destination.lastIndex(of: "/")
        let folder = slash.map { $0 == destination.startIndex ? "/" : String(destination[..<$0]) } ?? "."
        let base = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        var template = Array((folder + "/." + base + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw WIMWriteError.io(path: folder, operation: "create a temporary file", errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        fchmod(fd, 0o644)
        return WIMOutputFile(path: String(cString: template), fd: fd)
    }

    /// Appends bytes `range` of the file `source` (flushed) to `target`.
    static func copy(_ range: Range<UInt64>, of source: WIMOutputFile, to target: WIMOutputFile) throws {
        try source.flush()
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        var position = range.lowerBound
        while position < range.upperBound {
            let want = Int(min(UInt64(buffer.count), range.upperBound - position))
            let got = buffer.withUnsafeMutableBytes { pread(source.fd, $0.baseAddress, want, off_t(position)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw WIMWriteError.io(path: source.path, operation: "read back offset \(position)", errno: errno)
            }
            guard got > 0 else { throw WIMWriteError.io(path: source.path, operation: "read back offset \(position) (file ends early)", errno: EIO) }
            try buffer.withUnsafeBytes { try target.append(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
            position += UInt64(got)
        }
    }
}

extension WIMWriter {
    /// The 208-byte header. `pipable` changes the magic; a `streamStart` header (the first one of
    /// a pipable WIM) leaves the blob table, XML and integrity entries zero as wimlib does.
    static func headerBytes(compression: CompressionFormat, chunkSize: Int, solid: Bool, pipable: Bool, guid: [UInt8],
                            part: (number: UInt16, total: UInt16) = (1, 1), imageCount: Int, blobTable: ResourceHeader,
                            xml: ResourceHeader, integrity: ResourceHeader?, bootIndex: UInt32 = 0,
                            bootMetadata: ResourceHeader? = nil, extraFlags: WIMHeader.Flags = []) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: WIMHeader.diskSize)
        header.put(Array((pipable ? "WLPWM" : "MSWIM").utf8) + [0, 0, 0], at: 0)
        header.put(UInt32(WIMHeader.diskSize), at: 8)
        header.put(solid ? WIMHeader.versionSolid : WIMHeader.versionDefault, at: 12)
        var flags: WIMHeader.Flags = [.reparsePointFix]
        flags.formUnion(extraFlags)
        switch compression {
        case .none: break
        case .xpress: flags.formUnion([.compression, .compressXPRESS])
        case .lzx: flags.formUnion([.compression, .compressLZX])
        case .lzms: flags.formUnion([.compression, .compressLZMS])
        }
        header.put(flags.rawValue, at: 16)
        // Uncompressed WIMs name no chunk size (wimlib refuses one).
        header.put(UInt32(compression == .none ? 0 : chunkSize), at: 20)
        header.put(guid, at: 24)
        header.put(part.number, at: 40)
        header.put(part.total, at: 42)
        header.put(UInt32(imageCount), at: 44)
        header.put(encode(blobTable), at: 48)
        header.put(encode(xml), at: 72)
        if let bootMetadata { header.put(encode(bootMetadata), at: 96) }
        header.put(bootIndex, at: 120)
        if let integrity { header.put(encode(integrity), at: 124) }
        return header
    }

    static func randomGUID() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}
