#if canImport(Glibc)
import Glibc
#endif
import CImprintSystem
import Primitives
import WIM

/// Captures a directory tree: directories, regular files, symbolic links (as Windows symlink
/// reparse points, the way wimlib stores UNIX symlinks) and hard links (one link group per
/// inode with several names), times from `lstat`. The Windows metadata our `DirectoryTarget`
/// keeps in `user.wim.*` extended attributes (short name, attributes, security descriptor,
/// object ID, named streams) is read back and wins over what `lstat` says, so a directory an
/// image was applied to captures into the same image. Other kinds of files (devices, FIFOs,
/// sockets) and names that are not UTF-8 are skipped and listed in the summary.
///
/// Directories are not followed across symlinks; each directory's entries are taken in byte
/// order of their names, so the same tree always gives the same image.
public final class DirectorySource: CaptureSource {
    public let root: String
    /// The root as an absolute path with symlinks resolved: absolute symlinks pointing under
    /// it are stored relative to the image root ("fixed", as wimlib's rpfix does).
    private let resolvedRoot: String
    public private(set) var summary = CaptureSummary()
    private var xattrsUnsupported = false
    /// Files never captured (the WIM being written, when it lies inside the tree), by inode.
    private var excluded = Set<InodeKey>()
    /// What to leave out or store uncompressed (`--config`); nothing by default.
    public var config = CaptureConfig()
    /// Pass 2 reads every file through this one buffer: a new 1 MiB buffer per file cost more
    /// than reading a small file (zeroing it).
    private var readBuffer = [UInt8](repeating: 0, count: 1 << 20)

    public init(root: String) throws {
        var info = stat()
        guard stat(root, &info) == 0 else { throw WIMWriteError.sourceNotAFolder(path: root, errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw WIMWriteError.sourceNotAFolder(path: root, errno: ENOTDIR) }
        self.root = root
        guard let resolved = realpath(root, nil) else { throw WIMWriteError.io(path: root, operation: "resolve the folder to capture", errno: errno) }
        resolvedRoot = String(cString: resolved)
        free(resolved)
    }

    /// Leaves the file at `path` out of the capture wherever it appears in the tree (by inode,
    /// so any name of it): the WIM being written must not capture itself.
    public func exclude(_ path: String) {
        var info = stat()
        if stat(path, &info) == 0 { excluded.insert(InodeKey(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))) }
    }

    private func full(_ relative: String) -> String { relative.isEmpty ? root : root + "/" + relative }

