import DiskModel
import Apply
import CNTFS3G
import Foundation
import Primitives

/// Reads files of the applied Windows volume: an NTFS volume through libntfs-3g with no mount
/// (as the apply writes it), or a folder (a mounted volume, a test's tree). Paths use `/` or
/// `\`, relative to the volume's root; NTFS finds them ignoring case, as Windows does.
public protocol WindowsVolumeReader: AnyObject {
    /// The entries of a folder: names, and whether each is a folder. nil when it does not exist.
    func list(_ path: String) throws -> [(name: String, isDirectory: Bool)]?
    /// A file's bytes, or nil when it does not exist.
    func read(_ path: String) throws -> [UInt8]?
    func close() throws
}

public func openWindowsVolume(_ target: String) throws -> WindowsVolumeReader {
    NTFSTarget.isVolume(target) ? try NTFSVolumeReader(device: target) : DirectoryVolumeReader(root: target)
}

/// Upper bound for one file read whole (hives, boot files): the SOFTWARE hive of a
/// well-used Windows is a few hundred MiB at most.
let maximumFileSize: Int64 = 1 << 30

public final class NTFSVolumeReader: WindowsVolumeReader {
    private let mounted: MountedNTFSVolume
    private var device: String { mounted.device }
    private var volume: UnsafeMutablePointer<ntfs_volume>? { mounted.pointer }

    public init(device: String) throws {
        mounted = try MountedNTFSVolume(device: device)
    }

    public func close() throws {
        if let code = mounted.unmount() { throw BootError.volume(device: device, path: "/", operation: "unmount", errno: code) }
    }

    private func open(_ path: String) -> UnsafeMutablePointer<ntfs_inode>? {
        guard let volume else { return nil }
        let parts = path.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        return ntfs_pathname_to_inode(volume, nil, "/" + parts.joined(separator: "/"))
    }

    public func list(_ path: String) throws -> [(name: String, isDirectory: Bool)]? {
        guard let inode = open(path) else { return nil }
        defer { _ = ntfs_inode_close(inode) }
        guard imprint_ntfs_is_directory(inode) != 0 else { return nil }
        final class Collector { var entries: [(name: String, isDirectory: Bool)] = [] }
        let collector = Collector()
        var position: s64 = 0
        let context = Unmanaged.passUnretained(collector).toOpaque()
        let status = ntfs_readdir(inode, &position, context) { context, name, length, nameType, _, _, type in
            // DOS 8.3 aliases (namespace 2) repeat a long name: skip them.
            guard let context, let name, nameType != 2 else { return 0 }
            let text = UTF16LE.decode(storedUnits: UnsafeBufferPointer(start: name, count: Int(length)))
            guard text != ".", text != ".." else { return 0 }
            let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
            collector.entries.append((text, type == 4))
            return 0
        }
        guard status == 0 else { throw BootError.volume(device: device, path: path, operation: "read the folder", errno: errno) }
        return collector.entries
    }

    public func read(_ path: String) throws -> [UInt8]? {
        guard let inode = open(path) else { return nil }
        defer { _ = ntfs_inode_close(inode) }
        guard imprint_ntfs_is_directory(inode) == 0 else { return nil }
        guard let attribute = ntfs_attr_open(inode, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else {
            throw BootError.volume(device: device, path: path, operation: "open the data stream", errno: errno)
        }
        defer { ntfs_attr_close(attribute) }
        let size = attribute.pointee.data_size
        guard size <= maximumFileSize else { throw BootError.volume(device: device, path: path, operation: "read (too large)", errno: EFBIG) }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        var done: Int64 = 0
        while done < size {
            let count = bytes.withUnsafeMutableBytes { buffer -> s64 in
                guard let base = buffer.baseAddress else { return 0 }
                return ntfs_attr_pread(attribute, done, size - done, base + Int(done))
            }
            guard count > 0 else { throw BootError.volume(device: device, path: path, operation: "read", errno: count < 0 ? errno : EIO) }
            done += count
        }
        return bytes
    }
}

public final class DirectoryVolumeReader: WindowsVolumeReader {
    private let root: String

    public init(root: String) { self.root = root }

    /// Finds each component ignoring case, as it would be found on NTFS.
    private func resolve(_ path: String) -> String? {
        var current = root
        for part in path.split(whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init) {
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

    public func list(_ path: String) throws -> [(name: String, isDirectory: Bool)]? {
        guard let folder = resolve(path), let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return nil }
        return names.sorted().map { name in
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isDirectory)
            return (name, isDirectory.boolValue)
        }
    }

    public func read(_ path: String) throws -> [UInt8]? {
        guard let file = resolve(path) else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw BootError.volume(device: root, path: path, operation: "read", errno: errno)
        }
        return [UInt8](data)
    }

    public func close() throws {}
}
