#if canImport(Glibc)
import Glibc
#endif
import Digests
import Failures
import WIM

/// Where an image is read from for a capture. A capture runs in passes, as an apply does: the
/// source lists the whole tree with each entry's metadata (no file data yet), then the driver
/// has it stream each stream's data once into the writer, in the order of `dataOrder` (a
/// volume's cluster numbers, so a disk is read from start to end; tree order where all are 0).
/// One implementation per kind of source (a directory, an NTFS volume).
public protocol CaptureSource: AnyObject {
    /// Pass 1: every entry, the root first, each directory's children listed by index.
    func scan(progress: (Int) -> Void) throws -> [CaptureItem]
    /// Pass 2: one data stream of a file, in pieces, in order: the unnamed one (`stream` nil)
    /// or the named stream of that name.
    func readData(of item: CaptureItem, stream: String?, into consume: (UnsafeRawBufferPointer) throws -> Void) throws
    /// What could not be captured, and why.
    var summary: CaptureSummary { get }
}

/// A named data stream as the scan lists it; its data is read in pass 2.
public struct CaptureStream: Sendable {
    public var name: String
    public var size: UInt64
    /// Where its data starts on the source's disk (a cluster number), for the read order.
    public var dataOrder: UInt64 = 0

    public init(name: String, size: UInt64, dataOrder: UInt64 = 0) {
        self.name = name
        self.size = size
        self.dataOrder = dataOrder
    }
}

/// One entry as a capture source describes it.
public struct CaptureItem: Sendable {
    /// Path in the source relative to its root ("" for the root; "/" between components), for
    /// reading and messages.
    public var path: String
    public var name: String
    public var shortName: String = ""
    public var attributes: FileAttributes
    public var creationTime: UInt64 = 0
    public var lastAccessTime: UInt64 = 0
    public var lastWriteTime: UInt64 = 0
    public var securityDescriptor: [UInt8]?
    public var objectID: [UInt8]?
    /// Size of the unnamed data stream, read in pass 2; nil for directories and reparse points
    /// without data.
    public var dataSize: UInt64?
    /// Where the unnamed stream's data starts on the source's disk, for the read order.
    public var dataOrder: UInt64 = 0
    /// For reparse points: the tag, the reparse data (without its 8-byte header) and its flags.
    public var reparse: (tag: UInt32, data: [UInt8], flags: UInt16)?
    /// Named data streams, read in pass 2 like the unnamed one.
    public var namedStreams: [CaptureStream] = []
    /// Names of one file share a non-zero key; only the first has its data read.
    public var linkKey: UInt64 = 0
    /// What the source needs to find the file again in pass 2 (an MFT record number).
    public var sourceKey: UInt64 = 0
    /// False: its data is stored uncompressed ([CompressionExclusionList]).
    public var compress = true
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
    /// A file whose data cannot be read (gone since the scan, an I/O error) is left out of the
    /// image and listed in the summary instead of failing the capture (wimlib's
    /// --continue-on-error). Errors writing the WIM still fail it.
    public var continueOnError = false

    public init() {}

