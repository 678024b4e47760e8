import Digests
import Dispatch
import Synchronization

/// Receives blobs in the order they are stored, each as a run of data pieces.
public protocol BlobSink: AnyObject {
    func beginBlob(_ blob: BlobDescriptor) throws
    func blobData(_ data: UnsafeRawBufferPointer) throws
    /// Called after the blob's SHA-1 was checked (when checking is on).
    func endBlob(_ blob: BlobDescriptor) throws
}

/// How far a read has come, for progress bars and events.
public struct ReadProgress: Sendable {
    public var blobsDone: Int
    public var blobsTotal: Int
    public var bytesDone: UInt64
    public var bytesTotal: UInt64

    public init(blobsDone: Int, blobsTotal: Int, bytesDone: UInt64, bytesTotal: UInt64) {
        self.blobsDone = blobsDone
        self.blobsTotal = blobsTotal
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
    }
}

/// Reads a set of blobs in one pass in storage order: each resource is read and each chunk
/// decompressed once, on several threads, and delivered in order to a sink on the calling
/// thread. Memory stays bounded by the number of work units in flight, whatever the image size.
public struct BlobReader {
    public var archive: WIMArchive
    public var threads: Int
    public var verifyHashes = true
    /// Target uncompressed size of one work unit.
    public var unitBytes = 2 << 20
    /// Upper bound on the bytes held by units decoded but not yet consumed.
    public var maxBytesInFlight = 160 << 20
    /// Names the files that use a blob, for error messages.
    public var describeUsers: (SHA1Digest) -> [String] = { _ in [] }

    public init(archive: WIMArchive, threads: Int = availableProcessorCount()) {
        self.archive = archive
        self.threads = max(1, threads)
    }

    /// One piece of uncompressed resource data a unit produces.
    struct Segment {
        var resource: Int
        var start: UInt64
        var length: Int
        var bufferOffset: Int
    }

    enum UnitKind {
        /// Consecutive small resources read with one `pread` and decoded (or, stored as is,
        /// copied) whole.
        case wholeResources([Int])
        /// A range of chunks of one compressed resource whose chunk table was read in planning.
        case chunks(resource: Int, chunks: ArraySlice<Chunk>, firstIndex: Int, uncompressedStart: UInt64)
        /// Part of an uncompressed resource.
        case raw(resource: Int, start: UInt64, length: Int)
    }

    struct Unit {
        var kind: UnitKind
        var outputBytes: Int
        var inputBytes: Int
    }

    /// What a worker hands the consumer for one unit: plain values, checked `Sendable`, moved
    /// through the pipeline's `Mutex` (the buffer array is uniquely owned at each step, so no
    /// copy is ever made of it).
    struct UnitResult: Sendable {
        var buffer: [UInt8]?
        var segments: [Segment] = []
        var error: (any Error)?
        /// SHA-1s of the blobs that lie wholly in this unit, computed on the worker so the
        /// consumer thread only has to write.
        var hashes: [SHA1Digest: SHA1Digest] = [:]
    }

    /// Decoded-data buffers are reused: a fresh allocation per unit would cost a page fault per
    /// 4 KiB written, which on 500 MB is a measurable share of the run.
    final class BufferPool: Sendable {
        private struct Kept {
            var buffers: [[UInt8]] = []
            var bytes = 0
        }
        private let kept = Mutex(Kept())
        static let granule = 1 << 20
        /// Bytes kept for reuse at most; what is beyond goes back to the system.
        static let keptBytes = 24 << 20

        func take(_ size: Int) -> [UInt8] {
            let wanted = max(size, 1)
            if let buffer = kept.withLock({ kept -> [UInt8]? in
                guard let i = kept.buffers.firstIndex(where: { $0.count >= wanted }) else { return nil }
                kept.bytes -= kept.buffers[i].count
                return kept.buffers.remove(at: i)
            }) {
                return buffer
            }
            let rounded = (wanted + BufferPool.granule - 1) / BufferPool.granule * BufferPool.granule
            // Not zeroed (no more than `allocate` was): UInt8 is trivial, and no byte of a unit's
            // buffer is read before the decoder wrote it; untouched pages then cost nothing.
            return [UInt8](unsafeUninitializedCapacity: rounded) { _, count in count = rounded }
        }

