import DiskModel
import Foundation

/// Finds every whole disk and what is on it: sysfs for the hardware, libblkid for tables and
/// filesystems, libntfs-3g for Windows, the kernel's tables for what keeps a disk busy.
public enum DiskInventory {
    /// Kernel devices that are never deployment targets: RAM disks, compressed swap, and the
    /// device-mapper and RAID devices that sit on top of real disks (their disks are reported).
    private static let virtualPrefixes = ["ram", "zram", "dm-", "md", "nbd", "fd"]

    public static func scan(_ environment: DiskEnvironment = .system) throws(DiskError) -> [Disk] {
        let usage = UsageScanner(environment: environment)
        let bootMedia = BootMedium(environment: environment)
        var disks: [Disk] = []
        for name in environment.entries(environment.sysRoot + "/block") {
            guard !virtualPrefixes.contains(where: { name.hasPrefix($0) }) else { continue }
            guard var disk = hardware(name, environment) else { continue }
            // A loop device over another block device is a view of part of that disk (how
            // partitions are exposed where the kernel has no parser), not a disk of its own.
            if let backing = disk.backingFile, isBlockDevice(backing) { continue }
            // An unattached loop device is not a disk; an empty card reader still is one.
            if disk.size == 0 && (disk.transport == .loop || !disk.removable) { continue }
            do throws(DiskError) {
                try inspect(&disk, environment)
            } catch {
                // One unreadable disk must not hide the others; it is reported, never chosen.
                disk.unreadable = error.description
            }
            let members = [(disk.name, disk.deviceNumber)] + partitionDevices(name, environment).map { ($0.name, $0.deviceNumber) }
            disk.usage = usage.usage(ofDisk: name, members: members)
            disk.bootMedium = bootMedia.reason(for: disk)
            disks.append(disk)
        }
        return disks
    }

    /// One disk by device path or kernel name, as it is now (for checks just before writing).
    public static func disk(_ pathOrName: String, _ environment: DiskEnvironment = .system) throws(DiskError) -> Disk {
        let name = (pathOrName as NSString).lastPathComponent
        guard let disk = try scan(environment).first(where: { $0.name == name || $0.path == pathOrName }) else {
            throw DiskError.io(path: pathOrName, operation: "find the disk in \(environment.sysRoot)/block", errno: ENOENT)
        }
        return disk
    }

    private static func isBlockDevice(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFBLK
    }

    /// What sysfs says about the hardware of a whole disk.
    static func hardware(_ name: String, _ environment: DiskEnvironment) -> Disk? {
        let directory = environment.blockDirectory(name)
        guard let sectors = environment.attribute(directory + "/size").flatMap({ UInt64($0) }) else { return nil }
        func text(_ relative: String) -> String? {
            guard let value = environment.attribute(directory + "/" + relative), !value.isEmpty else { return nil }
            return value
        }
        func flag(_ relative: String) -> Bool { text(relative) == "1" }
        return Disk(
            name: name, path: environment.devicePath(name), size: sectors * 512,
            logicalSectorSize: text("queue/logical_block_size").flatMap { Int($0) } ?? 512,
            physicalSectorSize: text("queue/physical_block_size").flatMap { Int($0) } ?? 512,
            model: text("device/model"),
            // virtio and NVMe devices give a PCI vendor number here, not a name.
            vendor: text("device/vendor").flatMap { $0.hasPrefix("0x") ? nil : $0 },
            serial: serial(directory, environment), wwn: wwn(directory, environment),
            transport: transport(name, directory),
            rotational: flag("queue/rotational"), removable: flag("removable"), readOnly: flag("ro"),
            deviceNumber: text("dev") ?? "0:0",
            backingFile: text("loop/backing_file"))
    }

    private static func serial(_ directory: String, _ environment: DiskEnvironment) -> String? {
        for candidate in ["serial", "device/serial"] {
            if let value = environment.attribute(directory + "/" + candidate), !value.isEmpty { return value }
        }
        // SCSI and SATA disks: VPD page 0x80 (unit serial number), after its 4-byte header.
        if let data = FileManager.default.contents(atPath: directory + "/device/vpd_pg80"), data.count > 4 {
            let text = String(decoding: data.dropFirst(4), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines.union(.controlCharacters))
            if !text.isEmpty { return text }
        }
        return nil
    }

