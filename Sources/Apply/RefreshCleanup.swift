import Failures
import CNTFS3G
import NTFSAccess
import Primitives
import DiskModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The clean-up before a refresh: which top-level folders, and what to do with them.
/// `Users` is refused whatever the list says: user profiles are what a refresh must keep.
public struct RefreshCleanup: Sendable {
    public static let defaultFolders = CleanupPolicy.defaultFolders
    /// Never moved or deleted, compared case-insensitively.
    public static let protectedFolders = CleanupPolicy.protectedFolders

    public let mode: CleanupMode
    public let folders: [String]

    /// Checks the list before anything is touched: plain top-level names only, never `Users`.
    public init(mode: CleanupMode, folders: [String] = RefreshCleanup.defaultFolders) throws {
        var seen = Set<String>()
        var kept: [String] = []
        for folder in folders {
            // Windows writes `\Windows` or `Windows\`; the root's children are meant either way.
            let name = folder.trimmingSeparators()
            if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.contains("\\") || name.utf16.count > 255 {
                throw RefreshCleanupError.notATopLevelName(folder)
            }
            if RefreshCleanup.protectedFolders.contains(where: { $0.uppercased() == name.uppercased() }) {
                throw RefreshCleanupError.protectedFolder(folder)
            }
            // Listed twice in different case: one folder on the volume.
            if seen.insert(name.uppercased()).inserted { kept.append(name) }
        }
        self.mode = mode
        self.folders = kept
    }
}

/// What the clean-up did, for the end summary.
public struct CleanupReport: Sendable {
    public var mode: CleanupMode
    /// The folder the old ones were moved into (`Windows.old`, `Windows.old.000`, ...); nil for delete.
    public var destination: String?
    /// Folders moved or deleted, as the volume spells them.
    public var done: [String] = []
    /// Listed folders the volume does not have.
    public var missing: [String] = []
    /// Listed names that are files, not folders: left alone.
    public var notFolders: [String] = []
    /// delete: names removed inside the folders (files and directories).
    public var deletedFiles = 0
    public var deletedDirectories = 0
    /// Set when an earlier, interrupted run of this refresh had begun the clean-up.
    public var resumed: Resumed?

    public enum Resumed: Sendable, Equatable {
        /// It had finished it: nothing was moved or deleted this time.
        case alreadyDone(started: String)
        /// It had begun: what it had not done yet was done now, into the same folder.
        case continued
    }
}

extension CleanupReport: CustomStringConvertible {
    /// One paragraph for a log: what moved or went, what was not there.
    public var description: String {
        var lines: [String] = []
        if case let .alreadyDone(started) = resumed {
            return "clean-up: done by an earlier run of this refresh (begun \(started))"
                + (destination.map { "; the old system is in \($0)" } ?? "") + ": nothing moved again"
        }
        if resumed == .continued { lines.append("clean-up: an earlier run of this refresh was cut off before its clean-up ended: going on with it") }
        if done.isEmpty && resumed == .continued {
            lines.append("clean-up: every listed folder was already " + (destination.map { "in \($0)" } ?? "deleted"))
        } else if done.isEmpty {
            lines.append("clean-up: none of the listed folders is on the volume")
        } else if let destination {
            lines.append("clean-up: moved \(done.joined(separator: ", ")) into \(destination)")
        } else {
            lines.append("clean-up: deleted \(done.joined(separator: ", ")) (\(deletedFiles) files, \(deletedDirectories) folders)")
        }
        if !missing.isEmpty { lines.append("clean-up: not on the volume, skipped: \(missing.joined(separator: ", "))") }
        if !notFolders.isEmpty { lines.append("clean-up: files, not folders, left alone: \(notFolders.joined(separator: ", "))") }
        return lines.joined(separator: "\n")
    }
}

