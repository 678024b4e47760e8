import Primitives

/// Where a resource lives in the file and how big it is, as every WIM structure that points at
/// data (header, blob table) records it: 24 bytes on disk.
public struct ResourceHeader: Sendable, Equatable {
    public static let diskSize = 24

    /// Stored size in the file (compressed size plus chunk table for compressed resources).
    public var sizeInWIM: UInt64
    public var flags: Flags
    public var offset: UInt64
    public var uncompressedSize: UInt64

    public struct Flags: OptionSet, Sendable, Equatable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let free = Flags(rawValue: 0x01)
        public static let metadata = Flags(rawValue: 0x02)
        public static let compressed = Flags(rawValue: 0x04)
        public static let spanned = Flags(rawValue: 0x08)
        public static let solid = Flags(rawValue: 0x10)
    }

    /// Marks, in the blob table's uncompressed-size field, an entry describing a solid resource
    /// rather than a blob.
    public static let solidResourceMagic: UInt64 = 0x1_0000_0000

    public init(sizeInWIM: UInt64, flags: Flags, offset: UInt64, uncompressedSize: UInt64) {
        self.sizeInWIM = sizeInWIM
        self.flags = flags
        self.offset = offset
        self.uncompressedSize = uncompressedSize
    }

    init(_ bytes: UnsafeRawBufferPointer, at base: Int) {
        let sizeAndFlags = bytes.le64(base)
        sizeInWIM = sizeAndFlags & 0x00FF_FFFF_FFFF_FFFF
        flags = Flags(rawValue: UInt8(truncatingIfNeeded: sizeAndFlags >> 56))
        offset = bytes.le64(base + 8)
        uncompressedSize = bytes.le64(base + 16)
    }

    public var isEmpty: Bool { sizeInWIM == 0 && offset == 0 && uncompressedSize == 0 }
}

/// The 208-byte header at the start of every WIM (and of every part of a split WIM).
public struct WIMHeader: Sendable {
    public static let diskSize = 208
    public static let versionDefault: UInt32 = 0x10d00
    public static let versionSolid: UInt32 = 0xe00

    public enum Magic: Sendable { case standard, pipable }

    public var magic: Magic
    public var version: UInt32
    public var flags: Flags
    /// Chunk size of compressed non-solid resources.
    public var chunkSize: UInt32
    public var guid: [UInt8]
    public var partNumber: UInt16
    public var totalParts: UInt16
    public var imageCount: UInt32
    public var blobTable: ResourceHeader
    public var xmlData: ResourceHeader
    public var bootMetadata: ResourceHeader
    public var bootIndex: UInt32
    public var integrityTable: ResourceHeader

    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let reserved = Flags(rawValue: 0x1)
        public static let compression = Flags(rawValue: 0x2)
        public static let readOnly = Flags(rawValue: 0x4)
        public static let spanned = Flags(rawValue: 0x8)
        public static let resourceOnly = Flags(rawValue: 0x10)
        public static let metadataOnly = Flags(rawValue: 0x20)
        public static let writeInProgress = Flags(rawValue: 0x40)
        public static let reparsePointFix = Flags(rawValue: 0x80)
        public static let compressReserved = Flags(rawValue: 0x10000)
        public static let compressXPRESS = Flags(rawValue: 0x20000)
        public static let compressLZX = Flags(rawValue: 0x40000)
        public static let compressLZMS = Flags(rawValue: 0x80000)
        public static let compressXPRESS2 = Flags(rawValue: 0x200000)

