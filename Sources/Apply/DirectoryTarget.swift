import Failures
import CImprintSystem
import WIM
#if canImport(Glibc)
import Glibc
#endif

/// Applies an image to a directory of any POSIX filesystem.
///
/// Nothing already in the directory that the image does not contain is removed; what the image
/// contains replaces what is there (a file or symlink in the way of a new file is unlinked first,
/// never followed). Every operation (open, mkdir, link, unlink, symlink, stat, times, xattrs)
/// works on a name inside a parent directory that was opened with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or, before Linux 5.6, one component at a time
/// with `O_NOFOLLOW`), so neither a name in the image nor a symlink already in the directory, nor
/// a chain of them, nor `..`, can lead a write outside it. Symlinks the image creates are checked
/// by resolving them through every link they pass, not by their text alone. What a POSIX
/// directory cannot hold (security descriptors, DOS names, attributes, named streams) goes into
/// `user.wim.*` extended attributes, or is listed in the summary.
public final class DirectoryTarget: ApplyTarget {
    public let root: String
    /// The root as an absolute path, as it was when the target was opened: where re-rooted
    /// absolute symlinks point.
    private let absoluteRoot: String
    public private(set) var summary = ApplySummary()
    /// Keep Windows metadata in `user.wim.*` extended attributes.
    public var keepMetadataInXattrs = true
    private var rootFD: Int32 = -1
    /// False after openat2 answered ENOSYS (Linux < 5.6); tests clear it to run the fallback.
    var haveOpenat2 = true
    /// The symlinks created from the image, checked once all of them exist.
    private var createdSymlinks: [(relative: String, imagePath: String)] = []
    private var xattrsUnsupported = false
    /// The folder the last operation worked in, kept open: the image lists a folder's entries
    /// together, so most operations reuse it instead of opening their parent again (one
    /// openat2 per file, not three).
    private var lastParent: (directory: String, fd: Int32)?

    // The blob being written.
    private var openFiles: [Int32] = []
    private var collectTargets: [StreamTarget] = []
    private var collected: [UInt8] = []
    private var collectLimit = 0

    /// Named streams up to this size go into an xattr (ext4 allows one block per value).
    static let maxXattrValue = 4000

    public init(root: String) throws {
        self.root = root
        absoluteRoot = root.hasPrefix("/") ? root : DirectoryTarget.currentDirectory() + "/" + root
        try DirectoryTarget.makeDirectories(root)
        rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if rootFD < 0 { throw ApplyError.io(path: root, operation: "open target directory", errno: errno) }
    }

    deinit {
        for fd in openFiles { close(fd) }
        if let lastParent { close(lastParent.fd) }
        if rootFD >= 0 { close(rootFD) }
    }

