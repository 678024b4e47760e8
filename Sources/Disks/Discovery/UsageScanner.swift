import DiskModel
import Foundation

/// Finds what keeps a disk busy, from the kernel's own tables: mounts (mountinfo), active swap,
/// holders (dm, MD RAID, bcache) and loop devices reading the disk. A busy disk is never written.
struct UsageScanner {
    let environment: DiskEnvironment
    private let mounts: [(deviceNumber: String, source: String, mountPoint: String)]
    private let swaps: [String]
    /// Loop device name → its backing file, for every attached loop device.
    private let loopBackings: [(loop: String, backingFile: String)]

    init(environment: DiskEnvironment) {
        self.environment = environment
        var mounts: [(String, String, String)] = []
        let mountInfo = environment.attribute(environment.procRoot + "/self/mountinfo") ?? ""
        for line in mountInfo.split(separator: "\n") {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard fields.count >= 5, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            mounts.append((fields[2], Self.unescape(fields[dash + 2]), Self.unescape(fields[4])))
        }
        self.mounts = mounts
        swaps = (environment.attribute(environment.procRoot + "/swaps") ?? "").split(separator: "\n").dropFirst()
            .compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).first.map { Self.unescape(String($0)) } }
        var loops: [(String, String)] = []
        for name in environment.entries(environment.sysRoot + "/block") where name.hasPrefix("loop") {
            if let backing = environment.attribute(environment.blockDirectory(name) + "/loop/backing_file"), !backing.isEmpty {
                loops.append((name, backing))
            }
        }
        loopBackings = loops
    }

    /// Every use of the disk `name` or of one of its partitions (`members`: kernel name → major:minor).
    func usage(ofDisk name: String, members: [(name: String, deviceNumber: String)]) -> [DiskUsage] {
        var found: [DiskUsage] = []
        for member in members {
            let device = environment.devicePath(member.name)
            let aliases: Set<String> = [device, "/dev/" + member.name]
            for mount in mounts where mount.deviceNumber == member.deviceNumber || aliases.contains(mount.source)
                || Self.sameDevice(mount.source, member.deviceNumber) {
                found.append(DiskUsage(kind: .mounted, device: device, detail: mount.mountPoint))
            }
            for swap in swaps where aliases.contains(swap) || Self.sameDevice(swap, member.deviceNumber) {
                found.append(DiskUsage(kind: .swap, device: device, detail: swap))
            }
            let holderDirectory = member.name == name
                ? environment.blockDirectory(name) + "/holders"
                : environment.blockDirectory(name) + "/" + member.name + "/holders"
            for holder in environment.entries(holderDirectory) {
                found.append(DiskUsage(kind: .holder, device: device, detail: holder))
            }
            for loop in loopBackings where loop.loop != member.name
                && (aliases.contains(loop.backingFile) || Self.sameDevice(loop.backingFile, member.deviceNumber)) {
                found.append(DiskUsage(kind: .loop, device: device, detail: environment.devicePath(loop.loop)))
            }
        }
        return found
    }

    /// True when `path` is a block device node with the device number `majorMinor`.
    private static func sameDevice(_ path: String, _ majorMinor: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFBLK else { return false }
        return "\(major(info.st_rdev)):\(minor(info.st_rdev))" == majorMinor
    }

    /// mountinfo and swaps escape spaces and backslashes as octal (`\040`).
    static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        let source = Array(text.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
               let value = UInt8(String(decoding: source[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// glibc's major()/minor() are macros Swift does not import.
func major(_ device: dev_t) -> UInt32 {
    UInt32(truncatingIfNeeded: ((UInt64(device) >> 8) & 0xfff) | ((UInt64(device) >> 32) & 0xffff_f000))
}
func minor(_ device: dev_t) -> UInt32 {
    UInt32(truncatingIfNeeded: (UInt64(device) & 0xff) | ((UInt64(device) >> 12) & 0xffff_ff00))
}