        func give(_ buffer: consuming [UInt8]) {
            // Moved in, not copied: the next worker to take it must find it uniquely referenced.
            var moving: [UInt8]? = consume buffer
            kept.withLock { kept in
                guard let count = moving?.count, kept.bytes + count <= BufferPool.keptBytes, let buffer = moving.take() else { return }
                kept.bytes += count
                kept.buffers.append(buffer)
            }
        }
    }

    /// What the decoding threads and the consuming thread share: the state behind a `Mutex`, and
    /// a semaphore per waiting thread. A thread that must wait registers itself under the lock
    /// and then sleeps on its own semaphore; whoever changes what it waits for takes the
    /// registration under the lock and signals it. So no wake-up is lost (semaphores count) and
    /// none goes to a thread with nothing to do.
    final class Pipeline: Sendable {
        struct State {
            var nextToStart = 0
            var nextToConsume = 0
            var bytesInFlight = 0
            var cancelled = false
            var results: [Int: UnitResult] = [:]
            /// Workers waiting for room (a unit consumed) or for cancellation.
            var parkedWorkers: [Int] = []
            /// The unit the consumer waits for, if it waits.
            var consumerWaitsFor: Int?
        }
        enum Claim: Sendable { case unit(Int), park, done }

        let state = Mutex(State())
        let workerWakeups: [DispatchSemaphore]
        let consumerWakeup = DispatchSemaphore(value: 0)
        let costs: [Int]
        let maxUnitsInFlight: Int
        let budget: Int

        init(workers: Int, costs: [Int], maxUnitsInFlight: Int, budget: Int) {
            workerWakeups = (0..<workers).map { _ in DispatchSemaphore(value: 0) }
            self.costs = costs
            self.maxUnitsInFlight = maxUnitsInFlight
            self.budget = budget
        }

        /// The next unit for `worker` to decode, once there is room for it; nil when all are
        /// taken or the read was cancelled.
        func nextUnit(worker: Int) -> Int? {
            while true {
                let claim = state.withLock { s -> Claim in
                    if s.cancelled || s.nextToStart >= costs.count { return .done }
                    let k = s.nextToStart
                    // At most `maxUnitsInFlight` ahead of the consumer and within the byte budget,
                    // except the very unit the consumer needs next, which always may start.
                    guard k < s.nextToConsume + maxUnitsInFlight,
                          s.bytesInFlight + costs[k] <= budget || k == s.nextToConsume else {
                        s.parkedWorkers.append(worker)
                        return .park
                    }
                    s.nextToStart = k + 1
                    s.bytesInFlight += costs[k]
                    return .unit(k)
                }
                switch claim {
                case let .unit(k): return k
                case .done: return nil
                case .park: workerWakeups[worker].wait()
                }
            }
        }

        /// A worker's result for unit `k`, moved out of `result` (no copy of its buffer stays behind).
        func finished(_ unit: Int, _ result: inout UnitResult?) {
            let wake = state.withLock { s -> Bool in
                s.results[unit] = result.take()
                guard s.consumerWaitsFor == unit else { return false }
                s.consumerWaitsFor = nil
                return true
            }
            if wake { consumerWakeup.signal() }
        }

        /// The result of unit `k`, waiting for it as long as it takes.
        func result(_ unit: Int) -> UnitResult {
            while true {
                let ready = state.withLock { s -> UnitResult? in
                    if let result = s.results.removeValue(forKey: unit) { return result }
                    s.consumerWaitsFor = unit
                    return nil
                }
                if let ready { return ready }
                consumerWakeup.wait()
            }
        }

        /// Unit `k` was consumed: its bytes no longer count, and waiting workers may start more.
        func consumed(_ unit: Int) {
            let parked = state.withLock { s -> [Int] in
                s.bytesInFlight -= costs[unit]
                s.nextToConsume = unit + 1
                let parked = s.parkedWorkers
                s.parkedWorkers.removeAll(keepingCapacity: true)
                return parked
            }
            for worker in parked { workerWakeups[worker].signal() }
        }

        /// Stops the workers after the unit each is decoding.
        func cancel() {
            let parked = state.withLock { s -> [Int] in
                s.cancelled = true
                let parked = s.parkedWorkers
                s.parkedWorkers.removeAll()
                return parked
            }
            for worker in parked { workerWakeups[worker].signal() }
        }
    }

