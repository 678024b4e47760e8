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
/// never followed). Every path is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
/// so neither a name in the image nor a symlink already in the directory can lead a write outside
/// it. What a POSIX directory cannot hold (security descriptors, DOS names, attributes, named
/// streams) goes into `user.wim.*` extended attributes, or is listed in the summary.
public final class DirectoryTarget: ApplyTarget {
    public let root: String
    public private(set) var summary = ApplySummary()
    /// Keep Windows metadata in `user.wim.*` extended attributes.
    public var keepMetadataInXattrs = true
    private var rootFD: Int32 = -1
    private var haveOpenat2 = true
    private var xattrsUnsupported = false

    // The blob being written.
    private var openFiles: [Int32] = []
    private var collectTargets: [StreamTarget] = []
    private var collected: [UInt8] = []
    private var collectLimit = 0

    /// Named streams up to this size go into an xattr (ext4 allows one block per value).
    static let maxXattrValue = 4000

    public init(root: String) throws {
        self.root = root
        try DirectoryTarget.makeDirectories(root)
        rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if rootFD < 0 { throw ApplyError.io(path: root, operation: "open target directory", errno: errno) }
    }

    deinit {
        for fd in openFiles { close(fd) }
        if rootFD >= 0 { close(rootFD) }
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

    /// Opens `relative` beneath the root, never following a symlink.
    private func openBeneath(_ relative: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        let path = relative.isEmpty ? "." : relative
        if haveOpenat2 {
            let fd = imprint_open_beneath(rootFD, path, flags | O_CLOEXEC, UInt32(mode))
            if fd >= 0 || imprint_errno() != ENOSYS { return fd }
            haveOpenat2 = false
        }
        // Older kernels: parents were created or checked as real directories in order, so only
        // the last component can be a symlink, and O_NOFOLLOW refuses it.
        return imprint_openat(rootFD, path, flags | O_NOFOLLOW | O_CLOEXEC, UInt32(mode))
    }

    private func kind(of relative: String) -> mode_t? {
        var info = stat()
        guard fstatat(rootFD, relative, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return info.st_mode & S_IFMT
    }

    /// Removes a file or symlink standing where the image puts something else. Directories are
    /// never removed: they may hold files the image does not know.
    private func clearWay(for relative: String, imagePath: String) throws {
        guard let existing = kind(of: relative) else { return }
        if existing == S_IFDIR {
            throw ApplyError.wouldReplaceDirectory(path: root + "/" + relative, imagePath: imagePath)
        }
        if unlinkat(rootFD, relative, 0) != 0 && errno != ENOENT {
            throw ApplyError.io(path: root + "/" + relative, operation: "remove the old file in the way", errno: errno)
        }
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
                if linkat(rootFD, target, rootFD, rel, 0) != 0 {
                    guard errno == EEXIST else { throw ApplyError.io(path: root + "/" + rel, operation: "create hard link", errno: errno) }
                    try clearWay(for: rel, imagePath: imagePath)
                    if linkat(rootFD, target, rootFD, rel, 0) != 0 {
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
                if mkdirat(rootFD, rel, 0o755) != 0 {
                    guard errno == EEXIST else { throw ApplyError.io(path: root + "/" + rel, operation: "create directory", errno: errno) }
                    let fd = openBeneath(rel, O_RDONLY | O_DIRECTORY)
                    if fd >= 0 {
                        close(fd)
                    } else {
                        // A file or symlink is where the image has a directory: the image wins.
                        try clearWay(for: rel, imagePath: imagePath)
                        if mkdirat(rootFD, rel, 0o755) != 0 {
                            throw ApplyError.io(path: root + "/" + rel, operation: "create directory", errno: errno)
                        }
                    }
                }
                summary.directories += 1
                continue
            }
            var fd = openBeneath(rel, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd < 0 && (errno == ELOOP || errno == EISDIR || errno == EXDEV) {
                try clearWay(for: rel, imagePath: imagePath)
                fd = openBeneath(rel, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
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
                let fd = openBeneath(item.relativePath, O_WRONLY)
                if fd < 0 { throw ApplyError.io(path: root + "/" + item.relativePath, operation: "open for writing", errno: errno) }
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
            let absoluteRoot = root.hasPrefix("/") ? root : (currentDirectory() + "/" + root)
            target = absoluteRoot + posix
        }
        if symlinkat(target, rootFD, item.relativePath) != 0 {
            guard errno == EEXIST else { throw ApplyError.io(path: root + "/" + item.relativePath, operation: "create symlink", errno: errno) }
            try clearWay(for: item.relativePath, imagePath: imagePath)
            if symlinkat(target, rootFD, item.relativePath) != 0 {
                throw ApplyError.io(path: root + "/" + item.relativePath, operation: "create symlink", errno: errno)
            }
        }
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

    private func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func setXattr(_ relative: String, _ name: String, _ value: [UInt8], imagePath: String) {
        guard keepMetadataInXattrs else { return }
        if xattrsUnsupported {
            summary.note("extended attributes unsupported by the target filesystem: \(name.split(separator: ".").prefix(3).joined(separator: ".")) not kept", imagePath)
            return
        }
        let full = relative.isEmpty ? root : root + "/" + relative
        let rc = value.withUnsafeBytes { lsetxattr(full, name, $0.baseAddress, $0.count, 0) }
        if rc != 0 {
            if errno == ENOTSUP || errno == EOPNOTSUPP { xattrsUnsupported = true }
            summary.note("could not set extended attribute \(name) (\(String(cString: strerror(errno))))", imagePath)
            return
        }
        summary.xattrsWritten += 1
    }

    public func finish(_ plan: ApplyPlan) throws {
        // Metadata that has no POSIX home goes into xattrs (only where it says something).
        let plainAttributes: FileAttributes = [.directory, .archive, .normal]
        for item in plan.items where item.linkTo == nil {
            let entry = plan.image.entries[item.entry]
            let imagePath = plan.image.path(of: item.entry)
            if entry.isReparsePoint && kind(of: item.relativePath.isEmpty ? "." : item.relativePath) != S_IFLNK { continue }
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
            let rel = item.relativePath.isEmpty ? "." : item.relativePath
            if utimensat(rootFD, rel, &times, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT {
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

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .wouldReplaceDirectory(path, imagePath):
            return "\(path) is a directory, but the image has a file there (\(imagePath)); a directory is never removed, as it may hold files the image does not know"
        }
    }
}

extension ApplyError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .io: return .disk
        case .wouldReplaceDirectory: return .refused
        }
    }
}
