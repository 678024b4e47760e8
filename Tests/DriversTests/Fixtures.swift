import Foundation
import TestSupport
@testable import Drivers

/// Realistic INF files and a fake sysfs, shared by the Drivers tests.
enum Fixtures {
    /// Modelled on Intel's e1d: decorated models for Windows 10 1709+ and a future build.
    static func nicINF(date: String = "07/14/2023", version: String = "12.19.1.37") -> String {
        """
        ;-------------------------------------------------------------------------------
        ; e1d.inf  Intel(R) Gigabit Ethernet (NDIS 6.x)
        ;-------------------------------------------------------------------------------

        [Version]
        Signature   = "$WINDOWS NT$"
        Class       = Net
        ClassGUID   = {4d36e972-e325-11ce-bfc1-08002be10318}
        Provider    = %Intel%
        CatalogFile = e1d.cat
        DriverVer   = \(date),\(version)
        PnpLockdown = 1

        [Manufacturer]
        %Intel%     = Intel, NTamd64.10.0...16299, NTamd64.10.0...26100

        [ControlFlags]
        ExcludeFromSelect = *

        [Intel.NTamd64.10.0...16299]
        ; DisplayName                   Section              DeviceID
        ; -----------                   -------              --------
        %E15B8NC.DeviceDesc%            = E15B8.10.0.1.16299, PCI\\VEN_8086&DEV_15B8
        %E15B8NC.DeviceDesc%            = E15B8.10.0.1.16299, PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028
        %E0D4FNC.DeviceDesc%            = E15B8.10.0.1.16299, PCI\\VEN_8086&DEV_0D4F

        [Intel.NTamd64.10.0...26100]
        %E15B8NC.DeviceDesc.Future%     = E15B8.10.0.1.26100, PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028&REV_00

        [E15B8.10.0.1.16299]
        Characteristics = 0x84 ; NCF_HAS_UI | NCF_PHYSICAL
        BusType         = 5
        DelReg          = Advanced.DelReg
        AddReg          = e1d.reg, \\
                          Copper.reg, \\
                          WakeOnLan.reg
        CopyFiles       = win10.CopyFiles, @e1dmsg.dll
        *IfType         = 6   ; IF_TYPE_ETHERNET_CSMACD
        *MediaType      = 0   ; NdisMedium802_3

        [E15B8.10.0.1.16299.Services]
        AddService = e1dexpress, 2, e1d.Service, e1d.EventLog

        [E15B8.10.0.1.26100]
        CopyFiles = win10.CopyFiles

        [win10.CopyFiles]
        e1d68x64.sys,,,0x100
        e1dcoin.dll,e1dcoin_src.dll

        [e1d.reg]
        HKR, Ndi\\Interfaces, UpperRange, 0, "ndis5"
        HKR, Ndi, HelpText, 0, "%HelpText%"
        HKR, Ndi\\Params\\*SpeedDuplex, Load, 0, "100%%"

        [SourceDisksNames]
        1 = %DiskId1%,,,""

        [SourceDisksNames.amd64]
        1 = %DiskId1%,,,\\x64

        [SourceDisksFiles]
        e1d68x64.sys = 1,,
        e1dmsg.dll   = 1,,
        e1dcoin_src.dll = 1,coinst

        [DestinationDirs]
        DefaultDestDir = 12

        [Strings]
        Intel                 = "Intel"
        E15B8NC.DeviceDesc    = "Intel(R) Ethernet Connection (2) I219-LM"
        E0D4FNC.DeviceDesc    = "Intel(R) Ethernet Connection (10) I219-LM"
        E15B8NC.DeviceDesc.Future = "Intel(R) Ethernet Connection (2) I219-LM (24H2)"
        DiskId1               = "Intel(R) Networking Install Disk; not a comment"
        HelpText              = "Quote ""inside"", fully sure"
        """
    }

    /// Files the NIC INF names, laid out as its SourceDisks sections say for amd64.
    static let nicFiles = ["e1d.inf", "e1d.cat", "x64/e1d68x64.sys", "x64/e1dmsg.dll", "x64/coinst/e1dcoin_src.dll", "readme.txt"]

