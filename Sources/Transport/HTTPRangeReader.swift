import Foundation
import Synchronization

/// Random access to a remote file (a WIM read in place) through Range requests, with a small
/// LRU cache of aligned 4 MiB blocks: a WIM's many small table reads and its sequential chunk
/// reads then cost a handful of requests. Thread-safe. While reads go forward block after
/// block (an apply decoding resources in file order), the next blocks are fetched ahead on a
/// thread of their own, so the decoding threads find them waiting instead of each stopping for
/// a request; a read of a block already on its way waits for that request rather than sending
/// a second one; a small read away from the others is sent as it is (`claimIsolatedRead`).
/// With mirrors of the URL, reads go to the first copy that answers and stay with it; a
/// failure moves them to the next copy, which continues at the same byte.
public final class HTTPRangeReader: Sendable {
    public let url: String
    public let size: UInt64
    /// Range requests sent so far (the HEAD of `init` not included).
    public var requestCount: Int { requests.load(ordering: .relaxed) }
    /// Who sent the bytes read so far, in the order they were read.
    public var sources: [ServedBytes] { sourceList.withLock { $0.served } }
    /// Sources that failed or were passed over, the last reason of each.
    public var failures: [SourceFailure] { sourceList.withLock { $0.failures } }
    /// "served by A: 12.0 MiB; then B: 4.0 MiB (…)", or "" when the URL has no copies.
    public var sourcesSummary: String {
        sourceList.withLock { ServedBytes.summary(mirrored: $0.hasCopies, $0.served, $0.failures, refetched: false) }
    }

    static let blockSize: UInt64 = 4 << 20
    /// 40 MiB: a WIM's tables and metadata stay while its data is read, and the read-ahead
    /// below fits beside the blocks the decoding threads are in.
    static let cacheBlocks = 10
    /// Blocks fetched ahead of a forward run of reads: 16 MiB, a few decoding units' worth on
    /// every core, and well inside the cache, so a block fetched ahead is not evicted unread.
    static let readAheadBlocks: UInt64 = 4
    /// A read smaller than this that stands alone is sent as it is, past the blocks
    /// (`claimIsolatedRead`).
    static let isolatedReadLimit = 64 << 10
    /// Evicted blocks kept to be filled again.
    static let spareBlocks = 2

    private let client: HTTPClient
    /// A block being fetched: whoever needs it waits for this request instead of sending another.
    private final class BlockFetch: Sendable {
        let done = DispatchGroup()
        let result = Mutex<Result<[UInt8], TransportError>?>(nil)
        init() { done.enter() }
        func finish(_ outcome: Result<[UInt8], TransportError>) {
            result.withLock { $0 = outcome }
            done.leave()
        }
        func wait() throws(TransportError) -> [UInt8] {
            done.wait()
            guard let outcome = result.withLock({ $0 }) else {
                preconditionFailure("a finished block fetch holds its outcome")
            }
            return try outcome.get()
        }
    }
    private struct Cache {
        var blocks: [UInt64: [UInt8]] = [:]
        /// Block indexes, least recently used first.
        var recency: [UInt64] = []
        var fetching: [UInt64: BlockFetch] = [:]
        /// The block of the last read going forward (or where a new run started).
        var lastRead: UInt64?
        /// Blocks the current run has moved forward.
        var runLength = 0
        /// Evicted blocks' arrays, for the next fetches to fill again.
        var spare: [[UInt8]] = []

        /// A run goes forward: the block read last, the one after it, or one just behind it
        /// (another decoding thread still in the previous unit).
        func continuesRun(_ index: UInt64) -> Bool {
            guard let last = lastRead else { return false }
            return index + 2 >= last && index <= last + 1
        }
    }
    private let cache = Mutex(Cache())
    /// Held for each request: requests go one at a time, and what the copies served or why
    /// they failed is kept in one place. Kept across reads: once a copy failed, the next reads
    /// start at the one that worked.
    private let sourceList: Mutex<SourceList>
    private let requests = Atomic<Int>(0)
    /// Runs the read-ahead fetches one after another, in block order.
    private let readAhead = DispatchQueue(label: "imprint.http-range.read-ahead")

    public init(url: String, client: HTTPClient) throws(TransportError) {
        try validateURL(url)
        var sources = client.options.sources(for: url)
        self.size = try client.rangeableSize(&sources)
        self.url = url
        self.client = client
        self.sourceList = Mutex(sources)
    }

