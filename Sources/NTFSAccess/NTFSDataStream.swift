import CNTFS3G
import Glibc

/// Reading a file's unnamed data stream whole from an NTFS volume opened through libntfs-3g:
/// what disk discovery (hives, kernel32.dll) and the files Imprint reads back from a volume
/// (BCD stores, ReAgent.xml) both do, written once.
public enum NTFSDataStream {
    public enum Failure: Error, Sendable, Equatable {
        /// The file has no unnamed data stream (errno of `ntfs_attr_open`).
        case noDataStream(errno: Int32)
        /// The stream is larger than the caller allows.
        case tooLarge(size: Int64, limit: Int64)
        /// Reading failed (errno), or the stream ended early (errno 0) at byte `at`.
        case read(errno: Int32, at: Int64, of: Int64)
    }

    /// The stream's bytes, only its first `prefix` when given (then `limit` is not checked).
    public static func read(_ inode: UnsafeMutablePointer<ntfs_inode>, limit: Int64, prefix: Int64? = nil) throws(Failure) -> [UInt8] {
        guard let attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else {
            throw .noDataStream(errno: errno)
        }
        defer { ntfs_attr_close(attribute) }
        let size = attribute.pointee.data_size
        guard size >= 0, size <= limit || prefix != nil else { throw .tooLarge(size: size, limit: limit) }
        let wanted = min(size, prefix ?? size)
        var bytes = [UInt8](repeating: 0, count: Int(wanted))
        var done: Int64 = 0
        while done < wanted {
            let count = bytes.withUnsafeMutableBytes { buffer -> Int64 in
                guard let base = buffer.baseAddress else { return 0 }
                return ntfs_attr_pread(attribute, done, wanted - done, base + Int(done))
            }
            guard count > 0 else { throw .read(errno: count < 0 ? errno : 0, at: done, of: wanted) }
            done += count
        }
        return bytes
    }
}
