import Foundation
import Testing
import TestSupport
@testable import Drivers

@Suite struct DeviceIDTests {
    @Test func pciIDsAsWindowsBuildsThem() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeSysfs(at: scratch.sub("sys"))
        let devices = DeviceIDs.pciDevices(sysfsRoot: scratch.sub("sys"))
        let nic = try #require(devices.first { $0.sysfsPath.hasSuffix("0000:00:1f.6") })
        #expect(nic.bus == .pci)
        #expect(nic.hardwareIDs == [
            "PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028&REV_00",
            "PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028",
            "PCI\\VEN_8086&DEV_15B8&CC_020000",
            "PCI\\VEN_8086&DEV_15B8&CC_0200",
        ])
        #expect(nic.compatibleIDs == [
            "PCI\\VEN_8086&DEV_15B8&REV_00",
            "PCI\\VEN_8086&DEV_15B8",
            "PCI\\VEN_8086&CC_020000",
            "PCI\\VEN_8086&CC_0200",
            "PCI\\VEN_8086",
            "PCI\\CC_020000",
            "PCI\\CC_0200",
        ])
        #expect(devices.count == 5)
    }

    @Test func usbIDsIncludingCompositeInterfaces() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeSysfs(at: scratch.sub("sys"))
        let devices = DeviceIDs.usbDevices(sysfsRoot: scratch.sub("sys"))
        // The root hub is the controller's own and is left to Windows.
        #expect(devices.map { ($0.sysfsPath as NSString).lastPathComponent } == ["1-1", "1-2", "1-2:1.0", "1-2:1.1"])
        #expect(devices[0].hardwareIDs == ["USB\\VID_046D&PID_C52B&REV_1211", "USB\\VID_046D&PID_C52B"])
        #expect(devices[0].compatibleIDs == ["USB\\Class_03&SubClass_01&Prot_02", "USB\\Class_03&SubClass_01", "USB\\Class_03"])
        #expect(devices[0].description.contains("USB Receiver"))
        #expect(devices[1].compatibleIDs == ["USB\\DevClass_EF&SubClass_02&Prot_01", "USB\\DevClass_EF&SubClass_02",
                                             "USB\\DevClass_EF", "USB\\COMPOSITE"])
        #expect(devices[3].hardwareIDs == ["USB\\VID_0BDA&PID_58FD&REV_0004&MI_01", "USB\\VID_0BDA&PID_58FD&MI_01"])
        #expect(devices[3].compatibleIDs == ["USB\\Class_0E&SubClass_02&Prot_00", "USB\\Class_0E&SubClass_02", "USB\\Class_0E"])
    }
}

@Suite struct DriverMatcherTests {
    func setup() throws -> (ScratchDirectory, [Device], [DriverPackage]) {
        let scratch = ScratchDirectory()
        try Fixtures.makeSysfs(at: scratch.sub("sys"))
        try Fixtures.makeShare(at: scratch.sub("share"))
        return (scratch, DeviceIDs.scan(sysfsRoot: scratch.sub("sys")), try DriverSource.local(scratch.sub("share")))
    }

    @Test func rankFollowsMicrosoftsTable() {
        let device = Device(bus: .pci, sysfsPath: "", description: "", hardwareIDs: ["HwID_1", "HwID_2"], compatibleIDs: ["CID_1", "CID_2"])
        func rank(_ id: String, _ column: Int) -> UInt32? {
            // Model line `Desc = Inst, INF_HWID_1, INF_CID_1, INF_CID_2` with `id` in `column`.
            var ids = ["x-hw", "x-cid1", "x-cid2"]
            ids[column] = id.lowercased()  // PnP compares IDs without regard to case
            return DriverMatcher.rank(device: device, hardwareID: ids[0], compatibleIDs: Array(ids[1...]))?.rank
        }
        #expect(rank("HwID_1", 0) == 0x0000)
        #expect(rank("HwID_1", 1) == 0x1000)
        #expect(rank("HwID_1", 2) == 0x1000)
        #expect(rank("HwID_2", 0) == 0x0001)
        #expect(rank("HwID_2", 2) == 0x1001)
        #expect(rank("CID_1", 0) == 0x2000)
        #expect(rank("CID_1", 1) == 0x3000)
        #expect(rank("CID_1", 2) == 0x3100)
        #expect(rank("CID_2", 0) == 0x2001)
        #expect(rank("CID_2", 2) == 0x3101)
        #expect(rank("nothing", 0) == nil)
    }