    public func scan(progress: (Int) -> Void) throws -> [CaptureItem] {
        var items: [CaptureItem] = []
        var linkKeys: [InodeKey: UInt64] = [:]
        var rootInfo = stat()
        guard stat(root, &rootInfo) == 0 else {
            throw WIMWriteError.io(path: root, operation: "stat", errno: errno)
        }
        var rootItem = CaptureItem(path: "", name: "", attributes: .directory)
        apply(rootInfo, to: &rootItem)
        readXattrs(of: &rootItem, isDirectory: true)
        items.append(rootItem)
        summary.directories += 1
        // Depth-first with an explicit stack; children are appended together after their parent.
        var pending = [0]
        var scopes: [Int: CaptureConfig.Scope] = [0: CaptureConfig.Scope()]
        while let index = pending.popLast() {
            let relative = items[index].path
            let scope = scopes.removeValue(forKey: index) ?? CaptureConfig.Scope()
            let parentComponents = relative.isEmpty ? [] : relative.split(separator: "/").map(String.init)
            let names = try listDirectory(relative)
            var children: [Int] = []
            for name in names {
                let childPath = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(full(childPath), &info) == 0 else {
                    throw WIMWriteError.io(path: full(childPath), operation: "stat", errno: errno)
                }
                if excluded.contains(InodeKey(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))) { continue }
                let components = parentComponents + [name]
                guard case let .include(childScope) = config.decide(components, isDirectory: (info.st_mode & S_IFMT) == S_IFDIR, in: scope) else {
                    summary.note("excluded by the capture configuration", full(childPath))
                    continue
                }
                var item = CaptureItem(path: childPath, name: name, attributes: [])
                item.compress = !config.storesUncompressed(components)
                apply(info, to: &item)
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    item.attributes = .directory
                    readXattrs(of: &item, isDirectory: true)
                    summary.directories += 1
                case S_IFREG:
                    item.attributes = .normal
                    item.dataSize = UInt64(info.st_size)
                    readXattrs(of: &item, isDirectory: false)
                    if info.st_nlink > 1 {
                        let key = InodeKey(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
                        if let group = linkKeys[key] {
                            item.linkKey = group
                            summary.hardLinks += 1
                        } else {
                            item.linkKey = UInt64(linkKeys.count + 1)
                            linkKeys[key] = item.linkKey
                        }
                    }
                    summary.files += 1
                case S_IFLNK:
                    guard let link = symlink(childPath) else { continue }
                    item.attributes = [.reparsePoint]
                    var target = stat()
                    if stat(full(childPath), &target) == 0, (target.st_mode & S_IFMT) == S_IFDIR { item.attributes.insert(.directory) }
                    item.reparse = link
                    summary.symlinks += 1
                default:
                    summary.note("not a file, folder or symlink (device, FIFO or socket), not captured", full(childPath))
                    continue
                }
                if item.isDirectory { scopes[items.count] = childScope }
                children.append(items.count)
                items.append(item)
                progress(items.count)
            }
            items[index].children = children
            for child in children.reversed() where items[child].isDirectory { pending.append(child) }
        }
        return items
    }

    struct InodeKey: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    public func readData(of item: CaptureItem, stream: String?, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        let path = full(item.path)
        if let stream {
            // Named streams live in user.wim.stream.NAME extended attributes.
            let name = "user.wim.stream." + stream
            guard let value = getXattr(path, name) else {
                throw WIMWriteError.io(path: path + ":" + stream, operation: "read extended attribute \(name)", errno: errno)
            }
            guard UInt64(value.count) == item.namedStreams.first(where: { $0.name == stream })?.size else {
                throw WIMWriteError.changedWhileReading(path: path + ":" + stream, expected: item.namedStreams.first(where: { $0.name == stream })?.size ?? 0, got: UInt64(value.count))
            }
            try value.withUnsafeBytes { try consume($0) }
            return
        }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw WIMWriteError.io(path: path, operation: "open for reading", errno: errno) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        while true {
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw WIMWriteError.io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { return }
            try readBuffer.withUnsafeBytes { try consume(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    /// The entries of a directory (not "." and ".."), in byte order; names that are not UTF-8
    /// cannot be stored in a WIM and are noted.
    private func listDirectory(_ relative: String) throws -> [String] {
        let path = full(relative)
        guard let dir = opendir(path) else { throw WIMWriteError.io(path: path, operation: "open folder", errno: errno) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw WIMWriteError.io(path: path, operation: "read folder", errno: errno) }
                break
            }
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes == [0x2E] || bytes == [0x2E, 0x2E] { continue }
            names.append(bytes)
        }
        names.sort { $0.lexicographicallyPrecedes($1) }
        var result: [String] = []
        for bytes in names {
            guard let name = String(validating: bytes, as: UTF8.self) else {
                summary.note("name is not UTF-8, not captured", path + "/" + String(decoding: bytes, as: UTF8.self))
                continue
            }
            result.append(name)
        }
        return result
    }

    private func apply(_ info: stat, to item: inout CaptureItem) {
        item.lastWriteTime = WIMWriter.filetime(seconds: Int64(info.st_mtim.tv_sec), nanoseconds: Int64(info.st_mtim.tv_nsec))
        item.lastAccessTime = WIMWriter.filetime(seconds: Int64(info.st_atim.tv_sec), nanoseconds: Int64(info.st_atim.tv_nsec))
        // Linux's stat has no creation time; the last change of the contents stands in for it.
        item.creationTime = item.lastWriteTime
    }

    /// A symlink as Windows symlink reparse data: relative targets keep their form (with
    /// backslashes); absolute targets under the capture root are stored relative to the image
    /// root ("fixed"), others as they are, marked not fixed.
    private func symlink(_ relative: String) -> (tag: UInt32, data: [UInt8], flags: UInt16)? {
        let path = full(relative)
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else {
            summary.note("symlink that could not be read, not captured", path)
            return nil
        }
        guard let text = String(validating: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self) else {
            summary.note("symlink target is not UTF-8, not captured", path)
            return nil
        }
        func windows(_ s: String) -> String { String(String.UnicodeScalarView(s.unicodeScalars.map { $0 == "/" ? "\\" : $0 })) }
        if !text.hasPrefix("/") {
            let name = windows(text)
            return (ReparseTag.symlink, Self.symlinkData(substitute: name, print: name, relative: true), 0)
        }
        var absolute = text
        var fixed = false
        if absolute == resolvedRoot || absolute.hasPrefix(resolvedRoot == "/" ? "/" : resolvedRoot + "/") {
            absolute = resolvedRoot == "/" ? absolute : String(absolute.dropFirst(resolvedRoot.count))
            if absolute.isEmpty { absolute = "/" }
            fixed = true
        }
        let name = "C:" + windows(absolute)
        return (ReparseTag.symlink, Self.symlinkData(substitute: "\\??\\" + name, print: name, relative: false), fixed ? 0 : 1)
    }

    /// The symlink reparse buffer after its 8-byte header: name offsets and lengths, flags,
    /// then the substitute and print names (UTF-16LE, each followed by a NUL the lengths do
    /// not count).
    static func symlinkData(substitute: String, print: String, relative: Bool) -> [UInt8] {
        let s = UTF16LE.encode(substitute)
        let p = UTF16LE.encode(print)
        var out: [UInt8] = []
        out += UInt16(0).littleEndianBytes
        out += UInt16(s.count).littleEndianBytes
        out += UInt16(s.count + 2).littleEndianBytes
        out += UInt16(p.count).littleEndianBytes
        out += UInt32(relative ? 1 : 0).littleEndianBytes
        return out + s + [0, 0] + p + [0, 0]
    }

    // MARK: Windows metadata kept in extended attributes

    private func readXattrs(of item: inout CaptureItem, isDirectory: Bool) {
        guard !xattrsUnsupported else { return }
        let path = full(item.path)
        let names = listXattrs(path)
        guard !names.isEmpty else { return }
        if names.contains("user.wim.dos_name"), let v = getXattr(path, "user.wim.dos_name"),
           let s = String(validating: v, as: UTF8.self) {
            item.shortName = s
        }
        if names.contains("user.wim.attributes"), let v = getXattr(path, "user.wim.attributes"),
           let raw = UInt32(String(decoding: v, as: UTF8.self), radix: 16) {
            // The file's kind is what the folder holds now, whatever the attributes said.
            var attributes = FileAttributes(rawValue: raw).subtracting([.directory, .reparsePoint])
            if isDirectory { attributes.insert(.directory) }
            if attributes.isEmpty { attributes = .normal }
            item.attributes = attributes
        }
        if names.contains("user.wim.security_descriptor"), let v = getXattr(path, "user.wim.security_descriptor"), !v.isEmpty {
            item.securityDescriptor = v
        }
        if names.contains("user.wim.object_id"), let v = getXattr(path, "user.wim.object_id"), !v.isEmpty {
            item.objectID = v
        }
        let prefix = "user.wim.stream."
        for name in names where name.hasPrefix(prefix) && name.count > prefix.count {
            // Only the size now: the data is read in pass 2 like a file's.
            let size = lgetxattr(path, name, nil, 0)
            if size >= 0 {
                item.namedStreams.append(CaptureStream(name: String(name.dropFirst(prefix.count)), size: UInt64(size)))
            } else {
                summary.note("could not read extended attribute \(name) (\(String(cString: strerror(errno))))", path)
            }
        }
    }

    private func listXattrs(_ path: String) -> [String] {
        let size = llistxattr(path, nil, 0)
        if size < 0 {
            if errno == ENOTSUP || errno == EOPNOTSUPP { xattrsUnsupported = true }
            return []
        }
        guard size > 0 else { return [] }
        var buffer = [CChar](repeating: 0, count: size)
        let n = llistxattr(path, &buffer, size)
        guard n > 0 else { return [] }
        return buffer.prefix(n).split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    private func getXattr(_ path: String, _ name: String) -> [UInt8]? {
        let size = lgetxattr(path, name, nil, 0)
        guard size >= 0 else {
            summary.note("could not read extended attribute \(name) (\(String(cString: strerror(errno))))", path)
            return nil
        }
        var buffer = [UInt8](repeating: 0, count: size)
        let n = lgetxattr(path, name, &buffer, size)
        guard n >= 0 else { return nil }
        return Array(buffer.prefix(n))
    }
}
