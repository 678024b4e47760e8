import Foundation
import Testing

/// A sparse image file attached as a loop device: a real block device the disk layer can list,
/// choose, partition and format. Detached (with every loop device made over it) at the end.
public final class LoopDisk {
    public let image: String
    public let device: String
    private var views: [String] = []

    public init(_ scratch: ScratchDirectory, _ name: String, size: UInt64, readOnly: Bool = false,
         prepare: (String) throws -> Void = { _ in }) throws {
        image = scratch.sub(name + ".img")
        try run(["truncate", "-s", String(size), image])
        try prepare(image)
        let attached = try run(["losetup", "--find", "--show"] + (readOnly ? ["--read-only"] : []) + [image])
        device = attached.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard device.hasPrefix("/dev/loop") else { throw POSIXError(.ENODEV) }
    }

    deinit {
        for view in views.reversed() { _ = try? run(["losetup", "-d", view], allowFailure: true) }
        _ = try? dropOthersViews()
        // Partitions added with BLKPG outlive the detach of a loop device without partition
        // scanning: remove them, or the next test reusing the device sees stale ones.
        _ = try? run(["partx", "-d", device], allowFailure: true)
        _ = try? run(["losetup", "-d", device], allowFailure: true)
    }

    public var name: String { (device as NSString).lastPathComponent }

    /// A loop device over bytes [offset, offset + size) of this disk, as `losetup -o --sizelimit`.
    public func view(offset: UInt64, size: UInt64) throws -> String {
        let attached = try run(["losetup", "--find", "--show", "-o", String(offset), "--sizelimit", String(size), device])
        let path = attached.output.trimmingCharacters(in: .whitespacesAndNewlines)
        views.append(path)
        return path
    }

    /// Detaches every loop device over this disk that the test did not make (a killed run's
    /// views of its partitions), as the reboot after a power cut would.
    public func dropOthersViews() throws {
        let listed = try run(["losetup", "-j", device]).output
        for line in listed.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            if path.hasPrefix("/dev/loop") && !views.contains(path) { try run(["losetup", "-d", path]) }
        }
    }

    public func detach(view path: String) throws {
        try run(["losetup", "-d", path])
        views.removeAll { $0 == path }
    }
}

/// Puts an NTFS filesystem holding a Windows-like tree (the SYSTEM hive, a user's file) into
/// bytes [offset, offset + size) of `disk`, through ntfs-3g as Windows' own layout would be.
/// `files` (paths relative to the volume's root) replace the stand-in SYSTEM hive: real hives,
/// kernel32.dll; `[:]` leaves an NTFS volume with no Windows (a Users folder only).
public func makeFakeWindows(on disk: LoopDisk, offset: UInt64, size: UInt64, scratch: ScratchDirectory, label: String = "Windows",
                            files: [String: Data]? = nil) throws {
    let partition = try disk.view(offset: offset, size: size)
    try run(["mkfs.ntfs", "-Q", "-q", "-F", "-L", label, "-p", String(offset / 512), "-H", "255", "-S", "63", partition])
    let mountPoint = scratch.sub("mnt-\(disk.name)")
    try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
    try run(["ntfs-3g", partition, mountPoint])
    var mounted = true
    defer { if mounted { _ = try? run(["umount", mountPoint], allowFailure: true) } }
    for (path, data) in files ?? ["Windows/System32/config/SYSTEM": Data("regf".utf8)] {
        let full = mountPoint + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: full))
    }
    try FileManager.default.createDirectory(atPath: mountPoint + "/Users/Alice/Documents", withIntermediateDirectories: true)
    try Data("thesis".utf8).write(to: URL(fileURLWithPath: mountPoint + "/Users/Alice/Documents/thesis.txt"))
    try run(["umount", mountPoint])
    mounted = false
    try disk.detach(view: partition)
}

/// A BitLocker volume header as libblkid recognises it: the Windows 7+ boot sector signature
/// and an FVE metadata block where the header says. (Linux cannot create a real one.)
public func writeBitLockerHeader(image: String, offset: UInt64) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: image))
    defer { try? handle.close() }
    var boot = [UInt8](repeating: 0, count: 512)
    boot.replaceSubrange(0..<11, with: [0xEB, 0x58, 0x90] + Array("-FVE-FS-".utf8))
    let metadataOffset: UInt64 = 0x10000
    withUnsafeBytes(of: metadataOffset.littleEndian) { boot.replaceSubrange(176..<184, with: $0) }
    boot[510] = 0x55
    boot[511] = 0xAA
    try handle.seek(toOffset: offset)
    handle.write(Data(boot))
    var metadata = Array("-FVE-FS-".utf8) + [0x40, 0x00, 0x02, 0x00]
    metadata += [UInt8](repeating: 0, count: 64 - metadata.count)
    try handle.seek(toOffset: offset + metadataOffset)
    handle.write(Data(metadata))
}

/// Writes a JSON (or any) text file a test hands to imprint.
public func writeJSON(_ text: String, _ path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}
