import Digests
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// A pipable WIM read from a stream decoded on every core. Chunks are independent (each is
// compressed on its own, MS-XCA and wimlib's resource format), so only reading the stream and
// handing the data to the sink must keep their order:
//
//     reading thread ──batches of compressed chunks──▶ decoding threads (any order)
//           │                                                  │
//           └──── every item, in stream order ───▶ caller: waits for each item's decoding,
//                                                  hashes (SHA-1) and hands it to the sink
//
// Memory is bounded by the window of items in flight (`itemsInFlight` × a batch of about
// 1 MiB), whatever the image's size. Blobs the caller does not need are read past, not decoded.

extension PipableStream {
    /// One step of the stream, in order: a blob starts, a batch of its data, it ends; or the
    /// stream is done (or failed).
    fileprivate final class Item: Sendable {
        enum Kind: Sendable {
            case begin(BlobDescriptor)
            /// Compressed chunks to decode (or raw bytes, `chunks` empty), `size` bytes once decoded.
            case data(size: Int)
            case end(BlobDescriptor, offset: UInt64)
            /// Small blobs whole, decoded and hashed together: one hand-over for many blobs
            /// (a Windows image is mostly small files; an item each cost a wake-up each).
            case group([GroupMember])
            case finished
            case failed(WIMError)
        }

        struct Chunk: Sendable {
            var start: Int
            var stored: Int
            var size: Int
            var index: Int
            var offset: UInt64
            /// Bytes stored as they are (an uncompressed resource): copied, not decoded.
            var raw = false
        }

        /// A blob of a group: where its decoded bytes are in the item's output.
        struct GroupMember: Sendable {
            var blob: BlobDescriptor
            var offset: UInt64
            var start: Int
            var size: Int
        }

        let kind: Kind
        let input: [UInt8]
        let chunks: [Chunk]
        /// The blob's data is this item alone: the decoding thread hashes it too, so the caller
        /// (which delivers everything in order, one item at a time) does not.
        let wholeBlob: Bool
        /// The decoded bytes (or why they could not be), set once by a decoding thread.
        let output = Mutex<Result<[UInt8], WIMError>?>(nil)
        /// With `wholeBlob`: the SHA-1 of the decoded bytes; for a group, each member's.
        let hash = Mutex<SHA1Digest?>(nil)
        let memberHashes = Mutex<[SHA1Digest]>([])
        let ready = DispatchSemaphore(value: 0)

        init(_ kind: Kind, input: [UInt8] = [], chunks: [Chunk] = [], wholeBlob: Bool = false) {
            self.kind = kind
            self.input = input
            self.chunks = chunks
            self.wholeBlob = wholeBlob
        }

        /// Work for a decoding thread: chunks to decode, or a whole blob to hash.
        var needsWorker: Bool {
            if case .group = kind { return true }
            return !chunks.isEmpty || wholeBlob
        }
    }

    /// What the three kinds of threads share.
    fileprivate final class Pipeline: Sendable {
        /// Items in stream order, for the caller; `available` counts them.
        let ordered = Mutex<[Item]>([])
        let available = DispatchSemaphore(value: 0)
        /// Items to decode, for the decoding threads (nil: stop); `work` counts them.
        let toDecode = Mutex<[Item?]>([])
        let work = DispatchSemaphore(value: 0)
        /// Room in the window: the reading thread waits for it before each item.
        let room: DispatchSemaphore
        let cancelled = Atomic<Bool>(false)

        init(itemsInFlight: Int) { room = DispatchSemaphore(value: itemsInFlight) }

        func push(_ item: Item) {
            room.wait()
            if item.needsWorker {
                toDecode.withLock { $0.append(item) }
                work.signal()
            } else {
                item.ready.signal()
            }
            ordered.withLock { $0.append(item) }
            available.signal()
        }

        func next() -> Item {
            available.wait()
            return ordered.withLock { $0.removeFirst() }
        }

        func nextToDecode() -> Item? {
            work.wait()
            return toDecode.withLock { $0.removeFirst() }
        }

        func stopDecoders(_ count: Int) {
            toDecode.withLock { $0.append(contentsOf: Array(repeating: nil, count: count)) }
            for _ in 0..<count { work.signal() }
        }
    }

    /// Target decoded size of one batch of chunks.
    static let batchBytes = 1 << 20

