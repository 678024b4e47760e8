#if canImport(Glibc)
import Glibc
#endif
import Digests
import Dispatch
import Failures
import Primitives
import Synchronization

/// Failures of writing a WIM, phrased with the path they concern.
public enum WIMWriteError: Error, CustomStringConvertible, Sendable {
    /// The file (the WIM being written or a file being captured) could not be read or written.
    case io(path: String, operation: String, errno: Int32)
    /// The destination exists already; appending an image comes later, so nothing is replaced.
    case destinationExists(path: String)
    /// The folder the WIM should go to does not exist or is not a folder.
    case destinationFolderMissing(path: String)
    /// The folder to capture is missing or is not a folder.
    case sourceNotAFolder(path: String, errno: Int32)
    /// A file's size changed while it was captured.
    case changedWhileReading(path: String, expected: UInt64, got: UInt64)
    /// No encoder for this compression format yet.
    case unsupportedCompression(CompressionFormat)
    /// A chunk size that is not a power of two from 32 KiB, or over the format's limit.
    case badChunkSize(Int)
    /// The writer was used out of order (a programming error).
    case misuse(String)
    /// A layout that cannot be written from this input or with these options (`path` names
    /// the WIM concerned, or is empty).
    case unsupportedLayout(path: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .destinationExists(path):
            return "\(path) exists already; capture writes a new WIM only (appending an image is not supported yet), so it was left untouched"
        case let .destinationFolderMissing(path):
            return "\(path): the folder to write the WIM into does not exist or is not a folder"
        case let .sourceNotAFolder(path, code):
            return "\(path): cannot capture it: \(code == ENOTDIR ? "not a folder" : String(cString: strerror(code)))"
        case let .changedWhileReading(path, expected, got):
            return "\(path): the file changed while it was captured (\(expected) bytes expected, \(got) read)"
        case let .unsupportedCompression(format):
            return "writing \(format)-compressed WIMs is not supported"
        case let .badChunkSize(size):
            return "chunk size \(size): it must be a power of two from 32768 up to the format's limit"
        case let .misuse(what):
            return "WIM writer misuse: \(what)"
        case let .unsupportedLayout(path, reason):
            return path.isEmpty ? reason : "\(path): \(reason)"
        }
    }
}

extension WIMWriteError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .io, .changedWhileReading: return .disk
        case .destinationExists: return .refused
        case .destinationFolderMissing, .sourceNotAFolder, .unsupportedCompression, .badChunkSize, .unsupportedLayout: return .badInput
        case .misuse: return .internal
        }
    }
}

/// The WIM file being written: appends through a buffer, patches earlier regions in place
/// (the chunk tables, the header), and can cut off what was written last (a duplicate blob).
final class WIMOutputFile {
    let path: String
    private(set) var fd: Int32
    /// Bytes already handed to the kernel.
    private var flushed: UInt64 = 0
    private var buffer: [UInt8] = []
    private static let bufferLimit = 1 << 20

    /// `position` is where appending starts: 0 for a new file, the end of an existing WIM
    /// that gets new resources after everything its header points at.
    init(path: String, fd: Int32, position: UInt64 = 0) {
        self.path = path
        self.fd = fd
        flushed = position
        buffer.reserveCapacity(WIMOutputFile.bufferLimit + 65536)
    }

    /// Where the next appended byte goes.
    var position: UInt64 { flushed + UInt64(buffer.count) }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > WIMOutputFile.bufferLimit {
            try flush()
            if bytes.count >= WIMOutputFile.bufferLimit {
                try writeAll(bytes, at: flushed)
                flushed += UInt64(bytes.count)
                return
            }
        }
        buffer.append(contentsOf: bytes)
    }

    func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    func appendZeros(_ count: Int) throws { try append([UInt8](repeating: 0, count: count)) }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0, at: flushed) }
        flushed += UInt64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Overwrites bytes written earlier.
    func patch(_ bytes: [UInt8], at offset: UInt64) throws {
        // Still buffered (a small resource's chunk table or pipable header): no write needed yet.
        if offset >= flushed, offset + UInt64(bytes.count) <= position {
            let at = Int(offset - flushed)
            buffer.replaceSubrange(at..<at + bytes.count, with: bytes)
            return
        }
        try flush()
        try bytes.withUnsafeBytes { try writeAll($0, at: offset) }
    }

    /// Forgets everything from `offset` on.
    func truncate(to offset: UInt64) throws {
        if offset >= flushed {
            buffer.removeSubrange(Int(offset - flushed)..<buffer.count)
            return
        }
        buffer.removeAll(keepingCapacity: true)
        guard ftruncate(fd, off_t(offset)) == 0 else { throw WIMWriteError.io(path: path, operation: "truncate", errno: errno) }
        flushed = offset
    }

    func sync() throws {
        try flush()
        guard fsync(fd) == 0 else { throw WIMWriteError.io(path: path, operation: "fsync", errno: errno) }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw WIMWriteError.io(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }
}

