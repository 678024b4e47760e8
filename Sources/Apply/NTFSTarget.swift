import Digests
import Failures
import CNTFS3G
import Primitives
import Processes
import WIM
#if canImport(Glibc)
import Glibc
#endif

/// Applies an image straight into an NTFS volume (a block device or a file holding one) through
/// libntfs-3g, with no FUSE mount: everything Windows keeps is written as Windows keeps it —
/// named streams, hard links, DOS names, security descriptors, attributes, reparse points,
/// object IDs and the three timestamps.
///
/// Nothing on the volume that the image does not contain is removed. A file the image contains
/// replaces the file of that name; a directory the image contains is reused (and its metadata
/// set); a non-empty directory is never replaced by a file.
public final class NTFSTarget: ApplyTarget {
    public let device: String
    public private(set) var summary = ApplySummary()
    private var volume: UnsafeMutablePointer<ntfs_volume>?

    /// MFT record number of each planned item (hard links share their first name's), nil where
    /// nothing was created.
    private var mftNumbers: [UInt64?] = []
    /// The blob being written: open inodes (one per file, even when a blob fills two streams
    /// of it) and the attributes opened on them.
    private var openInodes: [Int: UnsafeMutablePointer<ntfs_inode>] = [:]
    private var openAttributes: [(attribute: UnsafeMutablePointer<ntfs_attr>, path: String)] = []
    private var blobOffset: Int64 = 0
    private var reparseTargets: [StreamTarget] = []
    private var reparseBuffer: [UInt8] = []
    private var currentPlan: ApplyPlan?

    /// The root directory's MFT record number on every NTFS volume (FILE_root).
    static let rootRecord: UInt64 = 5
    /// Reparse data is at most 16 KiB including its 8-byte header.
    static let maxReparseData = 16 * 1024 - 8

