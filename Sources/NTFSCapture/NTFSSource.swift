#if canImport(Glibc)
import Glibc
#endif
import CNTFS3G
import NTFSAccess
import Failures
import Primitives
import WIM
import Capture

/// Captures an NTFS volume (a block device, a partition, an image file, or a byte range of a
/// disk image) read-only through libntfs-3g, with no kernel or FUSE mount: what wimlib-imagex's
/// NTFS capture mode keeps (wimcapture(1), "NTFS VOLUME CAPTURE (UNIX)"):
///
/// - every name of every file: the Win32 or POSIX name, and the DOS (8.3) name a Win32 name
///   has in its folder; a file with several names (one MFT record) is one hard link group;
/// - every data stream: the unnamed one and the named ones ("alternate data streams"), read
///   in pass 2. Sparse files read with their holes as zeros, compressed files decompressed
///   (libntfs-3g does both), and their attributes keep saying sparse/compressed;
/// - the security descriptor (from $Secure), the attributes of $STANDARD_INFORMATION, its three
///   times (NTFS keeps FILETIMEs, 100 ns), reparse points (tag and data) and object IDs.
///
/// Left out, as wimlib leaves them out: the NTFS metafiles (the root's entries with an MFT
/// record below 16: $MFT, $LogFile, $Bitmap, $Secure, $Extend...), DOS-only index entries (the
/// 8.3 alias of a name, kept as that name's short name instead), EFS-encrypted files (their
/// data cannot be read without the user's key; listed in the summary), and whatever the
/// capture configuration excludes (by default wimlib's list, `CaptureConfig.windowsDefault`).
///
/// Pass 2 is ordered by each stream's first cluster (`dataOrder`), so a disk is read from its
/// start to its end rather than in name order.
public final class NTFSSource: CaptureSource {
    public let device: String
    public let offset: UInt64
    public private(set) var summary = CaptureSummary()
    /// What to leave out or store uncompressed: wimlib's default list unless `--config` is given.
    public var config = CaptureConfig.windowsDefault

    private let fd: Int32
    private var volume: UnsafeMutablePointer<ntfs_volume>?
    private var readBuffer = [UInt8](repeating: 0, count: 1 << 20)

    /// Opens the volume at bytes [offset, offset + size) of `device` (size nil: to its end).
    public init(device: String, offset: UInt64 = 0, size: UInt64? = nil) throws {
        self.device = device
        self.offset = offset
        fd = open(device, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NTFSCaptureError.open(device: device, errno: errno) }
        do {
            let end = lseek(fd, 0, SEEK_END)
            guard end >= 0 else { throw NTFSCaptureError.open(device: device, errno: errno) }
            guard UInt64(end) > offset else { throw NTFSCaptureError.notNTFS(device: device, offset: offset) }
            let length = size ?? (UInt64(end) - offset)
            guard offset + length <= UInt64(end) else { throw NTFSCaptureError.regionBeyondEnd(device: device, offset: offset, size: length, deviceSize: UInt64(end)) }
            guard Self.hasBootSector(fd: fd, offset: offset) else { throw NTFSCaptureError.notNTFS(device: device, offset: offset) }
            guard let mounted = imprint_ntfs_mount_region(device, fd, Int64(offset), Int64(length), 1) else {
                throw NTFSCaptureError.mount(device: device, errno: errno)
            }
            volume = mounted
        } catch {
            close(fd)
            throw error
        }
    }

    deinit {
        if let volume { _ = imprint_ntfs_umount(volume) }
        close(fd)
    }