/// Writes resources at the end of the file, hashing their data on the way: stored raw, or in
/// independent chunks behind a chunk table (the classic layout `Resource` reads: one entry per
/// chunk after the first, each the start of that chunk counted from the end of the table, 4
/// bytes wide unless the data is over 4 GiB). A chunk that does not shrink is stored raw, which
/// readers recognise by its stored size equalling its data size; a resource of one chunk that
/// does not shrink is simply an uncompressed resource (as wimlib writes it).
///
/// Two ways in, one on-disk form (`openChunked`, `appendChunk`, `closeChunked`):
///
/// - Streamed (metadata, large blobs, anything not queueable): the table's size follows from
///   the data size, so it is reserved first and patched at the end. Chunks are compressed a
///   batch at a time (four chunks per thread) and written in order.
/// - Queued (`begin(mayQueue: true)`, small compressed blobs): a capture of many small files
///   would otherwise compress one chunk at a time on the caller's thread. Such a blob's bytes
///   are kept in a queue instead (its SHA-1 is still computed by `end`), and the caller decides
///   at once whether it is a duplicate (`dropLastQueued`). When the queue would pass
///   `queueLimit` (threads × chunk size × 8), or before anything else is written to the file,
///   all chunks of all queued blobs are compressed in parallel on every thread and the blobs
///   written in queue order; `queuedResourceWritten` then learns where each went.
///
/// Either way a batch is compressed in the background while the caller goes on reading and
/// hashing the next ones (`submit`); two batches are in flight at most, each with its own set of
/// encoders, and they are written in the order they came, so the file still grows in order:
/// memory stays at three times the queue limit (or the streamed batch) plus the compressed
/// form of two. Compressing batch by batch on the caller's thread left the workers idle while
/// files were read, listed and hashed (a quarter of an LZX capture's time on two CPUs); with
/// one batch in flight they still waited whenever they finished before the caller had filled
/// the next. Every call that writes anything else to the file, and `flushQueue`, first waits
/// for the batches in flight and writes them (`drain`).
///
/// Pipable mode (`PipableLayout`) writes wimlib's pipable resource instead: a 40-byte resource
/// header in front (patched at the end, when the SHA-1 is known), each chunk preceded by its
/// 4-byte stored size, and the chunk table behind the chunks. In a compressed WIM every
/// resource is then chunked and flagged compressed, even one that did not shrink, as wimlib
/// writes it. The resource header returned points past the 40-byte header.
final class ResourceWriter {
    let file: WIMOutputFile
    let compression: CompressionFormat
    let chunkSize: Int
    let pipable: Bool
    /// Bytes in front of each resource's offset that belong to it (pipable resource header).
    var prefixBytes: Int { pipable ? PipableLayout.resourceHeaderSize : 0 }
    /// The most data the queue holds; blobs up to this size may be queued.
    let queueLimit: Int
    /// Told, on the caller's thread, where each queued blob went once it is written.
    var queuedResourceWritten: ((SHA1Digest, ResourceHeader) -> Void)?
    /// Sets of encoders, one encoder per worker thread, not in use; a batch in flight borrows
    /// a set while it runs.
    private var idleCompressors: [[any ChunkCompressor]]
    private let batchChunks: Int
    /// Batches being compressed in the background, oldest first, and how to write each once
    /// done: two, so that the workers go on with the next while the caller fills a third.
    private var inFlight: [(batch: CompressionBatch, write: (CompressionBatch) throws -> Void)] = []
    private static let batchesInFlight = 2
    /// Buffers of batches written, kept for the next ones.
    private var spareBuffers: [[UInt8]] = []