        public var names: [String] {
            let all: [(Flags, String)] = [
                (.reserved, "RESERVED"), (.compression, "COMPRESSION"), (.readOnly, "READONLY"),
                (.spanned, "SPANNED"), (.resourceOnly, "RESOURCE_ONLY"), (.metadataOnly, "METADATA_ONLY"),
                (.writeInProgress, "WRITE_IN_PROGRESS"), (.reparsePointFix, "RP_FIX"),
                (.compressReserved, "COMPRESS_RESERVED"), (.compressXPRESS, "COMPRESS_XPRESS"),
                (.compressLZX, "COMPRESS_LZX"), (.compressLZMS, "COMPRESS_LZMS"),
                (.compressXPRESS2, "COMPRESS_XPRESS2"),
            ]
            return all.filter { contains($0.0) }.map(\.1)
        }
    }

    /// The compression of the WIM's non-solid resources, from the header flags.
    public var compression: CompressionFormat {
        guard flags.contains(.compression) else { return .none }
        if flags.contains(.compressLZX) { return .lzx }
        if flags.contains(.compressLZMS) { return .lzms }
        if flags.contains(.compressXPRESS) || flags.contains(.compressXPRESS2) { return .xpress }
        return .none
    }

    public var isPipable: Bool { magic == .pipable }

    public var guidString: String {
        guid.map { byte in
            let s = String(byte, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
    }

    /// Parses and validates a header; `path` names the file in errors.
    public init(_ bytes: [UInt8], path: String) throws(WIMError) {
        guard bytes.count >= WIMHeader.diskSize else {
            throw .truncated(path: path, what: "WIM header", offset: 0, needed: UInt64(WIMHeader.diskSize - bytes.count))
        }
        let standard: [UInt8] = Array("MSWIM".utf8) + [0, 0, 0]
        let pipable: [UInt8] = Array("WLPWM".utf8) + [0, 0, 0]
        let head = Array(bytes[0..<8])
        if head == standard {
            magic = .standard
        } else if head == pipable {
            magic = .pipable
        } else {
            throw .notAWIM(path: path)
        }
        var parsed: (UInt32, UInt32, UInt32, UInt32, UInt16, UInt16, UInt32) = (0, 0, 0, 0, 0, 0, 0)
        var headers: [ResourceHeader] = []
        var bootIdx: UInt32 = 0
        bytes.withUnsafeBytes { raw in
            parsed = (raw.le32(8), raw.le32(12), raw.le32(16), raw.le32(20), raw.le16(40), raw.le16(42), raw.le32(44))
            headers = [48, 72, 96, 124].map { ResourceHeader(raw, at: $0) }
            bootIdx = raw.le32(120)
        }
        let headerSize = parsed.0
        version = parsed.1
        flags = Flags(rawValue: parsed.2)
        chunkSize = parsed.3
        guid = Array(bytes[24..<40])
        partNumber = parsed.4
        totalParts = parsed.5
        imageCount = parsed.6
        blobTable = headers[0]
        xmlData = headers[1]
        bootMetadata = headers[2]
        bootIndex = bootIdx
        integrityTable = headers[3]

        guard headerSize == UInt32(WIMHeader.diskSize) else {
            throw .invalidHeader(path: path, reason: "header size field is \(headerSize), expected 208")
        }
        guard version == WIMHeader.versionDefault || version == WIMHeader.versionSolid else {
            throw .invalidHeader(path: path, reason: "version 0x\(String(version, radix: 16)) is not 0x10d00 or 0xe00")
        }
        if flags.contains(.compression) {
            let kinds = [Flags.compressXPRESS, .compressLZX, .compressLZMS, .compressXPRESS2].filter { flags.contains($0) }
            guard kinds.count == 1 else {
                throw .invalidHeader(path: path, reason: "compression flag set but \(kinds.count) compression formats named")
            }
            // Chunk sizes are powers of two within each format's range: XPRESS 2^12...2^16, LZX
            // 2^15...2^21, LZMS up to 2^26 (Microsoft's limit; solid resources name their own).
            let largest: UInt32 = compression == .xpress ? 1 << 16 : compression == .lzx ? 1 << 21 : 1 << 26
            guard chunkSize >= 4096, chunkSize <= largest, chunkSize & (chunkSize - 1) == 0 else {
                throw .invalidHeader(path: path, reason: "chunk size \(chunkSize) is not a power of two between 4 KiB and \(largest) bytes for \(compression)")
            }
        }
        guard totalParts >= 1, partNumber >= 1, partNumber <= totalParts else {
            throw .invalidHeader(path: path, reason: "part \(partNumber) of \(totalParts) is not a valid split WIM part number")
        }
        guard imageCount <= 100_000 else {
            throw .invalidHeader(path: path, reason: "image count \(imageCount) is absurd")
        }
    }
}
