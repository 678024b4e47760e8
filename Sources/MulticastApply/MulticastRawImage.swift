import Digests
import Multicast
import Primitives
import Synchronization
import Transport

/// A raw disk image (`.img`, or `.img.xz`) written from a multicast session.
/// - `.img`: every block is written at its place as it arrives, in any order.
/// - `.img.xz`: the decoder needs its input in order, so blocks are decoded in file order; one
///   that arrives early is held (up to `holdLimit` bytes, else it comes again on a later pass).
/// The whole file's SHA-256 is checked when the sequence gives one: hashed in order as blocks
/// become contiguous, the rest read back from the target at the end.
public final class MulticastRawImage: MulticastBlockConsumer {
    public typealias Write = (UInt64, UnsafeRawBufferPointer) throws -> Void

    private let compressed: Bool
    private let expectedSHA256: String?
    private let writeAt: Write
    private let readBack: ((UInt64, UnsafeMutableRawBufferPointer) throws -> Void)?
    private let decoder: XZDecoder?
    private let holdLimit: Int
    private var manifest: BlockManifest?
    private var nextInOrder = 0
    private var early: [Int: [UInt8]] = [:]
    private var earlyBytes = 0
    private let hasher = SHA256Hasher()
    /// Where the decoded (or plain) output has reached.
    public private(set) var written: UInt64 = 0

    /// `writeAt(offset, bytes)` writes to the target; for an .img.xz offsets only grow.
    /// `readBack` reads the target, to hash a plain image that arrived out of order.
    public init(compressed: Bool, expectedSHA256: String?, xzMemoryLimit: UInt64 = XZDecoder.defaultMemoryLimit,
                holdLimit: Int = 128 << 20, writeAt: @escaping Write,
                readBack: ((UInt64, UnsafeMutableRawBufferPointer) throws -> Void)?) throws {
        self.compressed = compressed
        self.expectedSHA256 = expectedSHA256
        self.writeAt = writeAt
        self.readBack = readBack
        self.decoder = compressed ? try XZDecoder(memoryLimit: xzMemoryLimit) : nil
        self.holdLimit = holdLimit
    }

    public func neededBlocks(_ manifest: BlockManifest) throws -> [Bool] {
        self.manifest = manifest
        return [Bool](repeating: true, count: manifest.blockCount)
    }

    public func take(_ block: Int, _ bytes: UnsafeRawBufferPointer) throws -> MulticastBlockTaken {
        guard let manifest else { return MulticastBlockTaken(taken: false) }
        if block != nextInOrder {
            if compressed {
                guard earlyBytes + bytes.count <= holdLimit else { return MulticastBlockTaken(taken: false) }
                early[block] = Array(bytes)
                earlyBytes += bytes.count
                return MulticastBlockTaken(taken: true)
            }
            try writeAt(manifest.range(of: block).lowerBound, bytes)
            // Hashed later: by the read-back, or when the blocks before it arrive (held only
            // while the hold allows; else the read-back does it).
            if expectedSHA256 != nil, earlyBytes + bytes.count <= holdLimit {
                early[block] = Array(bytes)
                earlyBytes += bytes.count
            }
            written = max(written, manifest.range(of: block).upperBound)
            return MulticastBlockTaken(taken: true)
        }
        try consumeInOrder(bytes, manifest)
        // Blocks that were early and now follow on.
        while let next = early.removeValue(forKey: nextInOrder) {
            earlyBytes -= next.count
            try next.withUnsafeBytes { try consumeInOrder($0, manifest, alreadyWritten: !compressed) }
        }
        return MulticastBlockTaken(taken: true)
    }

    private func consumeInOrder(_ bytes: UnsafeRawBufferPointer, _ manifest: BlockManifest, alreadyWritten: Bool = false) throws {
        hasher.update(bytes)
        if let decoder {
            try decoder.decode(bytes) { piece in
                try writeAt(written, piece)
                written += UInt64(piece.count)
            }
        } else if !alreadyWritten {
            try writeAt(manifest.range(of: nextInOrder).lowerBound, bytes)
            written = max(written, manifest.range(of: nextInOrder).upperBound)
        }
        nextInOrder += 1
    }

    public func finish() throws {
        guard let manifest else { return }
        if let decoder {
            try decoder.finish { piece in
                try writeAt(written, piece)
                written += UInt64(piece.count)
            }
        }
        guard let expectedSHA256 else { return }
        if nextInOrder < manifest.blockCount {
            // A plain image that arrived out of order: the rest is hashed from the target.
            guard let readBack else { return }
            var buffer = [UInt8](repeating: 0, count: manifest.blockSize)
            for block in nextInOrder..<manifest.blockCount {
                let range = manifest.range(of: block)
                try buffer.withUnsafeMutableBytes { raw in
                    let piece = UnsafeMutableRawBufferPointer(rebasing: raw[0..<range.count])
                    try readBack(range.lowerBound, piece)
                    hasher.update(UnsafeRawBufferPointer(piece))
                }
            }
        }
        let actual = hasher.finish()
        guard actual == expectedSHA256 else {
            throw MulticastError.badManifest(name: "the session's image",
                                             reason: "the image received has SHA-256 \(actual), the sequence expects \(expectedSHA256)")
        }
    }
}

/// HTTP Range reads of the session's file, for repairs and the fallback.
public final class HTTPBlockSource: MulticastRangeSource, @unchecked Sendable {
    public let reader: HTTPRangeReader
    public init(reader: HTTPRangeReader) { self.reader = reader }
    private let bytes = Atomic<UInt64>(0)
    /// Bytes fetched so far (tables, repairs, the fallback).
    public var bytesFetched: UInt64 { bytes.load(ordering: .relaxed) }
    /// Exactly the range asked for: a repair needs a block's holes, not 4 MiB around them.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try reader.readExactly(into: buffer, at: offset)
        bytes.add(UInt64(buffer.count), ordering: .relaxed)
    }
}

/// Fetches a session's block manifest and checks it is the one the server described.
public func fetchManifest(_ descriptor: MulticastSessionDescriptor, client: HTTPClient) throws -> BlockManifest {
    let bytes = try client.fetch(descriptor.manifest, limit: 1 << 20)
    let actual = SHA256Hasher.hex(of: bytes)
    guard actual == descriptor.manifestSHA256.lowercased() else {
        throw MulticastError.badManifest(name: descriptor.manifest, reason: "its SHA-256 is \(actual), the session says \(descriptor.manifestSHA256)")
    }
    return try BlockManifest(decoding: Array(bytes), name: descriptor.manifest)
}