    // The resource being written.
    private var active = false
    private var queuing = false
    private var expectedSize: UInt64 = 0
    private var received: UInt64 = 0
    private var compressed = false
    /// Where a raw resource starts, or the chunked one being streamed.
    private var start: UInt64 = 0
    private var streamed: ChunkedResource?
    private var pending: [UInt8] = []
    private let hasher = SHA1Hasher()

    // The queue: blobs' data back to back, and where each is.
    private struct QueuedBlob {
        var range: Range<Int>
        var hash: SHA1Digest
    }
    private var queueData: [UInt8] = []
    private var queuedBlobs: [QueuedBlob] = []

    /// `compression` other than `.none` must have an encoder (`makeChunkCompressor`).
    init(file: WIMOutputFile, compression: CompressionFormat, level: CompressionLevel = .default, chunkSize: Int = 32768, threads: Int, pipable: Bool = false) throws {
        self.file = file
        self.pipable = pipable
        self.compression = compression
        self.chunkSize = chunkSize
        let workers = compression == .none ? 0 : max(1, threads)
        idleCompressors = []
        for _ in 0..<(workers == 0 ? 0 : Self.batchesInFlight) {
            var set: [any ChunkCompressor] = []
            for _ in 0..<workers {
                guard let coder = makeChunkCompressor(compression, level: level, chunkSize: chunkSize) else {
                    throw WIMWriteError.misuse("no \(compression) encoder")
                }
                guard chunkSize <= type(of: coder).maxChunkSize else { throw WIMWriteError.badChunkSize(chunkSize) }
                set.append(coder)
            }
            idleCompressors.append(set)
        }
        batchChunks = max(1, workers) * 4
        queueLimit = workers == 0 ? 0 : workers * chunkSize * 8
    }

    /// Starts a resource of `size` bytes; `compress` false stores it raw whatever the WIM's
    /// format. `mayQueue`: a small compressed resource may be held back in the queue (end it
    /// with `endQueueable`). Anything else flushes the queue first.
    func begin(size: UInt64, compress: Bool = true, mayQueue: Bool = false) throws {
        guard !active else { throw WIMWriteError.misuse("resource begun twice") }
        compressed = compress && compression != .none && size > 0
        expectedSize = size
        received = 0
        hasher.reset()
        if mayQueue && compressed && size <= UInt64(queueLimit) {
            if queueData.count + Int(size) > queueLimit { try submitQueue() }
            active = true
            queuing = true
            start = UInt64(queueData.count)
            return
        }
        try flushQueue()
        active = true
        queuing = false
        pending.removeAll(keepingCapacity: true)
        if compressed {
            streamed = try openChunked(size: size)
        } else {
            if pipable { try file.appendZeros(PipableLayout.resourceHeaderSize) }
            start = file.position
        }
    }

