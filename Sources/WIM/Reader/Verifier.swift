import Digests

/// `verify`: decompresses every blob of the WIM and checks its SHA-1, after reading and checking
/// every image's metadata, so a damaged WIM is found before it is applied anywhere.
public struct Verifier {
    public var archive: WIMArchive
    public var threads: Int = availableProcessorCount()

    public init(archive: WIMArchive) { self.archive = archive }

    public struct Result: Sendable {
        public var images: Int
        public var blobs: Int
        public var bytes: UInt64
    }

    public func run(progress: ((ReadProgress) -> Void)? = nil) throws -> Result {
        // Up to ten paths per blob, to name in an error.
        var users: [SHA1Digest: [String]] = [:]
        for image in 1...max(archive.imageCount, 1) where archive.imageCount > 0 {
            let meta = try archive.metadata(image: image)
            for (i, e) in meta.entries.enumerated() {
                for h in [e.dataHash, e.reparseHash] + e.namedStreams.map(\.hash) where !h.isZero {
                    if users[h, default: []].count < 10 { users[h, default: []].append("image \(image): \(meta.path(of: i))") }
                }
            }
        }
        for (hash, paths) in users.sorted(by: { $0.key < $1.key }) where archive.blobs[hash] == nil {
            throw WIMError.missingBlob(path: archive.path, blob: hash, usedBy: paths.first ?? "a file")
        }
        final class Discard: BlobSink {
            func beginBlob(_ blob: BlobDescriptor) throws {}
            func blobData(_ data: UnsafeRawBufferPointer) throws {}
            func endBlob(_ blob: BlobDescriptor) throws {}
        }
        var reader = BlobReader(archive: archive, threads: threads)
        reader.describeUsers = { users[$0] ?? ["no file (an unreferenced blob)"] }
        let all = Array(archive.blobs.values)
        try reader.read(all, into: Discard(), progress: progress)
        return Result(images: archive.imageCount, blobs: all.count, bytes: all.reduce(0) { $0 + $1.size })
    }
}
