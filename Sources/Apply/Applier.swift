import Failures
import Synchronization
import WIM

/// Set to a signal number (SIGTERM, SIGINT) by the tool's signal handler to stop an apply at the
/// next safe point: between items of the structure pass and between blobs, never inside a
/// libntfs-3g call, so the target can still unmount cleanly. An atomic, because a signal
/// handler may do nothing else (no locks, no allocation).
public let applyStopSignal = Atomic<Int32>(0)

/// The apply stopped because `applyStopSignal` was set.
public struct ApplyInterrupted: Error, CustomStringConvertible {
    public var signal: Int32
    public var description: String { "interrupted by signal \(signal)" }
}

/// Throws `ApplyInterrupted` once a stop was requested; cheap enough to call per item.
@inline(__always)
public func checkApplyStop() throws {
    let signal = applyStopSignal.load(ordering: .relaxed)
    if signal != 0 { throw ApplyInterrupted(signal: signal) }
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
    /// Where the blobs come from: a WIM file read in parallel, or a pipable WIM stream.
    public enum Source {
        case archive(WIMArchive)
        case stream(PipableStream)
    }

    public var source: Source
    public var threads: Int = availableProcessorCount()
    public var verifyHashes = true

    public init(archive: WIMArchive) { source = .archive(archive) }
    public init(stream: PipableStream) { source = .stream(stream) }

    @discardableResult
    public func apply(_ plan: ApplyPlan, to target: ApplyTarget,
                      progress: ((ApplyProgress) -> Void)? = nil) throws -> ApplySummary {
        // With a file, every blob must be present before anything is written.
        var needed: [BlobDescriptor] = []
        if case let .archive(archive) = source {
            needed.reserveCapacity(plan.blobTargets.count)
            for hash in plan.blobTargets.keys {
                guard let blob = archive.blobs[hash] else {
                    throw WIMError.missingBlob(path: archive.path, blob: hash, usedBy: plan.users(of: hash).first ?? "a file")
                }
                needed.append(blob)
            }
        }
        let total = plan.items.count
        try checkApplyStop()
        try target.createStructure(plan) { progress?(.structure(itemsDone: $0, itemsTotal: total)) }

        final class Forwarder: BlobSink {
            let target: ApplyTarget
            let plan: ApplyPlan
            init(_ target: ApplyTarget, _ plan: ApplyPlan) { self.target = target; self.plan = plan }
            func beginBlob(_ blob: BlobDescriptor) throws {
                try checkApplyStop()
                try target.beginBlob(blob, targets: plan.blobTargets[blob.hash] ?? [], plan: plan)
            }
            func blobData(_ data: UnsafeRawBufferPointer) throws { try target.blobData(data) }
            func endBlob(_ blob: BlobDescriptor) throws { try target.endBlob() }
        }
        let sink = Forwarder(target, plan)
        switch source {
        case let .archive(archive):
            var reader = BlobReader(archive: archive, threads: threads)
            reader.verifyHashes = verifyHashes
            reader.describeUsers = { plan.users(of: $0) }
            try reader.read(needed, into: sink) { progress?(.data($0)) }
        case let .stream(stream):
            // Sizes are learnt as blobs arrive; the plan's total comes from the metadata.
            var sizes: [SHA1Digest: UInt64] = [:]
            for hash in plan.blobTargets.keys { sizes[hash] = 0 }
            try stream.readBlobs(sizes, into: sink, verify: verifyHashes, describeUsers: { plan.users(of: $0) }) { progress?(.data($0)) }
        }
        try checkApplyStop()
        progress?(.metadata)
        try target.finish(plan)
        return target.summary
    }
}

extension ApplyInterrupted: ClassifiedError {
    public var failureKind: FailureKind { .interrupted }
}
