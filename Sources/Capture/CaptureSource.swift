#if canImport(Glibc)
import Glibc
#endif
import Digests
import Failures
import WIM

/// Where an image is read from for a capture. A capture runs in passes, as an apply does: the
/// source lists the whole tree with each entry's metadata (no file data yet), then the driver
/// has it stream each file's data once, in tree order, into the writer. One implementation per
/// kind of source (a directory now; an NTFS volume later).
public protocol CaptureSource: AnyObject {
    /// Pass 1: every entry, the root first, each directory's children listed by index.
    func scan(progress: (Int) -> Void) throws -> [CaptureItem]
    /// Pass 2: the unnamed data stream of a regular file, in pieces, in order.
    func readData(of item: CaptureItem, into consume: (UnsafeRawBufferPointer) throws -> Void) throws
    /// What could not be captured, and why.
    var summary: CaptureSummary { get }
}

/// One entry as a capture source describes it.
public struct CaptureItem: Sendable {
    /// Path in the source relative to its root ("" for the root), for reading and messages.
    public var path: String
    public var name: String
    public var shortName: String = ""
    public var attributes: FileAttributes
    public var creationTime: UInt64 = 0
    public var lastAccessTime: UInt64 = 0
    public var lastWriteTime: UInt64 = 0
    public var securityDescriptor: [UInt8]?
    public var objectID: [UInt8]?
    /// Size of the unnamed data stream, read in pass 2; nil for directories and reparse points.
    public var dataSize: UInt64?
    /// For reparse points: the tag, the reparse data (without its 8-byte header) and its flags.
    public var reparse: (tag: UInt32, data: [UInt8], flags: UInt16)?
    /// Named data streams, small enough to be held here.
    public var namedStreams: [(name: String, data: [UInt8])] = []
    /// Names of one file share a non-zero key; only the first has its data read.
    public var linkKey: UInt64 = 0
    public var children: [Int] = []

    public init(path: String, name: String, attributes: FileAttributes) {
        self.path = path
        self.name = name
        self.attributes = attributes
    }

    public var isDirectory: Bool { attributes.contains(.directory) && !attributes.contains(.reparsePoint) }
}

/// The end report of a capture: counts, and everything the source could not capture, by reason.
public struct CaptureSummary: Sendable {
    public var directories = 0
    public var files = 0
    public var hardLinks = 0
    public var symlinks = 0
    /// Bytes of file data read, and of it the bytes not stored again (duplicates).
    public var bytesRead: UInt64 = 0
    public var duplicateBytes: UInt64 = 0
    public var blobs = 0
    public var wimSize: UInt64 = 0
    /// Reason → paths (source paths) that were affected.
    public var notKept: [String: [String]] = [:]

    public init() {}

    public mutating func note(_ reason: String, _ path: String) {
        notKept[reason, default: []].append(path)
    }
}

/// The capture stopped because `Capturer.stopRequested` answered a signal; nothing was left.
public struct CaptureInterrupted: Error, CustomStringConvertible, ClassifiedError {
    public var signal: Int32
    public var description: String { "interrupted by signal \(signal); the unfinished WIM was removed" }
    public var failureKind: FailureKind { .interrupted }
}

/// Progress of a capture, by phase.
public enum CaptureProgress: Sendable {
    case scan(entries: Int)
    case data(bytesDone: UInt64, bytesTotal: UInt64)
    case metadata
}

/// Drives a capture: has the source list the tree, streams every file's data once into the
/// writer (duplicates are dropped by SHA-1 there), stores reparse data and named streams, then
/// writes the image's metadata and finishes the WIM. Any failure removes the unfinished file.
/// `captureImage` does all but the finishing (append, update), `storeTree` only the data.
public struct Capturer {
    public var threads: Int = availableProcessorCount()
    /// Asked between files and between pieces of data: a non-zero answer (a signal number)
    /// stops the capture, which removes the unfinished WIM and throws `CaptureInterrupted`.
    public var stopRequested: (() -> Int32)?

    public init() {}

