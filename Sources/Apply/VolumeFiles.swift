import Failures
import CNTFS3G
import NTFSAccess
import Primitives
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads and writes a few whole files of a target volume after the image: drivers under
/// `Drivers\`, `Windows\Panther\unattend.xml`, the boot files and hives the boot step reads. An
/// NTFS volume is used through libntfs-3g (no mount); anything else is a directory (a mounted
/// filesystem, or a test's folder). Paths use `/` or `\`, relative to the volume's root.
public protocol VolumeFiles: AnyObject {
    /// Creates `relativePath`'s folders as needed and writes `data` there, replacing a file.
    func write(_ data: Data, to relativePath: String) throws
    /// Copies a local file (read in pieces, so large driver files are never held whole).
    func copy(file source: String, to relativePath: String) throws
    /// The entries of a folder, found ignoring case as Windows does: names, and whether each is
    /// a folder. nil when it does not exist.
    func list(_ relativePath: String) throws -> [(name: String, isDirectory: Bool)]?
    /// A file's bytes, found ignoring case, or nil when it does not exist.
    func read(_ relativePath: String) throws -> [UInt8]?
    /// Removes a file, or a folder and the files in it; nothing when it does not exist.
    func remove(_ relativePath: String) throws
    /// Hands a file's bytes to `piece` a piece at a time (at most 1 MiB each), so a large file
    /// (Winre.wim) is never held whole; false when it does not exist.
    func read(_ relativePath: String, pieces piece: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool
    /// Writes a file from the pieces `produce` hands to its argument, replacing a file.
    func write(_ relativePath: String, pieces produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws
    /// Gives a file another name in its folder, replacing a file of that name: with a write
    /// under a temporary name first, a reader finds the whole file or none.
    func rename(_ relativePath: String, to name: String) throws
    /// What was written is on the disk, not only in caches (before a step a power cut must not undo).
    func sync() throws
    func close() throws
}

/// Upper bound for one file read whole (hives, boot files): the SOFTWARE hive of a
/// well-used Windows is a few hundred MiB at most.
let maximumReadSize: Int64 = 1 << 30

public enum VolumeFilesError: Error, CustomStringConvertible {
    case badPath(String)
    case operation(volume: String, path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .badPath(path): return "\"\(path)\" is not a relative path inside the volume"
        case let .operation(volume, path, operation, code):
            return "\(volume): \(path): \(operation) failed: \(String(cString: strerror(code)))"
        }
    }
}

extension VolumeFiles {
    /// Copies a file of `source` (this volume or another) to `relativePath` here: written under
    /// a temporary name beside it, flushed, then renamed, so the file is whole or absent.
    /// False when the source file does not exist.
    public func copyWhole(from source: VolumeFiles, _ sourcePath: String, to relativePath: String) throws -> Bool {
        let (temporary, name) = try temporaryPath(for: relativePath)
        var found = false
        try write(temporary) { put in found = try source.read(sourcePath, pieces: put) }
        guard found else { try remove(temporary); return false }
        try sync()
        try rename(temporary, to: name)
        return true
    }

    /// Where a file is written before it is renamed to `relativePath`: beside it, under the
    /// same name with `.imprint-partial` added; and the name to rename it to.
    func temporaryPath(for relativePath: String) throws -> (path: String, finalName: String) {
        let parts = try volumeComponents(relativePath)
        let name = parts[parts.count - 1]
        return ((parts.dropLast() + [name + ".imprint-partial"]).joined(separator: "/"), name)
    }