    /// Whether `path` starts with an NTFS boot sector (OEM id "NTFS    " at byte 3).
    public static func hasNTFSBootSector(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var sector = [UInt8](repeating: 0, count: 11)
        let n = sector.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 11, 0) }
        return n == 11 && Array(sector[3..<11]) == Array("NTFS    ".utf8)
    }

    /// Whether `path` should be applied to as an NTFS volume: a block device (any, so that a
    /// device without NTFS is reported as such rather than treated as a directory) or a regular
    /// file with an NTFS boot sector.
    public static func isVolume(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        let type = info.st_mode & Glibc.S_IFMT
        if type == Glibc.S_IFBLK { return true }
        return type == Glibc.S_IFREG && hasNTFSBootSector(path)
    }

    public init(device: String) throws {
        self.device = device
        guard NTFSTarget.hasNTFSBootSector(device) else { throw NTFSApplyError.notNTFS(device: device) }
        let (vol, repaired) = try NTFSTarget.mountRepairingMirror(device)
        volume = vol
        mountNotice = repaired
        try markDirtyWhileWriting(vol)
    }

    /// Mounts `device` for writing. libntfs-3g refuses (EIO) a volume whose copy of the first
    /// MFT records ($MFTMirr) differs from the records: it writes a record and then its copy,
    /// and a power cut between the two leaves them apart. That, and only that, is corrected
    /// with ntfs-3g's own ntfsfix (which copies the records to the mirror, empties the journal
    /// and marks the volume for chkdsk) and the mount tried again; the notice says so.
    static func mountRepairingMirror(_ device: String) throws -> (UnsafeMutablePointer<ntfs_volume>, notice: String?) {
        if let vol = imprint_ntfs_mount(device) { return (vol, nil) }
        let code = errno
        guard code == EIO else { throw NTFSApplyError.mount(device: device, errno: code) }
        let tools = ProcessRunner.systemTools
        // -n: nothing written, only what it would do.
        guard let check = try? tools.run(["ntfsfix", "-n", device]), check.text.contains("$MFTMirr does not match $MFT") else {
            throw NTFSApplyError.mount(device: device, errno: code)
        }
        let fix: ProcessResult
        do { fix = try tools.run(["ntfsfix", device]) } catch {
            throw NTFSApplyError.mirrorRepair(device: device, detail: error.description)
        }
        guard fix.status == 0 else {
            throw NTFSApplyError.mirrorRepair(device: device, detail: fix.outputTail.suffix(3).joined(separator: " / "))
        }
        guard let vol = imprint_ntfs_mount(device) else { throw NTFSApplyError.mount(device: device, errno: errno) }
        return (vol, "\(device): the copy of the first MFT records ($MFTMirr) differed from the records (a write cut off by a "
                + "power loss); ntfsfix copied the records over it, and Windows will check the volume (chkdsk) at its first boot")
    }

    /// VOLUME_IS_DIRTY in $Volume's flags (little-endian on disk, as the field is read here).
    static let volumeIsDirty = UInt16(0x0001).littleEndian
    /// Whether this apply set the dirty flag (and so clears it on a clean unmount).
    private var setDirtyFlag = false
    /// Set by `cleanUp`: the apply on this mount completes a refresh, whose record goes at `finish`.
    var refreshRecordToRemove = false
    /// Said once at mount when the volume was already marked dirty; the tool prints it.
    public private(set) var mountNotice: String?

    /// libntfs-3g writes no journal and leaves the dirty flag alone: after a SIGKILL or a power
    /// cut the volume mounts again as if nothing happened, though clusters or MFT records
    /// allocated by the cut-off run may be leaked. So the flag is set for the time of the apply
    /// and cleared by a clean unmount: a volume left dirty tells the next apply (which goes on:
    /// it rewrites every file the image holds) and makes Windows run chkdsk at first boot,
    /// which reclaims what was leaked. A flag already set (by Windows, or by an interrupted
    /// apply) is left set.
    private func markDirtyWhileWriting(_ vol: UnsafeMutablePointer<ntfs_volume>) throws {
        let flags = vol.pointee.flags
        if flags & NTFSTarget.volumeIsDirty != 0 {
            let dirty = "\(device): the volume is marked dirty (an interrupted apply or an unclean shutdown); applying anyway: files "
                + "already whole and equal to the image's are kept, every other file of the image is written again, and Windows will "
                + "check the volume (chkdsk) at its first boot"
            mountNotice = mountNotice.map { $0 + "; " + dirty } ?? dirty
            return
        }
        if ntfs_volume_write_flags(vol, flags | NTFSTarget.volumeIsDirty) != 0 {
            throw NTFSApplyError.operation(path: device, operation: "mark the volume dirty for the time of the apply", errno: errno)
        }
        setDirtyFlag = true
    }

    /// Clears the dirty flag this apply set, just before a clean unmount.
    private func clearDirtyFlag(_ vol: UnsafeMutablePointer<ntfs_volume>) -> Int32 {
        guard setDirtyFlag else { return 0 }
        setDirtyFlag = false
        return ntfs_volume_write_flags(vol, vol.pointee.flags & ~NTFSTarget.volumeIsDirty)
    }

    deinit {
        // Error paths end here: close what is open and unmount, so the volume stays consistent.
        closeBlobFiles()
        if let cached = cachedDirectory { _ = ntfs_inode_close(cached.inode) }
        if let volume {
            // Every inode is closed above, so the volume is as consistent as after a success
            // (libntfs-3g undoes a call that fails half-way): the flag is cleared the same.
            _ = clearDirtyFlag(volume)
            _ = imprint_ntfs_umount(volume)
        }
    }

    /// Unmounts, reporting a failure to flush (success path; `deinit` covers errors).
    public func close() throws {
        closeBlobFiles()
        // An apply stopped in the structure pass still holds a directory: its new index
        // entries are written when it is closed, before the unmount.
        if let cached = cachedDirectory { cachedDirectory = nil; _ = ntfs_inode_close(cached.inode) }
        guard let vol = volume else { return }
        volume = nil
        let cleared = clearDirtyFlag(vol) == 0 ? 0 : errno
        if imprint_ntfs_umount(vol) != 0 { throw NTFSApplyError.unmount(device: device, errno: errno) }
        if cleared != 0 { throw NTFSApplyError.unmount(device: device, errno: cleared) }
    }

    /// Internal, not private: the refresh clean-up (RefreshCleanup.swift) works on the same mount.
    var vol: UnsafeMutablePointer<ntfs_volume> {
        get throws {
            guard let volume else { throw NTFSApplyError.operation(path: "/", operation: "use the volume after unmount", errno: EBADF) }
            return volume
        }
    }

    // MARK: Inodes

    private func display(_ relative: String) -> String { device + ":/" + relative }

    private func openInode(_ record: UInt64, _ relative: String) throws -> UnsafeMutablePointer<ntfs_inode> {
        guard let ni = ntfs_inode_open(try vol, record) else {
            throw NTFSApplyError.operation(path: display(relative), operation: "open inode \(record)", errno: errno)
        }
        return ni
    }

    private func closeInode(_ ni: UnsafeMutablePointer<ntfs_inode>, _ relative: String) throws {
        if ntfs_inode_close(ni) != 0 {
            throw NTFSApplyError.operation(path: display(relative), operation: "close inode (write MFT record)", errno: errno)
        }
    }

    /// `body` with `name` as UTF-16 (NTFS names are UTF-16LE, at most 255 units).
    private func withName<R>(_ name: String, _ relative: String, _ body: (UnsafeMutablePointer<ntfschar>, UInt8) throws -> R) throws -> R {
        var units = UTF16LE.storedUnits(name)
        guard !units.isEmpty, units.count <= 255 else { throw NTFSApplyError.badName(path: display(relative)) }
        let count = UInt8(units.count)
        return try units.withUnsafeMutableBufferPointer { try body($0.baseAddress!, count) }
    }

    // MARK: ApplyTarget

    public func createStructure(_ plan: ApplyPlan, stop: ApplyStop?, progress: (Int) -> Void) throws {
        mftNumbers = Array(repeating: nil, count: plan.items.count)
        var itemByPath: [String: Int] = [:]
        for (n, item) in plan.items.enumerated() {
            if n & 1023 == 0 { progress(n) }
            // Between items no inode is half-made: a safe point to stop at (SIGTERM, SIGINT).
            if n & 15 == 0 { try checkApplyStop(stop) }
            let entry = plan.image.entries[item.entry]
            let rel = item.relativePath
            itemByPath[rel] = n
            if rel.isEmpty {
                mftNumbers[n] = NTFSTarget.rootRecord
                summary.directories += 1
                continue
            }
            let slash = rel.lastIndex(of: "/")
            let parentPath = slash.map { String(rel[..<$0]) } ?? ""
            let name = slash.map { String(rel[rel.index(after: $0)...]) } ?? rel
            // Extract places subtrees in the root; their parents are not planned.
            let parentRecord = itemByPath[parentPath].flatMap { mftNumbers[$0] } ?? NTFSTarget.rootRecord
            if itemByPath[parentPath] != nil && itemByPath[parentPath].flatMap({ mftNumbers[$0] }) == nil {
                continue // the parent was skipped, so is what it contains
            }
            if entry.attributes.contains(.encrypted) {
                summary.note("encrypted file (raw EFS data), not applied", plan.image.path(of: item.entry))
                continue
            }
            let isDirectory = entry.attributes.contains(.directory)
            let linkRecord = item.linkTo.flatMap { mftNumbers[$0] }
            if item.linkTo != nil && linkRecord == nil { continue }

            let dir = try directory(parentRecord, parentPath)
            // A directory this apply created held nothing: no name lookup needed in it.
            let way = freshDirectories.contains(parentRecord) ? .clear : try withName(name, rel) { uname, length in
                try clearWay(dir: dir, uname, length, rel,
                             imageIsDirectory: isDirectory && !entry.isReparsePoint && item.linkTo == nil,
                             keepIfEqualTo: keepableData(plan, n))
            }
            switch way {
            case .clear:
                break
            case let .directory(record):
                // A directory the volume and the image both have: reused, its metadata set later.
                mftNumbers[n] = record
                summary.directories += 1
                try restoreShortName(plan, n, parentRecord: parentRecord, parentPath: parentPath)
                continue
            case let .wholeFile(record, size):
                // The file an interrupted run (or anyone) left whole and equal to the image's:
                // its data is not written again; its metadata is set in `finish` as for any other.
                mftNumbers[n] = record
                keptWhole.insert(n)
                summary.files += 1
                summary.filesKeptWhole += 1
                summary.bytesKeptWhole += size
                try restoreShortName(plan, n, parentRecord: parentRecord, parentPath: parentPath)
                continue
            }
            // Deleting an old file closed the directory: `directory` opens it again.
            try create(in: try directory(parentRecord, parentPath), parentRecord: parentRecord, parentPath: parentPath, n: n, plan: plan, name: name, linkRecord: linkRecord)
        }
        try releaseDirectory()
        progress(plan.items.count)
    }

    /// The directory new names go into, kept open while its children are created (the plan is
    /// in tree order), as opening an inode reads its MFT record. Never open twice at once:
    /// two ntfs_inode structures for one record would overwrite each other's changes.
    private var cachedDirectory: (record: UInt64, inode: UnsafeMutablePointer<ntfs_inode>, path: String)?

    private func directory(_ record: UInt64, _ path: String) throws -> UnsafeMutablePointer<ntfs_inode> {
        if let cached = cachedDirectory, cached.record == record { return cached.inode }
        try releaseDirectory()
        let ni = try openInode(record, path)
        cachedDirectory = (record, ni, path)
        return ni
    }

    private func releaseDirectory() throws {
        guard let cached = cachedDirectory else { return }
        cachedDirectory = nil
        try closeInode(cached.inode, cached.path)
    }

    /// Creates item `n` (or its hard link) in the open directory `dir`.
    private func create(in dir: UnsafeMutablePointer<ntfs_inode>, parentRecord: UInt64, parentPath: String,
                        n: Int, plan: ApplyPlan, name: String, linkRecord: UInt64?) throws {
        let item = plan.items[n]
        let entry = plan.image.entries[item.entry]
        let rel = item.relativePath
        if let linkRecord {
            let ni = try openInode(linkRecord, plan.items[item.linkTo ?? n].relativePath)
            let rc = try withName(name, rel) { ntfs_link(ni, dir, $0, $1) }
            let code = errno
            try closeInode(ni, rel)
            if rc != 0 { throw NTFSApplyError.operation(path: display(rel), operation: "create hard link", errno: code) }
            mftNumbers[n] = linkRecord
            summary.hardLinks += 1
        } else {
            let mode: mode_t = entry.attributes.contains(.directory) ? Glibc.S_IFDIR : Glibc.S_IFREG
            guard let ni = try withName(name, rel, { ntfs_create(dir, 0, $0, $1, mode) }) else {
                throw NTFSApplyError.operation(path: display(rel), operation: entry.attributes.contains(.directory) ? "create directory" : "create file", errno: errno)
            }
            mftNumbers[n] = ni.pointee.mft_no
            if mode == Glibc.S_IFDIR { freshDirectories.insert(ni.pointee.mft_no) }
            var failure: Error?
            do {
                // Named streams exist from the start, so empty ones need no blob.
                for stream in entry.namedStreams where !stream.name.isEmpty {
                    let rc = try withName(stream.name, rel) { ntfs_attr_add(ni, imprint_ntfs_at_data(), $0, $1, nil, 0) }
                    if rc != 0 { throw NTFSApplyError.operation(path: display(rel) + ":" + stream.name, operation: "create named stream", errno: errno) }
                }
                if entry.isReparsePoint && entry.reparseHash.isZero {
                    try setReparseData(ni, entry, [], rel)
                }
                if metadataAtCreation(plan, n) {
                    try setMetadata(ni, n, plan)
                    metadataDone.insert(n)
                }
            } catch { failure = error }
            if ntfs_inode_close_in_dir(ni, dir) != 0 && failure == nil {
                failure = NTFSApplyError.operation(path: display(rel), operation: "close new inode", errno: errno)
            }
            if let failure { throw failure }
            if entry.isReparsePoint { summary.symlinks += 1 } else if entry.attributes.contains(.directory) { summary.directories += 1 } else { summary.files += 1 }
        }
        try restoreShortName(plan, n, parentRecord: parentRecord, parentPath: parentPath)
    }

    /// What `clearWay` found under a name: nothing (any more), a directory to reuse, or a file
    /// whose data is already the image's.
    private enum Way { case clear, directory(UInt64), wholeFile(UInt64, size: UInt64) }

    /// The data blob item `n`'s file may be kept for: a plain file (one name, no named stream,
    /// no reparse point, not compressed), which a comparison of its one data stream settles.
    private func keepableData(_ plan: ApplyPlan, _ n: Int) -> SHA1Digest? {
        let item = plan.items[n]
        let entry = plan.image.entries[item.entry]
        guard item.linkTo == nil, !isLinkTarget(plan, n), !entry.attributes.contains(.directory),
              !entry.attributes.contains(.compressed), !entry.isReparsePoint, !entry.dataHash.isZero,
              !entry.namedStreams.contains(where: { !$0.name.isEmpty }) else { return nil }
        return entry.dataHash
    }

    /// The size of the open file's data when it is a plain file whose data hashes to `hash`.
    private func dataEqual(_ ni: UnsafeMutablePointer<ntfs_inode>, to hash: SHA1Digest) -> UInt64? {
        let size = imprint_ntfs_plain_file_size(ni)
        guard size > 0, let na = ntfs_attr_open(ni, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else { return nil }
        defer { ntfs_attr_close(na) }
        let hasher = SHA1Hasher()
        if comparisonBuffer.isEmpty { comparisonBuffer = [UInt8](repeating: 0, count: 1 << 20) }
        var offset: Int64 = 0
        while offset < size {
            let want = min(Int64(comparisonBuffer.count), size - offset)
            let got = comparisonBuffer.withUnsafeMutableBytes { ntfs_attr_pread(na, offset, want, $0.baseAddress) }
            guard got > 0 else {
                // Unreadable data is not the image's: the file is replaced, as before.
                return nil
            }
            comparisonBuffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(Int(got)))) }
            offset += got
        }
        return hasher.finish() == hash ? UInt64(size) : nil
    }

    /// Where `dataEqual` reads a file in the way, allocated at the first one.
    private var comparisonBuffer: [UInt8] = []

    /// Makes room for a name in `dir`. Finds the existing directory's record when both the
    /// volume and the image have a directory there (it is reused), and a plain file whose data
    /// hashes to `keepIfEqualTo` (it is kept); deletes any other file (or an empty directory) in
    /// the way; refuses to delete a directory that holds anything.
    private func clearWay(dir: UnsafeMutablePointer<ntfs_inode>, _ uname: UnsafeMutablePointer<ntfschar>, _ length: UInt8,
                          _ rel: String, imageIsDirectory: Bool, keepIfEqualTo hash: SHA1Digest?) throws -> Way {
        let found = ntfs_inode_lookup_by_name(dir, uname, Int32(length))
        guard found != UInt64.max else {
            if errno == ENOENT { return .clear }
            throw NTFSApplyError.operation(path: display(rel), operation: "look up name", errno: errno)
        }
        let record = found & 0x0000_FFFF_FFFF_FFFF // MREF: drop the sequence number
        guard let ni = ntfs_inode_open(try vol, record) else {
            let code = errno
            guard code == ENOENT else {
                throw NTFSApplyError.operation(path: display(rel), operation: "open inode \(record)", errno: code)
            }
            // A name left by a run killed before the file's MFT record was written: the entry
            // goes and the file is created anew (the volume is dirty: chkdsk reclaims the record).
            if imprint_ntfs_remove_dangling_name(dir, uname, length) != 0 {
                throw NTFSApplyError.operation(path: display(rel), operation: "remove a name whose MFT record \(record) is not in use", errno: errno)
            }
            return .clear
        }
        if let hash, let size = dataEqual(ni, to: hash) {
            try closeInode(ni, rel)
            return .wholeFile(record, size: size)
        }
        let existingIsDirectory = imprint_ntfs_is_directory(ni) != 0
        let existingIsReparse = imprint_ntfs_file_attributes(ni) & UInt32(FileAttributes.reparsePoint.rawValue) != 0
        if existingIsDirectory && imageIsDirectory {
            // A junction where the image has a directory: it becomes a plain directory.
            if existingIsReparse && ntfs_remove_ntfs_reparse_data(ni) != 0 {
                let code = errno
                _ = ntfs_inode_close(ni)
                throw NTFSApplyError.operation(path: display(rel), operation: "remove old reparse point", errno: code)
            }
            try closeInode(ni, rel)
            return .directory(record)
        }
        if existingIsDirectory && !existingIsReparse && ntfs_check_empty_dir(ni) != 0 {
            _ = ntfs_inode_close(ni)
            throw NTFSApplyError.wouldReplaceDirectory(path: display(rel))
        }
        // ntfs_delete closes both inodes, whatever the outcome.
        cachedDirectory = nil
        if ntfs_delete(try vol, rel, ni, dir, uname, length) != 0 {
            throw NTFSApplyError.operation(path: display(rel), operation: "delete the old file in the way", errno: errno)
        }
        return .clear
    }

    /// Sets the DOS name of item `n`, once its long name exists. libntfs-3g closes both inodes
    /// it is given, and changes the directory's times (restored in `finish`).
    private func restoreShortName(_ plan: ApplyPlan, _ n: Int, parentRecord: UInt64, parentPath: String) throws {
        let entry = plan.image.entries[plan.items[n].entry]
        guard !entry.shortName.isEmpty, let record = mftNumbers[n] else { return }
        let rel = plan.items[n].relativePath
        let dir = try directory(parentRecord, parentPath)
        let ni = try openInode(record, rel)
        cachedDirectory = nil // closed by ntfs_set_ntfs_dos_name, whatever the outcome
        let value = Array(entry.shortName.utf8)
        let rc = value.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { ntfs_set_ntfs_dos_name(ni, dir, $0.baseAddress, $0.count, 0) }
        }
        if rc != 0 { throw NTFSApplyError.operation(path: display(rel), operation: "set DOS name \(entry.shortName)", errno: errno) }
    }

    private func setReparseData(_ ni: UnsafeMutablePointer<ntfs_inode>, _ entry: DirectoryEntry, _ data: [UInt8], _ rel: String) throws {
        // Reparse data on disk: tag, data length, reserved, then what the WIM stores.
        let value = entry.reparseTag.littleEndianBytes + UInt16(data.count).littleEndianBytes + [0, 0] + data
        let rc = value.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { ntfs_set_ntfs_reparse_data(ni, $0.baseAddress, $0.count, 0) }
        }
        if rc != 0 {
            throw NTFSApplyError.operation(path: display(rel), operation: "set reparse data (tag 0x\(String(entry.reparseTag, radix: 16, uppercase: true)))", errno: errno)
        }
    }

    public func beginBlob(_ blob: BlobDescriptor, targets: [StreamTarget], plan: ApplyPlan) throws {
        closeBlobFiles()
        currentPlan = plan
        blobOffset = 0
        reparseTargets = []
        reparseBuffer.removeAll(keepingCapacity: true)
        for target in targets {
            let item = plan.items[target.item]
            guard let record = mftNumbers[target.item] else { continue }
            let rel = item.relativePath
            let ni: UnsafeMutablePointer<ntfs_inode>
            if let open = openInodes[target.item] { ni = open } else {
                ni = try openInode(record, rel)
                openInodes[target.item] = ni
            }
            switch target.kind {
            case .reparse:
                if blob.size > UInt64(NTFSTarget.maxReparseData) {
                    summary.note("reparse data larger than 16 KiB, not applied", plan.image.path(of: item.entry))
                } else {
                    reparseTargets.append(target)
                }
            case .data:
                guard let na = ntfs_attr_open(ni, imprint_ntfs_at_data(), imprint_ntfs_unnamed(), 0) else {
                    throw NTFSApplyError.operation(path: display(rel), operation: "open data stream", errno: errno)
                }
                openAttributes.append((na, rel))
                // A file being replaced in place may hold more than the blob.
                if na.pointee.data_size != 0 && ntfs_attr_truncate(na, 0) != 0 {
                    throw NTFSApplyError.operation(path: display(rel), operation: "truncate data stream", errno: errno)
                }
                NTFSTarget.preallocate(na, blob.size)
            case let .named(name):
                let na = try withName(name, rel) { ntfs_attr_open(ni, imprint_ntfs_at_data(), $0, UInt32($1)) }
                guard let na else { throw NTFSApplyError.operation(path: display(rel) + ":" + name, operation: "open named stream", errno: errno) }
                openAttributes.append((na, rel + ":" + name))
                NTFSTarget.preallocate(na, blob.size)
            }
        }
    }

    /// Allocates the whole stream in one go (as wimlib does), rather than cluster runs growing
    /// with every write: far fewer allocations and runlist updates, and contiguous data. A
    /// failure is left to the writes, which allocate as they go.
    private static func preallocate(_ na: UnsafeMutablePointer<ntfs_attr>, _ size: UInt64) {
        guard size > 0, na.pointee.data_size < Int64(size) else { return }
        _ = ntfs_attr_truncate_solid(na, Int64(size))
    }

    public func blobData(_ data: UnsafeRawBufferPointer) throws {
        guard let base = data.baseAddress, data.count > 0 else { return }
        for (na, path) in openAttributes {
            var done = 0
            while done < data.count {
                let n = ntfs_attr_pwrite(na, blobOffset + Int64(done), Int64(data.count - done), base + done)
                if n <= 0 { throw NTFSApplyError.operation(path: display(path), operation: "write data at offset \(blobOffset + Int64(done))", errno: n < 0 ? errno : EIO) }
                done += Int(n)
            }
            summary.bytesWritten += UInt64(data.count)
        }
        if !reparseTargets.isEmpty { reparseBuffer.append(contentsOf: data) }
        blobOffset += Int64(data.count)
    }

    public func endBlob() throws {
        if let plan = currentPlan {
            for target in reparseTargets {
                guard let ni = openInodes[target.item] else { continue }
                let item = plan.items[target.item]
                try setReparseData(ni, plan.image.entries[item.entry], reparseBuffer, item.relativePath)
            }
        }
        reparseTargets = []
        for (na, _) in openAttributes { ntfs_attr_close(na) }
        openAttributes.removeAll(keepingCapacity: true)
        let inodes = openInodes
        openInodes.removeAll(keepingCapacity: true)
        var failure: Error?
        for (index, ni) in inodes where ntfs_inode_close(ni) != 0 && failure == nil {
            failure = NTFSApplyError.operation(path: display(currentPlan?.items[index].relativePath ?? "?"), operation: "close file (write MFT record)", errno: errno)
        }
        if let failure { throw failure }
    }

    private func closeBlobFiles() {
        for (na, _) in openAttributes { ntfs_attr_close(na) }
        openAttributes.removeAll()
        for (_, ni) in openInodes { _ = ntfs_inode_close(ni) }
        openInodes.removeAll()
    }

    /// Directories created by this apply (so empty before it), by MFT record number.
    private var freshDirectories = Set<UInt64>()
    /// Items whose metadata was set when they were created (see `metadataAtCreation`).
    private var metadataDone = Set<Int>()
    /// Items whose data was found whole on the volume: their blobs are not written to them.
    public private(set) var keptWhole = Set<Int>()
    /// Items another item is a hard link to.
    private var linkTargets: Set<Int>?

    /// Whether item `n`'s metadata is set as it is created, saving `finish` an open and a close
    /// of its MFT record (as wimlib does): plain files only, as libntfs-3g changes no times when
    /// data is written. Directories (their children change their times), reparse points (their
    /// data sets an attribute), compressed files (the attribute changes how data is written),
    /// files with a DOS name (set after the long name, changing times) and hard-link groups are
    /// left to `finish`.
    private func metadataAtCreation(_ plan: ApplyPlan, _ n: Int) -> Bool {
        let item = plan.items[n]
        let entry = plan.image.entries[item.entry]
        if entry.attributes.contains(.directory) || entry.attributes.contains(.compressed) || entry.isReparsePoint
            || !entry.shortName.isEmpty || item.linkTo != nil { return false }
        return !isLinkTarget(plan, n)
    }

    /// Whether other names of the plan are hard links to item `n` (worked out once per apply).
    private func isLinkTarget(_ plan: ApplyPlan, _ n: Int) -> Bool {
        if linkTargets == nil { linkTargets = Set(plan.items.compactMap(\.linkTo)) }
        return linkTargets?.contains(n) ?? true
    }

    /// Sets object ID, attributes, security descriptor and times (last) on the open inode of item `n`.
    private func setMetadata(_ ni: UnsafeMutablePointer<ntfs_inode>, _ n: Int, _ plan: ApplyPlan) throws {
        let item = plan.items[n]
        let entry = plan.image.entries[item.entry]
        let rel = item.relativePath
        let imagePath = plan.image.path(of: item.entry)
        if let objectID = entry.objectID {
            let rc = objectID.withUnsafeBufferPointer { b in b.withMemoryRebound(to: CChar.self) { ntfs_set_ntfs_object_id(ni, $0.baseAddress, $0.count, 0) } }
            if rc != 0 {
                if errno == EEXIST { summary.note("object ID already used by another file on the volume, not set", imagePath) }
                else { throw NTFSApplyError.operation(path: display(rel), operation: "set object ID", errno: errno) }
            }
        }
        // Sparse and encrypted describe how data is stored, which this apply decides.
        var attributes = entry.attributes.rawValue & ~(FileAttributes.sparseFile.rawValue | FileAttributes.encrypted.rawValue)
        let rc = withUnsafeBytes(of: &attributes) { b in
            ntfs_set_ntfs_attrib(ni, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count, 0)
        }
        if rc != 0 { throw NTFSApplyError.operation(path: display(rel), operation: "set attributes 0x\(String(entry.attributes.rawValue, radix: 16))", errno: errno) }
        if entry.securityID >= 0 {
            if Int(entry.securityID) < plan.image.securityDescriptors.count {
                var context = SECURITY_CONTEXT()
                context.vol = try vol
                let descriptor = plan.image.securityDescriptors[Int(entry.securityID)]
                let rc = descriptor.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { ntfs_set_ntfs_acl(&context, ni, $0.baseAddress, $0.count, 0) }
                }
                if rc != 0 { throw NTFSApplyError.operation(path: display(rel), operation: "set security descriptor (\(descriptor.count) bytes)", errno: errno) }
            } else {
                summary.note("security ID \(entry.securityID) names no descriptor in the image, ignored", imagePath)
            }
        }
        // creation, last write, last access: what ntfs_inode_set_times takes, in that order.
        var times = (entry.creationTime.littleEndian, entry.lastWriteTime.littleEndian, entry.lastAccessTime.littleEndian)
        let timesSet = withUnsafeBytes(of: &times) { b in ntfs_inode_set_times(ni, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count, 0) }
        if timesSet != 0 { throw NTFSApplyError.operation(path: display(rel), operation: "set times", errno: errno) }
    }

    public func finish(_ plan: ApplyPlan) throws {
        // Once per file, deepest first, times last: creating names, DOS names and links changes
        // directories' times, setting a child's metadata does not touch its parent's.
        for (n, item) in plan.items.enumerated().reversed() where item.linkTo == nil && !metadataDone.contains(n) {
            guard let record = mftNumbers[n] else { continue }
            let rel = item.relativePath
            let ni = try openInode(record, rel)
            var failure: Error?
            do {
                try setMetadata(ni, n, plan)
            } catch { failure = error }
            if ntfs_inode_close(ni) != 0 && failure == nil {
                failure = NTFSApplyError.operation(path: display(rel), operation: "close inode", errno: errno)
            }
            if let failure { throw failure }
        }
        // The new system is whole: a later apply with a clean-up starts a refresh of its own.
        if refreshRecordToRemove { try finishRefresh() }
        try close()
    }
}

