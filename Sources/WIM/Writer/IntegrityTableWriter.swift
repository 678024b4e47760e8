#if canImport(Glibc)
import Glibc
#endif
import Digests
import Primitives

/// Writing the integrity table (`--check`).
///
/// Format (wimlib's docs/wim_format notes and `IntegrityTable.verify`, which reads it): a plain
/// (never compressed) resource the header points at from offset 124, holding
///
///     u32 table size in bytes (12 + 20 × entries)
///     u32 number of entries
///     u32 chunk size (10 MiB, 10 485 760, as WIMGAPI and wimlib write it)
///     entries × SHA-1 (20 bytes) of each chunk
///
/// The chunks cover the file from the end of the 208-byte header up to the end of the blob
/// table (header offset 48: offset + stored size); the last chunk holds the rest. The table itself
/// conventionally follows the XML data, outside the range it covers.
extension IntegrityTable {
    /// The chunk size WIMGAPI and wimlib use.
    public static let defaultChunkSize = 10 << 20

    /// The integrity table for the file open as `descriptor` (named `path` in errors), covering
    /// bytes 208..<`end` (`end` is the end of the blob table). The caller appends the bytes and
    /// points the header at them.
    public static func build(descriptor: Int32, path: String, end: UInt64, chunkSize: Int = defaultChunkSize) throws -> [UInt8] {
        let start = UInt64(WIMHeader.diskSize)
        guard end >= start else { throw WIMWriteError.misuse("integrity table range ends at \(end), inside the header") }
        let count = Int((end - start + UInt64(chunkSize) - 1) / UInt64(chunkSize))
        var table = [UInt8]()
        table.reserveCapacity(12 + 20 * count)
        table += UInt32(12 + 20 * count).littleEndianBytes
        table += UInt32(count).littleEndianBytes
        table += UInt32(chunkSize).littleEndianBytes
        var buffer = [UInt8](repeating: 0, count: min(chunkSize, 4 << 20))
        let hasher = SHA1Hasher()
        var position = start
        for _ in 0..<count {
            let chunkEnd = min(position + UInt64(chunkSize), end)
            hasher.reset()
            while position < chunkEnd {
                let want = Int(min(UInt64(buffer.count), chunkEnd - position))
                let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, want, off_t(position)) }
                if got < 0 {
                    if errno == EINTR { continue }
                    throw WIMWriteError.io(path: path, operation: "read back offset \(position) for the integrity table", errno: errno)
                }
                guard got > 0 else {
                    throw WIMWriteError.io(path: path, operation: "read back offset \(position) for the integrity table (file ends early)", errno: EIO)
                }
                buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
                position += UInt64(got)
            }
            table += hasher.finish().bytes
        }
        return table
    }

    /// The same for a file given by path (a finished WIM, to add or refresh its table).
    public static func build(path: String, end: UInt64, chunkSize: Int = defaultChunkSize) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WIMWriteError.io(path: path, operation: "open for the integrity table", errno: errno) }
        defer { close(fd) }
        return try build(descriptor: fd, path: path, end: end, chunkSize: chunkSize)
    }
}
