import Foundation
import Primitives
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Whoever uses a session's blocks: an apply of a WIM, a raw image onto a disk. The receiver
/// calls it from one thread. The same shape as `ApplyTarget`: the receiver owns the order.
public protocol MulticastBlockConsumer: AnyObject {
    /// The blocks wanted at the start (a WIM apply wants only those holding its image's data).
    func neededBlocks(_ manifest: BlockManifest) throws -> [Bool]
    /// A block whose SHA-256 matched the manifest. Says whether it was taken and which blocks,
    /// taken before, it had to let go (they are wanted again: a later pass brings them).
    func take(_ block: Int, _ bytes: UnsafeRawBufferPointer) throws -> MulticastBlockTaken
    /// Called once every wanted block was taken.
    func finish() throws
}

public struct MulticastBlockTaken: Sendable {
    /// False: the consumer cannot hold it now (its memory is full); it stays wanted.
    public var taken: Bool
    public var wantedAgain: [Int]
    public init(taken: Bool, wantedAgain: [Int] = []) { self.taken = taken; self.wantedAgain = wantedAgain }
}

/// Where missed blocks are fetched from by unicast: the same file through HTTP Range requests.
public protocol MulticastRangeSource: AnyObject, Sendable {
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
}

public struct MulticastReceiverOptions: Sendable {
    /// IPv4 address of the interface to join on; the default route's when nil.
    public var interfaceAddress: String?
    /// Seconds to wait for the sender before fetching everything by HTTP.
    public var waitSeconds: Double = 5
    /// Seconds of silence, once the sender was heard, before fetching the rest by HTTP.
    public var silenceSeconds: Double = 5
    /// Bytes of incomplete blocks kept for a later pass to complete (beyond it, a new block
    /// is not begun until some finish or are repaired).
    public var partialBytesLimit = 256 << 20
    /// Bytes of verified blocks waiting for the consumer (beyond it, a block is dropped and
    /// comes again on a later pass: a slow disk never slows the session).
    public var queuedBytesLimit = 96 << 20
    /// A block this many passes left incomplete gets its holes by HTTP when the next pass
    /// begins: at 5% loss a 1 MiB block of 745 datagrams almost never arrives whole in one
    /// pass, but after two its few holes are cheap to fetch (a repair after one pass would
    /// fetch nearly every block again, dozens of holes each).
    public var repairAfterPasses = 2
    /// Seconds a receiver waits for a session that is heard but does not start (its sender
    /// waiting for machines that never come) before fetching everything by HTTP.
    public var startWaitSeconds: Double = 900

    /// The limits above, smaller on a machine with little free memory (a boot environment
    /// lives in RAM): at most an eighth of what is free for incomplete blocks, a sixteenth for
    /// the queue.
    public init() {
        let free = availableMemory()
        partialBytesLimit = max(16 << 20, min(partialBytesLimit, free / 8))
        queuedBytesLimit = max(8 << 20, min(queuedBytesLimit, free / 16))
    }
}

