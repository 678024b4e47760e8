import Foundation
import Synchronization

/// Random access to a remote file (a WIM read in place) through Range requests, with a small
/// LRU cache of aligned 4 MiB blocks: a WIM's many small table reads and its sequential chunk
/// reads then cost a handful of requests. Thread-safe; one block is fetched at a time. With
/// mirrors of the URL, reads go to the first copy that answers and stay with it; a failure
/// moves them to the next copy, which continues at the same byte.
public final class HTTPRangeReader: Sendable {
    public let url: String
    public let size: UInt64
    /// Range requests sent so far (the HEAD of `init` not included).
    public var requestCount: Int { cache.withLock { $0.requests } }
    /// Who sent the bytes read so far, in the order they were read.
    public var sources: [ServedBytes] { cache.withLock { $0.sources.served } }
    /// Sources that failed or were passed over, the last reason of each.
    public var failures: [SourceFailure] { cache.withLock { $0.sources.failures } }
    /// "served by A: 12.0 MiB; then B: 4.0 MiB (…)", or "" when the URL has no copies.
    public var sourcesSummary: String {
        cache.withLock { ServedBytes.summary(mirrored: $0.sources.hasCopies, $0.sources.served, $0.sources.failures, refetched: false) }
    }

    static let blockSize: UInt64 = 4 << 20
    static let cacheBlocks = 16

    private let client: HTTPClient
    private struct Cache {
        var blocks: [UInt64: [UInt8]] = [:]
        /// Block indexes, least recently used first.
        var recency: [UInt64] = []
        var requests = 0
        /// Kept across reads: once a copy failed, the next reads start at the one that worked.
        var sources: SourceList
    }
    /// Held for the whole of a read, fetch included: one block is fetched at a time.
    private let cache: Mutex<Cache>

    public init(url: String, client: HTTPClient) throws(TransportError) {
        try validateURL(url)
        var sources = client.options.sources(for: url)
        self.size = try client.rangeableSize(&sources)
        self.url = url
        self.client = client
        self.cache = Mutex(Cache(sources: sources))
    }

    /// Fills all of `buffer` with the bytes at `offset`; a read past the end is `.truncated`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(TransportError) {
        guard buffer.count > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(buffer.count))
        guard !overflow, end <= size else {
            throw .truncated(url: url, received: offset < size ? size - offset : 0, expected: UInt64(buffer.count))
        }
        try cache.withLock { (cache) throws(TransportError) in
            var position = offset
            while position < end {
                let index = position / Self.blockSize
                let block = try self.block(index, in: &cache)
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
    }

    /// Reads exactly this range in one request, past the block cache: a few small reads (a
    /// WIM's header and tables before a multicast session, a block's holes) must not each
    /// cost a 4 MiB block.
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(TransportError) {
        guard buffer.count > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(buffer.count))
        guard !overflow, end <= size else {
            throw .truncated(url: url, received: offset < size ? size - offset : 0, expected: UInt64(buffer.count))
        }
        try cache.withLock { (cache) throws(TransportError) in
            var requests = 0
            defer { cache.requests += requests }
            let bytes = try client.fetchRange(&cache.sources, start: offset, end: end - 1, size: size, counted: { requests += 1 })
            guard bytes.count == buffer.count else {
                throw .truncated(url: url, received: UInt64(bytes.count), expected: UInt64(buffer.count))
            }
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        }
    }

    private func block(_ index: UInt64, in cache: inout Cache) throws(TransportError) -> [UInt8] {
        if let cached = cache.blocks[index] {
            if let at = cache.recency.firstIndex(of: index) { cache.recency.remove(at: at) }
            cache.recency.append(index)
            return cached
        }
        let start = index * Self.blockSize
        let last = min(start + Self.blockSize, size) - 1
        var requests = 0
        defer { cache.requests += requests }
        let bytes = try client.fetchRange(&cache.sources, start: start, end: last, size: size, counted: { requests += 1 })
        if cache.blocks.count >= Self.cacheBlocks, let oldest = cache.recency.first {
            cache.recency.removeFirst()
            cache.blocks[oldest] = nil
        }
        cache.blocks[index] = bytes
        cache.recency.append(index)
        return bytes
    }
}
