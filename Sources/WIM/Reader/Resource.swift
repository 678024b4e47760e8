import Primitives

/// A resource: a region of a WIM part holding data stored raw, compressed in independent chunks
/// with a chunk table in front (the classic layout), or as a solid resource (its own header,
/// chunk size and compression format, then a table of chunk sizes) holding many blobs.
public struct Resource: Sendable {
    /// Index of the WIM part (file) holding the resource.
    public var part: Int
    public var offset: UInt64
    public var sizeInWIM: UInt64
    public var uncompressedSize: UInt64
    public var compression: CompressionFormat
    public var chunkSize: Int
    public var isSolid: Bool
    /// Pipable WIMs put a 4-byte size in front of each chunk and the chunk table at the end.
    public var isPipable: Bool

    public var isCompressed: Bool { compression != .none }
    public var end: UInt64 { offset &+ sizeInWIM }

    public var chunkCount: Int {
        // Solid resources are chunked even when stored uncompressed (format code 0).
        guard isCompressed || isSolid, uncompressedSize > 0 else { return uncompressedSize > 0 ? 1 : 0 }
        return Int((uncompressedSize + UInt64(chunkSize) - 1) / UInt64(chunkSize))
    }

    /// Uncompressed size of chunk `index`: the chunk size, except the last chunk holds the rest.
    @inline(__always) public func uncompressedSize(ofChunk index: Int) -> Int {
        let start = UInt64(index) * UInt64(chunkSize)
        return Int(min(UInt64(chunkSize), uncompressedSize - start))
    }
}

/// One compressed chunk of a resource: where its bytes are and what they expand to.
public struct Chunk: Sendable {
    /// File offset of the chunk's stored bytes.
    public var fileOffset: UInt64
    public var storedSize: Int
    public var uncompressedSize: Int
}

/// The chunk layout of a compressed resource.
public struct ChunkTable: Sendable {
    public var chunks: [Chunk]
    /// File offset where the chunk data (after the table) starts.
    public var dataOffset: UInt64
}

extension Resource {
    /// Where the chunk table lies, relative to the resource start, and its size: in front of the
    /// chunks (classic and solid resources, the solid one after its 16-byte header) or behind
    /// them (pipable resources, which also put a 4-byte size before each chunk).
    var chunkTableLocation: (offset: Int, size: Int) {
        if isSolid { return (0, 16 + 4 * chunkCount) }
        let entry = uncompressedSize > UInt64(UInt32.max) ? 8 : 4
        let size = entry * max(chunkCount - 1, 0)
        return (isPipable ? Int(clamping: sizeInWIM) - size : 0, size)
    }

    /// Parses the chunk table `table` (the bytes at `chunkTableLocation`), checking every entry
    /// against the resource's bounds.
    func parseChunkTable(_ table: UnsafeRawBufferPointer, path: String) throws(WIMError) -> ChunkTable {
        let count = chunkCount
        let location = chunkTableLocation
        guard location.offset >= 0, UInt64(location.offset + location.size) <= sizeInWIM, table.count >= location.size else {
            throw .invalidResource(path: path, offset: offset,
                                   reason: "chunk table of \(count) chunks (\(location.size) bytes) is larger than the resource (\(sizeInWIM) bytes)")
        }
        // Bytes of chunk data (without per-chunk headers) and where it starts.
        let headerBytes = isPipable ? 4 : 0
        let dataOffset = offset + UInt64(isPipable ? 0 : location.size)
        let dataSize = sizeInWIM - UInt64(location.size)
        guard dataSize >= UInt64(headerBytes * count) else {
            throw .invalidResource(path: path, offset: offset, reason: "resource of \(sizeInWIM) bytes is too small for \(count) chunks")
        }
        let payload = dataSize - UInt64(headerBytes * count)
        var chunks = [Chunk]()
        chunks.reserveCapacity(count)
        if isSolid {
            // Solid resources list each chunk's stored size.
            var position: UInt64 = 0
            for i in 0..<count {
                let stored = UInt64(table.le32(16 + 4 * i))
                let usize = uncompressedSize(ofChunk: i)
                guard stored > 0, stored <= UInt64(usize), position + stored <= payload else {
                    throw .invalidResource(path: path, offset: offset,
                                           reason: "solid chunk \(i) claims \(stored) stored bytes for \(usize) bytes of data, past the resource end or larger than the data")
                }
                chunks.append(Chunk(fileOffset: dataOffset + position, storedSize: Int(stored), uncompressedSize: usize))
                position += stored
            }
        } else {
            // Classic and pipable resources list the start of chunks 1...n-1 relative to the first.
            let wide = uncompressedSize > UInt64(UInt32.max)
            var previous: UInt64 = 0
            for i in 0..<count {
                let next: UInt64 = i + 1 < count ? (wide ? table.le64(8 * i) : UInt64(table.le32(4 * i))) : payload
                let usize = uncompressedSize(ofChunk: i)
                guard next > previous, next <= payload, next - previous <= UInt64(usize) else {
                    throw .invalidResource(path: path, offset: offset,
                                           reason: "chunk table entry \(i) (start \(previous), next \(next)) is out of order, past the resource's \(payload) data bytes, or larger than the chunk's \(usize) bytes")
                }
                let start = dataOffset + previous + UInt64(headerBytes * (i + 1))
                chunks.append(Chunk(fileOffset: start, storedSize: Int(next - previous), uncompressedSize: usize))
                previous = next
            }
        }
        return ChunkTable(chunks: chunks, dataOffset: dataOffset)
    }

    /// Parses the chunk table out of the resource's whole stored bytes.
    func parseChunkTable(resourceBytes raw: UnsafeRawBufferPointer, path: String) throws(WIMError) -> ChunkTable {
        let location = chunkTableLocation
        guard location.offset >= 0, location.offset + location.size <= raw.count else {
            throw .invalidResource(path: path, offset: offset,
                                   reason: "chunk table of \(chunkCount) chunks (\(location.size) bytes) is larger than the resource (\(sizeInWIM) bytes)")
        }
        return try parseChunkTable(UnsafeRawBufferPointer(rebasing: raw[location.offset..<(location.offset + location.size)]), path: path)
    }
}

/// The decoders one thread uses, created on first need and kept for the thread's later chunks.
public struct DecoderSet {
    private var xpress: XpressDecompressor?
    private var lzx: [Int: LZXDecompressor] = [:]
    private var lzms: LZMSDecompressor?

    public init() {}

    /// Decodes one chunk, or copies it when it was stored raw.
    public mutating func decode(_ format: CompressionFormat, chunkSize: Int,
                                _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(DecompressionError) {
        if input.count == output.count {
            output.copyMemory(from: input)
            return
        }
        switch format {
        case .none:
            throw DecompressionError(.none, "stored size \(input.count) differs from the data size \(output.count) in an uncompressed resource", offset: 0)
        case .xpress:
            if xpress == nil { xpress = XpressDecompressor() }
            try xpress!.decompress(input, into: output)
        case .lzx:
            if lzx[chunkSize] == nil { lzx[chunkSize] = try LZXDecompressor(maxChunkSize: max(chunkSize, 1 << 15)) }
            try lzx[chunkSize]!.decompress(input, into: output)
        case .lzms:
            if lzms == nil { lzms = LZMSDecompressor() }
            try lzms!.decompress(input, into: output)
        }
    }
}