public enum RefreshCleanupError: Error, CustomStringConvertible {
    case protectedFolder(String)
    case notATopLevelName(String)
    case needsNTFSVolume(String)
    case noFreeOldName(String)
    case damagedRecord(device: String, path: String, reason: String)
    case operation(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .protectedFolder(name):
            return "--cleanup-folder \"\(name)\": the Users folder holds the user profiles a refresh keeps; it is never moved or deleted"
        case let .notATopLevelName(name):
            return "--cleanup-folder \"\(name)\": give a folder at the root of the volume by its name alone (for example \"Program Files\")"
        case let .needsNTFSVolume(target):
            return "\(target): --cleanup works on an NTFS volume (a block device or an image file holding NTFS), not on a directory"
        case let .noFreeOldName(device):
            return "\(device): Windows.old and Windows.old.000 to Windows.old.999 all exist; remove old ones first"
        case let .damagedRecord(device, path, reason):
            return "\(device): \(path), the record of a refresh begun earlier, cannot be read (\(reason)); "
                + "look at the volume's top-level folders and Windows.old, then remove the file to start the refresh over"
        case let .operation(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code))); the clean-up stopped here, the apply did not start"
        }
    }
}

/// One name in a directory index, as libntfs-3g lists it.
private struct IndexName {
    var units: [ntfschar]
    var record: UInt64
    var text: String { UTF16LE.decode(storedUnits: units) }
}

extension NTFSTarget {
    /// Moves or deletes the listed top-level folders, through the volume this target holds
    /// open, before anything of the image is written. Call it right after `init`.
    ///
    /// Resumable: a record on the volume (`RefreshRecord`) is written and flushed to the disk
    /// before the first folder moves and again after the last. A run cut off in between
    /// (a power cut) and run again moves what is left into the same `Windows.old`; a run cut
    /// off after it (during the apply) leaves the volume's system folders alone, as they are
    /// the new image's by then, and the apply goes on.
    public func cleanUp(_ cleanup: RefreshCleanup) throws -> CleanupReport {
        var report = CleanupReport(mode: cleanup.mode)
        let volume = try vol
        let files = NTFSVolumeFiles(borrowing: volume, device: device)
        let earlier = try readRefreshRecord(files)
        // The apply that follows on this mount ends the refresh: `finish` removes the record.
        refreshRecordToRemove = true
        if let earlier, earlier.complete {
            report.destination = earlier.destination
            report.resumed = .alreadyDone(started: earlier.started)
            return report
        }
        let rootNames = try listDirectory(NTFSTarget.rootRecord, "")
        var found: [IndexName] = []
        // An earlier run's list stands: the same folders go to the same place.
        for folder in earlier?.folders ?? cleanup.folders {
            // Windows compares names through the volume's $UpCase table whatever namespace a
            // name is in; libntfs-3g's own lookup is case-sensitive for POSIX names (which
            // Linux tools create), so match here.
            let wanted = UTF16LE.storedUnits(folder)
            guard let entry = rootNames.first(where: { sameName($0.units, wanted, volume) }) else {
                report.missing.append(folder)
                continue
            }
            if try !isDirectory(entry.record, entry.text) { report.notFolders.append(entry.text); continue }
            found.append(entry)
        }
        if earlier != nil { report.resumed = .continued }
        guard !found.isEmpty || earlier != nil else { return report }
        let mode = earlier.flatMap { CleanupMode(rawValue: $0.mode) } ?? cleanup.mode
        report.mode = mode
        switch mode {
        case .delete:
            var record = earlier ?? RefreshRecord(mode: .delete, destination: nil, folders: cleanup.folders, complete: false, started: Self.now())
            try writeRefreshRecord(record, files)
            for entry in found {
                try deleteTree(entry, parent: NTFSTarget.rootRecord, parentPath: "", &report)
                report.done.append(entry.text)
            }
            record.complete = true
            try writeRefreshRecord(record, files)
        case .move:
            let name = try earlier?.destination ?? freeOldName(rootNames, volume)
            var record = earlier ?? RefreshRecord(mode: .move, destination: name, folders: cleanup.folders, complete: false, started: Self.now())
            // Named on the disk before it exists: a cut after this finds the name, not a second one.
            try writeRefreshRecord(record, files)
            let destination: UInt64
            if let existing = rootNames.first(where: { sameName($0.units, UTF16LE.storedUnits(name), volume) }) {
                destination = existing.record
            } else {
                guard let model = found.first else {
                    throw RefreshCleanupError.operation(path: cleanupDisplay(name), operation: "find the folder an earlier run began moving into", errno: ENOENT)
                }
                destination = try createOldFolder(name, volume, securityFrom: model.record)
            }
            report.destination = name
            for entry in found {
                try move(entry, into: destination, name)
                report.done.append(entry.text)
            }
            record.complete = true
            try writeRefreshRecord(record, files)
        }
        return report
    }