    /// An SD card reader INF as Realtek ships them: UTF-16LE with a BOM, localized strings.
    static let cardReaderINF = """
    [Version]
    Signature="$WINDOWS NT$"
    Class=SDHost
    ClassGuid={a0a588a4-c46f-4b37-b7ea-c82fe89870c6}
    Provider=%Rtsk%
    DriverVer=03/02/2023,10.0.22000.21355
    CatalogFile=RtsPer.cat

    [Manufacturer]
    %Rtsk%=Realtek,NTamd64

    [Realtek.NTamd64]
    %PCI\\VEN_10EC&DEV_525A.DeviceDesc%=RTSPER, PCI\\VEN_10EC&DEV_525A

    [RTSPER.NT]
    CopyFiles=RTSPER.CopyFiles

    [RTSPER.CopyFiles]
    RtsPer.sys

    [SourceDisksNames]
    1=%DiskName%

    [SourceDisksFiles]
    RtsPer.sys=1

    [Strings.0409]
    Rtsk="Realtek Semiconductor Corp."
    PCI\\VEN_10EC&DEV_525A.DeviceDesc="Realtek PCIE CardReader"
    DiskName="Realtek Driver Disk"
    """

    /// A generic AHCI INF that matches by class code only, like storahci.
    static let ahciINF = """
    [Version]
    Signature="$WINDOWS NT$"
    Class=SCSIAdapter
    ClassGuid={4D36E97B-E325-11CE-BFC1-08002BE10318}
    Provider=%VendorName%
    DriverVer=06/21/2006,10.0.22621.1
    CatalogFile=storahci.cat

    [Manufacturer]
    %VendorName%=Generic,NTamd64,NTarm64

    [Generic.NTamd64]
    %IntelSATA.DeviceDesc% = storahci_Inst, PCI\\VEN_8086&CC_0106, PCI\\CC_0106
    %StandardSATAAHCI.DeviceDesc% = storahci_Inst, , PCI\\CC_010601

    [Generic.NTarm64]
    %StandardSATAAHCI.DeviceDesc% = storahci_Inst, PCI\\CC_010601

    [storahci_Inst]
    CopyFiles=@storahci.sys

    [Strings]
    VendorName = "Generic"
    IntelSATA.DeviceDesc = "Intel SATA AHCI Controller"
    StandardSATAAHCI.DeviceDesc = "Standard SATA AHCI Controller"
    """

    static let usbINF = """
    [Version]
    Signature = "$Windows NT$"
    Class = HIDClass
    ClassGuid = {745a17a0-74d3-11d0-b6fe-00a0c90f57da}
    Provider = %Logi%
    DriverVer = 11/05/2021,1.10.78.0
    CatalogFile = logi_receiver.cat

    [Manufacturer]
    %Logi% = Logitech, NTamd64, NTx86

    [Logitech.NTamd64]
    %Receiver.DeviceDesc% = Receiver_Inst, USB\\VID_046D&PID_C52B
    %Camera.DeviceDesc% = Camera_Inst, USB\\VID_0BDA&PID_58FD&MI_00

    [Logitech.NTx86]
    %Receiver.DeviceDesc% = Receiver_Inst, USB\\VID_046D&PID_C52B

    [Receiver_Inst.NT]
    CopyFiles = Receiver.Files

    [Camera_Inst.NT]

    [Receiver.Files]
    logi_receiver.sys

    [Strings]
    Logi = "Logitech"
    Receiver.DeviceDesc = "Logitech USB Unifying Receiver"
    Camera.DeviceDesc = "Integrated Camera"
    """

    /// Snapdragon-only driver for the same NIC ID: must never be picked for amd64.
    static let arm64INF = """
    [Version]
    Signature = "$WINDOWS NT$"
    Class = Net
    ClassGuid = {4d36e972-e325-11ce-bfc1-08002be10318}
    Provider = %Vendor%
    DriverVer = 01/01/2025,99.0.0.0
    CatalogFile = armnic.cat

    [Manufacturer]
    %Vendor% = Vendor, NTarm64

    [Vendor.NTarm64]
    %Desc% = ArmNic_Inst, PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028&REV_00

    [ArmNic_Inst]
    CopyFiles = @armnic.sys

    [Strings]
    Vendor = "ARM Vendor"
    Desc = "ARM64 Ethernet"
    """

    static func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    static func utf16LEWithBOM(_ text: String) -> Data {
        var data = Data([0xFF, 0xFE])
        for unit in text.replacingOccurrences(of: "\n", with: "\r\n").utf16 {
            data.append(UInt8(unit & 0xFF))
            data.append(UInt8(unit >> 8))
        }
        return data
    }

