#if canImport(Glibc)
import Glibc
#endif
import Digests
import Dispatch
import Failures
import Primitives

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

/// Writes one resource at the end of the file, hashing its data on the way: stored raw, or in
/// independent XPRESS chunks behind a chunk table (the classic layout `Resource` reads: one
/// entry per chunk after the first, each the start of that chunk counted from the end of the
/// table, 4 bytes wide unless the data is over 4 GiB). The table's size follows from the data
/// size, so it is reserved first and filled in at the end. A chunk that does not shrink is
/// stored raw, which readers recognise by its stored size equalling its data size.
///
/// Chunks are compressed a batch at a time, one chunk per thread, and written in order: memory
/// stays at threads × chunk size.
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
    private var compressors: [any ChunkCompressor]
    private let batchChunks: Int

    // The resource being written.
    private var active = false
    private var start: UInt64 = 0
    private var expectedSize: UInt64 = 0
    private var received: UInt64 = 0
    private var compressed = false
    private var tableSize = 0
    private var wideTable = false
    /// Starts of chunks 1...n-1 relative to the end of the table.
    private var chunkStarts: [UInt64] = []
    private var storedSoFar: UInt64 = 0
    private var pending: [UInt8] = []
    private let hasher = SHA1Hasher()

    /// `compression` other than `.none` must have an encoder (`makeChunkCompressor`).
    init(file: WIMOutputFile, compression: CompressionFormat, level: CompressionLevel = .default, chunkSize: Int = 32768, threads: Int, pipable: Bool = false) throws {
        self.file = file
        self.pipable = pipable
        self.compression = compression
        self.chunkSize = chunkSize
        let workers = compression == .none ? 0 : max(1, threads)
        compressors = []
        for _ in 0..<workers {
            guard let coder = makeChunkCompressor(compression, level: level, chunkSize: chunkSize) else {
                throw WIMWriteError.misuse("no \(compression) encoder")
            }
            guard chunkSize <= type(of: coder).maxChunkSize else { throw WIMWriteError.badChunkSize(chunkSize) }
            compressors.append(coder)
        }
        batchChunks = max(1, workers)
    }

    /// Starts a resource of `size` bytes; `compress` false stores it raw whatever the WIM's format.
    func begin(size: UInt64, compress: Bool = true) throws {
        guard !active else { throw WIMWriteError.misuse("resource begun twice") }
        active = true
        if pipable { try file.appendZeros(PipableLayout.resourceHeaderSize) }
        start = file.position
        expectedSize = size
        received = 0
        hasher.reset()
        compressed = compress && compression != .none && size > 0
        chunkStarts = []
        storedSoFar = 0
        pending.removeAll(keepingCapacity: true)
        tableSize = 0
        if compressed {
            let chunks = Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
            wideTable = size > UInt64(UInt32.max)
            tableSize = (wideTable ? 8 : 4) * (chunks - 1)
            if !pipable { try file.appendZeros(tableSize) }
        }
    }

    /// More of the resource's data, in order.
    func data(_ bytes: UnsafeRawBufferPointer) throws {
        guard active else { throw WIMWriteError.misuse("data outside a resource") }
        received += UInt64(bytes.count)
        guard received <= expectedSize else { return }
        hasher.update(bytes)
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
            if pending.count == batchBytes { try writeBatch() }
        }
    }

    /// Ends the resource: its header (offset, stored and data size, compressed flag) and SHA-1.
    /// A size other than announced is an error naming `source`.
    /// `extraFlags` (metadata) go into the header, and into the pipable resource header too.
    func end(source: String, extraFlags: ResourceHeader.Flags = []) throws -> (ResourceHeader, SHA1Digest) {
        guard active else { throw WIMWriteError.misuse("end outside a resource") }
        active = false
        guard received == expectedSize else {
            throw WIMWriteError.changedWhileReading(path: source, expected: expectedSize, got: received)
        }
        if compressed {
            if !pending.isEmpty { try writeBatch() }
            var table = [UInt8]()
            table.reserveCapacity(tableSize)
            for s in chunkStarts {
                if wideTable { table += s.littleEndianBytes } else { table += UInt32(s).littleEndianBytes }
            }
            precondition(table.count == tableSize)
            if pipable {
                try file.append(table)
            } else if !table.isEmpty {
                try file.patch(table, at: start)
            }
        }
        let stored = file.position - start
        // One chunk that did not shrink is simply an uncompressed resource (as wimlib writes it),
        // except in a pipable resource, whose chunks carry their own sizes.
        var flags: ResourceHeader.Flags = compressed && (pipable || stored != expectedSize) ? .compressed : []
        flags.formUnion(extraFlags)
        let header = ResourceHeader(sizeInWIM: stored, flags: flags, offset: start, uncompressedSize: expectedSize)
        let hash = hasher.finish()
        if pipable {
            try file.patch(PipableLayout.resourceHeader(size: expectedSize, hash: hash, flags: flags), at: start - UInt64(prefixBytes))
        }
        return (header, hash)
    }

    /// Drops the resource being written (its source could not be read to the end): the file
    /// is cut back to where it began.
    func discard() throws {
        guard active else { return }
        active = false
        pending.removeAll(keepingCapacity: true)
        try file.truncate(to: start - UInt64(prefixBytes))
    }

    /// Compresses the pending chunks (one per thread) and appends them in order.
    private func writeBatch() throws {
        let count = (pending.count + chunkSize - 1) / chunkSize
        var results = [[UInt8]?](repeating: nil, count: count)
        let size = chunkSize
        pending.withUnsafeBytes { raw in
            results.withUnsafeMutableBufferPointer { out in
                compressors.withUnsafeMutableBufferPointer { workers in
                    nonisolated(unsafe) let input = raw
                    nonisolated(unsafe) let output = out
                    nonisolated(unsafe) let coders = workers
                    let work: @Sendable (Int) -> Void = { i in
                        let lo = i * size
                        let hi = min(lo + size, input.count)
                        output[i] = coders[i].compress(UnsafeRawBufferPointer(rebasing: input[lo..<hi]))
                    }
                    if count == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: count, execute: work) }
                }
            }
        }
        try pending.withUnsafeBytes { raw in
            for i in 0..<count {
                // Every chunk but the very first of the resource gets a table entry.
                if storedSoFar > 0 || !chunkStarts.isEmpty || i > 0 { chunkStarts.append(storedSoFar) }
                let lo = i * size
                let hi = min(lo + size, raw.count)
                if pipable { try file.append(UInt32(results[i]?.count ?? (hi - lo)).littleEndianBytes) }
                if let packed = results[i] {
                    try file.append(packed)
                    storedSoFar += UInt64(packed.count)
                } else {
                    try file.append(UnsafeRawBufferPointer(rebasing: raw[lo..<hi]))
                    storedSoFar += UInt64(hi - lo)
                }
            }
        }
        pending.removeAll(keepingCapacity: true)
    }
}