    /// Fills all of `buffer` with the bytes at `offset`; a read past the end is `.truncated`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(TransportError) {
        guard buffer.count > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(buffer.count))
        guard !overflow, end <= size else {
            throw .truncated(url: url, received: offset < size ? size - offset : 0, expected: UInt64(buffer.count))
        }
        if buffer.count < Self.isolatedReadLimit, (end - 1) / Self.blockSize == offset / Self.blockSize,
           claimIsolatedRead(offset / Self.blockSize) {
            try readExactly(into: buffer, at: offset)
            return
        }
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

    /// A small read the caller knows stands apart from the others (a WIM's chunk tables while
    /// an apply plans, `RandomAccessSource.readStandalone`): copied from its block if that is
    /// held, else sent as it is. It does not move the run of reads, so it neither starts a
    /// read-ahead nor breaks the one under way.
    public func readStandalone(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(TransportError) {
        guard buffer.count > 0 else { return }
        if copyFromHeldBlock(into: buffer, at: offset) { return }
        try readExactly(into: buffer, at: offset)
    }

    /// Copies the read from the block holding it, if that block is held and holds all of it.
    private func copyFromHeldBlock(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool {
        let index = offset / Self.blockSize
        let within = Int(offset - index * Self.blockSize)
        guard let block = cache.withLock({ $0.blocks[index] }), within + buffer.count <= block.count else { return false }
        block.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[within..<(within + buffer.count)]))
        }
        return true
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
        var fresh: [UInt8] = []
        let bytes = try fetch(start: offset, end: end - 1, reusing: &fresh)
        guard bytes.count == buffer.count else {
            throw .truncated(url: url, received: UInt64(bytes.count), expected: UInt64(buffer.count))
        }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    /// Whether a small read in block `index` stands alone: its block is neither held nor on its
    /// way, and the read does not continue the run of reads (the read before it was elsewhere,
    /// or there was none). Such a read (a WIM's header, one small file of a partial extract) is
    /// sent as it is: a few KiB instead of a 4 MiB block, 35 ms on a 1 Gbit/s link, that the
    /// next reads would not use. The read still marks where reads are, so a second one nearby
    /// goes through blocks. Reads the caller knows to stand apart, even one block after another
    /// (an apply's chunk tables), say so instead (`readStandalone`).
    private func claimIsolatedRead(_ index: UInt64) -> Bool {
        cache.withLock { cache in
            guard cache.blocks[index] == nil, cache.fetching[index] == nil else { return false }
            guard !cache.continuesRun(index) else { return false }
            cache.lastRead = index
            cache.runLength = 0
            return true
        }
    }

    private enum BlockAction { case cached([UInt8]), wait(BlockFetch), fetch(BlockFetch) }

    private func block(_ index: UInt64) throws(TransportError) -> [UInt8] {
        let (action, ahead) = cache.withLock { cache -> (BlockAction, [(UInt64, BlockFetch)]) in
            // A read that does not continue the run (`continuesRun`) starts a new one there.
            // The read-ahead grows with the run, a block per block moved forward (as the
            // kernel's does for files): the few scattered reads of a WIM's tables fetch little
            // they do not use, an apply's long run soon has all of its blocks ahead.
            if cache.continuesRun(index), let last = cache.lastRead {
                if index == last + 1 { cache.runLength += 1 }
                cache.lastRead = max(last, index)
            } else {
                cache.lastRead = index
                cache.runLength = 0
            }
            let ahead = startFetches(after: index, count: min(UInt64(cache.runLength), Self.readAheadBlocks), in: &cache)
            if let cached = cache.blocks[index] {
                if let at = cache.recency.firstIndex(of: index) { cache.recency.remove(at: at) }
                cache.recency.append(index)
                return (.cached(cached), ahead)
            }
            if let pending = cache.fetching[index] { return (.wait(pending), ahead) }
            let fetch = BlockFetch()
            cache.fetching[index] = fetch
            return (.fetch(fetch), ahead)
        }
        for (next, fetch) in ahead {
            readAhead.async { self.complete(next, fetch) }
        }
        switch action {
        case let .cached(bytes): return bytes
        case let .wait(pending): return try pending.wait()
        case let .fetch(fetch):
            complete(index, fetch)
            return try fetch.wait()
        }
    }

    /// Claims the `count` blocks after `index` that are neither held nor on their way, for the read-ahead.
    private func startFetches(after index: UInt64, count: UInt64, in cache: inout Cache) -> [(UInt64, BlockFetch)] {
        let blockCount = (size + Self.blockSize - 1) / Self.blockSize
        var claimed: [(UInt64, BlockFetch)] = []
        var next = index + 1
        while next <= index + count, next < blockCount {
            if cache.blocks[next] == nil, cache.fetching[next] == nil {
                let fetch = BlockFetch()
                cache.fetching[next] = fetch
                claimed.append((next, fetch))
            }
            next += 1
        }
        return claimed
    }

    /// Fetches block `index`, keeps it in the cache and hands it to whoever waits for it.
    private func complete(_ index: UInt64, _ fetch: BlockFetch) {
        let start = index * Self.blockSize
        var storage = cache.withLock { $0.spare.popLast() } ?? []
        let outcome: Result<[UInt8], TransportError>
        do throws(TransportError) {
            outcome = .success(try self.fetch(start: start, end: min(start + Self.blockSize, size) - 1, reusing: &storage))
        } catch {
            outcome = .failure(error)
        }
        cache.withLock { cache in
            cache.fetching[index] = nil
            // A failed block is not kept: the next read of it asks again.
            guard case let .success(bytes) = outcome else { return }
            if cache.blocks.count >= Self.cacheBlocks, let oldest = cache.recency.first {
                cache.recency.removeFirst()
                // Reused only if no reader still copies from it (else the fetch copies it first).
                if let evicted = cache.blocks.removeValue(forKey: oldest), cache.spare.count < Self.spareBlocks {
                    cache.spare.append(evicted)
                }
            }
            cache.blocks[index] = bytes
            cache.recency.append(index)
        }
        fetch.finish(outcome)
    }

    private func fetch(start: UInt64, end: UInt64, reusing storage: inout [UInt8]) throws(TransportError) -> [UInt8] {
        try sourceList.withLock { (sources) throws(TransportError) -> [UInt8] in
            try client.fetchRange(&sources, start: start, end: end, size: size, reusing: &storage,
                                  counted: { requests.add(1, ordering: .relaxed) })
        }
    }
}