    /// The World Wide Name as lsblk and Ironic spell it: `0x5000c500a0b1c2d3` for NAA names.
    private static func wwn(_ directory: String, _ environment: DiskEnvironment) -> String? {
        for candidate in ["wwid", "device/wwid"] {
            guard let value = environment.attribute(directory + "/" + candidate), !value.isEmpty else { continue }
            if value.hasPrefix("naa.") { return "0x" + value.dropFirst(4).lowercased() }
            return value
        }
        return nil
    }

    /// The bus, from the kernel name and where the device sits in the device tree.
    static func transport(_ name: String, _ directory: String) -> Transport {
        let devicePath = (directory as NSString).resolvingSymlinksInPath + "|"
            + ((directory + "/device") as NSString).resolvingSymlinksInPath
        if devicePath.contains("/usb") { return .usb }
        if name.hasPrefix("nvme") { return .nvme }
        if name.hasPrefix("mmcblk") { return .mmc }
        if name.hasPrefix("loop") { return .loop }
        if name.hasPrefix("vd") || name.hasPrefix("xvd") { return .virtio }
        if name.hasPrefix("sr") { return .optical }
        if name.hasPrefix("hd") { return .ata }
        if devicePath.contains("/ata") { return .sata }
        if devicePath.contains("/end_device-") || devicePath.contains("/sas") { return .sas }
        if devicePath.contains("/virtio") { return .virtio }
        if name.hasPrefix("sd") { return .scsi }
        return .unknown
    }

    /// The kernel's partition devices of a disk (`sda1`, `loop0p2`), with start sector and number.
    static func partitionDevices(_ name: String, _ environment: DiskEnvironment)
        -> [(name: String, number: Int, offset: UInt64, size: UInt64, deviceNumber: String)] {
        let directory = environment.blockDirectory(name)
        return environment.entries(directory).compactMap { entry in
            guard let number = environment.attribute(directory + "/" + entry + "/partition").flatMap({ Int($0) }) else { return nil }
            let start = environment.attribute(directory + "/" + entry + "/start").flatMap { UInt64($0) } ?? 0
            let sectors = environment.attribute(directory + "/" + entry + "/size").flatMap { UInt64($0) } ?? 0
            return (entry, number, start * 512, sectors * 512, environment.attribute(directory + "/" + entry + "/dev") ?? "0:0")
        }
    }

    /// Reads the partition table, filesystems and Windows installations of a disk.
    static func inspect(_ disk: inout Disk, _ environment: DiskEnvironment) throws(DiskError) {
        guard disk.size > 0 else { return }
        let descriptor = open(disk.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            // No medium in a card reader or CD drive: nothing on it to report.
            if errno == ENOMEDIUM { return }
            throw DiskError.io(path: disk.path, operation: "open for reading", errno: errno)
        }
        defer { close(descriptor) }
        let probe = BlkidProbe(path: disk.path, descriptor: descriptor)
        let kernelPartitions = partitionDevices(disk.name, environment)
        if var table = try probe.partitionTable(sectorSize: disk.logicalSectorSize) {
            for index in table.partitions.indices {
                let partition = table.partitions[index]
                // Only a kernel partition with the table's exact start and size is this partition
                // (a loop device reused without partition scanning keeps stale BLKPG partitions).
                if let device = kernelPartitions.first(where: {
                    $0.number == partition.number && $0.offset == partition.offset && $0.size == partition.size
                }) {
                    table.partitions[index].devicePath = environment.devicePath(device.name)
                }
                if partition.filesystem?.type == "ntfs",
                   let windows = WindowsDetector.detect(descriptor: descriptor, name: disk.path, offset: partition.offset,
                                                        size: partition.size, partition: partition.number) {
                    disk.windows.append(windows)
                }
            }
            disk.partitionTable = table
        } else {
            disk.filesystem = try probe.filesystem()
            if disk.filesystem?.type == "ntfs",
               let windows = WindowsDetector.detect(descriptor: descriptor, name: disk.path, offset: 0, size: disk.size, partition: nil) {
                disk.windows.append(windows)
            }
        }
    }
}
