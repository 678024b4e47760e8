import Foundation

public enum DeviceBus: String, Sendable, Equatable {
    case pci, usb
}

/// A device as Windows PnP will see it: its IDs built the way the Windows bus drivers build them,
/// so matching here picks the driver Windows would pick.
public struct Device: Sendable, Equatable {
    public var bus: DeviceBus
    public var sysfsPath: String
    public var description: String
    public var hardwareIDs: [String]
    public var compatibleIDs: [String]

    public init(bus: DeviceBus, sysfsPath: String, description: String, hardwareIDs: [String], compatibleIDs: [String]) {
        self.bus = bus
        self.sysfsPath = sysfsPath
        self.description = description
        self.hardwareIDs = hardwareIDs
        self.compatibleIDs = compatibleIDs
    }
}

public enum DeviceIDs {
    /// Every PCI and USB device (and USB composite interface) under `sysfsRoot`.
    public static func scan(sysfsRoot: String = "/sys") -> [Device] {
        pciDevices(sysfsRoot: sysfsRoot) + usbDevices(sysfsRoot: sysfsRoot)
    }

    // MARK: PCI

    public static func pciDevices(sysfsRoot: String = "/sys") -> [Device] {
        let base = sysfsRoot + "/bus/pci/devices"
        return entries(base).compactMap { name in
            let dir = base + "/" + name
            guard let vendor = hexValue(dir + "/vendor"), let device = hexValue(dir + "/device") else { return nil }
            let ids = pciIDs(vendor: vendor, device: device,
                             subsystemVendor: hexValue(dir + "/subsystem_vendor") ?? 0,
                             subsystemDevice: hexValue(dir + "/subsystem_device") ?? 0,
                             revision: hexValue(dir + "/revision") ?? 0,
                             classCode: hexValue(dir + "/class") ?? 0)
            return Device(bus: .pci, sysfsPath: dir, description: "PCI \(name) \(hex(vendor, 4)):\(hex(device, 4))",
                          hardwareIDs: ids.hardware, compatibleIDs: ids.compatible)
        }
    }

    /// The lists Windows' PCI bus driver reports ("Identifiers for PCI Devices"): since Windows 10
    /// the VEN&DEV(&REV) forms sit in the compatible list, not the hardware list, which moves
    /// a driver naming only `VEN&DEV` from rank 0x0003 to 0x2001. The SUBSYS forms are always
    /// present, with zeros when the device has no subsystem IDs.
    public static func pciIDs(vendor: UInt32, device: UInt32, subsystemVendor: UInt32, subsystemDevice: UInt32,
                              revision: UInt32, classCode: UInt32) -> (hardware: [String], compatible: [String]) {
        let ven = "PCI\\VEN_\(hex(vendor, 4))"
        let dev = "\(ven)&DEV_\(hex(device, 4))"
        let subsys = "&SUBSYS_\(hex(subsystemDevice, 4))\(hex(subsystemVendor, 4))"
        let rev = "&REV_\(hex(revision & 0xFF, 2))"
        let cc3 = "CC_\(hex(classCode & 0xFFFFFF, 6))"
        let cc2 = "CC_\(hex((classCode >> 8) & 0xFFFF, 4))"
        let hardware = [dev + subsys + rev, dev + subsys, "\(dev)&\(cc3)", "\(dev)&\(cc2)"]
        let compatible = [dev + rev, dev, "\(ven)&\(cc3)", "\(ven)&\(cc2)", ven, "PCI\\\(cc3)", "PCI\\\(cc2)"]
        return (hardware, compatible)
    }

    // MARK: USB