    @Test func matchesTheShareAgainstTheMachine() throws {
        let (_, devices, packages) = try setup()
        #expect(packages.map(\.name) == ["Intel-NIC-I219", "Intel-NIC-old", "Logitech-Receiver", "Qualcomm-ArmNic",
                                         "Realtek-CardReader", "Storage-AHCI"])
        let result = DriverMatcher.match(devices: devices, packages: packages, architecture: .amd64)
        #expect(result.problems.isEmpty)
        func match(_ suffix: String) -> DriverMatch? { result.matches.first { $0.device.sysfsPath.hasSuffix(suffix) } }

        // The newer e1d wins the tie with the old one; the arm64 INF's exact ID is not considered.
        let nic = try #require(match("0000:00:1f.6"))
        #expect(nic.package.name == "Intel-NIC-I219")
        #expect(nic.rank == 0x0001)
        #expect(nic.matchedDeviceID == "PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028")
        #expect(nic.modelDescription == "Intel(R) Ethernet Connection (2) I219-LM")
        #expect(nic.driverDate == DriverDate(year: 2023, month: 7, day: 14))

        // Intel SATA: the device's compatible ID meets the INF's hardware ID.
        let sata = try #require(match("0000:00:17.0"))
        #expect(sata.package.name == "Storage-AHCI")
        #expect(sata.rank == 0x2003)
        #expect(sata.matchedINFID == "PCI\\VEN_8086&CC_0106")
        // AMD SATA: only the class code, compatible against compatible.
        let amd = try #require(match("0000:03:00.0"))
        #expect(amd.rank == 0x3005)
        #expect(amd.matchedDeviceID == "PCI\\CC_010601")
        #expect(amd.modelDescription == "Standard SATA AHCI Controller")

        #expect(match("0000:02:00.0")?.package.name == "Realtek-CardReader")
        #expect(match("0000:02:00.0")?.rank == 0x2001)
        #expect(match("/1-1")?.rank == 0x0001)
        #expect(match("/1-2:1.0")?.modelDescription == "Integrated Camera")

        #expect(result.unmatchedDevices.map { ($0.sysfsPath as NSString).lastPathComponent } == ["0000:00:12.0", "1-2", "1-2:1.1"])
        #expect(result.unusedPackages.map(\.name) == ["Intel-NIC-old", "Qualcomm-ArmNic"])
    }

    @Test func arm64TargetPicksTheArmDriver() throws {
        let (_, devices, packages) = try setup()
        let result = DriverMatcher.match(devices: devices, packages: packages, architecture: .arm64)
        let nic = try #require(result.matches.first { $0.device.sysfsPath.hasSuffix("0000:00:1f.6") })
        #expect(nic.package.name == "Qualcomm-ArmNic")
        #expect(nic.rank == 0x0000)
        // The USB INF has no arm64 models.
        #expect(!result.matches.contains { $0.package.name == "Logitech-Receiver" })
    }

    @Test func hardwareMatchBeatsCompatibleAndNewerWinsTies() throws {
        let device = Device(bus: .pci, sysfsPath: "/sys/x", description: "NIC",
                            hardwareIDs: DeviceIDs.pciIDs(vendor: 0x8086, device: 0x15B8, subsystemVendor: 0x1028, subsystemDevice: 0x0861,
                                                          revision: 0, classCode: 0x020000).hardware,
                            compatibleIDs: DeviceIDs.pciIDs(vendor: 0x8086, device: 0x15B8, subsystemVendor: 0x1028, subsystemDevice: 0x0861,
                                                            revision: 0, classCode: 0x020000).compatible)
        func package(_ name: String, date: String, version: String, id: String) throws -> DriverPackage {
            let text = """
            [Version]
            DriverVer = \(date),\(version)
            [Manufacturer]
            M = M, NTamd64
            [M.NTamd64]
            "\(name)" = Inst, \(id)
            [Inst]
            """
            return DriverPackage(name: name, root: "/share/\(name)", infs: [try INFFile(text: text, path: "/share/\(name)/a.inf")])
        }
        let generic = try package("generic", date: "01/01/2026", version: "2.0", id: "PCI\\VEN_8086&CC_0200")
        let old = try package("old", date: "01/01/2020", version: "9.0", id: "pci\\ven_8086&dev_15b8")
        let new = try package("new", date: "06/01/2021", version: "1.0", id: "PCI\\VEN_8086&DEV_15B8")
        let newer = try package("newer", date: "06/01/2021", version: "1.1", id: "PCI\\VEN_8086&DEV_15B8")
        let pick = { (packages: [DriverPackage]) in
            DriverMatcher.match(devices: [device], packages: packages, architecture: .amd64).matches.first?.package.name
        }
        let exact = try package("exact", date: "01/01/2019", version: "1.0", id: "PCI\\VEN_8086&DEV_15B8&CC_0200")
        #expect(pick([generic, old, new, exact]) == "exact")  // hardware-ID match 0x0003 beats every 0x2xxx
        #expect(pick([generic, old]) == "old")       // 0x2001 beats 0x2003 despite the older date
        #expect(pick([old, new]) == "new")           // same rank: newer date
        #expect(pick([new, newer]) == "newer")       // same date: higher version
        #expect(pick([newer, new]) == "newer")
    }
}