    /// A driver share: every INF above in its own vendor folder, with the files they name.
    static func makeShare(at root: String) throws {
        for file in nicFiles {
            try write(file == "e1d.inf" ? nicINF() : "payload \(file)", to: "\(root)/Intel/NIC I219/\(file)")
        }
        try write(nicINF(date: "01/10/2022", version: "12.19.2.45"), to: "\(root)/Intel/NIC-old/e1d.inf")
        try write("cat", to: "\(root)/Intel/NIC-old/e1d.cat")
        let reader = "\(root)/Realtek/CardReader"
        try FileManager.default.createDirectory(atPath: reader, withIntermediateDirectories: true)
        try utf16LEWithBOM(cardReaderINF).write(to: URL(fileURLWithPath: reader + "/RtsPer.INF"))
        try write("sys", to: reader + "/RtsPer.sys")
        try write("cat", to: reader + "/RtsPer.cat")
        try write(ahciINF, to: "\(root)/Storage/AHCI/storahci.inf")
        try write("sys", to: "\(root)/Storage/AHCI/storahci.sys")
        // No catalog here on purpose: the plan must warn about it.
        try write(usbINF, to: "\(root)/Logitech/Receiver/logi.inf")
        try write("sys", to: "\(root)/Logitech/Receiver/logi_receiver.sys")
        try write(arm64INF, to: "\(root)/Qualcomm/ArmNic/armnic.inf")
        try write("sys", to: "\(root)/Qualcomm/ArmNic/armnic.sys")
        try write("cat", to: "\(root)/Qualcomm/ArmNic/armnic.cat")
    }

    /// A sysfs tree as Linux presents it, with the devices the INFs above are for.
    static func makeSysfs(at root: String) throws {
        func pci(_ slot: String, _ values: [String: String]) throws {
            for (name, value) in values { try write(value + "\n", to: "\(root)/bus/pci/devices/\(slot)/\(name)") }
        }
        try pci("0000:00:1f.6", ["vendor": "0x8086", "device": "0x15b8", "subsystem_vendor": "0x1028",
                                 "subsystem_device": "0x0861", "revision": "0x00", "class": "0x020000"])
        try pci("0000:00:17.0", ["vendor": "0x8086", "device": "0xa352", "subsystem_vendor": "0x1028",
                                 "subsystem_device": "0x0861", "revision": "0x10", "class": "0x010601"])
        try pci("0000:03:00.0", ["vendor": "0x1022", "device": "0x7901", "subsystem_vendor": "0x1022",
                                 "subsystem_device": "0x7901", "revision": "0x51", "class": "0x010601"])
        try pci("0000:02:00.0", ["vendor": "0x10ec", "device": "0x525a", "subsystem_vendor": "0x1028",
                                 "subsystem_device": "0x0861", "revision": "0x01", "class": "0xff0000"])
        // A device nothing in the share drives (an Intel thermal controller).
        try pci("0000:00:12.0", ["vendor": "0x8086", "device": "0xa379", "subsystem_vendor": "0x1028",
                                 "subsystem_device": "0x0861", "revision": "0x10", "class": "0x118000"])
        func usb(_ name: String, _ values: [String: String]) throws {
            for (key, value) in values { try write(value + "\n", to: "\(root)/bus/usb/devices/\(name)/\(key)") }
        }
        try usb("usb1", ["idVendor": "1d6b", "idProduct": "0002", "bcdDevice": "0515", "bDeviceClass": "09"])
        try usb("1-1", ["idVendor": "046d", "idProduct": "c52b", "bcdDevice": "1211", "bDeviceClass": "00",
                        "bDeviceSubClass": "00", "bDeviceProtocol": "00", "bNumInterfaces": " 1", "product": "USB Receiver"])
        try usb("1-1:1.0", ["bInterfaceNumber": "00", "bInterfaceClass": "03", "bInterfaceSubClass": "01", "bInterfaceProtocol": "02"])
        try usb("1-2", ["idVendor": "0bda", "idProduct": "58fd", "bcdDevice": "0004", "bDeviceClass": "ef",
                        "bDeviceSubClass": "02", "bDeviceProtocol": "01", "bNumInterfaces": " 2"])
        try usb("1-2:1.0", ["bInterfaceNumber": "00", "bInterfaceClass": "0e", "bInterfaceSubClass": "01", "bInterfaceProtocol": "00"])
        try usb("1-2:1.1", ["bInterfaceNumber": "01", "bInterfaceClass": "0e", "bInterfaceSubClass": "02", "bInterfaceProtocol": "00"])
    }
}
