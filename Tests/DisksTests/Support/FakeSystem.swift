import Foundation
import TestSupport

/// A prepared sysfs, /dev and /proc: disks of every transport and state a lab cannot attach
/// (NVMe, USB, SATA with WWN, mounted, swap, held by dm), whose device nodes are links to real
/// loop devices so libblkid still reads real contents.
struct FakeSystem {
    let root: String
    var sys: String { root + "/sys" }
    var dev: String { root + "/dev" }
    var procRoot: String { root + "/proc" }
    var options: [String] { ["--sys-root", sys, "--dev-root", dev, "--proc-root", procRoot] }

    init(_ root: String) throws {
        self.root = root
        for directory in [sys + "/block", dev, procRoot + "/self"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }

    func disk(_ name: String, sectors: UInt64, node: String, device: String, dev number: String = "7:200",
              files: [String: String] = [:], vpdSerial: String? = nil,
              partitions: [(name: String, number: Int, dev: String)] = [], holders: [String] = []) throws {
        let deviceDirectory = sys + "/devices/" + device
        let block = sys + "/block/" + name
        var all = ["size": String(sectors), "dev": number, "removable": "0", "ro": "0",
                   "queue/logical_block_size": "512", "queue/physical_block_size": "4096", "queue/rotational": "1"]
        all.merge(files) { _, new in new }
        try FileManager.default.createDirectory(atPath: deviceDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: block + "/holders", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: block + "/device", withDestinationPath: deviceDirectory)
        for (path, value) in all {
            let full = path.hasPrefix("device/") ? deviceDirectory + "/" + path.dropFirst(7) : block + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try (value + "\n").write(toFile: full, atomically: false, encoding: .utf8)
        }
        if let vpdSerial {
            let page = [0x00, 0x80, 0x00, UInt8(vpdSerial.utf8.count)] + Array(vpdSerial.utf8)
            try Data(page).write(to: URL(fileURLWithPath: deviceDirectory + "/vpd_pg80"))
        }
        for holder in holders {
            try FileManager.default.createSymbolicLink(atPath: block + "/holders/" + holder, withDestinationPath: "../../" + holder)
        }
        for partition in partitions {
            let directory = block + "/" + partition.name
            try FileManager.default.createDirectory(atPath: directory + "/holders", withIntermediateDirectories: true)
            for (file, value) in ["partition": String(partition.number), "start": "2048", "size": "204800", "dev": partition.dev] {
                try (value + "\n").write(toFile: directory + "/" + file, atomically: false, encoding: .utf8)
            }
        }
        try FileManager.default.createSymbolicLink(atPath: dev + "/" + name, withDestinationPath: node)
    }

    func proc(mountinfo: String, swaps: String, cmdline: String) throws {
        try mountinfo.write(toFile: procRoot + "/self/mountinfo", atomically: false, encoding: .utf8)
        try swaps.write(toFile: procRoot + "/swaps", atomically: false, encoding: .utf8)
        try cmdline.write(toFile: procRoot + "/cmdline", atomically: false, encoding: .utf8)
    }
}