    /// Whether `path` holds an NTFS boot sector ("NTFS    " at byte 3) at `offset`.
    public static func looksLikeNTFS(_ path: String, offset: UInt64 = 0) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return hasBootSector(fd: fd, offset: offset)
    }

    private static func hasBootSector(fd: Int32, offset: UInt64) -> Bool {
        var sector = [UInt8](repeating: 0, count: 11)
        let n = sector.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 11, off_t(offset)) }
        return n == 11 && Array(sector[3..<11]) == Array("NTFS    ".utf8)
    }

    private func location(_ path: String) -> String { "\(device)\(offset == 0 ? "" : "@\(offset)"):/\(path)" }

    // MARK: Pass 1

    public func scan(progress: (Int) -> Void) throws -> [CaptureItem] {
        guard let volume else { throw WIMWriteError.misuse("NTFS source used after closing") }
        let rootRecord: UInt64 = 5 // FILE_root: the root folder's MFT record
        guard let rootInode = ntfs_inode_open(volume, rootRecord) else {
            throw NTFSCaptureError.read(location: location(""), operation: "open the root folder", errno: errno)
        }
        var items: [CaptureItem] = []
        var rootItem = CaptureItem(path: "", name: "", attributes: .directory)
        do {
            defer { ntfs_inode_close(rootInode) }
            try describe(rootInode, into: &rootItem, nameType: 3, folder: nil)
        }
        rootItem.sourceKey = rootRecord
        items.append(rootItem)
        summary.directories += 1
        // Records with several names (hard links), found as the walk goes.
        var namesOfRecord: [UInt64: [Int]] = [:]
        var pending = [0]
        var scopes: [Int: CaptureConfig.Scope] = [0: CaptureConfig.Scope()]
        while let index = pending.popLast() {
            let folder = items[index]
            let scope = scopes.removeValue(forKey: index) ?? CaptureConfig.Scope()
            let parentComponents = folder.path.isEmpty ? [] : folder.path.split(separator: "/").map(String.init)
            guard let folderInode = ntfs_inode_open(volume, folder.sourceKey) else {
                throw NTFSCaptureError.read(location: location(folder.path), operation: "open the folder", errno: errno)
            }
            defer { ntfs_inode_close(folderInode) }
            var children: [Int] = []
            for entry in try list(folderInode, path: folder.path) {
                let entryName = entry.name
                // The metafiles live in the root with the first 16 records ($Extend among them).
                if folder.sourceKey == rootRecord && entry.record < UInt64(imprint_ntfs_first_user_record()) { continue }
                let childPath = folder.path.isEmpty ? entryName : folder.path + "/" + entryName
                guard let inode = ntfs_inode_open(volume, entry.record) else {
                    throw NTFSCaptureError.read(location: location(childPath), operation: "open MFT record \(entry.record)", errno: errno)
                }
                defer { ntfs_inode_close(inode) }
                let components = parentComponents + [entryName]
                let isFolder = imprint_ntfs_is_directory(inode) != 0
                guard case let .include(childScope) = config.decide(components, isDirectory: isFolder, in: scope) else {
                    summary.note("excluded by the capture configuration", location(childPath))
                    continue
                }
                var item = CaptureItem(path: childPath, name: entryName, attributes: [])
                item.sourceKey = entry.record
                try describe(inode, into: &item, nameType: entry.nameType, folder: folderInode)
                if item.attributes.contains(.encrypted) && !isFolder {
                    summary.note("EFS-encrypted file (its data cannot be read without the user's key), not captured", location(childPath))
                    continue
                }
                item.compress = !config.storesUncompressed(components)
                if item.attributes.contains(.reparsePoint) {
                    summary.symlinks += 1
                } else if isFolder {
                    summary.directories += 1
                    scopes[items.count] = childScope
                } else {
                    summary.files += 1
                    namesOfRecord[entry.record, default: []].append(items.count)
                }
                if item.attributes.contains(.reparsePoint) && !isFolder { namesOfRecord[entry.record, default: []].append(items.count) }
                children.append(items.count)
                items.append(item)
                progress(items.count)
            }
            items[index].children = children
            for child in children.reversed() where items[child].isDirectory { pending.append(child) }
        }
        // One link group per MFT record with several names.
        for (record, names) in namesOfRecord where names.count > 1 {
            for name in names { items[name].linkKey = record }
            summary.hardLinks += names.count - 1
        }
        return items
    }

    /// A folder's index entries but "." and "..", and DOS-only names (the 8.3 alias of a long
    /// name, which becomes that name's short name).
    private func list(_ folder: UnsafeMutablePointer<ntfs_inode>, path: String) throws -> [NTFSFolderEntry] {
        switch NTFSFolder.entries(of: folder) {
        case .success(let entries): return entries
        case .failure(let failure):
            throw NTFSCaptureError.read(location: location(path), operation: "read the folder's index", errno: failure.code)
        }
    }

    /// Everything about one file but its stream data.
    private func describe(_ inode: UnsafeMutablePointer<ntfs_inode>, into item: inout CaptureItem, nameType: UInt32,
                          folder: UnsafeMutablePointer<ntfs_inode>?) throws {
        guard let volume else { return }
        item.attributes = FileAttributes(rawValue: imprint_ntfs_windows_attributes(inode))
        var creation: UInt64 = 0, write: UInt64 = 0, access: UInt64 = 0
        imprint_ntfs_times(inode, &creation, &write, &access)
        (item.creationTime, item.lastWriteTime, item.lastAccessTime) = (creation, write, access)

        let needed = imprint_ntfs_security_descriptor(volume, inode, nil, 0)
        if needed > 0 {
            var descriptor = [UInt8](repeating: 0, count: Int(needed))
            let got = descriptor.withUnsafeMutableBytes { imprint_ntfs_security_descriptor(volume, inode, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
            if got == needed { item.securityDescriptor = descriptor }
        }

        // A Win32 name (type 1) has its 8.3 alias beside it in the same folder.
        if nameType == 1, let folder {
            var buffer = [CChar](repeating: 0, count: 64)
            let length = imprint_ntfs_dos_name(inode, folder, &buffer, buffer.count)
            if length > 0, length <= buffer.count {
                item.shortName = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }

        if item.attributes.contains(.reparsePoint), let value = smallAttribute(inode, kind: 0), value.count >= 8 {
            let tag = UInt32(value[0]) | UInt32(value[1]) << 8 | UInt32(value[2]) << 16 | UInt32(value[3]) << 24
            let length = Int(UInt16(value[4]) | UInt16(value[5]) << 8)
            item.reparse = (tag, Array(value[8..<min(value.count, 8 + length)]), 0)
        }
        if let objectID = smallAttribute(inode, kind: 1), !objectID.isEmpty { item.objectID = objectID }

        for stream in try streams(of: inode, path: item.path) {
            if stream.name.isEmpty {
                if imprint_ntfs_is_directory(inode) == 0 {
                    item.dataSize = stream.size
                    item.dataOrder = stream.dataOrder
                }
            } else {
                item.namedStreams.append(stream)
            }
        }
    }

    private func smallAttribute(_ inode: UnsafeMutablePointer<ntfs_inode>, kind: Int32) -> [UInt8]? {
        var size: Int64 = 0
        guard let value = imprint_ntfs_read_small_attribute(inode, kind, &size) else { return nil }
        defer { free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: Int(size)))
    }

    /// The file's $DATA attributes: the unnamed stream has the empty name.
    private func streams(of inode: UnsafeMutablePointer<ntfs_inode>, path: String) throws -> [CaptureStream] {
        var room = 8
        while true {
            var found = [imprint_ntfs_stream](repeating: imprint_ntfs_stream(), count: room)
            let count = Int(imprint_ntfs_list_streams(inode, &found, Int32(room)))
            guard count >= 0 else { throw NTFSCaptureError.read(location: location(path), operation: "list the data streams", errno: errno) }
            if count > room {
                room = count
                continue
            }
            return found.prefix(count).map { stream in
                let name = withUnsafeBytes(of: stream.name) { raw in
                    UTF16LE.decode(storedUnits: raw.bindMemory(to: UInt16.self).prefix(Int(stream.name_length)))
                }
                return CaptureStream(name: name, size: UInt64(max(0, stream.size)), dataOrder: stream.first_lcn >= 0 ? UInt64(stream.first_lcn) : 0)
            }
        }
    }

    // MARK: Pass 2

    public func readData(of item: CaptureItem, stream: String?, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let volume else { throw WIMWriteError.misuse("NTFS source used after closing") }
        let place = location(item.path) + (stream.map { ":" + $0 } ?? "")
        guard let inode = ntfs_inode_open(volume, item.sourceKey) else {
            throw NTFSCaptureError.read(location: place, operation: "open MFT record \(item.sourceKey)", errno: errno)
        }
        defer { ntfs_inode_close(inode) }
        let attribute: UnsafeMutablePointer<ntfs_attr>?
        if let stream {
            var units = Array(stream.utf16).map { $0.littleEndian }
            attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), &units, UInt32(units.count))
        } else {
            attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0)
        }
        guard let attribute else { throw NTFSCaptureError.read(location: place, operation: "open the data stream", errno: errno) }
        defer { ntfs_attr_close(attribute) }
        let size = attribute.pointee.data_size
        var position: Int64 = 0
        while position < size {
            let wanted = min(Int64(readBuffer.count), size - position)
            let got = readBuffer.withUnsafeMutableBytes { ntfs_attr_pread(attribute, position, wanted, $0.baseAddress) }
            guard got > 0 else {
                if got == 0 { throw WIMWriteError.changedWhileReading(path: place, expected: UInt64(size), got: UInt64(position)) }
                throw NTFSCaptureError.read(location: place, operation: "read at byte \(position)", errno: errno)
            }
            try readBuffer.withUnsafeBytes { try consume(UnsafeRawBufferPointer(rebasing: $0[0..<Int(got)])) }
            position += got
        }
    }
}

