import Digests
#if canImport(Glibc)
import Glibc
#endif

/// A session's file cut into blocks, with each block's SHA-256: what makes a multicast block
/// trustworthy. The manifest's own SHA-256 reaches receivers through the trusted channel (the
/// server's answer at check-in), so a datagram damaged or forged on the way never reaches a disk.
///
/// Encoded form (little-endian): `0` magic `IMCM` · `4` version (1, UInt32) · `8` block size
/// (UInt32) · `12` block count (UInt32) · `16` file size (UInt64) · `24` the blocks' SHA-256s,
/// 32 bytes each, in block order.
public struct BlockManifest: Sendable, Equatable {
    public var fileSize: UInt64
    public var blockSize: Int
    public var blockHashes: [[UInt8]]

    public var blockCount: Int { blockHashes.count }

    public init(fileSize: UInt64, blockSize: Int, blockHashes: [[UInt8]]) {
        self.fileSize = fileSize
        self.blockSize = blockSize
        self.blockHashes = blockHashes
    }

    /// 1 MiB, or more for a file that would need more than `MulticastDatagram.maximumBlocks`
    /// blocks (whole MiB, so a block is never an odd size for the disk it is written to).
    public static func defaultBlockSize(forFileSize size: UInt64) -> Int {
        let mebibyte: UInt64 = 1 << 20
        let needed = (size + UInt64(MulticastDatagram.maximumBlocks) - 1) / UInt64(MulticastDatagram.maximumBlocks)
        return Int(max(mebibyte, (needed + mebibyte - 1) / mebibyte * mebibyte))
    }

    /// The byte range of `block` in the file.
    public func range(of block: Int) -> Range<UInt64> {
        let start = UInt64(block) * UInt64(blockSize)
        return start..<min(fileSize, start + UInt64(blockSize))
    }

    public func length(of block: Int) -> Int { range(of: block).count }

    /// Datagrams `block` is sent in.
    public func fragments(of block: Int) -> Int {
        (length(of: block) + MulticastDatagram.fragmentSize - 1) / MulticastDatagram.fragmentSize
    }

    /// Whether `bytes` are block `block` whole and unchanged.
    public func matches(_ block: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard block >= 0, block < blockCount, bytes.count == length(of: block) else { return false }
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finishDigest() == blockHashes[block]
    }

    /// Reads the file once and hashes every block.
    public static func make(path: String, blockSize: Int? = nil) throws(MulticastError) -> BlockManifest {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .file(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .file(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
        let size = UInt64(info.st_size)
        guard size > 0 else { throw .file(path: path, reason: "the file is empty: there is nothing to send") }
        let block = blockSize ?? defaultBlockSize(forFileSize: size)
        guard block >= MulticastDatagram.fragmentSize, block <= MulticastDatagram.fragmentSize * Int(UInt16.max) else {
            throw .badSetting("a block size of \(block) bytes is out of range (\(MulticastDatagram.fragmentSize) to \(MulticastDatagram.fragmentSize * Int(UInt16.max)))")
        }
        let count = Int((size + UInt64(block) - 1) / UInt64(block))
        guard count <= MulticastDatagram.maximumBlocks else {
            throw .badSetting("\(path) would be \(count) blocks of \(block) bytes, more than \(MulticastDatagram.maximumBlocks): use a larger block size")
        }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        var manifest = BlockManifest(fileSize: size, blockSize: block, blockHashes: [])
        manifest.blockHashes.reserveCapacity(count)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 64)
        defer { buffer.deallocate() }
        for index in 0..<count {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<manifest.length(of: index)])
            try readFully(fd, piece, at: manifest.range(of: index).lowerBound, path: path)
            let hasher = SHA256Hasher()
            hasher.update(UnsafeRawBufferPointer(piece))
            manifest.blockHashes.append(hasher.finishDigest())
        }
        return manifest
    }

    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes.withUnsafeMutableBytes { b in
            for i in 0..<4 { b[i] = Array("IMCM".utf8)[i] }
            MulticastDatagram.writeUInt32(b, 4, 1)
            MulticastDatagram.writeUInt32(b, 8, UInt32(blockSize))
            MulticastDatagram.writeUInt32(b, 12, UInt32(blockCount))
            MulticastDatagram.writeUInt64(b, 16, fileSize)
        }
        bytes.reserveCapacity(24 + 32 * blockCount)
        for hash in blockHashes { bytes += hash }
        return bytes
    }

    /// Decodes what `encoded()` wrote; `name` (a URL or file) names it in errors.
    public init(decoding bytes: [UInt8], name: String) throws(MulticastError) {
        func fail(_ reason: String) -> MulticastError { .badManifest(name: name, reason: reason) }
        guard bytes.count >= 24 else { throw fail("it is \(bytes.count) bytes, shorter than its 24-byte header") }
        let (version, block, count, size) = bytes.withUnsafeBytes { b in
            (MulticastDatagram.readUInt32(b, 4), MulticastDatagram.readUInt32(b, 8), MulticastDatagram.readUInt32(b, 12),
             MulticastDatagram.readUInt64(b, 16))
        }
        guard Array(bytes[0..<4]) == Array("IMCM".utf8) else { throw fail("it does not start with IMCM (not a block manifest)") }
        guard version == 1 else { throw fail("version \(version) at offset 4 is not 1") }
        guard block >= UInt32(MulticastDatagram.fragmentSize), block <= UInt32(MulticastDatagram.fragmentSize) * UInt32(UInt16.max) else {
            throw fail("the block size \(block) at offset 8 is out of range")
        }
        guard count >= 1, count <= UInt32(MulticastDatagram.maximumBlocks) else { throw fail("the block count \(count) at offset 12 is out of range") }
        // Rounded up without overflow: the size is the input's, up to UInt64.max.
        let expectedCount = size / UInt64(block) + (size % UInt64(block) == 0 ? 0 : 1)
        guard size > 0, expectedCount == UInt64(count) else {
            throw fail("a file of \(size) bytes (offset 16) is \(expectedCount) blocks of \(block), not \(count)")
        }
        guard bytes.count == 24 + 32 * Int(count) else {
            throw fail("it is \(bytes.count) bytes; \(count) blocks need \(24 + 32 * Int(count))")
        }
        fileSize = size
        blockSize = Int(block)
        blockHashes = (0..<Int(count)).map { Array(bytes[(24 + 32 * $0)..<(56 + 32 * $0)]) }
    }
}

/// Fills `buffer` from `fd` at `offset`, retrying short reads; `path` names the file in errors.
public func readFully(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws(MulticastError) {
    var done = 0
    while done < buffer.count, let base = buffer.baseAddress {
        let n = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
        if n < 0 && errno == EINTR { continue }
        if n < 0 { throw .file(path: path, reason: "read at offset \(offset + UInt64(done)) failed: \(String(cString: strerror(errno)))") }
        if n == 0 { throw .file(path: path, reason: "ends at \(offset + UInt64(done)), before the \(buffer.count) bytes wanted at \(offset) (the file shrank)") }
        done += n
    }
}