    /// Removes the refresh's record once the new system is whole, with the folder when it is
    /// empty: `finish` calls it before the unmount when this mount ran the clean-up (`imprint
    /// wim apply --cleanup`); a task sequence removes its folder when the run ends.
    func finishRefresh() throws {
        let files = NTFSVolumeFiles(borrowing: try vol, device: device)
        try files.remove(RefreshRecord.path)
        if let left = try files.list(RefreshRecord.folder), left.isEmpty { try files.remove(RefreshRecord.folder) }
        try files.sync()
    }

    private func readRefreshRecord(_ files: NTFSVolumeFiles) throws -> RefreshRecord? {
        guard let bytes = try files.read(RefreshRecord.path) else { return nil }
        do { return try JSONDecoder().decode(RefreshRecord.self, from: Data(bytes)) } catch {
            throw RefreshCleanupError.damagedRecord(device: device, path: RefreshRecord.path, reason: "\(error)")
        }
    }

    private func writeRefreshRecord(_ record: RefreshRecord, _ files: NTFSVolumeFiles) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try files.write(try encoder.encode(record), to: RefreshRecord.path)
        try files.sync()
    }

    private static func now() -> String { Date().formatted(.iso8601) }

    // MARK: Names

    private func cleanupDisplay(_ relative: String) -> String { device + ":/" + relative }

    /// Case-insensitive comparison through the volume's $UpCase table, as Windows does.
    private func sameName(_ a: [ntfschar], _ b: [ntfschar], _ volume: UnsafeMutablePointer<ntfs_volume>) -> Bool {
        guard a.count == b.count else { return false }
        let table = volume.pointee.upcase
        let size = Int(volume.pointee.upcase_len)
        func upper(_ c: ntfschar) -> UInt16 {
            let unit = UInt16(littleEndian: c)
            guard let table, Int(unit) < size else { return unit }
            return UInt16(littleEndian: table[Int(unit)])
        }
        for i in a.indices where upper(a[i]) != upper(b[i]) { return false }
        return true
    }

    /// Every name in a directory except `.`, `..` and DOS short names (removing a long name
    /// removes its short name with it).
    private func listDirectory(_ record: UInt64, _ path: String) throws -> [IndexName] {
        guard let dir = ntfs_inode_open(try vol, record) else {
            throw RefreshCleanupError.operation(path: cleanupDisplay(path), operation: "open directory", errno: errno)
        }
        defer { _ = ntfs_inode_close(dir) }
        switch NTFSFolder.entries(of: dir) {
        case .success(let entries): return entries.map { IndexName(units: $0.storedUnits, record: $0.record) }
        case .failure(let failure):
            throw RefreshCleanupError.operation(path: cleanupDisplay(path), operation: "list directory", errno: failure.code)
        }
    }

    private func isDirectory(_ record: UInt64, _ path: String) throws -> Bool {
        guard let ni = ntfs_inode_open(try vol, record) else {
            throw RefreshCleanupError.operation(path: cleanupDisplay(path), operation: "open", errno: errno)
        }
        defer { _ = ntfs_inode_close(ni) }
        return imprint_ntfs_is_directory(ni) != 0
    }

    // MARK: Move

    /// `Windows.old`, or the first free numbered sibling. Windows Setup, finding a Windows.old
    /// already there, names the next one `Windows.old.000`, then `.001` (Microsoft's Vista/7
    /// article on restoring from Windows.old mentions `Windows.old.000`; not verified against a
    /// current Setup): the same scheme here.
    private func freeOldName(_ rootNames: [IndexName], _ volume: UnsafeMutablePointer<ntfs_volume>) throws -> String {
        let candidates = ["Windows.old"] + (0..<1000).map { "Windows.old." + String(String($0 + 1000).dropFirst()) }
        guard let name = candidates.first(where: { candidate in
            !rootNames.contains { sameName($0.units, UTF16LE.storedUnits(candidate), volume) }
        }) else { throw RefreshCleanupError.noFreeOldName(device) }
        return name
    }

    /// Creates the folder `name` at the root for the old system.
    ///
    /// It gets the security descriptor of the first folder moved into it (the old Windows, as
    /// a rule): libntfs-3g would otherwise give a new folder one granting Everyone full
    /// access, which would let any user delete the old installation's files.
    private func createOldFolder(_ name: String, _ volume: UnsafeMutablePointer<ntfs_volume>,
                                 securityFrom record: UInt64) throws -> UInt64 {
        guard let root = ntfs_inode_open(volume, NTFSTarget.rootRecord) else {
            throw RefreshCleanupError.operation(path: cleanupDisplay(""), operation: "open the root directory", errno: errno)
        }
        var securityID: UInt32 = 0 // le32 in $Secure, used as stored; 0: libntfs-3g's default
        if let model = ntfs_inode_open(volume, record) {
            securityID = model.pointee.security_id
            _ = ntfs_inode_close(model)
        }
        var nameUnits = UTF16LE.storedUnits(name)
        guard let ni = ntfs_create(root, securityID, &nameUnits, UInt8(nameUnits.count), Glibc.S_IFDIR) else {
            let code = errno
            _ = ntfs_inode_close(root)
            throw RefreshCleanupError.operation(path: cleanupDisplay(name), operation: "create folder", errno: code)
        }
        let record = ni.pointee.mft_no
        var failure: Int32 = 0
        if ntfs_inode_close_in_dir(ni, root) != 0 { failure = errno }
        if ntfs_inode_close(root) != 0 && failure == 0 { failure = errno }
        if failure != 0 { throw RefreshCleanupError.operation(path: cleanupDisplay(name), operation: "write the new folder", errno: failure) }
        return record
    }

    /// Opens an entry and the directory it is linked into (or moved to); when the second open
    /// fails the first inode is closed again, so no error path leaks an open inode.
    private func openInodePair(_ volume: UnsafeMutablePointer<ntfs_volume>,
                               _ first: (record: UInt64, path: String, operation: String),
                               _ second: (record: UInt64, path: String, operation: String))
        throws -> (UnsafeMutablePointer<ntfs_inode>, UnsafeMutablePointer<ntfs_inode>) {
        guard let a = ntfs_inode_open(volume, first.record) else {
            throw RefreshCleanupError.operation(path: cleanupDisplay(first.path), operation: first.operation, errno: errno)
        }
        guard let b = ntfs_inode_open(volume, second.record) else {
            let code = errno
            _ = ntfs_inode_close(a)
            throw RefreshCleanupError.operation(path: cleanupDisplay(second.path), operation: second.operation, errno: code)
        }
        return (a, b)
    }

    /// A rename as ntfs-3g's own FUSE rename does it: link the directory under its new parent
    /// (libntfs-3g allows a directory a second name for exactly this), then unlink the old
    /// name (allowed for a non-empty directory because it has another name). Nothing inside
    /// is opened, copied or changed. The new name is in the POSIX namespace, as every name
    /// libntfs-3g creates; a short (DOS) name the folder had goes with its old name.
    private func move(_ entry: IndexName, into destination: UInt64, _ destinationName: String) throws {
        let volume = try vol
        let from = entry.text, to = destinationName + "/" + entry.text
        let (ni, target) = try openInodePair(volume, (entry.record, from, "open folder"), (destination, destinationName, "open folder"))
        var name = entry.units
        // A run cut off between the two halves of this move left the folder under both names:
        // only the old one is left to remove.
        let already = ntfs_inode_lookup_by_name(target, &name, Int32(name.count))
        let linked = already != UInt64.max && already & 0x0000_FFFF_FFFF_FFFF == entry.record ? 0 : ntfs_link(ni, target, &name, UInt8(name.count))
        let linkError = errno
        let targetClosed = ntfs_inode_close(target)
        if linked != 0 || targetClosed != 0 {
            _ = ntfs_inode_close(ni)
            throw RefreshCleanupError.operation(path: cleanupDisplay(from), operation: "link as \(to)", errno: linked != 0 ? linkError : EIO)
        }
        guard let root = ntfs_inode_open(volume, NTFSTarget.rootRecord) else {
            let code = errno
            _ = ntfs_inode_close(ni)
            throw RefreshCleanupError.operation(path: cleanupDisplay(""), operation: "open the root directory", errno: code)
        }
        // ntfs_delete closes both inodes, whatever the outcome.
        if ntfs_delete(volume, from, ni, root, &name, UInt8(name.count)) != 0 {
            let code = errno
            // Leave one name, not two: take the new one away again.
            if let again = ntfs_inode_open(volume, entry.record) {
                if let target = ntfs_inode_open(volume, destination) {
                    _ = ntfs_delete(volume, to, again, target, &name, UInt8(name.count))
                } else {
                    _ = ntfs_inode_close(again)
                }
            }
            throw RefreshCleanupError.operation(path: cleanupDisplay(from), operation: "remove the old name after linking it as \(to)", errno: code)
        }
    }

    // MARK: Delete

    /// Removes `entry` and everything under it, deepest first. Each name is removed from its
    /// own directory; a file with another name elsewhere (a hard link) keeps its data there.
    /// A junction or symlink directory is removed as itself: its own index is listed, never
    /// what it points to.
    private func deleteTree(_ entry: IndexName, parent: UInt64, parentPath: String, _ report: inout CleanupReport) throws {
        let path = parentPath.isEmpty ? entry.text : parentPath + "/" + entry.text
        // Asked of the inode: the index's file type says "reparse point" for junctions.
        let directory = try isDirectory(entry.record, path)
        if directory {
            for child in try listDirectory(entry.record, path) {
                try deleteTree(child, parent: entry.record, parentPath: path, &report)
            }
        }
        let volume = try vol
        let (ni, dir) = try openInodePair(volume, (entry.record, path, "open"), (parent, parentPath, "open directory"))
        var name = entry.units
        // ntfs_delete closes both inodes, whatever the outcome.
        if ntfs_delete(volume, path, ni, dir, &name, UInt8(name.count)) != 0 {
            throw RefreshCleanupError.operation(path: cleanupDisplay(path), operation: "delete", errno: errno)
        }
        if directory { report.deletedDirectories += 1 } else { report.deletedFiles += 1 }
    }
}

private extension String {
    func trimmingSeparators() -> String {
        var s = Substring(self)
        while let c = s.first, c == "/" || c == "\\" { s = s.dropFirst() }
        while let c = s.last, c == "/" || c == "\\" { s = s.dropLast() }
        return String(s)
    }
}

extension RefreshCleanupError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .protectedFolder: return .refused
        case .notATopLevelName, .needsNTFSVolume: return .badInput
        case .noFreeOldName, .operation, .damagedRecord: return .disk
        }
    }
}