    /// A worker's scratch space for stored (compressed) bytes, grown as needed and kept.
    struct InputBuffer {
        var storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        mutating func get(_ size: Int) -> UnsafeMutableRawBufferPointer {
            if storage.count < size {
                storage.deallocate()
                storage = UnsafeMutableRawBufferPointer.allocate(byteCount: (size + 0xFFFF) & ~0xFFFF, alignment: 64)
            }
            return UnsafeMutableRawBufferPointer(rebasing: storage[0..<size])
        }
        func release() { storage.deallocate() }
    }

    /// Reads `blobs` and hands them to `sink` in storage order.
    public func read(_ blobs: [BlobDescriptor], into sink: BlobSink,
                     progress: ((ReadProgress) -> Void)? = nil) throws {
        let resources = archive.resources
        let ordered = blobs.sorted { a, b in
            let ra = resources[a.resource], rb = resources[b.resource]
            if ra.part != rb.part { return ra.part < rb.part }
            if ra.offset != rb.offset { return ra.offset < rb.offset }
            return a.offsetInResource < b.offsetInResource
        }
        var blobsByResource: [Int: [BlobDescriptor]] = [:]
        var resourceOrder: [Int] = []
        for blob in ordered {
            if blobsByResource[blob.resource] == nil { resourceOrder.append(blob.resource) }
            blobsByResource[blob.resource, default: []].append(blob)
        }
        let units = try plan(resourceOrder, blobsByResource)
        let total = ReadProgress(blobsDone: 0, blobsTotal: ordered.count, bytesDone: 0,
                                 bytesTotal: ordered.reduce(0) { $0 + $1.size })
        try run(units, blobsByResource: blobsByResource, resourceOrder: resourceOrder, total: total, sink: sink, progress: progress)
    }

    // MARK: Planning

    func plan(_ order: [Int], _ blobsByResource: [Int: [BlobDescriptor]]) throws -> [Unit] {
        var units: [Unit] = []
        var batch: [Int] = []
        var batchStart: UInt64 = 0, batchEnd: UInt64 = 0, batchOut = 0
        func flush() {
            guard !batch.isEmpty else { return }
            units.append(Unit(kind: .wholeResources(batch), outputBytes: batchOut, inputBytes: Int(batchEnd - batchStart)))
            batch = []
            batchOut = 0
        }
        for index in order {
            let r = archive.resources[index]
            let wanted = blobsByResource[index] ?? []
            // Stored as is (wimlib stores a file uncompressed when compressing would not shrink
            // it: most of /usr/share's already-compressed pages): small ones join the batches
            // below. As units of their own, each a read and two thread hand-offs for a few KiB,
            // they cost 38,700 context switches applying /usr/share, against 385 for the same
            // files in a pipable WIM, which groups them.
            let storedAsIs = !r.isCompressed && !r.isSolid
            let smallAsIs = storedAsIs && r.uncompressedSize <= UInt64(unitBytes) && r.sizeInWIM == r.uncompressedSize
            if storedAsIs && !smallAsIs {
                flush()
                // Uncompressed: read only the blob spans, a unit at a time.
                for blob in wanted {
                    var start = blob.offsetInResource
                    let end = blob.offsetInResource + blob.size
                    while start < end {
                        let length = Int(min(UInt64(unitBytes), end - start))
                        units.append(Unit(kind: .raw(resource: index, start: start, length: length), outputBytes: length, inputBytes: 0))
                        start += UInt64(length)
                    }
                }
                continue
            }
            if !r.isSolid && r.uncompressedSize <= UInt64(unitBytes) && r.sizeInWIM <= UInt64(unitBytes) {
                // Small resources are batched while they lie close together in one part.
                let continues = !batch.isEmpty && archive.resources[batch[0]].part == r.part
                    && r.offset >= batchEnd && r.offset - batchEnd < 1 << 20
                    && r.end - batchStart <= UInt64(2 * unitBytes) && batchOut + Int(r.uncompressedSize) <= 2 * unitBytes
                if !continues {
                    flush()
                    batchStart = r.offset
                }
                batch.append(index)
                batchEnd = r.end
                batchOut += Int(r.uncompressedSize)
                continue
            }
            flush()
            // Large or solid: read the chunk table now and cut the needed chunks into units.
            let file = archive.parts[r.part]
            let location = r.chunkTableLocation
            guard location.offset >= 0, UInt64(location.offset + location.size) <= r.sizeInWIM else {
                throw WIMError.invalidResource(path: file.path, offset: r.offset, reason: "chunk table (\(location.size) bytes) is larger than the resource (\(r.sizeInWIM) bytes)")
            }
            // Each table is a few KiB ahead of its resource's data, and the next one is past
            // that data: over HTTP Range, reads apart from each other (`standalone`), not a run
            // whose 4 MiB blocks the data pass would fetch again once it gets there.
            let tableBytes = try file.read(count: location.size, at: r.offset + UInt64(location.offset), what: "chunk table",
                                           standalone: true)
            let table = try withBytes(tableBytes) { (raw) throws(WIMError) in try r.parseChunkTable(raw, path: file.path) }
            var needed = [Bool](repeating: !r.isSolid, count: table.chunks.count)
            if r.isSolid {
                for blob in wanted where blob.size > 0 {
                    let first = Int(blob.offsetInResource / UInt64(r.chunkSize))
                    let last = Int((blob.offsetInResource + blob.size - 1) / UInt64(r.chunkSize))
                    for c in first...min(last, table.chunks.count - 1) { needed[c] = true }
                }
            }
            var c = 0
            while c < table.chunks.count {
                guard needed[c] else { c += 1; continue }
                var end = c
                var out = 0, input = 0
                while end < table.chunks.count, needed[end], end == c || out + table.chunks[end].uncompressedSize <= unitBytes {
                    out += table.chunks[end].uncompressedSize
                    input += table.chunks[end].storedSize
                    end += 1
                }
                units.append(Unit(kind: .chunks(resource: index, chunks: table.chunks[c..<end], firstIndex: c,
                                                uncompressedStart: UInt64(c) * UInt64(r.chunkSize)),
                                  outputBytes: out, inputBytes: input))
                c = end
            }
        }
        flush()
        return units
    }