    /// Writes `data` whole or not at all, as `copyWhole` does.
    public func writeWhole(_ data: Data, to relativePath: String) throws {
        let (temporary, name) = try temporaryPath(for: relativePath)
        try write(data, to: temporary)
        try sync()
        try rename(temporary, to: name)
    }
}

public func openVolumeFiles(_ target: String) throws -> VolumeFiles {
    NTFSTarget.isVolume(target) ? try NTFSVolumeFiles(device: target) : try DirectoryVolumeFiles(root: target)
}

/// Splits `a/b\c` into checked components: no empty, `.`, `..` or NUL parts.
func volumeComponents(_ relativePath: String) throws -> [String] {
    let parts = relativePath.split(whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init)
    guard !parts.isEmpty, !relativePath.hasPrefix("/"),
          parts.allSatisfy({ $0 != "." && $0 != ".." && !$0.contains("\0") && $0.utf16.count <= 255 }) else {
        throw VolumeFilesError.badPath(relativePath)
    }
    return parts
}

public final class NTFSVolumeFiles: VolumeFiles {
    /// nil when the volume is borrowed from a mount that stays its owner's (an apply's target).
    private let mounted: MountedNTFSVolume?
    private let borrowed: UnsafeMutablePointer<ntfs_volume>?
    private let device: String
    private var volume: UnsafeMutablePointer<ntfs_volume>? { mounted?.pointer ?? borrowed }

    /// `readOnly`: nothing on the volume changes (looking for a run's state at start-up).
    public init(device: String, readOnly: Bool = false) throws {
        mounted = try MountedNTFSVolume(device: device, readOnly: readOnly)
        borrowed = nil
        self.device = device
    }

    /// Files of a volume another object has mounted (the refresh's record, written through
    /// the apply target's own mount: one volume is never mounted twice at once).
    init(borrowing volume: UnsafeMutablePointer<ntfs_volume>, device: String) {
        mounted = nil
        borrowed = volume
        self.device = device
    }

    public func close() throws {
        if let code = mounted?.unmount() {
            throw VolumeFilesError.operation(volume: device, path: "/", operation: "unmount", errno: code)
        }
    }

    /// Everything written so far is on the disk (its device fsync'ed), not only in caches.
    public func sync() throws {
        guard let volume, imprint_ntfs_sync(volume) == 0 else {
            throw VolumeFilesError.operation(volume: device, path: "/", operation: "flush to the disk", errno: errno)
        }
    }

