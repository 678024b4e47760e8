import Apply
import Multicast
import Synchronization
import WIM

/// The blocks a session has delivered so far, readable as the WIM file they are cut from:
/// the archive reads its header, tables and metadata (before any block is here) through HTTP,
/// and a blob only once the delivery has every block its resource spans.
public final class MulticastBlockStore: RandomAccessSource, @unchecked Sendable {
    public let manifest: BlockManifest
    private let http: MulticastRangeSource
    private let blocks = Mutex<[Int: [UInt8]]>([:])
    private let httpReads = Atomic<Int>(0)
    private let httpBytes = Atomic<UInt64>(0)

    public init(manifest: BlockManifest, http: MulticastRangeSource) {
        self.manifest = manifest
        self.http = http
    }

    public var size: UInt64 { manifest.fileSize }
    /// Reads that had to go to HTTP (the WIM's tables and metadata, nothing else).
    public var readsByHTTP: Int { httpReads.load(ordering: .relaxed) }
    /// Bytes those reads fetched.
    public var bytesByHTTP: UInt64 { httpBytes.load(ordering: .relaxed) }
    public var heldBytes: Int { blocks.withLock { $0.values.reduce(0) { $0 + $1.count } } }

    func put(_ block: Int, _ bytes: UnsafeRawBufferPointer) { blocks.withLock { $0[block] = Array(bytes) } }
    func remove(_ block: Int) { _ = blocks.withLock { $0.removeValue(forKey: block) } }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard !buffer.isEmpty else { return }
        let end = offset + UInt64(buffer.count)
        let first = Int(offset / UInt64(manifest.blockSize)), last = Int((end - 1) / UInt64(manifest.blockSize))
        let copied = blocks.withLock { held -> Bool in
            guard (first...last).allSatisfy({ held[$0] != nil }) else { return false }
            for block in first...last {
                let range = manifest.range(of: block)
                let from = max(range.lowerBound, offset), to = min(range.upperBound, end)
                held[block]!.withUnsafeBytes { source in
                    UnsafeMutableRawBufferPointer(rebasing: buffer[Int(from - offset)..<Int(to - offset)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(from - range.lowerBound)..<Int(to - range.lowerBound)]))
                }
            }
            return true
        }
        if copied { return }
        httpReads.add(1, ordering: .relaxed)
        httpBytes.add(UInt64(buffer.count), ordering: .relaxed)
        try http.read(into: buffer, at: offset)
    }
}

/// A WIM applied from a multicast session: blobs are read (decompressed, SHA-1 checked,
/// written) as soon as every block of their resource has arrived, in whatever order the
/// carousel brings them; blocks are let go once no resource still waiting needs them.
/// Memory: the blocks of resources not yet whole, at most `holdLimit` bytes (at least the
/// largest resource); beyond it the blocks of the resource furthest from whole are let go and
/// wanted again (a later pass brings them).
public final class MulticastWIMDelivery: BlobDelivery, MulticastBlockConsumer {
    public let receiver: MulticastReceiver
    public let store: MulticastBlockStore
    public let archive: WIMArchive
    public let http: MulticastRangeSource
    public var events: @Sendable (MulticastReceiverEvent) -> Void
    /// Asked while blocks are awaited: what it throws stops the apply (see `checkApplyStop`).
    public var interrupt: (() throws -> Void)?
    public private(set) var summary: MulticastReceiveSummary?
    private let holdLimit: Int

    // Set for one deliver call.
    private var waiting: [Int: (blobs: [BlobDescriptor], blocks: ClosedRange<Int>, missing: Int)] = [:]
    private var users: [Int: Set<Int>] = [:]
    private var read: (([BlobDescriptor]) throws -> Void)?

    public init(receiver: MulticastReceiver, archive: WIMArchive, store: MulticastBlockStore, http: MulticastRangeSource,
                holdLimit: Int = 384 << 20, events: @escaping @Sendable (MulticastReceiverEvent) -> Void = { _ in }) {
        self.receiver = receiver
        self.archive = archive
        self.store = store
        self.http = http
        self.events = events
        // A quarter of the free memory at most, but always room for the largest resource (else
        // it could never come whole).
        let largest = archive.resources.map { Int(clamping: $0.sizeInWIM) }.max() ?? 0
        self.holdLimit = max(min(holdLimit, availableMemory() / 4), largest + 2 * store.manifest.blockSize)
    }