    /// `readBlobs` with decoding on `threads` threads (see the top of this file).
    func readBlobsInParallel(_ needed: [SHA1Digest: UInt64], into sink: BlobSink, verify: Bool, threads: Int,
                             describeUsers: (SHA1Digest) -> [String], progress: ((ReadProgress) -> Void)?) throws {
        let pipeline = Pipeline(itemsInFlight: 4 * threads + 4)
        let compression = header.compression
        let chunkSize = Int(header.chunkSize)
        let decoders = startThreads(threads) { _ in
            var decoders = DecoderSet()
            let hasher = SHA1Hasher()
            while let item = pipeline.nextToDecode() {
                if case let .group(members) = item.kind {
                    let decoded = PipableStream.decode(item, compression: compression, chunkSize: chunkSize, decoders: &decoders)
                    if verify, case let .success(bytes) = decoded {
                        let digests = bytes.withUnsafeBytes { all in
                            members.map { member -> SHA1Digest in
                                hasher.update(UnsafeRawBufferPointer(rebasing: all[member.start..<(member.start + member.size)]))
                                return hasher.finish()
                            }
                        }
                        item.memberHashes.withLock { $0 = digests }
                    }
                    item.output.withLock { $0 = decoded }
                    item.ready.signal()
                    continue
                }
                let decoded = item.chunks.isEmpty ? nil : PipableStream.decode(item, compression: compression, chunkSize: chunkSize, decoders: &decoders)
                if verify && item.wholeBlob {
                    switch decoded {
                    case let .success(bytes)?: hasher.update(bytes)
                    case nil: hasher.update(item.input)
                    case .failure?: break
                    }
                    let digest = hasher.finish()
                    item.hash.withLock { $0 = digest }
                }
                item.output.withLock { $0 = decoded }
                item.ready.signal()
            }
        }
        guard decoders.count == threads else {
            pipeline.stopDecoders(decoders.count)
            joinThreads(decoders)
            return try readBlobsInOrder(needed, into: sink, verify: verify, describeUsers: describeUsers, progress: progress)
        }
        // The reading thread owns this stream (its buffer and position) until it has pushed
        // `.finished`; the caller touches only items meanwhile.
        let stream = UnsafeStream(self)
        let reader = startThreads(1) { _ in
            stream.value.produce(needed, pipeline)
            pipeline.stopDecoders(threads)
        }
        guard reader.count == 1 else {
            pipeline.stopDecoders(threads)
            joinThreads(decoders)
            return try readBlobsInOrder(needed, into: sink, verify: verify, describeUsers: describeUsers, progress: progress)
        }
        defer {
            joinThreads(reader)
            joinThreads(decoders)
        }
        var failure: Error?
        var remaining = needed
        let hasher = SHA1Hasher()
        var precomputed: SHA1Digest?
        var report = ReadProgress(blobsDone: 0, blobsTotal: needed.count, bytesDone: 0, bytesTotal: needed.values.reduce(0, +))
        var lastReported: UInt64 = 0
        while true {
            let item = pipeline.next()
            item.ready.wait()
            defer { pipeline.room.signal() }
            if case .finished = item.kind { break }
            // After a failure the rest is drained (the reading thread stops at its next item).
            guard failure == nil else { continue }
            do {
                switch item.kind {
                case let .begin(blob):
                    remaining.removeValue(forKey: blob.hash)
                    try sink.beginBlob(blob)
                case .data:
                    let bytes = try item.output.withLock { try ($0 ?? .success(item.input)).get() }
                    precomputed = item.hash.withLock { $0 }
                    try bytes.withUnsafeBytes { piece in
                        if verify && precomputed == nil { hasher.update(piece) }
                        try sink.blobData(piece)
                    }
                    report.bytesDone += UInt64(bytes.count)
                    if let progress, report.bytesDone - lastReported >= 4 << 20 {
                        lastReported = report.bytesDone
                        progress(report)
                    }
                case let .end(blob, offset):
                    if verify {
                        let actual = precomputed ?? hasher.finish()
                        precomputed = nil
                        guard actual == blob.hash else {
                            throw WIMError.hashMismatch(path: name, blob: blob.hash, resourceOffset: offset, actual: actual, usedBy: describeUsers(blob.hash))
                        }
                    }
                    try sink.endBlob(blob)
                    report.blobsDone += 1
                case let .group(members):
                    let bytes = try item.output.withLock { try ($0 ?? .success([])).get() }
                    let digests = item.memberHashes.withLock { $0 }
                    try bytes.withUnsafeBytes { all in
                        for (index, member) in members.enumerated() {
                            remaining.removeValue(forKey: member.blob.hash)
                            // Hashed already: a blob that does not match never reaches the sink.
                            if verify, digests[index] != member.blob.hash {
                                throw WIMError.hashMismatch(path: name, blob: member.blob.hash, resourceOffset: member.offset, actual: digests[index],
                                                            usedBy: describeUsers(member.blob.hash))
                            }
                            try sink.beginBlob(member.blob)
                            if member.size > 0 { try sink.blobData(UnsafeRawBufferPointer(rebasing: all[member.start..<(member.start + member.size)])) }
                            try sink.endBlob(member.blob)
                            report.blobsDone += 1
                            report.bytesDone += UInt64(member.size)
                        }
                    }
                    if let progress, report.bytesDone - lastReported >= 4 << 20 {
                        lastReported = report.bytesDone
                        progress(report)
                    }
                case let .failed(error):
                    throw error
                case .finished:
                    break
                }
            } catch {
                failure = error
                pipeline.cancelled.store(true, ordering: .relaxed)
            }
        }
        if let failure { throw failure }
        progress?(report)
        if let missing = remaining.keys.first {
            throw WIMError.missingBlob(path: name, blob: missing, usedBy: describeUsers(missing).first ?? "a file")
        }
    }

