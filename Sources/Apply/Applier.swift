import Digests
import Failures
import Synchronization
import WIM

/// Set to a signal number (SIGTERM, SIGINT) by the tool's signal handler to stop an apply at the
/// next safe point: between items of the structure pass and between blobs, never inside a
/// libntfs-3g call, so the target can still unmount cleanly. An atomic, because a signal
/// handler may do nothing else (no locks, no allocation). Only the signal handlers write it,
/// and nothing resets it: a stop for another reason (a step's timeout) goes through `ApplyStop`,
/// so a real SIGTERM can never be overwritten or cleared.
public let applyStopSignal = Atomic<Int32>(0)

/// A request to stop one apply at its next safe point for a reason of its own (a sequence step
/// that ran out of time), checked besides `applyStopSignal`. Whoever runs the apply owns it and
/// may clear it for the next one; the process-wide signal flag is never touched.
public final class ApplyStop: Sendable {
    private let reason = Atomic<Int32>(0)

    public init() {}

    /// Asks the apply to stop; `ApplyInterrupted.signal` will be `reason` (SIGALRM for a timeout).
    public func request(_ reason: Int32) { self.reason.store(reason, ordering: .relaxed) }

    /// Withdraws the request (the apply it was for has ended).
    public func clear() { reason.store(0, ordering: .relaxed) }

    /// The reason given to `request`, 0 when none is pending.
    public var requested: Int32 { reason.load(ordering: .relaxed) }
}

/// The apply stopped because `applyStopSignal` was set or its `ApplyStop` requested.
public struct ApplyInterrupted: Error, CustomStringConvertible {
    public var signal: Int32
    public var description: String { "interrupted by signal \(signal)" }
}

/// Throws `ApplyInterrupted` once a signal arrived or `stop` was requested (a signal first: it
/// is what the tool must report); cheap enough to call per item.
@inline(__always)
public func checkApplyStop(_ stop: ApplyStop? = nil) throws {
    let signal = applyStopSignal.load(ordering: .relaxed)
    if signal != 0 { throw ApplyInterrupted(signal: signal) }
    if let reason = stop?.requested, reason != 0 { throw ApplyInterrupted(signal: reason) }
}

/// Progress of an apply, by phase.
public enum ApplyProgress: Sendable {
    case structure(itemsDone: Int, itemsTotal: Int)
    case data(ReadProgress)
    case metadata
}

/// Drives an apply: plans the image, has the target create the structure, streams every needed
/// blob once in storage order into all its destinations, then lets the target set metadata.
public struct Applier {
    /// Where the blobs come from: a WIM file read in parallel, a pipable WIM stream, or a WIM
    /// whose bytes arrive in an order someone else decides (a multicast session's blocks).
    public enum Source {
        case archive(WIMArchive)
        case stream(PipableStream)
        case delivered(WIMArchive, BlobDelivery)
    }

    public var source: Source
    public var threads: Int = availableProcessorCount()
    public var verifyHashes = true
    /// Stops the apply at its next safe point once requested, as `applyStopSignal` does.
    public var stop: ApplyStop?

    public init(archive: WIMArchive) { source = .archive(archive) }
    public init(stream: PipableStream) { source = .stream(stream) }
    public init(archive: WIMArchive, delivery: BlobDelivery) { source = .delivered(archive, delivery) }

    @discardableResult
    public func apply(_ plan: ApplyPlan, to target: ApplyTarget,
                      progress: ((ApplyProgress) -> Void)? = nil) throws -> ApplySummary {
        // With a file, every blob must be present before anything is written.
        if let archive = source.archive {
            for hash in plan.blobTargets.keys where archive.blobs[hash] == nil {
                throw WIMError.missingBlob(path: archive.path, blob: hash, usedBy: plan.users(of: hash).first ?? "a file")
            }
        }
        let total = plan.items.count
        try checkApplyStop(stop)
        try target.createStructure(plan, stop: stop) { progress?(.structure(itemsDone: $0, itemsTotal: total)) }
        // Data the target already holds whole is not sent again; a blob no stream needs any
        // more is not even read.
        var plan = plan
        let kept = target.keptWhole
        if !kept.isEmpty {
            for (hash, targets) in plan.blobTargets {
                let left = targets.filter { !($0.kind == .data && kept.contains($0.item)) }
                plan.blobTargets[hash] = left.isEmpty ? nil : left
            }
        }
        var needed: [BlobDescriptor] = []
        if let archive = source.archive {
            needed = plan.blobTargets.keys.compactMap { archive.blobs[$0] }
        }

        final class Forwarder: BlobSink {
            let target: ApplyTarget
            let plan: ApplyPlan
            let stop: ApplyStop?
            init(_ target: ApplyTarget, _ plan: ApplyPlan, _ stop: ApplyStop?) { self.target = target; self.plan = plan; self.stop = stop }
            func beginBlob(_ blob: BlobDescriptor) throws {
                try checkApplyStop(stop)
                try target.beginBlob(blob, targets: plan.blobTargets[blob.hash] ?? [], plan: plan)
            }
            func blobData(_ data: UnsafeRawBufferPointer) throws { try target.blobData(data) }
            func endBlob(_ blob: BlobDescriptor) throws { try target.endBlob() }
        }
        let sink = Forwarder(target, plan, stop)
        switch source {
        case let .archive(archive):
            var reader = BlobReader(archive: archive, threads: threads)
            reader.verifyHashes = verifyHashes
            reader.describeUsers = { plan.users(of: $0) }
            try reader.read(needed, into: sink) { progress?(.data($0)) }
        case let .delivered(archive, delivery):
            // Batches in the delivery's order; progress counts across them.
            var reader = BlobReader(archive: archive, threads: threads)
            reader.verifyHashes = verifyHashes
            reader.describeUsers = { plan.users(of: $0) }
            let total = ReadProgress(blobsDone: 0, blobsTotal: needed.count, bytesDone: 0, bytesTotal: needed.reduce(0) { $0 + $1.size })
            var done = total
            try delivery.deliver(needed) { batch in
                try reader.read(batch, into: sink) { step in
                    var now = done
                    now.blobsDone += step.blobsDone
                    now.bytesDone += step.bytesDone
                    progress?(.data(now))
                }
                done.blobsDone += batch.count
                done.bytesDone += batch.reduce(0) { $0 + $1.size }
            }
        case let .stream(stream):
            // Sizes are learnt as blobs arrive; the plan's total comes from the metadata.
            var sizes: [SHA1Digest: UInt64] = [:]
            for hash in plan.blobTargets.keys { sizes[hash] = 0 }
            try stream.readBlobs(sizes, into: sink, verify: verifyHashes, describeUsers: { plan.users(of: $0) }) { progress?(.data($0)) }
        }
        try checkApplyStop(stop)
        progress?(.metadata)
        try target.finish(plan)
        return target.summary
    }
}

/// Blobs whose bytes arrive in an order the delivery decides (a multicast session's blocks):
/// it calls `read` with each batch of blobs whose bytes the archive can now read, until it has
/// delivered every blob of `blobs`.
public protocol BlobDelivery {
    func deliver(_ blobs: [BlobDescriptor], read: ([BlobDescriptor]) throws -> Void) throws
}

extension Applier.Source {
    var archive: WIMArchive? {
        switch self {
        case let .archive(archive), let .delivered(archive, _): return archive
        case .stream: return nil
        }
    }
}

extension ApplyInterrupted: ClassifiedError {
    public var failureKind: FailureKind { .interrupted }
}