    public static func usbDevices(sysfsRoot: String = "/sys") -> [Device] {
        let base = sysfsRoot + "/bus/usb/devices"
        let names = entries(base)
        var result: [Device] = []
        for name in names where !name.contains(":") && !name.hasPrefix("usb") {
            // Root hubs (`usbN`) are the host controller's, which Windows drives in-box.
            let dir = base + "/" + name
            guard let vid = hexValue(dir + "/idVendor"), let pid = hexValue(dir + "/idProduct") else { continue }
            let rev = hexValue(dir + "/bcdDevice") ?? 0
            let deviceClass = hexValue(dir + "/bDeviceClass") ?? 0
            let deviceSub = hexValue(dir + "/bDeviceSubClass") ?? 0
            let deviceProt = hexValue(dir + "/bDeviceProtocol") ?? 0
            let interfaces: [USBInterface] = names.filter { $0.hasPrefix(name + ":") }.sorted().compactMap { child in
                let path = base + "/" + child
                guard let cls = hexValue(path + "/bInterfaceClass") else { return nil }
                let number = hexValue(path + "/bInterfaceNumber")
                    ?? child.split(separator: ".").last.flatMap { UInt32($0) } ?? 0
                return USBInterface(path: path, number: number, cls: cls, sub: hexValue(path + "/bInterfaceSubClass") ?? 0,
                                    prot: hexValue(path + "/bInterfaceProtocol") ?? 0)
            }
            let product = (try? String(contentsOfFile: dir + "/product", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let label = "USB \(name) \(hex(vid, 4)):\(hex(pid, 4))" + (product.map { " \($0)" } ?? "")
            let vidpid = "USB\\VID_\(hex(vid, 4))&PID_\(hex(pid, 4))"
            let hardware = ["\(vidpid)&REV_\(hex(rev, 4))", vidpid]
            // Windows' USB hub driver treats a device as composite when its class is 0 (or the
            // IAD class EF/02/01) and it has more than one interface; each interface then becomes
            // its own device with an MI_nn suffix.
            let iad = deviceClass == 0xEF && deviceSub == 0x02 && deviceProt == 0x01
            if (deviceClass == 0 || iad) && interfaces.count > 1 {
                let devClass = "USB\\DevClass_\(hex(deviceClass, 2))"
                result.append(Device(bus: .usb, sysfsPath: dir, description: label + " (composite)", hardwareIDs: hardware,
                                     compatibleIDs: ["\(devClass)&SubClass_\(hex(deviceSub, 2))&Prot_\(hex(deviceProt, 2))",
                                                     "\(devClass)&SubClass_\(hex(deviceSub, 2))", devClass, "USB\\COMPOSITE"]))
                for interface in interfaces {
                    let mi = "&MI_\(hex(interface.number, 2))"
                    result.append(Device(bus: .usb, sysfsPath: interface.path,
                                         description: label + " interface \(interface.number)",
                                         hardwareIDs: ["\(vidpid)&REV_\(hex(rev, 4))\(mi)", vidpid + mi],
                                         compatibleIDs: classIDs(interface.cls, interface.sub, interface.prot)))
                }
            } else if deviceClass == 0, let interface = interfaces.first {
                result.append(Device(bus: .usb, sysfsPath: dir, description: label, hardwareIDs: hardware,
                                     compatibleIDs: classIDs(interface.cls, interface.sub, interface.prot)))
            } else {
                result.append(Device(bus: .usb, sysfsPath: dir, description: label, hardwareIDs: hardware,
                                     compatibleIDs: classIDs(deviceClass, deviceSub, deviceProt)))
            }
        }
        return result
    }

    private struct USBInterface {
        var path: String
        var number: UInt32, cls: UInt32, sub: UInt32, prot: UInt32
    }

    static func classIDs(_ cls: UInt32, _ sub: UInt32, _ prot: UInt32) -> [String] {
        let c = "USB\\Class_\(hex(cls, 2))"
        return ["\(c)&SubClass_\(hex(sub, 2))&Prot_\(hex(prot, 2))", "\(c)&SubClass_\(hex(sub, 2))", c]
    }

    // MARK: sysfs

    private static func entries(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// sysfs writes IDs as `0x8086` (PCI) or `046d` (USB), sometimes space-padded.
    static func hexValue(_ path: String) -> UInt32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var trimmed = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if trimmed.lowercased().hasPrefix("0x") { trimmed = trimmed.dropFirst(2) }
        return UInt32(trimmed, radix: 16)
    }

    static func hex(_ value: UInt32, _ width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