    /// The reading thread: every resource up to the blob table, as items.
    private func produce(_ needed: [SHA1Digest: UInt64], _ pipeline: Pipeline) {
        var remaining = needed
        var group = GroupBuilder()
        func flush() {
            guard !group.members.isEmpty else { return }
            pipeline.push(Item(.group(group.members), input: group.input, chunks: group.chunks))
            group = GroupBuilder()
        }
        do {
            while !remaining.isEmpty && !pipeline.cancelled.load(ordering: .relaxed) {
                let r = try PipableStream.readResourceHeader(self)
                if r.flags.contains(.metadata) { break }  // the blob table: no more blobs follow
                guard remaining.removeValue(forKey: r.hash) != nil else {
                    try skipResource(r)
                    continue
                }
                let blob = BlobDescriptor(hash: r.hash, size: r.uncompressedSize, resource: -1, offsetInResource: 0, referenceCount: 1)
                if r.uncompressedSize <= UInt64(Self.groupedBlobBytes) {
                    try readSmallResource(r, blob, into: &group)
                    if group.size >= Self.batchBytes || group.members.count >= 1024 { flush() }
                    continue
                }
                flush()
                pipeline.push(Item(.begin(blob)))
                try readResourceBatches(r) { pipeline.push($0) }
                pipeline.push(Item(.end(blob, offset: r.offset)))
            }
            flush()
        } catch let error as WIMError {
            pipeline.push(Item(.failed(error)))
        } catch {
            pipeline.push(Item(.failed(.pipable(offset: position, reason: "\(error)"))))
        }
        pipeline.push(Item(.finished))
    }

    /// A resource's data as batches of about `batchBytes`: raw bytes as they are, compressed
    /// chunks with their sizes for a decoding thread.
    private func readResourceBatches(_ r: ResourceHeader, _ push: (Item) -> Void) throws(WIMError) {
        let size = r.uncompressedSize
        guard size < 1 << 48 else { throw .pipable(offset: r.offset, reason: "resource claims an absurd size of \(size) bytes") }
        let whole = size <= UInt64(Self.batchBytes)
        if !r.flags.contains(.compressed) {
            var left = size
            while left > 0 {
                let take = Int(min(left, UInt64(Self.batchBytes)))
                push(Item(.data(size: take), input: try readExact(take), wholeBlob: whole))
                left -= UInt64(take)
            }
            return
        }
        let chunkSize = Int(header.chunkSize)
        guard header.compression != .none else { throw .pipable(offset: r.offset, reason: "compressed resource in a WIM whose header names no compression") }
        let count = Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
        var input: [UInt8] = []
        var chunks: [Item.Chunk] = []
        var batchSize = 0
        for i in 0..<count {
            let chunkStart = position
            let stored = Int(try readExact(4).le32(0))
            let usize = Int(min(UInt64(chunkSize), size - UInt64(i) * UInt64(chunkSize)))
            guard stored > 0, stored <= usize else {
                throw .pipable(offset: chunkStart, reason: "chunk \(i) claims \(stored) stored bytes for \(usize) bytes of data")
            }
            chunks.append(Item.Chunk(start: input.count, stored: stored, size: usize, index: i, offset: chunkStart + 4))
            input += try readExact(stored)
            batchSize += usize
            if batchSize >= Self.batchBytes || i == count - 1 {
                push(Item(.data(size: batchSize), input: input, chunks: chunks, wholeBlob: whole))
                input = []
                chunks = []
                batchSize = 0
            }
        }
        let tableSize = (size > UInt64(UInt32.max) ? 8 : 4) * (count - 1)
        if tableSize > 0 { try skip(tableSize) }
    }

    /// Small blobs gathered into one item.
    fileprivate struct GroupBuilder {
        var input: [UInt8] = []
        var chunks: [Item.Chunk] = []
        var members: [Item.GroupMember] = []
        var size = 0
    }