/// Failures writing to an NTFS volume, naming the device, the path on the volume and the call.
public enum NTFSApplyError: Error, CustomStringConvertible {
    case notNTFS(device: String)
    case mount(device: String, errno: Int32)
    case unmount(device: String, errno: Int32)
    case operation(path: String, operation: String, errno: Int32)
    case wouldReplaceDirectory(path: String)
    case badName(path: String)
    case mirrorRepair(device: String, detail: String)

    public var description: String {
        switch self {
        case let .notNTFS(device):
            return "\(device) holds no NTFS file system (no \"NTFS    \" boot sector); format it first (mkfs.ntfs -Q)"
        case let .mount(device, code):
            var text = "\(device): cannot open the NTFS volume: \(String(cString: strerror(code)))"
            if code == EPERM { text += " (the volume is hibernated or was not shut down cleanly; run ntfsfix or boot Windows once)" }
            if code == EBUSY { text += " (it is mounted; unmount it first)" }
            return text
        case let .unmount(device, code):
            return "\(device): writing the NTFS volume's final state failed: \(String(cString: strerror(code)))"
        case let .operation(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .wouldReplaceDirectory(path):
            return "\(path) is a directory that is not empty, but the image has a file there; a directory is never removed, as it may hold files the image does not know"
        case let .badName(path):
            return "\(path): the name is empty or longer than NTFS allows (255 UTF-16 units)"
        case let .mirrorRepair(device, detail):
            return "\(device): its MFT and the copy of its first records ($MFTMirr) differ and ntfsfix could not correct them (\(detail)); "
                + "run chkdsk /f on it from Windows, or format it if nothing on it must be kept"
        }
    }
}

extension NTFSApplyError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .notNTFS: return .badInput
        // EPERM: hibernated or unclean, EBUSY: mounted; both are refusals to touch the volume.
        case let .mount(_, code): return code == EPERM || code == EBUSY ? .refused : .disk
        case .unmount, .operation, .mirrorRepair: return .disk
        case .wouldReplaceDirectory: return .refused
        case .badName: return .badInput
        }
    }
}