    // MARK: Decoding (worker threads)

    static func decode(_ unit: Unit, archive: WIMArchive, decoders: inout DecoderSet, inputBuffer: inout InputBuffer,
                       pool: BufferPool, result: inout UnitResult) throws {
        var buffer = pool.take(unit.outputBytes)
        result.segments = try buffer.withUnsafeMutableBytes { output in
            try decode(unit, into: output, archive: archive, decoders: &decoders, inputBuffer: &inputBuffer)
        }
        result.buffer = consume buffer
    }

    /// Decodes `unit` into `output`; returns the pieces of resource data it now holds.
    static func decode(_ unit: Unit, into output: UnsafeMutableRawBufferPointer, archive: WIMArchive,
                       decoders: inout DecoderSet, inputBuffer: inout InputBuffer) throws -> [Segment] {
        switch unit.kind {
        case let .raw(index, start, length):
            let r = archive.resources[index]
            try archive.parts[r.part].read(into: UnsafeMutableRawBufferPointer(rebasing: output[0..<length]), at: r.offset + start, what: "resource data")
            return [Segment(resource: index, start: start, length: length, bufferOffset: 0)]

        case let .wholeResources(list):
            let first = archive.resources[list[0]]
            let last = archive.resources[list[list.count - 1]]
            let file = archive.parts[first.part]
            let input = inputBuffer.get(Int(last.end - first.offset))
            try file.read(into: input, at: first.offset, what: "resource data")
            var position = 0
            var segments: [Segment] = []
            for index in list {
                let r = archive.resources[index]
                let base = Int(r.offset - first.offset)
                let raw = UnsafeRawBufferPointer(rebasing: input[base..<(base + Int(r.sizeInWIM))])
                let segmentStart = position
                if !r.isCompressed {
                    // Planned only when its stored size is its size.
                    UnsafeMutableRawBufferPointer(rebasing: output[position..<(position + raw.count)]).copyMemory(from: raw)
                    position += raw.count
                } else {
                    let table = try r.parseChunkTable(resourceBytes: raw, path: file.path)
                    for (i, chunk) in table.chunks.enumerated() {
                        let s = Int(chunk.fileOffset - r.offset)
                        try decodeChunk(r, chunkIndex: i, chunk: chunk, input: UnsafeRawBufferPointer(rebasing: raw[s..<(s + chunk.storedSize)]),
                                        output: UnsafeMutableRawBufferPointer(rebasing: output[position..<(position + chunk.uncompressedSize)]),
                                        path: file.path, decoders: &decoders)
                        position += chunk.uncompressedSize
                    }
                }
                segments.append(Segment(resource: index, start: 0, length: position - segmentStart, bufferOffset: segmentStart))
            }
            return segments

        case let .chunks(index, chunks, firstIndex, uncompressedStart):
            let r = archive.resources[index]
            let file = archive.parts[r.part]
            guard let firstChunk = chunks.first, let lastChunk = chunks.last else { return [] }
            let span = Int(lastChunk.fileOffset - firstChunk.fileOffset) + lastChunk.storedSize
            let input = inputBuffer.get(span)
            try file.read(into: input, at: firstChunk.fileOffset, what: "resource data")
            var position = 0
            for (k, chunk) in chunks.enumerated() {
                let s = Int(chunk.fileOffset - firstChunk.fileOffset)
                try decodeChunk(r, chunkIndex: firstIndex + k, chunk: chunk,
                                input: UnsafeRawBufferPointer(rebasing: input[s..<(s + chunk.storedSize)]),
                                output: UnsafeMutableRawBufferPointer(rebasing: output[position..<(position + chunk.uncompressedSize)]),
                                path: file.path, decoders: &decoders)
                position += chunk.uncompressedSize
            }
            return [Segment(resource: index, start: uncompressedStart, length: position, bufferOffset: 0)]
        }
    }

