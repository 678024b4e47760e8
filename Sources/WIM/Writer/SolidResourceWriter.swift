#if canImport(Glibc)
import Glibc
#endif
import Digests
import Dispatch
import Primitives

/// Writes blobs into solid resources (`--solid`): many blobs back to back in one stream cut
/// into large chunks, so that similar files compress together.
///
/// Format (wimlib's docs, "solid resources", and `BlobTableContents.solidResource`, which reads
/// it), for WIM version 0xE00:
///
///     u64 uncompressed size of the stream
///     u32 chunk size (a power of two; LZMS usually 64 MiB)
///     u32 compression format (0 none, 1 XPRESS, 2 LZX, 3 LZMS)
///     chunks × u32 stored size of each chunk (= its data size when stored raw)
///     the chunks, back to back
///
/// The blob table holds, for each solid resource, an entry flagged solid (0x10) whose
/// uncompressed-size field is the magic 0x1_0000_0000, with the resource's offset and stored
/// size; then one entry per blob flagged solid, its size in the stored-size field, 0 in the
/// uncompressed-size field, and its offset counted in the uncompressed stream of the run of
/// solid resources (the second resource's blobs start at the first one's uncompressed size),
/// as wimlib writes them.
///
/// Two choices follow from blobs arriving push-style (size known at the start, SHA-1 only at
/// the end):
///
/// - The chunk table precedes the chunks, but how many chunks a resource gets is known only at
///   its end. So each resource reserves room for a number of chunks (`capacityChunks`: 64 for
///   the first, doubling for each next one up to 4 GiB of data or 16384 chunks, enlarged for one
///   blob bigger than that) and is closed when the next blob would not fit; at closing, its
///   16-byte header and table are written just in front of the chunks, and the unused head of
///   the reserved room stays as a gap of zeros that no reader looks at. Doubling keeps that gap
///   below the size of the tables actually used (4 bytes a chunk), while a large capture still
///   gets few, large resources (one up to 4 GiB with LZMS's 64 MiB chunks).
/// - Duplicates are found only once a blob's SHA-1 is known, after its data was streamed.
///   Reading every file twice (hash, then store) would double the capture's reading, and
///   buffering whole files is unbounded, so a duplicate is rolled back instead: if its start is
///   still in the chunk buffer it is cut from there; if chunks holding it were compressed and
///   written already, the file is cut back to the chunk where it started and that chunk's
///   bytes before the blob (kept aside when that chunk was flushed: at most one chunk) go back
///   into the buffer. Memory stays at (threads + 1) × chunk size plus the compressed output.
final class SolidResourceWriter {
    let file: WIMOutputFile
    let compression: CompressionFormat
    let chunkSize: Int
    private var compressors: [any ChunkCompressor]
    private let batchChunks: Int
    private let maximumCapacity: Int
    private var nextCapacity: Int

    /// A closed solid resource.
    struct Closed {
        var offset: UInt64
        var storedSize: UInt64
        var uncompressedSize: UInt64
    }
    /// A blob stored in a solid resource: which (index into `closed`) and where in its stream.
    struct Placement {
        var hash: SHA1Digest
        var resource: Int
        var offset: UInt64
        var size: UInt64
    }
    private(set) var closed: [Closed] = []
    private(set) var placements: [Placement] = []

    // The open resource.
    private var isOpen = false
    private var reservedStart: UInt64 = 0
    private var capacityChunks = 0
    private var dataStart: UInt64 = 0
    /// Stored size of each chunk written, and the file offset where each starts.
    private var storedSizes: [UInt32] = []
    private var chunkStarts: [UInt64] = []
    private var pending: [UInt8] = []
    private var openPlacements: [Placement] = []
    /// Uncompressed bytes of the stream in the chunks already written.
    private var flushedBytes: UInt64 { UInt64(storedSizes.count) * UInt64(chunkSize) }
    private var streamSize: UInt64 { flushedBytes + UInt64(pending.count) }

    // The blob being written.
    private var blobStart: UInt64 = 0
    private var blobSize: UInt64 = 0
    private var received: UInt64 = 0
    /// The bytes of the chunk where the blob began, before the blob, once that chunk was written.
    private var savedPrefix: [UInt8]?
    private let hasher = SHA1Hasher()

