import Foundation

/// Random access to a remote file (a WIM read in place) through Range requests, with a small
/// LRU cache of aligned 4 MiB blocks: a WIM's many small table reads and its sequential chunk
/// reads then cost a handful of requests. Thread-safe; one block is fetched at a time.
public final class HTTPRangeReader: @unchecked Sendable {
    public let url: String
    public let size: UInt64
    /// Range requests sent so far (the HEAD of `init` not included).
    public var requestCount: Int { lock.withLock { requests } }

    static let blockSize: UInt64 = 4 << 20
    static let cacheBlocks = 16

    private let client: HTTPClient
    private let validator: Validator
    private let lock = NSLock()
    private var blocks: [UInt64: [UInt8]] = [:]
    /// Block indexes, least recently used first.
    private var recency: [UInt64] = []
    private var requests = 0

    public init(url: String, client: HTTPClient) throws(TransportError) {
        let remote = try client.head(url)
        guard remote.acceptsRanges, let size = remote.size else {
            throw .unexpectedResponse(url: url, detail: "the server cannot serve byte ranges (it must send a size and \"Accept-Ranges: bytes\"); download the file instead")
        }
        self.url = url
        self.size = size
        self.client = client
        self.validator = Validator(etag: remote.etag, lastModified: remote.lastModified)
    }

    /// Fills all of `buffer` with the bytes at `offset`; a read past the end is `.truncated`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(TransportError) {
        guard buffer.count > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(buffer.count))
        guard !overflow, end <= size else {
            throw .truncated(url: url, received: offset < size ? size - offset : 0, expected: UInt64(buffer.count))
        }
        lock.lock()
        defer { lock.unlock() }
        var position = offset
        while position < end {
            let index = position / Self.blockSize
            let block = try self.block(index)
            let within = Int(position - index * Self.blockSize)
            let count = min(block.count - within, Int(end - position))
            guard count > 0 else {
                throw .truncated(url: url, received: position - offset, expected: UInt64(buffer.count))
            }
            block.withUnsafeBytes { source in
                let target = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(position - offset)...])
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[within..<(within + count)]))
            }
            position += UInt64(count)
        }
    }

    /// Caller holds the lock.
    private func block(_ index: UInt64) throws(TransportError) -> [UInt8] {
        if let cached = blocks[index] {
            if let at = recency.firstIndex(of: index) { recency.remove(at: at) }
            recency.append(index)
            return cached
        }
        let start = index * Self.blockSize
        let last = min(start + Self.blockSize, size) - 1
        let bytes = try client.fetchRange(url, start: start, end: last, expected: validator, counted: { requests += 1 })
        if blocks.count >= Self.cacheBlocks, let oldest = recency.first {
            recency.removeFirst()
            blocks[oldest] = nil
        }
        blocks[index] = bytes
        recency.append(index)
        return bytes
    }
}
