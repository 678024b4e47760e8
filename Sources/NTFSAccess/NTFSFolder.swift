import CNTFS3G
import Glibc
import Primitives

/// One name in an NTFS folder's index, as libntfs-3g's `ntfs_readdir` hands it over.
public struct NTFSFolderEntry: Sendable {
    /// The name's UTF-16 code units as NTFS stores them (little-endian `ntfschar`s): compare
    /// them through the volume's upcase table, as Windows does, not as text.
    public var storedUnits: [UInt16]
    /// The FILE_NAME namespace: 0 POSIX, 1 Win32, 3 Win32 and DOS at once (2, DOS only, is
    /// never listed: it is the 8.3 alias of a long name, which stands for it).
    public var nameType: UInt32
    /// The file's MFT record number (the sequence number left out).
    public var record: UInt64
    public var isDirectory: Bool

    public var name: String { UTF16LE.decode(storedUnits: storedUnits) }
}

/// Listing a folder of an NTFS volume opened through libntfs-3g: capture, the refresh's clean-up
/// and the files Imprint writes onto a volume all list folders this way, so it is written once.
public enum NTFSFolder {
    /// Every name in `folder`'s index but "." and "..", and DOS-only names (removing, or
    /// capturing, a long name takes its 8.3 alias with it). On failure, the `errno` of
    /// `ntfs_readdir`.
    public static func entries(of folder: UnsafeMutablePointer<ntfs_inode>) -> Result<[NTFSFolderEntry], NTFSErrno> {
        final class Collector { var entries: [NTFSFolderEntry] = [] }
        let collector = Collector()
        var position: s64 = 0
        let status = withExtendedLifetime(collector) {
            ntfs_readdir(folder, &position, Unmanaged.passUnretained(collector).toOpaque()) { context, name, length, nameType, _, mref, type in
                // Name type 2 is FILE_NAME_DOS.
                guard let context, let name, nameType != 2 else { return 0 }
                let units = Array(UnsafeBufferPointer(start: name, count: Int(length)))
                let dot = UInt16(0x2E).littleEndian
                if units == [dot] || units == [dot, dot] { return 0 }
                // An MFT reference's low 48 bits are the record number; the d_type of a folder
                // is 4 (NTFS_DT_DIR, as DT_DIR).
                Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue().entries.append(
                    NTFSFolderEntry(storedUnits: units, nameType: UInt32(nameType), record: UInt64(mref) & 0x0000_FFFF_FFFF_FFFF,
                                    isDirectory: type == 4))
                return 0
            }
        }
        guard status == 0 else { return .failure(NTFSErrno(errno)) }
        return .success(collector.entries)
    }
}

/// An `errno` from libntfs-3g, for the caller to put into its own error with the path and the
/// operation that failed.
public struct NTFSErrno: Error, Sendable, Equatable {
    public var code: Int32
    public init(_ code: Int32) { self.code = code }
}
