import Digests
import Primitives
#if canImport(Glibc)
import Glibc
#endif

/// Reads a pipable WIM (`wimlib-imagex capture --pipable`) front to back from a source that
/// cannot seek: standard input, a pipe, later a socket. The stream holds, in order: the header,
/// the XML data, each image's metadata, the blobs, then the blob table, the XML again and the
/// final header. Each resource is preceded by a 40-byte header naming its size and SHA-1, and
/// each compressed chunk by its 4-byte stored size.
public final class PipableStream {
    public let name: String
    public let header: WIMHeader
    public private(set) var xml = WIMXMLInfo.empty
    private let descriptor: Int32
    private var buffer: [UInt8]
    private var bufferStart = 0
    private var bufferEnd = 0
    /// Bytes consumed from the stream so far (for error messages).
    public private(set) var position: UInt64 = 0
    private var metadataRead = false

    static let resourceMagic: UInt64 = 0x2b9b_9ba2_443d_b9d8
    static let resourceHeaderSize = 40

    struct ResourceHeader {
        var uncompressedSize: UInt64
        var hash: SHA1Digest
        var flags: WIM.ResourceHeader.Flags
        var offset: UInt64
    }

    /// Reads the header and the XML data from `descriptor` (which stays owned by the caller).
    public init(descriptor: Int32, name: String) throws(WIMError) {
        self.descriptor = descriptor
        self.name = name
        buffer = [UInt8](repeating: 0, count: 1 << 20)
        var headerBytes = [UInt8](repeating: 0, count: WIMHeader.diskSize)
        var pos: UInt64 = 0
        var start = 0, end = 0
        try PipableStream.fill(descriptor, &buffer, &start, &end, &pos, into: &headerBytes, name: name)
        let header = try WIMHeader(headerBytes, path: name)
        guard header.isPipable else {
            throw .pipable(offset: 0, reason: "\(name) is a regular (not pipable) WIM; it can only be read from a file, not a stream")
        }
        guard header.totalParts == 1 else {
            throw .pipable(offset: 0, reason: "split pipable WIMs cannot be read from a stream")
        }
        self.header = header
        bufferStart = start
        bufferEnd = end
        position = pos
        let xmlHeader = try PipableStream.readResourceHeader(self)
        let xmlBytes = try readWholeResource(xmlHeader, what: "XML data", limit: 1 << 28)
        xml = try WIMXMLInfo(utf16leBytes: xmlBytes, path: name)
    }

    // MARK: Buffered reading