    /// Removes a file, or a folder with the files in it (one level: what Imprint itself keeps
    /// there); nothing when it does not exist.
    public func remove(_ relativePath: String) throws {
        guard let volume else { throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "remove", errno: EBADF) }
        let parts = try volumeComponents(relativePath)
        if let entries = try list(relativePath) {
            for entry in entries {
                guard !entry.isDirectory else {
                    throw VolumeFilesError.operation(volume: device, path: relativePath + "/" + entry.name, operation: "remove (a folder in it)", errno: ENOTEMPTY)
                }
                try remove(relativePath + "/" + entry.name)
            }
        }
        let parentPath = parts.dropLast().joined(separator: "/")
        guard let parent = open(parentPath) else { return }
        guard let inode = open(relativePath) else { _ = ntfs_inode_close(parent); return }
        // The name as Imprint wrote it (ntfs_delete finds the index entry by it); it closes
        // both inodes, whatever the outcome.
        var units = UTF16LE.storedUnits(parts[parts.count - 1])
        let status = units.withUnsafeMutableBufferPointer { buffer in
            ntfs_delete(volume, relativePath, inode, parent, buffer.baseAddress, UInt8(buffer.count))
        }
        if status != 0 { throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "remove", errno: errno) }
    }

    public func write(_ data: Data, to relativePath: String) throws {
        try write(relativePath) { attribute in
            try data.withUnsafeBytes { bytes in try self.put(attribute, bytes, at: 0, relativePath) }
            return Int64(data.count)
        }
    }

    public func copy(file source: String, to relativePath: String) throws {
        guard let input = FileHandle(forReadingAtPath: source) else {
            throw VolumeFilesError.operation(volume: device, path: source, operation: "open", errno: errno)
        }
        defer { try? input.close() }
        try write(relativePath) { attribute in
            var offset: Int64 = 0
            while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty {
                try chunk.withUnsafeBytes { try self.put(attribute, $0, at: offset, relativePath) }
                offset += Int64(chunk.count)
            }
            return offset
        }
    }

    public func list(_ relativePath: String) throws -> [(name: String, isDirectory: Bool)]? {
        guard let inode = open(relativePath) else { return nil }
        defer { _ = ntfs_inode_close(inode) }
        guard imprint_ntfs_is_directory(inode) != 0 else { return nil }
        switch NTFSFolder.entries(of: inode) {
        case .success(let entries): return entries.map { ($0.name, $0.isDirectory) }
        case .failure(let failure):
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "read the folder", errno: failure.code)
        }
    }

    public func read(_ relativePath: String) throws -> [UInt8]? {
        guard let inode = open(relativePath) else { return nil }
        defer { _ = ntfs_inode_close(inode) }
        guard imprint_ntfs_is_directory(inode) == 0 else { return nil }
        do {
            return try NTFSDataStream.read(inode, limit: maximumReadSize)
        } catch {
            switch error {
            case .noDataStream(let code):
                throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "open the data stream", errno: code)
            case .tooLarge:
                throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "read (too large)", errno: EFBIG)
            case .read(let code, _, _):
                throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "read", errno: code == 0 ? EIO : code)
            }
        }
    }

    public func read(_ relativePath: String, pieces piece: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard let inode = open(relativePath) else { return false }
        defer { _ = ntfs_inode_close(inode) }
        guard imprint_ntfs_is_directory(inode) == 0 else { return false }
        guard let attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else {
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "open the data stream", errno: errno)
        }
        defer { ntfs_attr_close(attribute) }
        let size = attribute.pointee.data_size
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var done: Int64 = 0
        while done < size {
            let wanted = min(Int64(buffer.count), size - done)
            let count = buffer.withUnsafeMutableBytes { ntfs_attr_pread(attribute, done, wanted, $0.baseAddress) }
            guard count > 0 else {
                throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "read", errno: count < 0 ? errno : EIO)
            }
            try buffer.withUnsafeBytes { try piece(UnsafeRawBufferPointer(rebasing: $0[0..<Int(count)])) }
            done += count
        }
        return true
    }

    public func write(_ relativePath: String, pieces produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        try write(relativePath) { attribute in
            var offset: Int64 = 0
            try produce { bytes in
                try self.put(attribute, bytes, at: offset, relativePath)
                offset += Int64(bytes.count)
            }
            return offset
        }
    }

    /// libntfs-3g has no rename: as ntfs-3g's own driver does, the file gets the new name as a
    /// hard link, then loses the old one. The folder is opened once for both steps: a second
    /// open copy of it (or a file closed without its open folder, see `write`) writes back a
    /// stale index over the first one's changes. A crash between the two steps leaves both
    /// names on one whole file; one before the link leaves the temporary file alone.
    public func rename(_ relativePath: String, to name: String) throws {
        guard let volume else { throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "rename", errno: EBADF) }
        let parts = try volumeComponents(relativePath)
        let destination = (parts.dropLast() + [name]).joined(separator: "/")
        guard try volumeComponents(name).count == 1 else { throw VolumeFilesError.badPath(name) }
        try remove(destination)
        let folder = try openFolder(parts.dropLast(), for: relativePath)
        // Found by name in its folder as `write` found it, not through libntfs-3g's path
        // lookup, whose cache can miss a file created since.
        var oldUnits = UTF16LE.storedUnits(parts[parts.count - 1])
        let reference = oldUnits.withUnsafeMutableBufferPointer { ntfs_inode_lookup_by_name(folder, $0.baseAddress, Int32($0.count)) }
        guard reference != UInt64.max, let inode = ntfs_inode_open(volume, reference & 0x0000_FFFF_FFFF_FFFF) else {
            _ = ntfs_inode_close(folder)
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "rename", errno: ENOENT)
        }
        var newUnits = UTF16LE.storedUnits(name)
        guard newUnits.withUnsafeMutableBufferPointer({ ntfs_link(inode, folder, $0.baseAddress, UInt8($0.count)) }) == 0 else {
            let linkError = errno
            _ = ntfs_inode_close_in_dir(inode, folder)
            _ = ntfs_inode_close(folder)
            throw VolumeFilesError.operation(volume: device, path: destination, operation: "link to \(relativePath)", errno: linkError)
        }
        // ntfs_delete closes both inodes, whatever the outcome.
        let status = oldUnits.withUnsafeMutableBufferPointer { ntfs_delete(volume, relativePath, inode, folder, $0.baseAddress, UInt8($0.count)) }
        if status != 0 { throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "remove the old name", errno: errno) }
    }

    /// libntfs-3g finds each component ignoring case, as Windows does.
    private func open(_ relativePath: String) -> UnsafeMutablePointer<ntfs_inode>? {
        guard let volume else { return nil }
        let parts = relativePath.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        return ntfs_pathname_to_inode(volume, nil, "/" + parts.joined(separator: "/"))
    }

    private func put(_ attribute: UnsafeMutablePointer<ntfs_attr>, _ bytes: UnsafeRawBufferPointer, at offset: Int64, _ path: String) throws {
        var done = 0
        while done < bytes.count, let base = bytes.baseAddress {
            let written = ntfs_attr_pwrite(attribute, offset + Int64(done), Int64(bytes.count - done), base + done)
            guard written > 0 else { throw VolumeFilesError.operation(volume: device, path: path, operation: "write", errno: errno) }
            done += Int(written)
        }
    }

    /// Opens the folder `folders` (components from the root), creating each one that is
    /// missing; the caller closes it.
    private func openFolder(_ folders: ArraySlice<String>, for relativePath: String) throws -> UnsafeMutablePointer<ntfs_inode> {
        guard let volume else { throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "write", errno: EBADF) }
        guard var directory = ntfs_pathname_to_inode(volume, nil, "/") else {
            throw VolumeFilesError.operation(volume: device, path: "/", operation: "open the root folder", errno: errno)
        }
        for name in folders {
            let inode: UnsafeMutablePointer<ntfs_inode>
            do {
                inode = try openOrCreate(name, in: directory, mode: S_IFDIR, for: relativePath)
            } catch {
                _ = ntfs_inode_close(directory)
                throw error
            }
            _ = ntfs_inode_close(directory)
            guard imprint_ntfs_is_directory(inode) != 0 else {
                _ = ntfs_inode_close(inode)
                throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "use \(name) as a folder", errno: ENOTDIR)
            }
            directory = inode
        }
        return directory
    }

    private func openOrCreate(_ name: String, in directory: UnsafeMutablePointer<ntfs_inode>, mode: mode_t, for relativePath: String) throws -> UnsafeMutablePointer<ntfs_inode> {
        var units = UTF16LE.storedUnits(name)
        let found = units.withUnsafeMutableBufferPointer { buffer -> UnsafeMutablePointer<ntfs_inode>? in
            let reference = ntfs_inode_lookup_by_name(directory, buffer.baseAddress, Int32(buffer.count))
            guard reference != UInt64.max, let volume else { return nil }
            return ntfs_inode_open(volume, reference & 0x0000_FFFF_FFFF_FFFF)
        }
        if let found { return found }
        guard let created = units.withUnsafeMutableBufferPointer({ ntfs_create(directory, 0, $0.baseAddress, UInt8($0.count), mode) }) else {
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "create \(name)", errno: errno)
        }
        return created
    }

    /// Opens (creating folders and the file as needed) the unnamed data stream of a file,
    /// empties it, and lets `body` fill it.
    private func write(_ relativePath: String, _ body: (UnsafeMutablePointer<ntfs_attr>) throws -> Int64) throws {
        let parts = try volumeComponents(relativePath)
        let directory = try openFolder(parts.dropLast(), for: relativePath)
        defer { _ = ntfs_inode_close(directory) }
        let inode = try openOrCreate(parts[parts.count - 1], in: directory, mode: S_IFREG, for: relativePath)
        // Closed with its folder still open, so its new size reaches the folder's index through
        // that open copy: a plain close would open the folder a second time and one of the two
        // copies would overwrite the other's index (the file then cannot be found by name).
        defer { _ = ntfs_inode_close_in_dir(inode, directory) }
        guard imprint_ntfs_is_directory(inode) == 0 else {
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "replace a folder with a file", errno: EISDIR)
        }
        guard let attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else {
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "open data", errno: errno)
        }
        defer { ntfs_attr_close(attribute) }
        if attribute.pointee.data_size != 0, ntfs_attr_truncate(attribute, 0) != 0 {
            throw VolumeFilesError.operation(volume: device, path: relativePath, operation: "truncate", errno: errno)
        }
        _ = try body(attribute)
    }
}