    /// More of the resource's data, in order.
    func data(_ bytes: UnsafeRawBufferPointer) throws {
        guard active else { throw WIMWriteError.misuse("data outside a resource") }
        received += UInt64(bytes.count)
        guard received <= expectedSize else { return }
        hasher.update(bytes)
        if queuing {
            queueData.append(contentsOf: bytes)
            return
        }
        guard compressed else {
            try file.append(bytes)
            return
        }
        var rest = bytes
        let batchBytes = batchChunks * chunkSize
        while !rest.isEmpty {
            let take = min(rest.count, batchBytes - pending.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pending.count == batchBytes { try writePending() }
        }
    }

    /// Ends the resource: its header (offset, stored and data size, compressed flag) and SHA-1.
    /// A size other than announced is an error naming `source`.
    /// `extraFlags` (metadata) go into the header, and into the pipable resource header too.
    func end(source: String, extraFlags: ResourceHeader.Flags = []) throws -> (ResourceHeader, SHA1Digest) {
        guard !queuing else { throw WIMWriteError.misuse("a queueable resource ended with end()") }
        let (header, hash) = try endQueueable(source: source, extraFlags: extraFlags)
        guard let header else { throw WIMWriteError.misuse("resource queued unexpectedly") }
        return (header, hash)
    }

    /// `end` for a resource begun with `mayQueue`: no header (nil) when it was queued; the
    /// caller either keeps it (`queuedResourceWritten` gives its header later) or drops it
    /// at once with `dropLastQueued`.
    func endQueueable(source: String, extraFlags: ResourceHeader.Flags = []) throws -> (ResourceHeader?, SHA1Digest) {
        guard active else { throw WIMWriteError.misuse("end outside a resource") }
        active = false
        guard received == expectedSize else {
            if queuing { queueData.removeSubrange(Int(start)...) }
            throw WIMWriteError.changedWhileReading(path: source, expected: expectedSize, got: received)
        }
        let hash = hasher.finish()
        if queuing {
            queuedBlobs.append(QueuedBlob(range: Int(start)..<queueData.count, hash: hash))
            return (nil, hash)
        }
        if streamed != nil {
            try drain()
            guard var resource = streamed else { throw WIMWriteError.misuse("streamed resource lost") }
            streamed = nil
            if !pending.isEmpty { try writePendingNow(into: &resource) }
            return (try closeChunked(resource, hash: hash, extraFlags: extraFlags), hash)
        }
        let header = ResourceHeader(sizeInWIM: file.position - start, flags: extraFlags, offset: start, uncompressedSize: expectedSize)
        if pipable {
            try file.patch(PipableLayout.resourceHeader(size: expectedSize, hash: hash, flags: extraFlags), at: start - UInt64(prefixBytes))
        }
        return (header, hash)
    }

    /// Drops the resource being written (its source could not be read to the end): a queued
    /// one leaves the queue, a streamed one is cut off the file again.
    func discard() throws {
        guard active else { return }
        active = false
        if queuing {
            queueData.removeSubrange(Int(start)...)
            return
        }
        // Anything in flight belongs to this resource (beginning it wrote out all before it).
        abandonInFlight()
        pending.removeAll(keepingCapacity: true)
        let begin = streamed?.start ?? start
        streamed = nil
        try file.truncate(to: begin - UInt64(prefixBytes))
    }

    /// Forgets the blob just queued (a duplicate of one stored already).
    func dropLastQueued() {
        guard let last = queuedBlobs.popLast() else { return }
        queueData.removeSubrange(last.range)
    }

    /// Forgets every queued blob and the batch in flight (the write is abandoned).
    func discardQueue() {
        abandonInFlight()
        queuedBlobs.removeAll()
        queueData.removeAll()
    }

    /// Writes every queued blob, and the batch in flight before them: when it returns, all
    /// data given so far is in the file.
    func flushQueue() throws {
        try submitQueue()
        try drain()
    }

    /// Hands the queued blobs to the workers as one batch, every chunk of every blob at once;
    /// they are written, in the order they came, when the next batch is submitted or on `drain`.
    private func submitQueue() throws {
        guard !queuedBlobs.isEmpty else { return }
        var ranges: [Range<Int>] = []
        for blob in queuedBlobs {
            ranges.append(contentsOf: stride(from: blob.range.lowerBound, to: blob.range.upperBound, by: chunkSize).map { $0..<min($0 + chunkSize, blob.range.upperBound) })
        }
        let blobs = queuedBlobs
        queuedBlobs.removeAll()
        let data = queueData
        queueData = []
        try submit(data, ranges: ranges) { [unowned self] batch in
            var next = 0
            try batch.data.withUnsafeBytes { raw in
                for blob in blobs {
                    var resource = try self.openChunked(size: UInt64(blob.range.count))
                    while next < batch.ranges.count, batch.ranges[next].lowerBound < blob.range.upperBound {
                        try self.appendChunk(UnsafeRawBufferPointer(rebasing: raw[batch.ranges[next]]), packed: batch.results[next], to: &resource)
                        next += 1
                    }
                    self.queuedResourceWritten?(blob.hash, try self.closeChunked(resource, hash: blob.hash, extraFlags: []))
                }
            }
        }
        // The buffer of a batch written already, if any, takes the queue's place.
        queueData = spareBuffers.popLast() ?? []
        queueData.reserveCapacity(queueLimit)
    }

    // MARK: Batches in flight

    /// Starts compressing `data`'s `ranges` on the workers, once fewer than two batches are in
    /// flight (writing the oldest first if need be); `write` is called (on this thread) once
    /// they are done and it is the batch's turn.
    private func submit(_ data: [UInt8], ranges: [Range<Int>], write: @escaping (CompressionBatch) throws -> Void) throws {
        if inFlight.count >= Self.batchesInFlight { try drainOldest() }
        guard let compressors = idleCompressors.popLast() else { throw WIMWriteError.misuse("no idle encoders") }
        let batch = CompressionBatch(data: data, ranges: ranges, compressors: compressors)
        inFlight.append((batch, write))
        DispatchQueue.global(qos: .userInitiated).async { batch.run() }
    }

    /// Waits for the oldest batch in flight and writes it.
    private func drainOldest() throws {
        let (batch, write) = inFlight.removeFirst()
        batch.finished.wait()
        idleCompressors.append(batch.takeCompressors())
        try write(batch)
        var buffer = batch.takeData()
        buffer.removeAll(keepingCapacity: true)
        spareBuffers.append(buffer)
    }

    /// Waits for every batch in flight and writes them, in order.
    private func drain() throws {
        while !inFlight.isEmpty { try drainOldest() }
    }

    /// Waits for every batch in flight and drops them unwritten.
    private func abandonInFlight() {
        for (batch, _) in inFlight {
            batch.finished.wait()
            idleCompressors.append(batch.takeCompressors())
        }
        inFlight.removeAll()
    }

    // MARK: The on-disk form of a chunked resource

    /// A chunked resource being appended.
    private struct ChunkedResource {
        /// Offset of the chunk table (past the pipable resource header).
        var start: UInt64
        var size: UInt64
        var wideTable: Bool
        var tableSize: Int
        /// Starts of chunks 1...n-1 relative to the end of the table.
        var chunkStarts: [UInt64] = []
        var chunksWritten = 0
        var stored: UInt64 = 0
    }

    /// Reserves the pipable resource header, or the chunk table in front of the chunks.
    private func openChunked(size: UInt64) throws -> ChunkedResource {
        if pipable { try file.appendZeros(PipableLayout.resourceHeaderSize) }
        let chunks = Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
        let wide = size > UInt64(UInt32.max)
        let resource = ChunkedResource(start: file.position, size: size, wideTable: wide, tableSize: (wide ? 8 : 4) * (chunks - 1))
        if !pipable { try file.appendZeros(resource.tableSize) }
        return resource
    }

    /// Appends the next chunk: compressed, or raw when it did not shrink (`packed` nil).
    private func appendChunk(_ raw: UnsafeRawBufferPointer, packed: [UInt8]?, to resource: inout ChunkedResource) throws {
        // Every chunk but the first gets a table entry.
        if resource.chunksWritten > 0 { resource.chunkStarts.append(resource.stored) }
        resource.chunksWritten += 1
        if pipable { try file.append(UInt32(packed?.count ?? raw.count).littleEndianBytes) }
        if let packed {
            try file.append(packed)
            resource.stored += UInt64(packed.count)
        } else {
            try file.append(raw)
            resource.stored += UInt64(raw.count)
        }
    }

    /// Writes the chunk table (and the pipable resource header) and returns the blob table's
    /// header for the resource.
    private func closeChunked(_ resource: ChunkedResource, hash: SHA1Digest, extraFlags: ResourceHeader.Flags) throws -> ResourceHeader {
        var table = [UInt8]()
        table.reserveCapacity(resource.tableSize)
        for s in resource.chunkStarts {
            if resource.wideTable { table += s.littleEndianBytes } else { table += UInt32(s).littleEndianBytes }
        }
        precondition(table.count == resource.tableSize)
        if pipable {
            try file.append(table)
        } else if !table.isEmpty {
            try file.patch(table, at: resource.start)
        }
        let stored = file.position - resource.start
        // One chunk that did not shrink is simply an uncompressed resource (as wimlib writes it),
        // except in a pipable resource, whose chunks carry their own sizes.
        var flags: ResourceHeader.Flags = pipable || stored != resource.size ? .compressed : []
        flags.formUnion(extraFlags)
        if pipable {
            try file.patch(PipableLayout.resourceHeader(size: resource.size, hash: hash, flags: flags), at: resource.start - UInt64(prefixBytes))
        }
        return ResourceHeader(sizeInWIM: stored, flags: flags, offset: resource.start, uncompressedSize: resource.size)
    }

    // MARK: Compression

    /// Hands the pending chunks of the streamed resource to the workers; they are appended to
    /// it when the next batch is submitted or on `drain`.
    private func writePending() throws {
        guard streamed != nil else { throw WIMWriteError.misuse("chunk outside a resource") }
        let size = chunkSize
        let data = pending
        pending = []
        let ranges = stride(from: 0, to: data.count, by: size).map { $0..<min($0 + size, data.count) }
        try submit(data, ranges: ranges) { [unowned self] batch in
            guard var resource = self.streamed else { throw WIMWriteError.misuse("chunk outside a resource") }
            try batch.data.withUnsafeBytes { raw in
                for (range, result) in zip(batch.ranges, batch.results) {
                    try self.appendChunk(UnsafeRawBufferPointer(rebasing: raw[range]), packed: result, to: &resource)
                }
            }
            self.streamed = resource
        }
        pending = spareBuffers.popLast() ?? []
    }

    /// Compresses the pending chunks of the streamed resource at once (its last, short batch;
    /// nothing is in flight) and appends them.
    private func writePendingNow(into resource: inout ChunkedResource) throws {
        let size = chunkSize
        let ranges = stride(from: 0, to: pending.count, by: size).map { $0..<min($0 + size, pending.count) }
        guard !idleCompressors.isEmpty else { throw WIMWriteError.misuse("no idle encoders") }
        let packed = pending.withUnsafeBytes { compressChunks(&idleCompressors[0], of: $0, ranges: ranges) }
        try pending.withUnsafeBytes { raw in
            for (range, result) in zip(ranges, packed) {
                try appendChunk(UnsafeRawBufferPointer(rebasing: raw[range]), packed: result, to: &resource)
            }
        }
        pending.removeAll(keepingCapacity: true)
    }
}

/// Chunks compressed on the worker threads while the resource writer's caller reads on: the
/// data and the encoders are the batch's alone until `finished` is signalled, then go back.
private final class CompressionBatch: @unchecked Sendable {
    private(set) var data: [UInt8]
    let ranges: [Range<Int>]
    private(set) var results: [[UInt8]?] = []
    private var compressors: [any ChunkCompressor]
    let finished = DispatchSemaphore(value: 0)

