import DiskModel
import Disks
import Foundation
import SequenceModel

/// Reading the facts off the machine this runs on: kept apart from `Facts` itself, which the
/// server decodes from check-ins and must not pull in the disk layer's C libraries.
extension Facts {
    public static func gather(sysRoot: String = "/sys", procRoot: String = "/proc", disks: [Disk]? = nil) -> Facts {
        func read(_ path: String) -> String? {
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            // Vendors leave placeholders where a value belongs.
            let placeholders = ["", "To Be Filled By O.E.M.", "Default string", "System Serial Number", "Not Specified", "None"]
            return placeholders.contains(text) ? nil : text
        }
        let dmi = sysRoot + "/class/dmi/id/"
        var macs: [String] = []
        let net = sysRoot + "/class/net"
        for interface in ((try? FileManager.default.contentsOfDirectory(atPath: net)) ?? []).sorted() where interface != "lo" {
            // Only interfaces on hardware (with a device link): not bridges, taps or veths.
            guard FileManager.default.fileExists(atPath: "\(net)/\(interface)/device"),
                  let mac = read("\(net)/\(interface)/address"), mac != "00:00:00:00:00:00",
                  // Ethernet and Wi-Fi addresses only (six octets): the server refuses a check-in
                  // naming anything else, and InfiniBand's 20-octet addresses never PXE-boot.
                  mac.split(separator: ":").count == 6 else { continue }
            macs.append(mac.lowercased())
        }
        let meminfo = read(procRoot + "/meminfo") ?? ""
        let memoryKiB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { UInt64($0) } ?? 0
        let cpuinfo = read(procRoot + "/cpuinfo") ?? ""
        let processors = cpuinfo.split(separator: "\n").filter { $0.hasPrefix("processor") }.count
        let cpuModel = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) }
        var machine = utsname()
        uname(&machine)
        let machineName = withUnsafeBytes(of: &machine.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let architecture = ["x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "i386": "x86"][machineName] ?? machineName
        let found = disks ?? ((try? DiskInventory.scan(DiskEnvironment(sysRoot: sysRoot, procRoot: procRoot))) ?? [])
        var facts = Facts(
            macAddresses: macs, uuid: read(dmi + "product_uuid")?.lowercased(), serialNumber: read(dmi + "product_serial"),
            manufacturer: read(dmi + "sys_vendor"), model: read(dmi + "product_name"),
            firmware: FileManager.default.fileExists(atPath: sysRoot + "/firmware/efi") ? "uefi" : "bios",
            memoryMiB: memoryKiB / 1024, cpuCount: max(processors, 1), cpuModel: cpuModel, architecture: architecture,
            disks: found.map {
                DiskSummary(path: $0.path, size: $0.size, model: $0.model, serial: $0.serial, transport: $0.transport.rawValue,
                            removable: $0.removable, hasWindows: !$0.windows.isEmpty)
            })
        facts.defaultGateways = defaultGateways(procRoot: procRoot)
        return facts
    }

    /// The gateways of the default routes: /proc/net/route (IPv4: destination and mask 0, the
    /// gateway a little-endian hex word) and /proc/net/ipv6_route (::/0 with a next hop).
    static func defaultGateways(procRoot: String) -> [String] {
        var gateways: [String] = []
        let ipv4 = (try? String(contentsOfFile: procRoot + "/net/route", encoding: .utf8)) ?? ""
        for line in ipv4.split(separator: "\n").dropFirst() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 8, fields[1] == "00000000", fields[7] == "00000000", let word = UInt32(fields[2], radix: 16), word != 0 else { continue }
            let address = [word & 0xFF, word >> 8 & 0xFF, word >> 16 & 0xFF, word >> 24].map(String.init).joined(separator: ".")
            if !gateways.contains(address) { gateways.append(address) }
        }
        let ipv6 = (try? String(contentsOfFile: procRoot + "/net/ipv6_route", encoding: .utf8)) ?? ""
        for line in ipv6.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5, fields[0] == String(repeating: "0", count: 32), fields[1] == "00",
                  fields[4] != Substring(String(repeating: "0", count: 32)), fields[4].count == 32 else { continue }
            let hex = Array(fields[4])
            let groups = stride(from: 0, to: 32, by: 4).map { String(hex[$0..<($0 + 4)]).replacingOccurrences(of: "^0+(?=.)", with: "", options: .regularExpression) }
            let address = groups.joined(separator: ":")
            if !gateways.contains(address) { gateways.append(address) }
        }
        return gateways
    }
}
