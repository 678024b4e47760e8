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
        guard isCompressed, uncompressedSize > 0 else { return uncompressedSize > 0 ? 1 : 0 }
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
    /// A chunk stored with its uncompressed size was not worth compressing and is kept raw.
    public var isRaw: Bool { storedSize == uncompressedSize }
}

/// The chunk layout of a compressed resource.
public struct ChunkTable: Sendable {
    public var chunks: [Chunk]
    /// File offset where the chunk data (after the table) starts.
    public var dataOffset: UInt64
}

extension Resource {
    /// Size in bytes of the chunk table that precedes the chunks of a non-pipable resource,
    /// plus the solid resource's 16-byte header.
    var chunkTablePrefixSize: Int {
        if isSolid { return 16 + 4 * chunkCount }
        let entry = uncompressedSize > UInt64(UInt32.max) ? 8 : 4
        return entry * max(chunkCount - 1, 0)
    }

    /// Parses the chunk table from `prefix`, the first bytes of the resource (at least
    /// `chunkTablePrefixSize` of them), checking every entry against the resource's bounds.
    func parseChunkTable(prefix: UnsafeRawBufferPointer, path: String) throws(WIMError) -> ChunkTable {
        let count = chunkCount
        let tableSize = chunkTablePrefixSize
        guard UInt64(tableSize) <= sizeInWIM, prefix.count >= tableSize else {
            throw .invalidResource(path: path, offset: offset,
                                   reason: "chunk table of \(count) chunks (\(tableSize) bytes) is larger than the resource (\(sizeInWIM) bytes)")
        }
        let dataOffset = offset + UInt64(tableSize)
        let dataSize = sizeInWIM - UInt64(tableSize)
        var chunks = [Chunk]()
        chunks.reserveCapacity(count)
        if isSolid {
            // Solid resources list each chunk's stored size.
            var position: UInt64 = 0
            for i in 0..<count {
                let stored = UInt64(prefix.le32(16 + 4 * i))
                let usize = uncompressedSize(ofChunk: i)
                guard stored > 0, stored <= UInt64(usize), position + stored <= dataSize else {
                    throw .invalidResource(path: path, offset: offset,
                                           reason: "solid chunk \(i) claims \(stored) stored bytes for \(usize) bytes of data, past the resource end or larger than the data")
                }
                chunks.append(Chunk(fileOffset: dataOffset + position, storedSize: Int(stored), uncompressedSize: usize))
                position += stored
            }
        } else {
            // Classic resources list the start of chunks 1...n-1 relative to the first chunk.
            let wide = uncompressedSize > UInt64(UInt32.max)
            var starts = [UInt64](repeating: 0, count: count + 1)
            for i in 1..<max(count, 1) {
                starts[i] = wide ? prefix.le64(8 * (i - 1)) : UInt64(prefix.le32(4 * (i - 1)))
            }
            starts[count] = dataSize
            for i in 0..<count {
                let usize = uncompressedSize(ofChunk: i)
                guard starts[i + 1] > starts[i], starts[i + 1] <= dataSize else {
                    throw .invalidResource(path: path, offset: offset,
                                           reason: "chunk table entry \(i) (start \(starts[i]), next \(starts[i + 1])) is out of order or past the resource's \(dataSize) data bytes")
                }
                let stored = starts[i + 1] - starts[i]
                guard stored <= UInt64(usize) else {
                    throw .invalidResource(path: path, offset: offset,
                                           reason: "chunk \(i) stores \(stored) bytes for \(usize) bytes of data")
                }
                chunks.append(Chunk(fileOffset: dataOffset + starts[i], storedSize: Int(stored), uncompressedSize: usize))
            }
        }
        return ChunkTable(chunks: chunks, dataOffset: dataOffset)
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
