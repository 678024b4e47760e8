import DiskModel
import CNTFS3G
import NTFSAccess
import Foundation
import InstalledWindows

/// Looks inside an NTFS volume, read-only and without mounting it, for a Windows installation:
/// `Windows\System32\config\SYSTEM` (the registry hive every installed Windows has), and reads
/// what it is from its hives and kernel32.dll (`WindowsDetails`).
enum WindowsDetector {
    static let systemHive = "Windows/System32/config/SYSTEM"

    /// nil when the range holds no readable NTFS volume or no Windows; never throws, because a
    /// damaged or hibernated volume must not stop a listing.
    static func detect(descriptor: Int32, name: String, offset: UInt64, size: UInt64, partition: Int?) -> WindowsInstallation? {
        // Read-only, a volume whose $MFTMirr a power cut set apart from $MFT is still read.
        guard size > 0, let volume = imprint_ntfs_mount_region(name, descriptor, Int64(offset), Int64(size), 1) else {
            return nil
        }
        defer { _ = imprint_ntfs_umount(volume) }
        let label = imprint_ntfs_volume_name(volume).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        let users = exists(volume, "Users")
        // A refresh cut off after its clean-up: the old Windows is in its record's folder and
        // the new one may be half there. Still this volume's Windows, to be refreshed.
        let place = partition.map { "\(name) partition \($0)" } ?? name
        if let record = refreshRecord(volume), let old = record.destination, exists(volume, old + "/" + systemHive) {
            let (details, problems) = readDetails(volume, place: place, systemRoot: old + "/Windows")
            return WindowsInstallation(partition: partition, label: label, systemRoot: "Windows", hasUsers: users, refreshInProgress: old,
                                       details: details, problems: problems)
        }
        guard exists(volume, systemHive) else { return nil }
        let (details, problems) = readDetails(volume, place: place, systemRoot: "Windows")
        return WindowsInstallation(partition: partition, label: label, systemRoot: "Windows", hasUsers: users,
                                   details: details, problems: problems)
    }

    /// The installation's details; nil when no file gave any (all missing or damaged).
    private static func readDetails(_ volume: UnsafeMutablePointer<ntfs_volume>, place: String,
                                    systemRoot: String) -> (WindowsDetails?, [String]) {
        let (details, problems) = WindowsDetails.read(place: place, systemRoot: systemRoot, contents: { file in
            // The PE header is in kernel32.dll's first page or two; the hives are read whole.
            try contents(volume, systemRoot + "/" + file.rawValue, limit: file.sizeLimit, prefix: file == .kernel32 ? 64 << 10 : nil)
        }, logContents: { path in
            // A hive's .LOG1/.LOG2, read only when the hive needs them; no larger than a hive.
            try contents(volume, systemRoot + "/" + path, limit: WindowsDetails.SourceFile.system.sizeLimit, prefix: nil)
        })
        return (details == WindowsDetails() ? nil : details, problems)
    }

    /// The record of a refresh begun on this volume, when there is a readable one.
    private static func refreshRecord(_ volume: UnsafeMutablePointer<ntfs_volume>) -> RefreshRecord? {
        // A record is a few hundred bytes; anything large is not one.
        guard let bytes = try? contents(volume, RefreshRecord.path, limit: 64 << 10, prefix: nil), !bytes.isEmpty else { return nil }
        return try? JSONDecoder().decode(RefreshRecord.self, from: Data(bytes))
    }

    /// A file's unnamed data stream (its first `prefix` bytes only, when given); nil when
    /// there is no such file. Throws when it is larger than `limit` or cannot be read.
    private static func contents(_ volume: UnsafeMutablePointer<ntfs_volume>, _ path: String, limit: UInt64,
                                 prefix: Int64?) throws(WindowsFileError) -> [UInt8]? {
        guard let inode = ntfs_pathname_to_inode(volume, nil, path) else { return nil }
        defer { ntfs_inode_close(inode) }
        guard imprint_ntfs_is_directory(inode) == 0 else { return nil }
        do {
            return try NTFSDataStream.read(inode, limit: Int64(clamping: limit), prefix: prefix)
        } catch {
            switch error {
            case .noDataStream(let code):
                throw WindowsFileError(reason: "no data stream (\(String(cString: strerror(code))))")
            case .tooLarge(let size, _):
                throw WindowsFileError(reason: "\(size) bytes is more than the \(limit) such a file can be")
            case .read(let code, let done, let wanted):
                throw WindowsFileError(reason: code != 0 ? String(cString: strerror(code)) : "it ends early, at byte \(done) of \(wanted)")
            }
        }
    }

    private static func exists(_ volume: UnsafeMutablePointer<ntfs_volume>, _ path: String) -> Bool {
        // ntfs-3g looks names up through the volume's upcase table: `windows` finds `Windows`.
        guard let inode = ntfs_pathname_to_inode(volume, nil, path) else { return false }
        ntfs_inode_close(inode)
        return true
    }
}

/// Why a file of an installation could not be read, for the listing's problems.
struct WindowsFileError: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}
