import WIM

/// Progress of an apply, by phase.
public enum ApplyProgress: Sendable {
    case structure(itemsDone: Int, itemsTotal: Int)
    case data(ReadProgress)
    case metadata
}

/// Drives an apply: plans the image, has the target create the structure, streams every needed
/// blob once in storage order into all its destinations, then lets the target set metadata.
public struct Applier {
    public var archive: WIMArchive
    public var threads: Int = availableProcessorCount()
    public var verifyHashes = true

    public init(archive: WIMArchive) { self.archive = archive }

    @discardableResult
    public func apply(_ plan: ApplyPlan, to target: ApplyTarget,
                      progress: ((ApplyProgress) -> Void)? = nil) throws -> ApplySummary {
        // Every blob must be present before anything is written.
        var needed: [BlobDescriptor] = []
        needed.reserveCapacity(plan.blobTargets.count)
        for hash in plan.blobTargets.keys {
            guard let blob = archive.blobs[hash] else {
                throw WIMError.missingBlob(path: archive.path, blob: hash, usedBy: plan.users(of: hash).first ?? "a file")
            }
            needed.append(blob)
        }
        let total = plan.items.count
        try target.createStructure(plan) { progress?(.structure(itemsDone: $0, itemsTotal: total)) }

        final class Forwarder: BlobSink {
            let target: ApplyTarget
            let plan: ApplyPlan
            init(_ target: ApplyTarget, _ plan: ApplyPlan) { self.target = target; self.plan = plan }
            func beginBlob(_ blob: BlobDescriptor) throws {
                try target.beginBlob(blob, targets: plan.blobTargets[blob.hash] ?? [], plan: plan)
            }
            func blobData(_ data: UnsafeRawBufferPointer) throws { try target.blobData(data) }
            func endBlob(_ blob: BlobDescriptor) throws { try target.endBlob() }
        }
        var reader = BlobReader(archive: archive, threads: threads)
        reader.verifyHashes = verifyHashes
        reader.describeUsers = { plan.users(of: $0) }
        try reader.read(needed, into: Forwarder(target, plan)) { progress?(.data($0)) }
        progress?(.metadata)
        try target.finish(plan)
        return target.summary
    }
}