    init(file: WIMOutputFile, compression: CompressionFormat, level: CompressionLevel, chunkSize: Int, threads: Int) throws {
        guard chunkSize >= 4096, chunkSize <= 1 << 30, chunkSize & (chunkSize - 1) == 0 else { throw WIMWriteError.badChunkSize(chunkSize) }
        self.file = file
        self.compression = compression
        self.chunkSize = chunkSize
        let workers = max(1, threads)
        compressors = []
        if compression != .none {
            for _ in 0..<workers {
                guard let coder = makeChunkCompressor(compression, level: level) else { throw WIMWriteError.unsupportedCompression(compression) }
                guard chunkSize <= type(of: coder).maxChunkSize else { throw WIMWriteError.badChunkSize(chunkSize) }
                compressors.append(coder)
            }
        }
        batchChunks = workers
        maximumCapacity = max(1, min(16384, Int((UInt64(4) << 30) / UInt64(chunkSize))))
        nextCapacity = min(64, maximumCapacity)
    }

    /// The default solid chunk size: 64 MiB for LZMS (as wimlib and DISM), else the format's
    /// usual non-solid one.
    static func defaultChunkSize(_ format: CompressionFormat) -> Int {
        format == .lzms ? 64 << 20 : 32768
    }

    private func chunks(for bytes: UInt64) -> Int { Int((bytes + UInt64(chunkSize) - 1) / UInt64(chunkSize)) }

    // MARK: Blobs

    func begin(size: UInt64) throws {
        if isOpen, chunks(for: streamSize + size) > capacityChunks { try closeResource() }
        if !isOpen { try openResource(forBlobOf: size) }
        blobStart = streamSize
        blobSize = size
        received = 0
        savedPrefix = nil
        hasher.reset()
    }

