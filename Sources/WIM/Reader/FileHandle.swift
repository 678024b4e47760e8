import Digests
#if canImport(Glibc)
import Glibc
#endif

/// Bytes a WIM can be read from other than a local file: a remote file read through HTTP Range
/// requests, so a regular WIM applies while it downloads, with no full temporary copy.
/// Implementations must allow reads from several threads at once.
public protocol RandomAccessSource: AnyObject, Sendable {
    var size: UInt64 { get }
    /// Fills the whole buffer from `offset`, or throws an error a technician can read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// The same, for a small read the caller knows stands apart from the reads around it (an
    /// apply planning reads each large resource's chunk table, one after another, a few KiB
    /// every few MiB): a source that reads ahead in large blocks should send it as it is,
    /// rather than fetch the blocks around it and take it for the start of a sequential run.
    func readStandalone(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
}

extension RandomAccessSource {
    public func readStandalone(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try read(into: buffer, at: offset)
    }
}

/// A WIM file opened for random-access reads. `pread` keeps reads independent of a shared file
/// position, so several decompression threads can read one handle at once.
public final class WIMFileHandle: Sendable {
    public let path: String
    public let size: UInt64
    private let descriptor: Int32
    private let source: RandomAccessSource?

    /// Reads through `source`; `name` (a URL) names it in messages.
    public init(name: String, source: RandomAccessSource) {
        path = name
        size = source.size
        descriptor = -1
        self.source = source
    }

    public init(path: String) throws(WIMError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .io(path: path, operation: "open", errno: errno) }
        var info = stat()
        if fstat(fd, &info) != 0 {
            let code = errno
            close(fd)
            throw .io(path: path, operation: "stat", errno: code)
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw .io(path: path, operation: "open (it is a directory)", errno: EISDIR)
        }
        self.path = path
        self.descriptor = fd
        self.source = nil
        if (info.st_mode & S_IFMT) == S_IFBLK {
            self.size = UInt64(max(0, lseek(fd, 0, SEEK_END)))
        } else {
            self.size = UInt64(info.st_size)
        }
        // The whole file is read front to back in one pass; tell the kernel to read ahead.
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Reads exactly `buffer.count` bytes at `offset`, or throws naming `what` was being read.
    /// `standalone`: a small read apart from the others (`RandomAccessSource.readStandalone`).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, what: String,
                     standalone: Bool = false) throws(WIMError) {
        guard buffer.count > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(buffer.count))
        if overflow || end > size {
            throw .truncated(path: path, what: what, offset: offset, needed: overflow ? UInt64.max : end - size)
        }
        if let source {
            do {
                if standalone {
                    try source.readStandalone(into: buffer, at: offset)
                } else {
                    try source.read(into: buffer, at: offset)
                }
            } catch {
                throw .source(path: path, reason: "reading the \(what) at offset \(offset): \(error)")
            }
            return
        }
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read at offset \(offset + UInt64(done))", errno: errno)
            }
            if n == 0 {
                throw .truncated(path: path, what: what, offset: offset, needed: UInt64(buffer.count - done))
            }
            done += n
        }
    }

    public func read(count: Int, at offset: UInt64, what: String, standalone: Bool = false) throws(WIMError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var failure: WIMError?
        bytes.withUnsafeMutableBytes { buf in
            do throws(WIMError) { try read(into: buf, at: offset, what: what, standalone: standalone) } catch { failure = error }
        }
        if let failure { throw failure }
        return bytes
    }
}

extension Array where Element == UInt8 {
    func sha1(at offset: Int) -> SHA1Digest {
        withUnsafeBytes { SHA1Digest(bytes: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + 20])) }
    }
}

/// `withUnsafeBytes` for code with typed throws: the standard one only rethrows `any Error`.
@inline(__always)
func withBytes<R>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(WIMError) -> R) throws(WIMError) -> R {
    var result: Result<R, WIMError>?
    array.withUnsafeBytes { raw in
        result = Result { () throws(WIMError) -> R in try body(raw) }
    }
    return try result!.get()
}

@inline(__always)
func withMutableBytes<R>(_ array: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws(WIMError) -> R) throws(WIMError) -> R {
    var result: Result<R, WIMError>?
    array.withUnsafeMutableBytes { raw in
        result = Result { () throws(WIMError) -> R in try body(raw) }
    }
    return try result!.get()
}
