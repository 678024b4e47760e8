import Digests
import WIM

/// Which stream of a file a blob fills.
public enum StreamKind: Sendable, Equatable {
    case data
    case reparse
    case named(String)
}

/// A blob's destination: one stream of one planned file.
public struct StreamTarget: Sendable {
    /// Index into `ApplyPlan.items` of the file's first name.
    public var item: Int
    public var kind: StreamKind
}

/// One name to create on the target.
public struct PlannedItem: Sendable {
    /// Index of the entry in the image metadata.
    public var entry: Int
    /// Path relative to the target root ("" for the root itself), "/"-separated.
    public var relativePath: String
    /// For a second or later name of a hard-linked file: the item holding its first name.
    public var linkTo: Int?
}

/// What to create for one image (or a part of it) and which blob goes where: built once from the
/// metadata, then walked by any `ApplyTarget`.
public struct ApplyPlan: Sendable {
    public var image: ImageMetadata
    public var items: [PlannedItem]
    public var blobTargets: [SHA1Digest: [StreamTarget]]

    /// Plans the whole image (`roots` = [0], mapped to the target root) or the subtrees at
    /// `roots`, each placed in the target root under its own name (as `wimlib-imagex extract`).
    public init(image: ImageMetadata, roots: [Int] = [0]) {
        self.image = image
        var items: [PlannedItem] = []
        var targets: [SHA1Digest: [StreamTarget]] = [:]
        var firstNameOfGroup: [UInt64: Int] = [:]

        func add(_ entryIndex: Int, path: String) {
            let entry = image.entries[entryIndex]
            var item = PlannedItem(entry: entryIndex, relativePath: path, linkTo: nil)
            if !entry.isDirectory, !entry.isReparsePoint, entry.hardLinkGroup != 0 {
                if let first = firstNameOfGroup[entry.hardLinkGroup],
                   image.entries[items[first].entry].dataHash == entry.dataHash,
                   image.entries[items[first].entry].namedStreams == entry.namedStreams {
                    item.linkTo = first
                } else if firstNameOfGroup[entry.hardLinkGroup] == nil {
                    firstNameOfGroup[entry.hardLinkGroup] = items.count
                }
            }
            let index = items.count
            items.append(item)
            guard item.linkTo == nil else { return }
            if entry.isReparsePoint {
                if !entry.reparseHash.isZero { targets[entry.reparseHash, default: []].append(StreamTarget(item: index, kind: .reparse)) }
            } else if !entry.isDirectory, !entry.dataHash.isZero {
                targets[entry.dataHash, default: []].append(StreamTarget(item: index, kind: .data))
            }
            for stream in entry.namedStreams where !stream.hash.isZero {
                targets[stream.hash, default: []].append(StreamTarget(item: index, kind: .named(stream.name)))
            }
        }

        // Depth-first so every directory is planned before what it contains.
        for root in roots {
            let rootPath = root == 0 ? "" : image.entries[root].name
            var stack: [(Int, String)] = [(root, rootPath)]
            while let (index, path) = stack.popLast() {
                add(index, path: path)
                guard image.entries[index].isDirectory else { continue }
                for child in image.children(of: index).reversed() {
                    let name = image.entries[child].name
                    stack.append((child, path.isEmpty ? name : path + "/" + name))
                }
            }
        }
        self.items = items
        self.blobTargets = targets
    }

    /// Paths (inside the image) of the files that use `hash`, for error messages.
    public func users(of hash: SHA1Digest) -> [String] {
        (blobTargets[hash] ?? []).map { image.path(of: items[$0.item].entry) }
    }
}