    init(data: [UInt8], ranges: [Range<Int>], compressors: [any ChunkCompressor]) {
        self.data = data
        self.ranges = ranges
        self.compressors = compressors
    }

    func run() {
        results = data.withUnsafeBytes { compressChunks(&compressors, of: $0, ranges: ranges) }
        finished.signal()
    }

    func takeCompressors() -> [any ChunkCompressor] {
        defer { compressors = [] }
        return compressors
    }

    func takeData() -> [UInt8] {
        defer { data = [] }
        return data
    }
}

/// Each range of `data` compressed (nil: it did not shrink), one thread per compressor, every
/// thread taking the next chunk not yet taken, so that chunks of very different sizes keep all
/// threads busy. Resource and solid resource writers both compress through it.
func compressChunks(_ compressors: inout [any ChunkCompressor], of data: UnsafeRawBufferPointer, ranges: [Range<Int>]) -> [[UInt8]?] {
    var results = [[UInt8]?](repeating: nil, count: ranges.count)
    if ranges.count == 1 {
        results[0] = compressors[0].compress(UnsafeRawBufferPointer(rebasing: data[ranges[0]]))
        return results
    }
    let threads = min(compressors.count, ranges.count)
    let nextChunk = Atomic<Int>(0)
    results.withUnsafeMutableBufferPointer { out in
        compressors.withUnsafeMutableBufferPointer { workers in
            nonisolated(unsafe) let input = data
            nonisolated(unsafe) let output = out
            nonisolated(unsafe) let coders = workers
            DispatchQueue.concurrentPerform(iterations: threads) { worker in
                while true {
                    let i = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < ranges.count else { return }
                    output[i] = coders[worker].compress(UnsafeRawBufferPointer(rebasing: input[ranges[i]]))
                }
            }
        }
    }
    return results
}