/// Bytes of memory free now (physical pages the kernel calls available).
public func availableMemory() -> Int {
    let pages = sysconf(Int32(_SC_AVPHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
    guard pages > 0, size > 0 else { return 1 << 30 }
    return pages * size
}

/// What a receive did, for the step's log and the lab's checks.
public struct MulticastReceiveSummary: Sendable, Codable {
    public var blocks = 0
    public var blocksByMulticast = 0
    public var blocksByHTTP = 0
    public var bytesByMulticast: UInt64 = 0
    public var bytesByHTTP: UInt64 = 0
    /// A WIM's header, tables and metadata, read by HTTP before the blocks (not in `bytesByHTTP`).
    public var tableBytesByHTTP: UInt64 = 0
    public var datagrams: UInt64 = 0
    public var duplicateDatagrams: UInt64 = 0
    public var corruptBlocks = 0
    /// Verified blocks dropped because the consumer was behind (they came again).
    public var droppedBehind = 0
    public var repairs = 0
    public var fellBack = false
    public var fallbackReason: String?
    public var passesSeen = 0
    public var seconds = 0.0
}

public enum MulticastReceiverEvent: Sendable {
    /// The sender was heard (its address), first time.
    case heard(String)
    /// Nothing (more) comes from the group: the rest comes by HTTP; the reason.
    case fellBack(String)
    /// Blocks taken of those wanted, bytes by multicast and by HTTP so far.
    case progress(blocksDone: Int, blocksWanted: Int, bytesByMulticast: UInt64, bytesByHTTP: UInt64)
}

/// Receives one session: joins the group, assembles and verifies blocks, tells the sender
/// (heartbeats) what it still needs, hands verified blocks to the consumer, and falls back to
/// HTTP Range reads when the group is silent or a block keeps arriving incomplete.
public final class MulticastReceiver: Sendable {
    public let descriptor: MulticastSessionDescriptor
    public let manifest: BlockManifest
    public let options: MulticastReceiverOptions
    private let session: UInt64
    private let receiverID: UInt64
    private let group: UDPAddress

    public init(descriptor: MulticastSessionDescriptor, manifest: BlockManifest, options: MulticastReceiverOptions = .init()) throws(MulticastError) {
        if let problem = descriptor.problems.first { throw .badSetting("the multicast session is unusable: \(problem)") }
        guard manifest.fileSize == descriptor.size else {
            throw .badManifest(name: descriptor.manifest, reason: "it describes \(manifest.fileSize) bytes; the session's file is \(descriptor.size)")
        }
        guard let session = parseSessionID(descriptor.session), let receiver = parseSessionID(descriptor.receiver),
              let group = UDPAddress(descriptor.group, port: descriptor.port) else {
            throw .badSetting("the multicast session's ids or group are unusable")
        }
        self.descriptor = descriptor
        self.manifest = manifest
        self.options = options
        self.session = session
        self.receiverID = receiver
        self.group = group
    }

    /// What the receiving thread and the consuming thread share.
    private struct Shared {
        var wanted: [Bool]
        var wantedCount: Int
        /// Verified blocks for the consumer, in arrival order.
        var queue: [(block: Int, bytes: [UInt8])] = []
        var queuedBytes = 0
        var queuedSet = Set<Int>()
        /// Blocks the consuming thread is fetching by HTTP.
        var fetching = Set<Int>()
        /// Incomplete blocks the receiving thread handed over for an HTTP repair.
        var repairs: [(block: Int, partial: Partial)] = []
        var sender: UDPAddress?
        var lastHeard: Double?
        /// When the first data datagram came (nil: only announces so far).
        var firstData: Double?
        var stop = false
        var finished = false
        var failure: (any Error)?
        var summary = MulticastReceiveSummary()
    }

    /// The state both threads reach, behind one lock.
    private final class SharedState: @unchecked Sendable {
        private let state: Mutex<Shared>
        init(_ initial: Shared) { state = Mutex(initial) }
        func withLock<T>(_ body: (inout Shared) throws -> T) rethrows -> T { try state.withLock { try body(&$0) } }
    }

    struct Partial {
        var bytes: [UInt8]
        var received: [Bool]
        var count = 0
        var passes = Set<Int>()
    }

    /// Receives until the consumer has every block it wants. Throws when neither multicast nor
    /// HTTP can deliver, or the consumer fails.
    /// `interrupt` is asked between blocks and while waiting (about every 50 ms): what it
    /// throws ends the receive (a signal, a step's timeout), even before the session starts.
    public func run(into consumer: MulticastBlockConsumer, http: MulticastRangeSource?,
                    interrupt: (() throws -> Void)? = nil,
                    events: @escaping @Sendable (MulticastReceiverEvent) -> Void = { _ in }) throws -> MulticastReceiveSummary {
        let started = monotonicSeconds()
        let initial = try consumer.neededBlocks(manifest)
        guard initial.count == manifest.blockCount else { throw MulticastError.badSetting("the consumer's block list does not fit the manifest") }
        let shared = SharedState(Shared(wanted: initial, wantedCount: initial.filter { $0 }.count))
        shared.withLock { $0.summary.blocks = $0.wantedCount }
        let wake = DispatchSemaphore(value: 0)
        let socket = try MulticastSocket.receiver(group: group, interface: options.interfaceAddress)

        let listenerDone = DispatchSemaphore(value: 0)
        let listener = Thread { [self] in
            do { try listen(socket, shared, wake, events) } catch {
                shared.withLock { if $0.failure == nil { $0.failure = error } }
            }
            wake.signal()
            listenerDone.signal()
        }
        listener.start()
        defer {
            shared.withLock { $0.stop = true }
            listenerDone.wait()
        }

        var lastProgress = 0.0
        var fellBack = false
        while true {
            if let failure = shared.withLock({ $0.failure }) { throw failure }
            try interrupt?()
            // Verified blocks first: they cost nothing more to get.
            if let item = shared.withLock({ s -> (block: Int, bytes: [UInt8])? in
                guard !s.queue.isEmpty else { return nil }
                let item = s.queue.removeFirst()
                s.queuedBytes -= item.bytes.count
                s.queuedSet.remove(item.block)
                return item
            }) {
                try deliver(item.block, item.bytes, consumer, shared, httpBytes: 0)
            } else if shared.withLock({ $0.wantedCount == 0 }) {
                break
            } else if let repair = shared.withLock({ $0.repairs.isEmpty ? nil : $0.repairs.removeFirst() }) {
                try self.repair(repair.block, repair.partial, http, consumer, shared)
            } else if let reason = fallbackReason(shared, started: started) {
                if !fellBack {
                    fellBack = true
                    shared.withLock { $0.summary.fellBack = true; $0.summary.fallbackReason = reason }
                    events(.fellBack(reason))
                }
                guard let http else { throw MulticastError.incomplete(blocksMissing: shared.withLock { $0.wantedCount }, reason: reason + "; no HTTP source to fall back to") }
                try fetchNext(http, consumer, shared)
            } else {
                _ = wake.wait(timeout: .now() + .milliseconds(50))
            }
            let now = monotonicSeconds()
            if now - lastProgress >= 1 {
                lastProgress = now
                let (done, total, bm, bh) = shared.withLock { ($0.summary.blocks - $0.wantedCount, $0.summary.blocks,
                                                              $0.summary.bytesByMulticast, $0.summary.bytesByHTTP) }
                events(.progress(blocksDone: done, blocksWanted: total, bytesByMulticast: bm, bytesByHTTP: bh))
            }
        }
        try consumer.finish()
        shared.withLock { $0.finished = true }
        let summary = shared.withLock { s -> MulticastReceiveSummary in
            var summary = s.summary
            summary.seconds = monotonicSeconds() - started
            return summary
        }
        events(.progress(blocksDone: summary.blocks, blocksWanted: summary.blocks, bytesByMulticast: summary.bytesByMulticast,
                         bytesByHTTP: summary.bytesByHTTP))
        return summary
    }

    /// Why the rest must come by HTTP now, or nil while multicast may still deliver.
    private func fallbackReason(_ shared: SharedState, started: Double) -> String? {
        let (lastHeard, fellBack, firstData) = shared.withLock { ($0.lastHeard, $0.summary.fellBack, $0.firstData) }
        if fellBack { return shared.withLock { $0.summary.fallbackReason } }
        let now = monotonicSeconds()
        guard let lastHeard else {
            return now - started >= options.waitSeconds
                ? "nothing from \(descriptor.group):\(descriptor.port) within \(Int(options.waitSeconds)) s of joining (multicast blocked or not routed here?)"
                : nil
        }
        if firstData == nil && now - started >= options.startWaitSeconds {
            return "the session was announced but did not start within \(Int(options.startWaitSeconds)) s"
        }
        return now - lastHeard >= options.silenceSeconds
            ? "the sender fell silent for \(Int(options.silenceSeconds)) s in the middle of the session" : nil
    }

    /// Hands a verified block to the consumer; `httpBytes` of it came by HTTP (all of it for a
    /// fetched block, the holes of a repaired one).
    private func deliver(_ block: Int, _ bytes: [UInt8], _ consumer: MulticastBlockConsumer, _ shared: SharedState, httpBytes: Int) throws {
        guard shared.withLock({ $0.wanted[block] }) else { return }
        let result = try bytes.withUnsafeBytes { try consumer.take(block, $0) }
        shared.withLock { s in
            if result.taken {
                s.wanted[block] = false
                s.wantedCount -= 1
                s.summary.bytesByHTTP += UInt64(httpBytes)
                s.summary.bytesByMulticast += UInt64(bytes.count - httpBytes)
                if httpBytes == bytes.count { s.summary.blocksByHTTP += 1 } else { s.summary.blocksByMulticast += 1 }
            } else {
                s.summary.droppedBehind += 1
            }
            for again in result.wantedAgain where !s.wanted[again] {
                s.wanted[again] = true
                s.wantedCount += 1
            }
        }
    }

    /// Fetches the next wanted blocks (up to 8 MiB in one request) by HTTP.
    private func fetchNext(_ http: MulticastRangeSource, _ consumer: MulticastBlockConsumer, _ shared: SharedState) throws {
        let run = shared.withLock { s -> [Int] in
            guard let first = s.wanted.indices.first(where: { s.wanted[$0] && !s.queuedSet.contains($0) }) else { return [] }
            var run = [first]
            var next = first + 1
            while next < s.wanted.count, s.wanted[next], !s.queuedSet.contains(next), run.count * manifest.blockSize < 8 << 20 {
                run.append(next); next += 1
            }
            s.fetching.formUnion(run)
            return run
        }
        guard let first = run.first, let last = run.last else { return }
        defer { shared.withLock { $0.fetching.subtract(run) } }
        let start = manifest.range(of: first).lowerBound, end = manifest.range(of: last).upperBound
        var bytes = [UInt8](repeating: 0, count: Int(end - start))
        try bytes.withUnsafeMutableBytes { try http.read(into: $0, at: start) }
        for block in run {
            let range = manifest.range(of: block)
            let piece = Array(bytes[Int(range.lowerBound - start)..<Int(range.upperBound - start)])
            guard piece.withUnsafeBytes({ manifest.matches(block, $0) }) else {
                throw MulticastError.corruptBlock(block: block, source: descriptor.source)
            }
            try deliver(block, piece, consumer, shared, httpBytes: piece.count)
        }
    }

    /// Completes a block a pass keeps leaving incomplete with Range reads of its holes only.
    private func repair(_ block: Int, _ partial: Partial, _ http: MulticastRangeSource?, _ consumer: MulticastBlockConsumer,
                        _ shared: SharedState) throws {
        defer { shared.withLock { _ = $0.fetching.remove(block) } }
        // Without an HTTP source the block simply stays wanted: a later pass brings it whole.
        guard let http else { return }
        var bytes = partial.bytes
        let base = manifest.range(of: block).lowerBound
        var fetched = 0
        for run in Self.repairRanges(partial.received, maximumRanges: 4) {
            let from = run.lowerBound * MulticastDatagram.fragmentSize
            let to = min(bytes.count, run.upperBound * MulticastDatagram.fragmentSize)
            try bytes.withUnsafeMutableBytes { raw in
                try http.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[from..<to]), at: base + UInt64(from))
            }
            fetched += to - from
        }
        guard bytes.withUnsafeBytes({ manifest.matches(block, $0) }) else {
            throw MulticastError.corruptBlock(block: block, source: descriptor.source)
        }
        shared.withLock { $0.summary.repairs += 1 }
        try deliver(block, bytes, consumer, shared, httpBytes: fetched)
    }

    /// The fragment ranges a repair fetches: every hole, in at most `maximumRanges` requests
    /// (each costs a round trip through the same congested link as the session), the holes
    /// joined across the smallest gaps first.
    static func repairRanges(_ received: [Bool], maximumRanges: Int) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var index = 0
        while index < received.count {
            guard !received[index] else { index += 1; continue }
            var end = index
            while end < received.count && !received[end] { end += 1 }
            runs.append(index..<end)
            index = end
        }
        while runs.count > max(1, maximumRanges) {
            // Join the two runs with the smallest gap between them.
            var best = 0
            for i in 1..<(runs.count - 1) where runs[i + 1].lowerBound - runs[i].upperBound < runs[best + 1].lowerBound - runs[best].upperBound {
                best = i
            }
            runs[best] = runs[best].lowerBound..<runs[best + 1].upperBound
            runs.remove(at: best + 1)
        }
        return runs
    }

    /// The receiving thread: datagrams in, blocks assembled and verified, heartbeats out.
    private func listen(_ socket: MulticastSocket, _ shared: SharedState, _ wake: DispatchSemaphore,
                        _ events: @escaping @Sendable (MulticastReceiverEvent) -> Void) throws {
        var partials: [Int: Partial] = [:]
        var partialBytes = 0
        var buffer = [UInt8](repeating: 0, count: MulticastDatagram.maximumSize + 64)
        var lastBeat = 0.0
        var passes = Set<Int>()

        func heartbeat(_ state: MulticastDatagram.Heartbeat.State) throws {
            guard let sender = shared.withLock({ $0.sender }) else { return }
            let (bitmap, count, complete) = shared.withLock { s -> ([UInt8], Int, Bool) in
                var bitmap = [UInt8](repeating: 0, count: (manifest.blockCount + 7) / 8)
                var count = 0
                for block in 0..<manifest.blockCount where s.wanted[block] && !s.queuedSet.contains(block) && !s.fetching.contains(block) {
                    bitmap[block >> 3] |= 1 << UInt8(block & 7)
                    count += 1
                }
                return (bitmap, count, s.wantedCount == 0)
            }
            let beat = MulticastDatagram.heartbeat(.init(session: session, receiver: receiverID, state: complete && state == .receiving ? .done : state,
                                                         blocksNeeded: count, needed: bitmap))
            try beat.encoded().withUnsafeBytes { try socket.send($0, to: sender) }
        }

        while true {
            let (stop, finished) = shared.withLock { ($0.stop, $0.finished) }
            if stop {
                // Tell the sender, so it drops this receiver now rather than after its timeout.
                for _ in 0..<3 { try? heartbeat(finished ? .done : .leaving) }
                return
            }
            let now = monotonicSeconds()
            if now - lastBeat >= 0.5 {
                lastBeat = now
                try heartbeat(.receiving)
            }
            guard let (count, from) = try buffer.withUnsafeMutableBytes({ try socket.receive(into: $0, timeoutMilliseconds: 100) }) else { continue }
            guard let datagram = buffer.withUnsafeBytes({ MulticastDatagram.parse(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }),
                  datagram.session == session else { continue }
            let firstTime = shared.withLock { s -> Bool in
                let first = s.sender == nil
                s.sender = from
                s.lastHeard = monotonicSeconds()
                return first
            }
            if firstTime {
                events(.heard(from.description))
                try heartbeat(.receiving)
                lastBeat = monotonicSeconds()
            }
            guard case let .data(data) = datagram else { continue }
            shared.withLock { if $0.firstData == nil { $0.firstData = monotonicSeconds() } }
            let block = data.block
            guard block < manifest.blockCount, data.fragments == manifest.fragments(of: block) else { continue }
            let length = manifest.length(of: block)
            let start = data.fragment * MulticastDatagram.fragmentSize
            guard data.payloadRange.count == min(MulticastDatagram.fragmentSize, length - start) else { continue }
            let newPass = passes.insert(data.pass).inserted
            let wanted = shared.withLock { s -> Bool in
                s.summary.datagrams += 1
                s.summary.passesSeen = passes.count
                return s.wanted[block] && !s.queuedSet.contains(block) && !s.fetching.contains(block)
            }
            if newPass && passes.count > 1 {
                // A pass ended: a block it left incomplete for the repairAfterPasses-th time
                // (a lossy link) gets its holes by HTTP; the carousel need not go round again.
                let worn = partials.filter { $0.value.passes.count >= options.repairAfterPasses && $0.value.passes.contains(data.pass) == false }
                if !worn.isEmpty {
                    for (index, partial) in worn {
                        partials[index] = nil
                        partialBytes -= partial.bytes.count
                    }
                    shared.withLock { s in
                        for (index, partial) in worn {
                            s.fetching.insert(index)
                            s.repairs.append((index, partial))
                        }
                    }
                    wake.signal()
                }
            }
            guard wanted else {
                if let dropped = partials.removeValue(forKey: block) { partialBytes -= dropped.bytes.count }
                continue
            }
            if partials[block] == nil {
                guard partialBytes + length <= options.partialBytesLimit else { continue }
                partials[block] = Partial(bytes: [UInt8](repeating: 0, count: length), received: [Bool](repeating: false, count: data.fragments))
                partialBytes += length
            }
            guard var partial = partials[block] else { continue }
            partials[block] = nil   // edited out of the dictionary: no copy of its bytes
            if partial.received[data.fragment] {
                shared.withLock { $0.summary.duplicateDatagrams += 1 }
            } else {
                partial.received[data.fragment] = true
                partial.count += 1
                buffer.withUnsafeBytes { raw in
                    partial.bytes.withUnsafeMutableBytes { out in
                        out.baseAddress!.advanced(by: start).copyMemory(from: raw.baseAddress!.advanced(by: data.payloadRange.lowerBound),
                                                                        byteCount: data.payloadRange.count)
                    }
                }
            }
            partial.passes.insert(data.pass)
            if partial.count == partial.received.count {
                partialBytes -= partial.bytes.count
                let good = partial.bytes.withUnsafeBytes { manifest.matches(block, $0) }
                let bytes = partial.bytes
                shared.withLock { s in
                    if !good {
                        // Damaged on the way, or a sender with another file: this block comes
                        // whole by HTTP (a pass would only bring the same bytes again).
                        s.summary.corruptBlocks += 1
                        s.fetching.insert(block)
                        s.repairs.append((block, Partial(bytes: [UInt8](repeating: 0, count: length),
                                                         received: [Bool](repeating: false, count: data.fragments))))
                        return
                    }
                    guard s.queuedBytes + bytes.count <= options.queuedBytesLimit else { s.summary.droppedBehind += 1; return }
                    s.queue.append((block, bytes))
                    s.queuedBytes += bytes.count
                    s.queuedSet.insert(block)
                }
                wake.signal()
            } else {
                partials[block] = partial
            }
        }
    }
}