/// Failures of reading an NTFS volume for a capture, naming the device and the file.
public enum NTFSCaptureError: Error, CustomStringConvertible, ClassifiedError {
    case open(device: String, errno: Int32)
    case notNTFS(device: String, offset: UInt64)
    case regionBeyondEnd(device: String, offset: UInt64, size: UInt64, deviceSize: UInt64)
    case mount(device: String, errno: Int32)
    /// `location` is device:/path[:stream].
    case read(location: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .open(device, code): return "\(device): cannot open it to capture: \(String(cString: strerror(code)))"
        case let .notNTFS(device, offset): return "\(device): no NTFS boot sector at byte \(offset); not an NTFS volume"
        case let .regionBeyondEnd(device, offset, size, deviceSize):
            return "\(device): bytes \(offset)..<\(offset + size) go past its end (\(deviceSize) bytes)"
        case let .mount(device, code):
            return "\(device): libntfs-3g cannot open the NTFS volume read-only: \(String(cString: strerror(code)))"
                + (code == EIO ? " (damaged, or left inconsistent: let Windows check it with chkdsk)" : "")
        case let .read(location, operation, code): return "\(location): \(operation) failed: \(String(cString: strerror(code)))"
        }
    }

    public var failureKind: FailureKind {
        switch self {
        case .notNTFS, .regionBeyondEnd: return .badInput
        case .open, .mount, .read: return .disk
        }
    }
}