/// A directory as a volume: every path opened beneath the root, never through a symlink.
public final class DirectoryVolumeFiles: VolumeFiles {
    private let root: String

    public init(root: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw VolumeFilesError.operation(volume: root, path: "/", operation: "open the target folder", errno: ENOTDIR)
        }
        self.root = root
    }

    public func write(_ data: Data, to relativePath: String) throws {
        let destination = try prepare(relativePath)
        try data.write(to: URL(fileURLWithPath: destination))
    }

    public func copy(file source: String, to relativePath: String) throws {
        let destination = try prepare(relativePath)
        try? FileManager.default.removeItem(atPath: destination)
        try FileManager.default.copyItem(atPath: source, toPath: destination)
    }

    public func list(_ relativePath: String) throws -> [(name: String, isDirectory: Bool)]? {
        guard let folder = resolve(relativePath), let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
            return nil
        }
        return names.sorted().map { name in
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isDirectory)
            return (name, isDirectory.boolValue)
        }
    }

    public func read(_ relativePath: String) throws -> [UInt8]? {
        guard let file = resolve(relativePath) else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "read", errno: errno)
        }
        return [UInt8](data)
    }

    public func remove(_ relativePath: String) throws {
        _ = try volumeComponents(relativePath)
        guard let path = resolve(relativePath) else { return }
        try FileManager.default.removeItem(atPath: path)
    }

    public func read(_ relativePath: String, pieces piece: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard let file = resolve(relativePath) else { return false }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue else { return false }
        guard let input = FileHandle(forReadingAtPath: file) else {
            throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "open", errno: errno)
        }
        defer { try? input.close() }
        while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty {
            try chunk.withUnsafeBytes { try piece($0) }
        }
        return true
    }

    public func write(_ relativePath: String, pieces produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let destination = try prepare(relativePath)
        try? FileManager.default.removeItem(atPath: destination)
        guard FileManager.default.createFile(atPath: destination, contents: nil), let output = FileHandle(forWritingAtPath: destination) else {
            throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "create", errno: errno)
        }
        defer { try? output.close() }
        try produce { try output.write(contentsOf: Data($0)) }
    }

    public func rename(_ relativePath: String, to name: String) throws {
        guard let source = resolve(relativePath) else {
            throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "rename", errno: ENOENT)
        }
        guard try volumeComponents(name).count == 1 else { throw VolumeFilesError.badPath(name) }
        let target = (source as NSString).deletingLastPathComponent + "/" + name
        guard Glibc.rename(source, target) == 0 else {
            throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "rename to \(name)", errno: errno)
        }
    }

    /// A folder is no device of its own: everything the system has cached goes to its disks.
    public func sync() throws { Glibc.sync() }

    public func close() throws {}

    /// Finds each component ignoring case, as it would be found on NTFS.
    private func resolve(_ relativePath: String) -> String? {
        var current = root
        for part in relativePath.split(whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init) {
            guard part != "..", part != "." else { return nil }
            if FileManager.default.fileExists(atPath: current + "/" + part) {
                current += "/" + part
                continue
            }
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: current),
                  let match = names.first(where: { $0.caseInsensitiveCompare(part) == .orderedSame }) else { return nil }
            current += "/" + match
        }
        return current
    }

    private func prepare(_ relativePath: String) throws -> String {
        let parts = try volumeComponents(relativePath)
        var path = root
        for part in parts.dropLast() {
            path += "/" + part
            var info = stat()
            if lstat(path, &info) == 0 {
                guard (info.st_mode & S_IFMT) == S_IFDIR else {
                    throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "use \(part) as a folder", errno: ENOTDIR)
                }
            } else {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            }
        }
        let destination = path + "/" + (parts.last ?? "")
        var info = stat()
        if lstat(destination, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
            throw VolumeFilesError.operation(volume: root, path: relativePath, operation: "write through a symbolic link", errno: ELOOP)
        }
        return destination
    }
}

extension VolumeFilesError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .badPath: return .badInput
        case .operation: return .disk
        }
    }
}
