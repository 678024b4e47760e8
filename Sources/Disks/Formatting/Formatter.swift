import DiskModel
import Foundation
import Processes

/// Makes filesystems with Debian's own tools, then checks through libblkid that the kernel's
/// view of the partition shows what was asked for (type and label).
public enum Formatter {
    /// The command that makes `spec` on `device`, a partition starting at `startSector`
    /// (512-byte units) of its disk: NTFS and FAT record it so Windows can boot from them.
    public static func command(_ spec: FormatSpec, device: String, startSector: UInt64, sectorSize: Int) -> [String] {
        switch spec.filesystem {
        case .fat32:
            var arguments = ["mkfs.fat", "-F", "32", "-I", "-h", String(startSector)]
            if sectorSize != 512 { arguments += ["-S", String(sectorSize)] }
            if let cluster = spec.clusterSize { arguments += ["-s", String(max(cluster / sectorSize, 1))] }
            if let label = spec.label { arguments += ["-n", label] }
            return arguments + [device]
        case .ntfs:
            // -p/-H/-S: the kernel cannot tell mkfs.ntfs the geometry of a partition exposed as
            // a loop device, and Windows does not boot from a volume whose boot sector lacks it.
            var arguments = ["mkfs.ntfs", "-F", "-p", String(startSector), "-H", "255", "-S", "63", "-s", String(sectorSize)]
            if spec.quick { arguments.append("-Q") }
            if let cluster = spec.clusterSize { arguments += ["-c", String(cluster)] }
            if let label = spec.label { arguments += ["-L", label] }
            return arguments + [device]
        case .ext4:
            var arguments = ["mkfs.ext4", "-F", "-q"]
            if let cluster = spec.clusterSize { arguments += ["-b", String(cluster)] }
            if let label = spec.label { arguments += ["-L", label] }
            return arguments + [device]
        }
    }

    /// Formats and verifies; returns what libblkid now sees on the device.
    @discardableResult
    public static func format(_ spec: FormatSpec, device: String, startSector: UInt64, sectorSize: Int,
                              log: (String) -> Void = { _ in }) throws(DiskError) -> Filesystem {
        let arguments = command(spec, device: device, startSector: startSector, sectorSize: sectorSize)
        log("$ " + ProcessRunner.commandLine(arguments))
        do {
            try ProcessRunner.systemTools.run(arguments) { line in
                if !line.allSatisfy(\.isWhitespace) { log("  " + line) }
            }.checked()
        } catch {
            let output = error.reason == .failed ? error.outputTail.joined(separator: "\n") : error.description
            throw DiskError.commandFailed(command: arguments.joined(separator: " "), status: error.status, output: output)
        }
        if spec.filesystem == .ntfs {
            let serial = try NTFSSerial.randomize(device: device)
            log("\(device): NTFS serial number set to \(String(format: "%016llX", serial))")
        }
        let descriptor = open(device, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw DiskError.io(path: device, operation: "open to check the new filesystem", errno: errno) }
        defer { close(descriptor) }
        let found = try BlkidProbe(path: device, descriptor: descriptor).filesystem()
        let expected = spec.filesystem.blkidType + (spec.label.map { " labelled \"\($0)\"" } ?? "")
        guard let found, found.type == spec.filesystem.blkidType else {
            throw DiskError.formatNotVisible(path: device, expected: expected, found: found?.type ?? "no filesystem")
        }
        if let label = spec.label, found.label != label {
            throw DiskError.formatNotVisible(path: device, expected: expected, found: "label \"\(found.label ?? "")\"")
        }
        log("\(device): \(found.type)" + (found.label.map { " \"\($0)\"" } ?? "") + (found.uuid.map { " \($0)" } ?? ""))
        return found
    }
}