    public func deliver(_ blobs: [BlobDescriptor], read: ([BlobDescriptor]) throws -> Void) throws {
        let manifest = store.manifest
        waiting = [:]
        users = [:]
        for blob in blobs {
            let resource = archive.resources[blob.resource]
            guard resource.part == 0 else {
                throw MulticastError.badSetting("a split WIM cannot be received from a multicast session (blob \(blob.hash) is in part \(resource.part + 1))")
            }
            if waiting[blob.resource] == nil {
                let first = Int(resource.offset / UInt64(manifest.blockSize))
                let last = Int((max(resource.end, resource.offset + 1) - 1) / UInt64(manifest.blockSize))
                waiting[blob.resource] = ([], first...last, last - first + 1)
                for block in first...last { users[block, default: []].insert(blob.resource) }
            }
            waiting[blob.resource]!.blobs.append(blob)
        }
        try withoutActuallyEscaping(read) { read in
            self.read = read
            defer { self.read = nil }
            var received = try receiver.run(into: self, http: http, interrupt: interrupt, events: events)
            received.tableBytesByHTTP = store.bytesByHTTP
            summary = received
        }
    }

    public func neededBlocks(_ manifest: BlockManifest) throws -> [Bool] {
        (0..<manifest.blockCount).map { users[$0] != nil }
    }

    public func take(_ block: Int, _ bytes: UnsafeRawBufferPointer) throws -> MulticastBlockTaken {
        guard let resources = users[block], !resources.isEmpty else { return MulticastBlockTaken(taken: true) }
        var wantedAgain: [Int] = []
        if store.heldBytes + bytes.count > holdLimit {
            wantedAgain = letGo(except: resources)
            if store.heldBytes + bytes.count > holdLimit { return MulticastBlockTaken(taken: false, wantedAgain: wantedAgain) }
        }
        store.put(block, bytes)
        var whole: [Int] = []
        for resource in resources {
            waiting[resource]!.missing -= 1
            if waiting[resource]!.missing == 0 { whole.append(resource) }
        }
        guard !whole.isEmpty, let read else { return MulticastBlockTaken(taken: true, wantedAgain: wantedAgain) }
        let blobs = whole.flatMap { waiting[$0]!.blobs }
        try read(blobs)
        for resource in whole {
            guard let done = waiting.removeValue(forKey: resource) else { continue }
            for b in done.blocks {
                users[b]?.remove(resource)
                if users[b]?.isEmpty == true {
                    users[b] = nil
                    store.remove(b)
                }
            }
        }
        return MulticastBlockTaken(taken: true, wantedAgain: wantedAgain)
    }

    /// Lets go of the held blocks of the waiting resource furthest from whole (not one of
    /// `keep`'s): they are wanted again. Returns those blocks.
    private func letGo(except keep: Set<Int>) -> [Int] {
        guard let entry = waiting.filter({ !keep.contains($0.key) && $0.value.missing < $0.value.blocks.count })
            .max(by: { $0.value.missing < $1.value.missing })?.value else { return [] }
        var released: [Int] = []
        for block in entry.blocks {
            // Only blocks held: a missing one is already wanted.
            guard store.holds(block) else { continue }
            store.remove(block)
            released.append(block)
            for resource in users[block] ?? [] { waiting[resource]?.missing += 1 }
        }
        return released
    }

    public func finish() throws {
        guard waiting.isEmpty else {
            throw MulticastError.incomplete(blocksMissing: waiting.values.reduce(0) { $0 + $1.missing },
                                            reason: "\(waiting.count) resources of the WIM never came whole")
        }
    }
}

extension MulticastBlockStore {
    func holds(_ block: Int) -> Bool { blocks.withLock { $0[block] != nil } }
}
