import Foundation

/// What the machine is, read from the kernel (SMBIOS through sysfs, network interfaces,
/// firmware, memory, CPUs, disks): the built-in variables of every sequence, and what the agent
/// sends the server at check-in so its rules can choose a sequence.
public struct Facts: Sendable, Codable, Equatable {
    public var macAddresses: [String]
    public var uuid: String?
    public var serialNumber: String?
    public var manufacturer: String?
    public var model: String?
    /// `uefi` or `bios`.
    public var firmware: String
    public var memoryMiB: UInt64
    public var cpuCount: Int
    public var cpuModel: String?
    /// `amd64`, `arm64` or `x86`, as Windows names them.
    public var architecture: String
    public var disks: [DiskSummary]
    /// The default routes' gateways (IPv4 first), as MDT's DefaultGateway: distribution points
    /// are chosen by them. Optional: agents before it did not report them.
    public var defaultGateways: [String]?

    public struct DiskSummary: Sendable, Codable, Equatable {
        public var path: String
        public var size: UInt64
        public var model: String?
        public var serial: String?
        public var transport: String
        public var removable: Bool
        public var hasWindows: Bool

        public init(path: String, size: UInt64, model: String?, serial: String?, transport: String, removable: Bool, hasWindows: Bool) {
            self.path = path
            self.size = size
            self.model = model
            self.serial = serial
            self.transport = transport
            self.removable = removable
            self.hasWindows = hasWindows
        }
    }

    public init(macAddresses: [String], uuid: String?, serialNumber: String?, manufacturer: String?, model: String?,
                firmware: String, memoryMiB: UInt64, cpuCount: Int, cpuModel: String?, architecture: String, disks: [DiskSummary]) {
        self.macAddresses = macAddresses
        self.uuid = uuid
        self.serialNumber = serialNumber
        self.manufacturer = manufacturer
        self.model = model
        self.firmware = firmware
        self.memoryMiB = memoryMiB
        self.cpuCount = cpuCount
        self.cpuModel = cpuModel
        self.architecture = architecture
        self.disks = disks
    }

    /// The variable names facts take; sequences may read them but never set them.
    public static var names: Set<String> { FactNames.all }

    public var variables: [String: String] {
        var values: [String: String] = [
            "MACAddresses": macAddresses.joined(separator: ","), "Firmware": firmware, "MemoryMiB": String(memoryMiB),
            "CPUCount": String(cpuCount), "Architecture": architecture, "DiskCount": String(disks.count),
        ]
        values["MACAddress"] = macAddresses.first ?? ""
        values["UUID"] = uuid ?? ""
        values["SerialNumber"] = serialNumber ?? ""
        values["Manufacturer"] = manufacturer ?? ""
        values["Model"] = model ?? ""
        values["CPUModel"] = cpuModel ?? ""
        values["DefaultGateway"] = defaultGateways?.first ?? ""
        return values
    }
}