    /// Blobs up to this size go into groups.
    static let groupedBlobBytes = 256 << 10

    /// A small resource's stored bytes and chunks appended to a group.
    private func readSmallResource(_ r: ResourceHeader, _ blob: BlobDescriptor, into group: inout GroupBuilder) throws(WIMError) {
        let size = Int(r.uncompressedSize)
        group.members.append(Item.GroupMember(blob: blob, offset: r.offset, start: group.size, size: size))
        group.size += size
        guard r.flags.contains(.compressed) else {
            group.chunks.append(Item.Chunk(start: group.input.count, stored: size, size: size, index: 0, offset: r.offset, raw: true))
            group.input += try readExact(size)
            return
        }
        let chunkSize = Int(header.chunkSize)
        guard header.compression != .none, chunkSize > 0 else {
            throw .pipable(offset: r.offset, reason: "compressed resource in a WIM whose header names no compression")
        }
        let count = (size + chunkSize - 1) / chunkSize
        for i in 0..<count {
            let chunkStart = position
            let stored = Int(try readExact(4).le32(0))
            let usize = min(chunkSize, size - i * chunkSize)
            guard stored > 0, stored <= usize else {
                throw .pipable(offset: chunkStart, reason: "chunk \(i) claims \(stored) stored bytes for \(usize) bytes of data")
            }
            group.chunks.append(Item.Chunk(start: group.input.count, stored: stored, size: usize, index: i, offset: chunkStart + 4))
            group.input += try readExact(stored)
        }
        let tableSize = 4 * (count - 1)
        if tableSize > 0 { try skip(tableSize) }
    }

    /// Reads past a resource nobody needs, decoding nothing.
    private func skipResource(_ r: ResourceHeader) throws(WIMError) {
        let size = r.uncompressedSize
        guard size < 1 << 48 else { throw .pipable(offset: r.offset, reason: "resource claims an absurd size of \(size) bytes") }
        guard r.flags.contains(.compressed) else { return try skip(Int(size)) }
        let chunkSize = UInt64(header.chunkSize)
        guard chunkSize > 0 else { throw .pipable(offset: r.offset, reason: "compressed resource in a WIM with no chunk size") }
        let count = Int((size + chunkSize - 1) / chunkSize)
        for i in 0..<count {
            let chunkStart = position
            let stored = Int(try readExact(4).le32(0))
            let usize = Int(min(chunkSize, size - UInt64(i) * chunkSize))
            guard stored > 0, stored <= usize else {
                throw .pipable(offset: chunkStart, reason: "chunk \(i) claims \(stored) stored bytes for \(usize) bytes of data")
            }
            try skip(stored)
        }
        let tableSize = (size > UInt64(UInt32.max) ? 8 : 4) * (count - 1)
        if tableSize > 0 { try skip(tableSize) }
    }

    private func skip(_ count: Int) throws(WIMError) {
        var left = count
        while left > 0 {
            let take = min(left, 1 << 20)
            _ = try readExact(take)
            left -= take
        }
    }

    fileprivate static func decode(_ item: Item, compression: CompressionFormat, chunkSize: Int,
                                   decoders: inout DecoderSet) -> Result<[UInt8], WIMError> {
        let size: Int
        switch item.kind {
        case let .data(bytes): size = bytes
        case let .group(members): size = members.reduce(0) { $0 + $1.size }
        default: return .success([])
        }
        var output = [UInt8](repeating: 0, count: size)
        var written = 0
        var failure: WIMError?
        item.input.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                for chunk in item.chunks {
                    if chunk.raw {
                        UnsafeMutableRawBufferPointer(rebasing: out[written..<(written + chunk.size)])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: input[chunk.start..<(chunk.start + chunk.size)]))
                        written += chunk.size
                        continue
                    }
                    do throws(DecompressionError) {
                        try decoders.decode(compression, chunkSize: chunkSize,
                                            UnsafeRawBufferPointer(rebasing: input[chunk.start..<(chunk.start + chunk.stored)]),
                                            into: UnsafeMutableRawBufferPointer(rebasing: out[written..<(written + chunk.size)]))
                    } catch {
                        failure = .pipable(offset: chunk.offset + UInt64(max(0, error.offset)), reason: "corrupt chunk \(chunk.index): \(error.reason)")
                        return
                    }
                    written += chunk.size
                }
            }
        }
        if let failure { return .failure(failure) }
        return .success(output)
    }
}

/// The stream handed to its reading thread, which alone uses it until it has pushed
/// `.finished` (the caller waits for that item before it returns).
private struct UnsafeStream: @unchecked Sendable {
    let value: PipableStream
    init(_ value: PipableStream) { self.value = value }
}