    /// Captures one image into a new WIM and finishes it; `boot` marks it the bootable image.
    @discardableResult
    public func capture(_ source: CaptureSource, to writer: WIMWriter, info: WIMWriter.ImageInfo, boot: Bool = false,
                        progress: ((CaptureProgress) -> Void)? = nil) throws -> CaptureSummary {
        do {
            var summary = try captureImage(source, into: writer, info: info, progress: progress)
            if boot { try writer.setBootImage(writer.imageCount) }
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
        let stored = try storeTree(source, into: writer, progress: progress)
        var info = info
        // A Windows image is described as wimlib describes it (WindowsImageDetails); what the
        // caller gave (--flags, a display name) wins.
        if info.windows == nil, let windows = WindowsImageDetails.read(items: stored.items, source: source) {
            info.windows = windows
            info.flags = info.flags ?? windows.editionID
            info.displayName = info.displayName ?? windows.productName
            info.displayDescription = info.displayDescription ?? windows.productName
        }
        progress?(.metadata)
        try writer.addImage(stored.tree, info: info)
        var summary = source.summary
        for (path, reason) in stored.unreadable { summary.note("could not be read, left out (--continue-on-error)", "\(path): \(reason)") }
        summary.files -= stored.unreadable.count
        summary.bytesRead = stored.bytesRead
        summary.duplicateBytes = writer.duplicateBytes
        summary.blobs = writer.blobCount
        return summary
    }

    /// What `storeTree` stored.
    public struct StoredTree {
        /// Entry 0 is the source's root.
        public var tree: ImageTree
        public var bytesRead: UInt64
        /// The source's listing, as its scan gave it.
        public var items: [CaptureItem]
        /// Files left out with `continueOnError`: path and reason.
        public var unreadable: [(path: String, reason: String)]
    }

    /// Lists the source and stores all its data in the writer; returns the tree for the caller
    /// to make an image of or graft into one.
    public func storeTree(_ source: CaptureSource, into writer: WIMWriter,
                          progress: ((CaptureProgress) -> Void)? = nil) throws -> StoredTree {
        let items = try source.scan { progress?(.scan(entries: $0)) }
        guard let root = items.first, root.isDirectory else { throw WIMWriteError.misuse("a capture source must list its root directory first") }
        var bytesRead: UInt64 = 0
        var tree = ImageTree(entries: [])
        tree.entries.reserveCapacity(items.count)
        var descriptorIDs: [[UInt8]: Int32] = [:]

        func checkStop() throws {
            if let signal = stopRequested?(), signal != 0 { throw CaptureInterrupted(signal: signal) }
        }
        // The metadata of every entry, and reparse data (small, held by the scan).
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
            if let reparse = item.reparse {
                entry.reparseTag = reparse.tag
                entry.reparseFlags = reparse.flags
                entry.reparseHash = try writer.addBlob(reparse.data, source: Self.label(item))
            }
            entry.namedStreams = item.namedStreams.map { NamedStream(name: $0.name, hash: .zero) }
            tree.entries.append(entry)
        }

        // Pass 2: each stream with data once (the first name of a hard-linked file reads it),
        // in the source's disk order; the tree order among equals.
        struct Work { var item: Int; var stream: Int?; var size: UInt64; var order: UInt64 }
        var work: [Work] = []
        var seenLinks = Set<UInt64>()
        for (index, item) in items.enumerated() {
            if item.linkKey != 0, !seenLinks.insert(item.linkKey).inserted { continue }
            if let size = item.dataSize, size > 0 { work.append(Work(item: index, stream: nil, size: size, order: item.dataOrder)) }
            for (s, stream) in item.namedStreams.enumerated() where stream.size > 0 {
                work.append(Work(item: index, stream: s, size: stream.size, order: stream.dataOrder))
            }
        }
        work = work.enumerated().sorted { ($0.element.order, $0.offset) < ($1.element.order, $1.offset) }.map(\.element)
        let total = work.reduce(UInt64(0)) { $0 + $1.size }
        var done: UInt64 = 0
        var unreadableLinks = Set<UInt64>()
        var unreadable: [Int: String] = [:]
        for job in work {
            try checkStop()
            let item = items[job.item]
            if unreadable[job.item] != nil { continue }
            let streamName = job.stream.map { item.namedStreams[$0].name }
            let label = Self.label(item) + (streamName.map { ":" + $0 } ?? "")
            let before = done
            // Errors from the writer (a full disk) are never skipped, only the source's.
            var writerFailed = false
            do {
                try writer.beginBlob(size: job.size, source: label, compress: item.compress)
                try source.readData(of: item, stream: streamName) { piece in
                    try checkStop()
                    do { try writer.blobData(piece) } catch {
                        writerFailed = true
                        throw error
                    }
                    done += UInt64(piece.count)
                    progress?(.data(bytesDone: done, bytesTotal: total))
                }
            } catch let error where continueOnError && !writerFailed && !(error is CaptureInterrupted) {
                try writer.discardBlob()
                unreadable[job.item] = "\(error)"
                if item.linkKey != 0 { unreadableLinks.insert(item.linkKey) }
                done = before + job.size
                continue
            }
            let hash = try writer.endBlob()
            bytesRead += job.size
            if let s = job.stream { tree.entries[job.item].namedStreams[s].hash = hash } else { tree.entries[job.item].dataHash = hash }
        }

        // The other names of hard-linked files share the first name's streams.
        var firstOfGroup: [UInt64: Int] = [:]
        for (index, item) in items.enumerated() where item.linkKey != 0 {
            guard let first = firstOfGroup[item.linkKey] else {
                firstOfGroup[item.linkKey] = index
                continue
            }
            let shared = tree.entries[first]
            tree.entries[index].dataHash = shared.dataHash
            tree.entries[index].namedStreams = shared.namedStreams
        }

        // Files that could not be read leave the image, with every other name they have.
        var leftOut: [(path: String, reason: String)] = []
        if !unreadable.isEmpty {
            var gone = Set(unreadable.keys)
            for (index, item) in items.enumerated() where item.linkKey != 0 && unreadableLinks.contains(item.linkKey) { gone.insert(index) }
            for index in gone.sorted() {
                leftOut.append((Self.label(items[index]), unreadable[index] ?? "another name of an unreadable file"))
            }
            for i in tree.entries.indices { tree.entries[i].children.removeAll { gone.contains($0) } }
            tree = tree.compacted()
        }
        return StoredTree(tree: tree, bytesRead: bytesRead, items: items, unreadable: leftOut)
    }

    private static func label(_ item: CaptureItem) -> String { item.path.isEmpty ? "/" : item.path }
}
