import WIM

/// Where an image is written. An apply runs in three passes, as wimlib's does: create the
/// structure (directories, files, links), fill streams blob by blob in storage order, then set
/// the metadata that writing would disturb (times). One implementation per kind of target.
public protocol ApplyTarget: AnyObject {
    /// Creates directories, empty files and hard links for every planned item, stopping between
    /// items once `checkApplyStop(stop)` throws.
    func createStructure(_ plan: ApplyPlan, stop: ApplyStop?, progress: (Int) -> Void) throws
    /// A blob is about to arrive for these streams.
    func beginBlob(_ blob: BlobDescriptor, targets: [StreamTarget], plan: ApplyPlan) throws
    func blobData(_ data: UnsafeRawBufferPointer) throws
    func endBlob() throws
    /// Sets times and any metadata that must come after the data.
    func finish(_ plan: ApplyPlan) throws
    /// What could not be written, and why.
    var summary: ApplySummary { get }
    /// Items (by index in the plan) whose data `createStructure` found already on the target,
    /// whole and equal to the image's: the driver sends their data streams no blob.
    var keptWhole: Set<Int> { get }
}

extension ApplyTarget {
    public var keptWhole: Set<Int> { [] }
}

/// The end report of an apply: counts, and everything the target could not hold, by reason.
public struct ApplySummary: Sendable {
    public var directories = 0
    public var files = 0
    public var hardLinks = 0
    public var symlinks = 0
    public var bytesWritten: UInt64 = 0
    /// Files left in place because their data already equalled the image's (an apply going on
    /// after an interruption), and the bytes not written again for them.
    public var filesKeptWhole = 0
    public var bytesKeptWhole: UInt64 = 0
    public var xattrsWritten = 0
    /// Reason → paths (image paths) that were affected.
    public var notKept: [String: [String]] = [:]

    public init() {}

    public mutating func note(_ reason: String, _ path: String) {
        notKept[reason, default: []].append(path)
    }
}