    private static func fill(_ fd: Int32, _ buffer: inout [UInt8], _ start: inout Int, _ end: inout Int, _ position: inout UInt64,
                             into target: inout [UInt8], name: String) throws(WIMError) {
        var done = 0
        while done < target.count {
            if start == end {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .io(path: name, operation: "read at stream offset \(position)", errno: errno)
                }
                if n == 0 {
                    throw .pipable(offset: position, reason: "the stream ended early (truncated download or capture?)")
                }
                start = 0
                end = n
            }
            let take = min(end - start, target.count - done)
            target.withUnsafeMutableBytes { dst in
                buffer.withUnsafeBytes { src in
                    dst.baseAddress!.advanced(by: done).copyMemory(from: src.baseAddress!.advanced(by: start), byteCount: take)
                }
            }
            start += take
            done += take
            position += UInt64(take)
        }
    }

    func readExact(_ count: Int) throws(WIMError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try PipableStream.fill(descriptor, &buffer, &bufferStart, &bufferEnd, &position, into: &out, name: name)
        return out
    }

    func readExact(into out: inout [UInt8]) throws(WIMError) {
        try PipableStream.fill(descriptor, &buffer, &bufferStart, &bufferEnd, &position, into: &out, name: name)
    }

    static func readResourceHeader(_ stream: PipableStream) throws(WIMError) -> ResourceHeader {
        let at = stream.position
        let bytes = try stream.readExact(resourceHeaderSize)
        guard bytes.le64(0) == resourceMagic else {
            throw .pipable(offset: at, reason: "expected a resource header (magic 0x2b9b9ba2443db9d8) but found other bytes")
        }
        let flags = WIM.ResourceHeader.Flags(rawValue: UInt8(truncatingIfNeeded: bytes.le32(36)))
        guard !flags.contains(.solid) else { throw .pipable(offset: at, reason: "solid resources are not allowed in a pipable WIM") }
        return ResourceHeader(uncompressedSize: bytes.le64(8), hash: bytes.sha1(at: 16), flags: flags, offset: at)
    }

    // MARK: Resources

    /// Streams a resource's uncompressed data to `body` a chunk at a time.
    private func readResource(_ r: ResourceHeader, decoders: inout DecoderSet, scratch: inout [UInt8], output: inout [UInt8],
                              body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let size = r.uncompressedSize
        guard size < 1 << 48 else { throw WIMError.pipable(offset: r.offset, reason: "resource claims an absurd size of \(size) bytes") }
        if !r.flags.contains(.compressed) {
            var left = size
            while left > 0 {
                let take = Int(min(left, 1 << 20))
                if output.count != take { output = [UInt8](repeating: 0, count: take) }
                try readExact(into: &output)
                try output.withUnsafeBytes { try body($0) }
                left -= UInt64(take)
            }
            return
        }
        let chunkSize = Int(header.chunkSize)
        guard header.compression != .none else { throw WIMError.pipable(offset: r.offset, reason: "compressed resource in a WIM whose header names no compression") }
        let count = Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
        for i in 0..<count {
            let chunkStart = position
            let stored = Int(try readExact(4).le32(0))
            let usize = Int(min(UInt64(chunkSize), size - UInt64(i) * UInt64(chunkSize)))
            guard stored > 0, stored <= usize else {
                throw WIMError.pipable(offset: chunkStart, reason: "chunk \(i) claims \(stored) stored bytes for \(usize) bytes of data")
            }
            if scratch.count < stored { scratch = [UInt8](repeating: 0, count: max(stored, chunkSize)) }
            try PipableStream.fill(descriptor, &buffer, &bufferStart, &bufferEnd, &position, into: &scratch, count: stored, name: name)
            if output.count != usize { output = [UInt8](repeating: 0, count: usize) }
            var failure: DecompressionError?
            scratch.withUnsafeBytes { input in
                output.withUnsafeMutableBytes { out in
                    do throws(DecompressionError) {
                        try decoders.decode(header.compression, chunkSize: chunkSize, UnsafeRawBufferPointer(rebasing: input[0..<stored]), into: out)
                    } catch { failure = error }
                }
            }
            if let error = failure {
                throw WIMError.pipable(offset: chunkStart + 4 + UInt64(max(0, error.offset)), reason: "corrupt chunk \(i): \(error.reason)")
            }
            try output.withUnsafeBytes { try body($0) }
        }
        // The chunk table follows the chunks; a stream reader has no use for it.
        let tableSize = (size > UInt64(UInt32.max) ? 8 : 4) * (count - 1)
        if tableSize > 0 { _ = try readExact(tableSize) }
    }

    private static func fill(_ fd: Int32, _ buffer: inout [UInt8], _ start: inout Int, _ end: inout Int, _ position: inout UInt64,
                             into target: inout [UInt8], count: Int, name: String) throws(WIMError) {
        if target.count == count { return try fill(fd, &buffer, &start, &end, &position, into: &target, name: name) }
        var part = [UInt8](repeating: 0, count: count)
        try fill(fd, &buffer, &start, &end, &position, into: &part, name: name)
        target.replaceSubrange(0..<count, with: part)
    }

    private func readWholeResource(_ r: ResourceHeader, what: String, limit: UInt64) throws(WIMError) -> [UInt8] {
        guard r.uncompressedSize <= limit else {
            throw .pipable(offset: r.offset, reason: "\(what) claims \(r.uncompressedSize) bytes, more than the \(limit) allowed")
        }
        var decoders = DecoderSet()
        var scratch: [UInt8] = [], output: [UInt8] = []
        var whole: [UInt8] = []
        // Room for what the header claims, up to 64 MiB: beyond that the array grows as the
        // data really arrives, so a damaged header claiming gigabytes costs nothing up front.
        whole.reserveCapacity(Int(min(r.uncompressedSize, 64 << 20)))
        do {
            try readResource(r, decoders: &decoders, scratch: &scratch, output: &output) { whole.append(contentsOf: $0) }
        } catch let error as WIMError {
            throw error
        } catch {
            throw .pipable(offset: r.offset, reason: "\(error)")
        }
        return whole
    }

    // MARK: Images and blobs

    public var imageCount: Int { Int(header.imageCount) }

    /// Resolves an image given as a 1-based index or a name.
    public func image(_ selector: String) throws(WIMError) -> Int {
        guard let index = xml.imageIndex(selector, imageCount: imageCount) else {
            throw .noSuchImage(path: name, selector: selector, imageCount: imageCount)
        }
        return index
    }

    /// Reads every image's metadata resource (they come next in the stream) and returns the
    /// parsed metadata of `image`. Call once, before `readBlobs`.
    public func readMetadata(image: Int) throws(WIMError) -> ImageMetadata {
        guard !metadataRead else { throw .pipable(offset: position, reason: "metadata was already read from this stream") }
        metadataRead = true
        var chosen: ImageMetadata?
        for i in 1...max(imageCount, 1) where imageCount > 0 {
            let r = try PipableStream.readResourceHeader(self)
            guard r.flags.contains(.metadata) else {
                throw .pipable(offset: r.offset, reason: "expected the metadata of image \(i), found a data resource")
            }
            let bytes = try readWholeResource(r, what: "metadata of image \(i)", limit: 1 << 32)
            if i == image {
                let actual = SHA1Hasher.digest(bytes)
                guard actual == r.hash else {
                    throw .hashMismatch(path: name, blob: r.hash, resourceOffset: r.offset, actual: actual, usedBy: ["the metadata of image \(i)"])
                }
                chosen = try ImageMetadata(bytes, image: i, path: name)
            }
        }
        guard let chosen else { throw .noSuchImage(path: name, selector: String(image), imageCount: imageCount) }
        return chosen
    }

    /// Reads blobs as they come, hands those in `needed` to `sink` and skips the rest; stops at
    /// the blob table. Throws if a needed blob never came. Compressed data is decoded on
    /// `threads` threads (`PipableStreamDecoding.swift`), delivered in stream order.
    public func readBlobs(_ needed: [SHA1Digest: UInt64], into sink: BlobSink, verify: Bool = true,
                          threads: Int = availableProcessorCount(),
                          describeUsers: (SHA1Digest) -> [String] = { _ in [] },
                          progress: ((ReadProgress) -> Void)? = nil) throws {
        if threads > 1 && header.compression != .none {
            return try readBlobsInParallel(needed, into: sink, verify: verify, threads: threads, describeUsers: describeUsers, progress: progress)
        }
        try readBlobsInOrder(needed, into: sink, verify: verify, describeUsers: describeUsers, progress: progress)
    }

    /// `readBlobs` on the calling thread alone.
    func readBlobsInOrder(_ needed: [SHA1Digest: UInt64], into sink: BlobSink, verify: Bool,
                          describeUsers: (SHA1Digest) -> [String], progress: ((ReadProgress) -> Void)?) throws {
        var remaining = needed
        var decoders = DecoderSet()
        var scratch: [UInt8] = [], output: [UInt8] = []
        let hasher = SHA1Hasher()
        var report = ReadProgress(blobsDone: 0, blobsTotal: needed.count, bytesDone: 0, bytesTotal: needed.values.reduce(0, +))
        var lastReported: UInt64 = 0
        while !remaining.isEmpty {
            let r = try PipableStream.readResourceHeader(self)
            if r.flags.contains(.metadata) { break }  // the blob table: no more blobs follow
            let wanted = remaining.removeValue(forKey: r.hash) != nil
            let blob = BlobDescriptor(hash: r.hash, size: r.uncompressedSize, resource: -1, offsetInResource: 0, referenceCount: 1)
            if wanted { try sink.beginBlob(blob) }
            try readResource(r, decoders: &decoders, scratch: &scratch, output: &output) { piece in
                guard wanted else { return }
                if verify { hasher.update(piece) }
                try sink.blobData(piece)
                report.bytesDone += UInt64(piece.count)
                if let progress, report.bytesDone - lastReported >= 4 << 20 {
                    lastReported = report.bytesDone
                    progress(report)
                }
            }
            guard wanted else { continue }
            if verify {
                let actual = hasher.finish()
                guard actual == r.hash else {
                    throw WIMError.hashMismatch(path: name, blob: r.hash, resourceOffset: r.offset, actual: actual, usedBy: describeUsers(r.hash))
                }
            }
            try sink.endBlob(blob)
            report.blobsDone += 1
        }
        progress?(report)
        if let missing = remaining.keys.first {
            throw WIMError.missingBlob(path: name, blob: missing, usedBy: describeUsers(missing).first ?? "a file")
        }
    }
}