    private static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw ApplyError.io(path: current, operation: "create directory", errno: errno)
            }
        }
    }

    // MARK: Safe path operations

    /// Opens `relative` beneath the root, never following a symlink in any component and never
    /// leaving the root; -1 with errno set otherwise (ELOOP, EXDEV or ENOTDIR for a path that
    /// would pass a symlink or `..`).
    func openBeneath(_ relative: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        let path = relative.isEmpty ? "." : relative
        if haveOpenat2 {
            let fd = imprint_open_beneath(rootFD, path, flags | O_CLOEXEC, UInt32(mode))
            if fd >= 0 || imprint_errno() != ENOSYS { return fd }
            haveOpenat2 = false
        }
        // Older kernels: the same rule, one component at a time, each opened relative to its
        // parent's descriptor with O_NOFOLLOW, so no component is ever looked up by path.
        let components = path.split(separator: "/").map(String.init).filter { $0 != "." }
        if components.contains("..") {
            errno = EXDEV
            return -1
        }
        guard let last = components.last else {
            return imprint_openat(rootFD, ".", flags | O_NOFOLLOW | O_CLOEXEC, UInt32(mode))
        }
        var current = rootFD
        defer { if current != rootFD { close(current) } }
        for component in components.dropLast() {
            let next = imprint_openat(current, component, imprint_o_path | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0)
            if next < 0 {
                // A symlink opened with O_PATH | O_NOFOLLOW | O_DIRECTORY fails with ENOTDIR;
                // say ELOOP, as openat2 does, so callers see one answer for both.
                let code = errno
                var info = stat()
                errno = fstatat(current, component, &info, AT_SYMLINK_NOFOLLOW) == 0 && (info.st_mode & S_IFMT) == S_IFLNK ? ELOOP : code
                return -1
            }
            if current != rootFD { close(current) }
            current = next
        }
        return imprint_openat(current, last, flags | O_NOFOLLOW | O_CLOEXEC, UInt32(mode))
    }

    /// The directory holding `relative`, opened beneath the root with no symlink on the way,
    /// and the last name in it: every operation on the tree goes through one, so a path is
    /// never resolved by the kernel from the root past a symlink. The target owns `fd` (the
    /// root, or the last folder it opened).
    struct Parent {
        let fd: Int32
        let name: String
    }

    func parent(of relative: String, imagePath: String) throws -> Parent {
        let (directory, name) = try Self.split(relative, root: root, imagePath: imagePath)
        guard let directory else { return Parent(fd: rootFD, name: name) }
        if let lastParent, lastParent.directory == directory { return Parent(fd: lastParent.fd, name: name) }
        let fd = try openFolder(directory, imagePath: imagePath)
        if let lastParent { close(lastParent.fd) }
        lastParent = (directory, fd)
        return Parent(fd: fd, name: name)
    }

    /// The parent of `relative` in a descriptor of its own, which the caller closes: for an
    /// operation that needs two folders at once (a hard link's source and its new name).
    private func ownParent(of relative: String, imagePath: String) throws -> (fd: Int32, name: String) {
        let (directory, name) = try Self.split(relative, root: root, imagePath: imagePath)
        guard let directory else { return (dup(rootFD), name) }
        return (try openFolder(directory, imagePath: imagePath), name)
    }

    /// `a/b/c` as its folder `a/b` (nil for the root) and its name `c`, refusing `.`, `..` and
    /// empty names.
    private static func split(_ relative: String, root: String, imagePath: String) throws -> (directory: String?, name: String) {
        let directory = relative.lastIndex(of: "/").map { String(relative[..<$0]) }
        let name = relative.lastIndex(of: "/").map { String(relative[relative.index(after: $0)...]) } ?? relative
        guard !name.isEmpty, name != ".", name != ".." else {
            throw ApplyError.unsafePath(path: root + "/" + relative, imagePath: imagePath, errno: EXDEV)
        }
        return (directory, name)
    }

    private func openFolder(_ directory: String, imagePath: String) throws -> Int32 {
        let fd = openBeneath(directory, imprint_o_path | O_DIRECTORY)
        if fd < 0 {
            let code = errno
            if code == ELOOP || code == EXDEV || code == ENOTDIR {
                throw ApplyError.unsafePath(path: root + "/" + firstUnsafeFolder(of: directory), imagePath: imagePath, errno: code)
            }
            throw ApplyError.io(path: root + "/" + directory, operation: "open the folder", errno: code)
        }
        return fd
    }

    /// The shortest leading part of `directory` that cannot be opened beneath the root (the
    /// symlink, or the `..`), so the message names what to remove.
    private func firstUnsafeFolder(of directory: String) -> String {
        var prefix = ""
        for component in directory.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + component
            let fd = openBeneath(prefix, imprint_o_path | O_DIRECTORY)
            if fd < 0 { return prefix }
            close(fd)
        }
        return directory
    }

    /// Runs `body` with the parent of `relative` open; its result is a system call's (0 or -1
    /// with errno).
    private func at(_ relative: String, imagePath: String, _ body: (Int32, String) -> Int32) throws -> Int32 {
        let parent = try parent(of: relative, imagePath: imagePath)
        return body(parent.fd, parent.name)
    }

    private func kind(of relative: String, imagePath: String) throws -> mode_t? {
        var info = stat()
        if relative.isEmpty || relative == "." {
            return fstat(rootFD, &info) == 0 ? info.st_mode & S_IFMT : nil
        }
        let rc = try at(relative, imagePath: imagePath) { fstatat($0, $1, &info, AT_SYMLINK_NOFOLLOW) }
        return rc == 0 ? info.st_mode & S_IFMT : nil
    }

    /// Removes a file or symlink standing where the image puts something else. Directories are
    /// never removed: they may hold files the image does not know.
    private func clearWay(for relative: String, imagePath: String) throws {
        guard let existing = try kind(of: relative, imagePath: imagePath) else { return }
        if existing == S_IFDIR {
            throw ApplyError.wouldReplaceDirectory(path: root + "/" + relative, imagePath: imagePath)
        }
        if try at(relative, imagePath: imagePath, { unlinkat($0, $1, 0) }) != 0 && errno != ENOENT {
            throw ApplyError.io(path: root + "/" + relative, operation: "remove the old file in the way", errno: errno)
        }
    }

    /// Opens a path for writing, refusing one that passes a symlink: the error names it.
    private func openForWriting(_ relative: String, _ flags: Int32, imagePath: String, operation: String) throws -> Int32 {
        let fd = openBeneath(relative, flags, 0o644)
        if fd >= 0 { return fd }
        let code = errno
        // Which component is the problem: a parent (never written through), or the file itself.
        _ = try parent(of: relative, imagePath: imagePath)
        throw ApplyError.io(path: root + "/" + relative, operation: operation, errno: code)
    }

    // MARK: ApplyTarget

    public func createStructure(_ plan: ApplyPlan, stop: ApplyStop?, progress: (Int) -> Void) throws {
        for (n, item) in plan.items.enumerated() {
            if n & 1023 == 0 { progress(n) }
            // Between items: a safe point to stop at on SIGTERM/SIGINT.
            if n & 15 == 0 { try checkApplyStop(stop) }
            let entry = plan.image.entries[item.entry]
            let imagePath = plan.image.path(of: item.entry)
            let rel = item.relativePath
            if rel.isEmpty { summary.directories += 1; continue }
            if let first = item.linkTo {
                let target = plan.items[first].relativePath
                let source = try ownParent(of: target, imagePath: plan.image.path(of: plan.items[first].entry))
                defer { close(source.fd) }
                let link = { try self.at(rel, imagePath: imagePath) { linkat(source.fd, source.name, $0, $1, 0) } }
                if try link() != 0 {
                    guard errno == EEXIST else { throw ApplyError.io(path: root + "/" + rel, operation: "create hard link", errno: errno) }
                    try clearWay(for: rel, imagePath: imagePath)
                    if try link() != 0 {
                        throw ApplyError.io(path: root + "/" + rel, operation: "create hard link", errno: errno)
                    }
                }
                summary.hardLinks += 1
                continue
            }
            if entry.isReparsePoint {
                // Created when its reparse data arrives; clear the way now so a stale file does not linger.
                if entry.reparseHash.isZero {
                    summary.note("reparse point with no reparse data, not created", imagePath)
                }
                continue
            }
            if entry.isDirectory {
                let makeDirectory = { try self.at(rel, imagePath: imagePath) { mkdirat($0, $1, 0o755) } }
                if try makeDirectory() != 0 {
                    guard errno == EEXIST else { throw ApplyError.io(path: root + "/" + rel, operation: "create directory", errno: errno) }
                    if try kind(of: rel, imagePath: imagePath) != S_IFDIR {
                        // A file or symlink is where the image has a directory: the image wins,
                        // and the symlink is removed, never followed.
                        try clearWay(for: rel, imagePath: imagePath)
                        if try makeDirectory() != 0 {
                            throw ApplyError.io(path: root + "/" + rel, operation: "create directory", errno: errno)
                        }
                    }
                }
                summary.directories += 1
                continue
            }
            var fd = openBeneath(rel, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd < 0 && (errno == ELOOP || errno == EISDIR || errno == EXDEV) {
                // clearWay opens the parent first: a symlink there stops the apply, named.
                try clearWay(for: rel, imagePath: imagePath)
                fd = try openForWriting(rel, O_WRONLY | O_CREAT | O_TRUNC, imagePath: imagePath, operation: "create file")
            }
            if fd < 0 { throw ApplyError.io(path: root + "/" + rel, operation: "create file", errno: errno) }
            close(fd)
            summary.files += 1
        }
        progress(plan.items.count)
    }

    public func beginBlob(_ blob: BlobDescriptor, targets: [StreamTarget], plan: ApplyPlan) throws {
        collectTargets = []
        collected.removeAll(keepingCapacity: true)
        collectLimit = 0
        for target in targets {
            let item = plan.items[target.item]
            switch target.kind {
            case .data:
                let fd = try openForWriting(item.relativePath, O_WRONLY, imagePath: plan.image.path(of: item.entry), operation: "open for writing")
                openFiles.append(fd)
            case .reparse:
                collectTargets.append(target)
                collectLimit = max(collectLimit, 16 * 1024)
            case .named:
                collectTargets.append(target)
                collectLimit = max(collectLimit, DirectoryTarget.maxXattrValue)
            }
        }
        if !collectTargets.isEmpty && blob.size > UInt64(collectLimit) {
            // Too large for what it is going to: note it, and only write the data targets.
            for target in collectTargets {
                let path = plan.image.path(of: plan.items[target.item].entry)
                if case let .named(name) = target.kind {
                    summary.note("named stream larger than an extended attribute can hold, not kept", path + ":" + name)
                } else {
                    summary.note("reparse data larger than 16 KiB, not applied", path)
                }
            }
            collectTargets = []
        }
        currentPlan = plan
    }

    private var currentPlan: ApplyPlan?

    public func blobData(_ data: UnsafeRawBufferPointer) throws {
        for fd in openFiles {
            var done = 0
            while done < data.count {
                let n = write(fd, data.baseAddress! + done, data.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ApplyError.io(path: root, operation: "write file data", errno: errno)
                }
                done += n
            }
            summary.bytesWritten += UInt64(data.count)
        }
        if !collectTargets.isEmpty { collected.append(contentsOf: data) }
    }

    public func endBlob() throws {
        for fd in openFiles {
            if close(fd) != 0 { throw ApplyError.io(path: root, operation: "close file", errno: errno) }
        }
        openFiles.removeAll(keepingCapacity: true)
        guard let plan = currentPlan else { return }
        for target in collectTargets {
            let item = plan.items[target.item]
            let entry = plan.image.entries[item.entry]
            switch target.kind {
            case .reparse:
                try createSymlink(item, entry, plan)
            case let .named(name):
                setXattr(item.relativePath, "user.wim.stream." + name, collected, imagePath: plan.image.path(of: item.entry))
            case .data:
                break
            }
        }
        collectTargets = []
    }

    /// A symlink or junction becomes a POSIX symlink when its target stays inside the target
    /// directory; absolute targets fixed at capture ("rpfix") are re-rooted at the target.
    private func createSymlink(_ item: PlannedItem, _ entry: DirectoryEntry, _ plan: ApplyPlan) throws {
        let imagePath = plan.image.path(of: item.entry)
        guard let link = SymbolicLinkTarget(tag: entry.reparseTag, data: collected), let posix = link.posixTarget else {
            summary.note("reparse point (tag 0x\(String(entry.reparseTag, radix: 16, uppercase: true))) with no POSIX equivalent, not created", imagePath)
            return
        }
        let depth = item.relativePath.split(separator: "/").count - 1
        let target: String
        if link.isRelative {
            guard DirectoryTarget.staysInside(posix, depth: depth) else {
                summary.note("symlink pointing outside the target, not created", imagePath + " -> " + posix)
                return
            }
            target = posix
        } else {
            // An absolute target is inside the image only if capture fixed it ("rpfix": the
            // capture root was cut off and bit 0 of the flags cleared); otherwise it names a
            // path on the machine the image came from.
            guard entry.reparseFlags & 1 == 0, DirectoryTarget.staysInside(String(posix.dropFirst()), depth: 0) else {
                summary.note("symlink pointing outside the target, not created", imagePath + " -> " + posix)
                return
            }
            target = absoluteRoot + posix
        }
        let makeLink = { try self.at(item.relativePath, imagePath: imagePath) { symlinkat(target, $0, $1) } }
        if try makeLink() != 0 {
            guard errno == EEXIST else { throw ApplyError.io(path: root + "/" + item.relativePath, operation: "create symlink", errno: errno) }
            try clearWay(for: item.relativePath, imagePath: imagePath)
            if try makeLink() != 0 {
                throw ApplyError.io(path: root + "/" + item.relativePath, operation: "create symlink", errno: errno)
            }
        }
        createdSymlinks.append((item.relativePath, imagePath))
        summary.symlinks += 1
    }

    /// Whether `relative`, resolved lexically from a directory `depth` levels below the root,
    /// stays within the root.
    static func staysInside(_ relative: String, depth: Int) -> Bool {
        if relative.hasPrefix("/") { return false }
        var level = depth
        for component in relative.split(separator: "/") {
            if component == ".." { level -= 1 } else if component != "." { level += 1 }
            if level < 0 { return false }
        }
        return true
    }

    private func setXattr(_ relative: String, _ name: String, _ value: [UInt8], imagePath: String) {
        guard keepMetadataInXattrs else { return }
        if xattrsUnsupported {
            summary.note("extended attributes unsupported by the target filesystem: \(name.split(separator: ".").prefix(3).joined(separator: ".")) not kept", imagePath)
            return
        }
        // Through a descriptor opened beneath the root: a path would follow symlinks on the way.
        let fd = relative.isEmpty ? rootFD : openBeneath(relative, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else {
            summary.note("could not open to set extended attribute \(name) (\(String(cString: strerror(errno))))", imagePath)
            return
        }
        defer { if fd != rootFD { close(fd) } }
        let rc = value.withUnsafeBytes { fsetxattr(fd, name, $0.baseAddress, $0.count, 0) }
        if rc != 0 {
            if errno == ENOTSUP || errno == EOPNOTSUPP { xattrsUnsupported = true }
            summary.note("could not set extended attribute \(name) (\(String(cString: strerror(errno))))", imagePath)
            return
        }
        summary.xattrsWritten += 1
    }

    /// Whether following the symlink at `relative`, and every symlink its way passes (at most
    /// 40, as the kernel allows), stays inside the root. Each link's text may look inside on
    /// its own (`a -> ..` one level down) while a chain of them leaves (`b -> a/../..`); only
    /// walking the links finds that. A part that does not exist yet is judged by its text.
    func symlinkStaysInside(_ relative: String) -> Bool {
        let base = absoluteRoot
        var resolved: [String] = []
        var pending = Array(relative.split(separator: "/").map(String.init).reversed())
        var hops = 0
        while let component = pending.popLast() {
            if component.isEmpty || component == "." { continue }
            if component == ".." {
                if resolved.isEmpty { return false }
                resolved.removeLast()
                continue
            }
            let path = (resolved + [component]).joined(separator: "/")
            var info = stat()
            guard fstatat(rootFD, path, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                let rest = ([component] + pending.reversed()).joined(separator: "/")
                return DirectoryTarget.staysInside(rest, depth: resolved.count)
            }
            guard (info.st_mode & S_IFMT) == S_IFLNK else {
                resolved.append(component)
                continue
            }
            hops += 1
            guard hops <= 40, let target = readLink(path) else { return false }
            var text = target
            if text.hasPrefix("/") {
                // Only an absolute target this apply re-rooted at the root points inside.
                guard text == base || text.hasPrefix(base + "/") else { return false }
                text = String(text.dropFirst(base.count))
                resolved = []
            }
            pending += text.split(separator: "/").map(String.init).reversed()
        }
        return true
    }

    private func readLink(_ relative: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = readlinkat(rootFD, relative, &buffer, buffer.count - 1)
        guard count >= 0 else { return nil }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes the image's symlinks whose chain leads outside the target (their text alone
    /// looked inside, or they would not have been made).
    private func removeEscapingSymlinks() throws {
        for link in createdSymlinks where !symlinkStaysInside(link.relative) {
            if try at(link.relative, imagePath: link.imagePath, { unlinkat($0, $1, 0) }) != 0 && errno != ENOENT {
                throw ApplyError.io(path: root + "/" + link.relative, operation: "remove a symlink leading outside the target", errno: errno)
            }
            summary.symlinks -= 1
            summary.note("symlink leading outside the target through other symlinks, removed", link.imagePath)
        }
        createdSymlinks = []
    }

    public func finish(_ plan: ApplyPlan) throws {
        try removeEscapingSymlinks()
        // Metadata that has no POSIX home goes into xattrs (only where it says something).
        let plainAttributes: FileAttributes = [.directory, .archive, .normal]
        for item in plan.items where item.linkTo == nil {
            let entry = plan.image.entries[item.entry]
            let imagePath = plan.image.path(of: item.entry)
            if entry.isReparsePoint, try kind(of: item.relativePath, imagePath: imagePath) != S_IFLNK { continue }
            if entry.isReparsePoint {
                // Linux keeps no user xattrs on symlinks; say so once per link that carries more.
                if !entry.shortName.isEmpty || entry.securityID >= 0 {
                    summary.note("Windows metadata of a symlink (Linux symlinks hold no user xattrs), not kept", imagePath)
                }
                continue
            }
            if !entry.shortName.isEmpty {
                setXattr(item.relativePath, "user.wim.dos_name", Array(entry.shortName.utf8), imagePath: imagePath)
            }
            if !entry.attributes.subtracting(plainAttributes).isEmpty {
                setXattr(item.relativePath, "user.wim.attributes", Array(String(entry.attributes.rawValue, radix: 16).utf8), imagePath: imagePath)
            }
            if entry.securityID >= 0 {
                if Int(entry.securityID) < plan.image.securityDescriptors.count {
                    setXattr(item.relativePath, "user.wim.security_descriptor", plan.image.securityDescriptors[Int(entry.securityID)], imagePath: imagePath)
                } else {
                    summary.note("security ID \(entry.securityID) names no descriptor in the image, ignored", imagePath)
                }
            }
            if let objectID = entry.objectID {
                setXattr(item.relativePath, "user.wim.object_id", objectID, imagePath: imagePath)
            }
        }
        // Times last, deepest first, so creating children does not disturb a directory's times.
        for item in plan.items.reversed() where item.linkTo == nil {
            let entry = plan.image.entries[item.entry]
            var times = [DirectoryTarget.timespec(filetime: entry.lastAccessTime), DirectoryTarget.timespec(filetime: entry.lastWriteTime)]
            let rel = item.relativePath
            let rc = try rel.isEmpty ? futimens(rootFD, &times)
                                     : at(rel, imagePath: plan.image.path(of: item.entry)) { utimensat($0, $1, &times, AT_SYMLINK_NOFOLLOW) }
            if rc != 0 && errno != ENOENT {
                summary.note("could not set times (\(String(cString: strerror(errno))))", plan.image.path(of: item.entry))
            }
        }
    }

    /// FILETIME (100 ns since 1601) to a POSIX timespec.
    static func timespec(filetime: UInt64) -> Glibc.timespec {
        let epochDifference: Int64 = 116_444_736_000_000_000
        let t = Int64(bitPattern: filetime) - epochDifference
        var seconds = t / 10_000_000
        var remainder = t % 10_000_000
        if remainder < 0 { remainder += 10_000_000; seconds -= 1 }
        return Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(remainder * 100))
    }
}

/// Failures of an apply target, with the path on the target.
public enum ApplyError: Error, CustomStringConvertible {
    case io(path: String, operation: String, errno: Int32)
    case wouldReplaceDirectory(path: String, imagePath: String)
    /// A folder on the way to `imagePath` is a symlink (or leads outside the target): nothing
    /// is ever written through it.
    case unsafePath(path: String, imagePath: String, errno: Int32)

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .wouldReplaceDirectory(path, imagePath):
            return "\(path) is a directory, but the image has a file there (\(imagePath)); a directory is never removed, as it may hold files the image does not know"
        case let .unsafePath(path, imagePath, code):
            let what = code == ENOTDIR ? "is not a folder" : "is a symbolic link or leads outside the target"
            return "\(path) \(what), on the way to \(imagePath); nothing is written through it, so the apply stopped "
                + "(remove it, or apply into an empty folder)"
        }
    }
}

extension ApplyError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .io: return .disk
        case .wouldReplaceDirectory, .unsafePath: return .refused
        }
    }
}