    /// Hashes the blobs that lie wholly inside the unit's segments.
    static func hashWholeBlobs(_ result: inout UnitResult, blobsByResource: [Int: [BlobDescriptor]], hasher: SHA1Hasher) {
        guard let bytes = result.buffer else { return }
        let segments = result.segments
        var hashes = result.hashes
        bytes.withUnsafeBytes { buffer in
            for segment in segments {
                guard let blobs = blobsByResource[segment.resource] else { continue }
                let end = segment.start + UInt64(segment.length)
                // First blob that could start in the segment (blobs are sorted by offset).
                var lo = 0, hi = blobs.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if blobs[mid].offsetInResource < segment.start { lo = mid + 1 } else { hi = mid }
                }
                var i = lo
                while i < blobs.count, blobs[i].offsetInResource + blobs[i].size <= end {
                    let from = segment.bufferOffset + Int(blobs[i].offsetInResource - segment.start)
                    hasher.update(UnsafeRawBufferPointer(rebasing: buffer[from..<(from + Int(blobs[i].size))]))
                    hashes[blobs[i].hash] = hasher.finish()
                    i += 1
                }
            }
        }
        result.hashes = hashes
    }

    static func decodeChunk(_ r: Resource, chunkIndex: Int, chunk: Chunk, input: UnsafeRawBufferPointer,
                            output: UnsafeMutableRawBufferPointer, path: String, decoders: inout DecoderSet) throws {
        do throws(DecompressionError) {
            try decoders.decode(r.compression, chunkSize: r.chunkSize, input, into: output)
        } catch {
            throw WIMError.corruptChunk(path: path, chunkOffset: chunk.fileOffset + UInt64(max(0, error.offset)), chunkIndex: chunkIndex,
                                        resourceOffset: r.offset, reason: error.reason)
        }
    }

    // MARK: The pipeline

    func run(_ units: [Unit], blobsByResource: [Int: [BlobDescriptor]], resourceOrder: [Int], total: ReadProgress,
             sink: BlobSink, progress: ((ReadProgress) -> Void)?) throws {
        let archive = self.archive
        let costs = units.map { $0.outputBytes + $0.inputBytes }
        // Enough room for every worker to hold a unit while one waits to be consumed, even when a
        // single chunk is large (64 MiB LZMS chunks in solid resources).
        let budget = max(maxBytesInFlight, (threads + 1) * (costs.max() ?? 0))
        let workerCount = min(threads, max(units.count, 1))
        let pipeline = Pipeline(workers: workerCount, costs: costs, maxUnitsInFlight: threads * 2 + 2, budget: budget)
        let pool = BufferPool()
        let verify = verifyHashes

        // The calling thread consumes while `workerCount` threads decode.
        let workers = startThreads(workerCount) { worker in
            var decoders = DecoderSet()
            var inputBuffer = InputBuffer()
            defer { inputBuffer.release() }
            let hasher = SHA1Hasher()
            while let k = pipeline.nextUnit(worker: worker) {
                var result: UnitResult? = UnitResult()
                do {
                    try BlobReader.decode(units[k], archive: archive, decoders: &decoders, inputBuffer: &inputBuffer,
                                          pool: pool, result: &result!)
                    if verify { BlobReader.hashWholeBlobs(&result!, blobsByResource: blobsByResource, hasher: hasher) }
                } catch { result!.error = error }
                pipeline.finished(k, &result)
            }
        }
        defer {
            pipeline.cancel()
            joinThreads(workers)
        }
        if workers.isEmpty {
            throw WIMError.io(path: archive.path, operation: "start a thread to decompress with", errno: EAGAIN)
        }

        // Consumer: walks the blobs of each resource as their bytes arrive.
        var delivery = Delivery(archive: archive, blobsByResource: blobsByResource, verify: verifyHashes,
                                describeUsers: describeUsers, progress: total, report: progress)
        var consumerError: (any Error)?
        for k in 0..<units.count {
            var result = pipeline.result(k)
            if let error = result.error {
                consumerError = error
            } else if let bytes = result.buffer {
                do {
                    try bytes.withUnsafeBytes { buffer in
                        for segment in result.segments {
                            try delivery.deliver(segment, UnsafeRawBufferPointer(rebasing: buffer[segment.bufferOffset..<(segment.bufferOffset + segment.length)]),
                                                 precomputed: result.hashes, sink: sink)
                        }
                    }
                } catch {
                    consumerError = error
                }
            }
            if let buffer = result.buffer.take() { pool.give(consume buffer) }
            pipeline.consumed(k)
            if consumerError != nil { break }
        }
        if let consumerError { throw consumerError }
        try delivery.finish(sink: sink)
    }

    /// Maps decoded resource bytes onto the blobs they belong to, hashing each blob.
    struct Delivery {
        let archive: WIMArchive
        let blobsByResource: [Int: [BlobDescriptor]]
        let verify: Bool
        let describeUsers: (SHA1Digest) -> [String]
        var progress: ReadProgress
        let report: ((ReadProgress) -> Void)?
        var cursor: [Int: Int] = [:]
        var open: BlobDescriptor?
        let hasher = SHA1Hasher()
        var lastReported: UInt64 = 0

        init(archive: WIMArchive, blobsByResource: [Int: [BlobDescriptor]], verify: Bool,
             describeUsers: @escaping (SHA1Digest) -> [String], progress: ReadProgress, report: ((ReadProgress) -> Void)?) {
            self.archive = archive
            self.blobsByResource = blobsByResource
            self.verify = verify
            self.describeUsers = describeUsers
            self.progress = progress
            self.report = report
        }

        mutating func deliver(_ segment: Segment, _ bytes: UnsafeRawBufferPointer, precomputed: [SHA1Digest: SHA1Digest],
                              sink: BlobSink) throws {
            guard let blobs = blobsByResource[segment.resource] else { return }
            var i = cursor[segment.resource] ?? 0
            let segmentEnd = segment.start + UInt64(segment.length)
            while i < blobs.count {
                let blob = blobs[i]
                let blobEnd = blob.offsetInResource + blob.size
                if blob.offsetInResource >= segmentEnd { break }
                if blobEnd <= segment.start { i += 1; continue }
                if blob.offsetInResource >= segment.start {
                    // The blob starts in this segment.
                    try sink.beginBlob(blob)
                    open = blob
                }
                let from = max(blob.offsetInResource, segment.start)
                let to = min(blobEnd, segmentEnd)
                let piece = UnsafeRawBufferPointer(rebasing: bytes[Int(from - segment.start)..<Int(to - segment.start)])
                let whole = blob.offsetInResource >= segment.start && blobEnd <= segmentEnd
                let known = whole ? precomputed[blob.hash] : nil
                if verify && known == nil { hasher.update(piece) }
                try sink.blobData(piece)
                progress.bytesDone += UInt64(piece.count)
                if to == blobEnd {
                    try finishBlob(blob, knownHash: known, sink: sink)
                    i += 1
                } else {
                    break
                }
            }
            cursor[segment.resource] = i
            if let report, progress.bytesDone - lastReported >= 4 << 20 || progress.bytesDone == progress.bytesTotal {
                lastReported = progress.bytesDone
                report(progress)
            }
        }

        mutating func finishBlob(_ blob: BlobDescriptor, knownHash: SHA1Digest?, sink: BlobSink) throws {
            if verify {
                let actual = knownHash ?? hasher.finish()
                if actual != blob.hash {
                    let r = archive.resources[blob.resource]
                    throw WIMError.hashMismatch(path: archive.parts[r.part].path, blob: blob.hash, resourceOffset: r.offset,
                                                actual: actual, usedBy: describeUsers(blob.hash))
                }
            }
            open = nil
            try sink.endBlob(blob)
            progress.blobsDone += 1
        }

        mutating func finish(sink: BlobSink) throws {
            if let report { report(progress) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