    func data(_ bytes: UnsafeRawBufferPointer) throws {
        received += UInt64(bytes.count)
        guard received <= blobSize else { return }
        hasher.update(bytes)
        var rest = bytes
        let batchBytes = batchChunks * chunkSize
        while !rest.isEmpty {
            let take = min(rest.count, batchBytes - pending.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pending.count == batchBytes { try writeChunks(all: false) }
        }
    }

    /// Ends the blob: its SHA-1 and size. When `isStored` says that SHA-1 is stored already, its
    /// bytes are taken out of the stream again (`duplicate`).
    func end(source: String, isStored: (SHA1Digest) -> Bool) throws -> (hash: SHA1Digest, size: UInt64, duplicate: Bool) {
        guard received == blobSize else {
            throw WIMWriteError.changedWhileReading(path: source, expected: blobSize, got: received)
        }
        let hash = hasher.finish()
        if isStored(hash) {
            try rollBack()
            return (hash, blobSize, true)
        }
        openPlacements.append(Placement(hash: hash, resource: closed.count, offset: blobStart, size: blobSize))
        return (hash, blobSize, false)
    }

    /// Drops the blob being streamed (its source could not be read to the end).
    func discard() throws { try rollBack() }

    /// Cuts the blob just streamed out of the stream.
    private func rollBack() throws {
        if blobStart >= flushedBytes {
            pending.removeSubrange(Int(blobStart - flushedBytes)..<pending.count)
            return
        }
        let chunk = Int(blobStart / UInt64(chunkSize))
        guard let prefix = savedPrefix, chunk < chunkStarts.count else {
            throw WIMWriteError.misuse("solid stream rollback without the saved chunk start")
        }
        try file.truncate(to: chunkStarts[chunk])
        storedSizes.removeSubrange(chunk...)
        chunkStarts.removeSubrange(chunk...)
        pending = prefix
        savedPrefix = nil
    }

    // MARK: Resources

    private func openResource(forBlobOf size: UInt64) throws {
        capacityChunks = max(nextCapacity, chunks(for: size))
        nextCapacity = min(2 * nextCapacity, maximumCapacity)
        reservedStart = file.position
        dataStart = reservedStart + 16 + 4 * UInt64(capacityChunks)
        try file.appendZeros(16 + 4 * capacityChunks)
        storedSizes = []
        chunkStarts = []
        pending.removeAll(keepingCapacity: true)
        openPlacements = []
        lastChunkShortBy = 0
        isOpen = true
    }

    /// Writes what is buffered and the resource's header and chunk table. Called between blobs
    /// (before an image's metadata is written, and at the end).
    func closeResource() throws {
        guard isOpen else { return }
        isOpen = false
        if !pending.isEmpty { try writeChunks(all: true) }
        let count = storedSizes.count
        guard count > 0 else {
            // Nothing stayed in it (every blob was a duplicate): no resource at all.
            try file.truncate(to: reservedStart)
            return
        }
        var head = [UInt8]()
        head.reserveCapacity(16 + 4 * count)
        head += flushedBytesExact.littleEndianBytes
        head += UInt32(chunkSize).littleEndianBytes
        head += UInt32(Self.formatCode(compression)).littleEndianBytes
        for size in storedSizes { head += size.littleEndianBytes }
        let offset = dataStart - UInt64(head.count)
        try file.patch(head, at: offset)
        closed.append(Closed(offset: offset, storedSize: file.position - offset, uncompressedSize: flushedBytesExact))
        placements += openPlacements
        openPlacements = []
    }

    /// The stream's exact size once everything is written (the last chunk may be short).
    private var lastChunkShortBy: UInt64 = 0
    private var flushedBytesExact: UInt64 { flushedBytes - lastChunkShortBy }

    static func formatCode(_ format: CompressionFormat) -> UInt32 {
        switch format {
        case .none: 0
        case .xpress: 1
        case .lzx: 2
        case .lzms: 3
        }
    }

    /// Compresses and appends the buffered chunks: the full ones, or with `all` also the short
    /// last one (only when the resource closes).
    private func writeChunks(all: Bool) throws {
        let count = all ? chunks(for: UInt64(pending.count)) : pending.count / chunkSize
        guard count > 0 else { return }
        // The chunk the current blob began in is about to leave the buffer: keep its head.
        if savedPrefix == nil, blobStart >= flushedBytes, blobStart < flushedBytes + UInt64(count * chunkSize) {
            let chunk = Int(blobStart / UInt64(chunkSize))
            let from = Int(UInt64(chunk) * UInt64(chunkSize) - flushedBytes)
            savedPrefix = Array(pending[from..<Int(blobStart - flushedBytes)])
        }
        let size = chunkSize
        var results = [[UInt8]?](repeating: nil, count: count)
        if !compressors.isEmpty {
            let ranges = (0..<count).map { i in i * size ..< min(i * size + size, pending.count) }
            results = pending.withUnsafeBytes { compressChunks(&compressors, of: $0, ranges: ranges) }
        }
        var consumed = 0
        try pending.withUnsafeBytes { raw in
            for i in 0..<count {
                let lo = i * size
                let hi = min(lo + size, raw.count)
                chunkStarts.append(file.position)
                if let packed = results[i] {
                    try file.append(packed)
                    storedSizes.append(UInt32(packed.count))
                } else {
                    try file.append(UnsafeRawBufferPointer(rebasing: raw[lo..<hi]))
                    storedSizes.append(UInt32(hi - lo))
                }
                consumed = hi
            }
        }
        lastChunkShortBy = all ? UInt64(count * size - consumed) : 0
        pending.removeSubrange(0..<consumed)
    }

    // MARK: Blob table

    /// The blob table entries of the solid resources and their blobs (with reference counts
    /// from `references`), resource entry first and then its blobs, offsets counted across the
    /// run as wimlib counts them.
    func tableEntries(references: (SHA1Digest) -> UInt32) -> [UInt8] {
        var table: [UInt8] = []
        var logicalStart: UInt64 = 0
        var byResource = [[Placement]](repeating: [], count: closed.count)
        for p in placements { byResource[p.resource].append(p) }
        for (index, resource) in closed.enumerated() {
            table += WIMWriter.encode(ResourceHeader(sizeInWIM: resource.storedSize, flags: .solid, offset: resource.offset,
                                                     uncompressedSize: ResourceHeader.solidResourceMagic))
            table += UInt16(1).littleEndianBytes
            table += UInt32(1).littleEndianBytes
            table += [UInt8](repeating: 0, count: 20)
            for p in byResource[index] {
                table += WIMWriter.encode(ResourceHeader(sizeInWIM: p.size, flags: .solid, offset: logicalStart + p.offset, uncompressedSize: 0))
                table += UInt16(1).littleEndianBytes
                table += references(p.hash).littleEndianBytes
                table += p.hash.bytes
            }
            logicalStart += resource.uncompressedSize
        }
        return table
    }
}