    /// Captures one image into a new WIM and finishes it.
    @discardableResult
    public func capture(_ source: CaptureSource, to writer: WIMWriter, info: WIMWriter.ImageInfo,
                        progress: ((CaptureProgress) -> Void)? = nil) throws -> CaptureSummary {
        do {
            var summary = try captureImage(source, into: writer, info: info, progress: progress)
            try writer.finish()
            var st = stat()
            if stat(writer.destination, &st) == 0 { summary.wimSize = UInt64(st.st_size) }
            return summary
        } catch {
            writer.abort()
            throw error
        }
    }

    /// Captures one image as the writer's next image without finishing the WIM (the caller
    /// finishes or aborts it).
    public func captureImage(_ source: CaptureSource, into writer: WIMWriter, info: WIMWriter.ImageInfo,
                             progress: ((CaptureProgress) -> Void)? = nil) throws -> CaptureSummary {
        let (tree, bytesRead) = try storeTree(source, into: writer, progress: progress)
        progress?(.metadata)
        try writer.addImage(tree, info: info)
        var summary = source.summary
        summary.bytesRead = bytesRead
        summary.duplicateBytes = writer.duplicateBytes
        summary.blobs = writer.blobCount
        return summary
    }

    /// Lists the source and stores all its data in the writer; returns the tree (entry 0 the
    /// source's root) for the caller to make an image of or graft into one.
    public func storeTree(_ source: CaptureSource, into writer: WIMWriter,
                          progress: ((CaptureProgress) -> Void)? = nil) throws -> (tree: ImageTree, bytesRead: UInt64) {
        let items = try source.scan { progress?(.scan(entries: $0)) }
        guard let root = items.first, root.isDirectory else { throw WIMWriteError.misuse("a capture source must list its root directory first") }
        var linkData: [UInt64: SHA1Digest] = [:]
        var seenLinks = Set<UInt64>()
        let total = items.reduce(UInt64(0)) { total, item in
            item.linkKey != 0 && !seenLinks.insert(item.linkKey).inserted ? total : total + (item.dataSize ?? 0)
        }
        var done: UInt64 = 0
        var bytesRead: UInt64 = 0
        var tree = ImageTree(entries: [])
        tree.entries.reserveCapacity(items.count)
        var descriptorIDs: [[UInt8]: Int32] = [:]

        func checkStop() throws {
            if let signal = stopRequested?(), signal != 0 { throw CaptureInterrupted(signal: signal) }
        }
        for item in items {
            try checkStop()
            var entry = ImageTree.Entry(name: item.name, attributes: item.attributes)
            entry.shortName = item.shortName
            entry.creationTime = item.creationTime
            entry.lastAccessTime = item.lastAccessTime
            entry.lastWriteTime = item.lastWriteTime
            entry.objectID = item.objectID
            entry.children = item.children
            entry.hardLinkGroup = item.linkKey
            if let sd = item.securityDescriptor {
                if let id = descriptorIDs[sd] {
                    entry.securityID = id
                } else {
                    let id = Int32(tree.securityDescriptors.count)
                    tree.securityDescriptors.append(sd)
                    descriptorIDs[sd] = id
                    entry.securityID = id
                }
            }
            let label = item.path.isEmpty ? "/" : item.path
            if let size = item.dataSize, size > 0 {
                if item.linkKey != 0, let hash = linkData[item.linkKey] {
                    entry.dataHash = hash
                } else {
                    try writer.beginBlob(size: size, source: label)
                    try source.readData(of: item) { piece in
                        try checkStop()
                        try writer.blobData(piece)
                        done += UInt64(piece.count)
                        progress?(.data(bytesDone: done, bytesTotal: total))
                    }
                    entry.dataHash = try writer.endBlob()
                    bytesRead += size
                    if item.linkKey != 0 { linkData[item.linkKey] = entry.dataHash }
                }
            }
            if let reparse = item.reparse {
                entry.reparseTag = reparse.tag
                entry.reparseFlags = reparse.flags
                entry.reparseHash = try writer.addBlob(reparse.data, source: label)
            }
            for stream in item.namedStreams {
                entry.namedStreams.append(NamedStream(name: stream.name, hash: try writer.addBlob(stream.data, source: label + ":" + stream.name)))
            }
            tree.entries.append(entry)
        }
        return (tree, bytesRead)
    }
}
