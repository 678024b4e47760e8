import Foundation

/// Names for the partition types people meet on Windows and Linux machines.
public enum PartitionTypeNames {
    public static let gpt: [String: String] = [
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI system",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Microsoft LDM metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD": "Microsoft LDM data",
        "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Microsoft storage spaces",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
        "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
        "48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS+",
    ]
    public static let mbr: [UInt8: String] = [
        0x05: "Extended", 0x07: "NTFS/exFAT", 0x0b: "FAT32", 0x0c: "FAT32 (LBA)", 0x0e: "FAT16 (LBA)",
        0x0f: "Extended (LBA)", 0x27: "Windows recovery", 0x82: "Linux swap", 0x83: "Linux",
        0x85: "Linux extended", 0x8e: "Linux LVM", 0xee: "GPT protective", 0xef: "EFI system", 0xfd: "Linux RAID",
    ]

    public static func name(of type: String) -> String? {
        if type.hasPrefix("0x"), let byte = UInt8(type.dropFirst(2), radix: 16) { return mbr[byte] }
        return gpt[type.uppercased()]
    }
}
