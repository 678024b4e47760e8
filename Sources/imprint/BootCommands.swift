import ArgumentParser
import Boot
import Foundation
import InstalledWindows
import Primitives
import Registry

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Make an applied Windows bootable: boot files, BCD store, firmware entry.",
        subcommands: [BootMake.self, BootShow.self, BootDriverPath.self, BootBIOSCode.self]
    )
}

/// `imprint boot make`: bcdboot, from Linux.
struct BootMake: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make",
        abstract: "Copy the boot manager from the Windows volume to the system partition and write its BCD store; UEFI: add the firmware's boot entry; BIOS: write the boot code that starts bootmgr.")

    @Option(help: "The Windows volume: an NTFS partition (or a folder holding the applied image).") var windows: String
    @Option(help: "The system partition: the EFI system partition (FAT, written with mtools), the active System Reserved partition of a BIOS disk (NTFS), or a folder.")
    var esp: String
    @Option(help: "uefi, bios, or auto: bios when the system partition is on an MBR disk.") var firmware = "auto"
    @Option(help: "The boot menu's language.") var locale = "en-US"
    @Option(help: "Seconds the boot menu waits.") var timeout: UInt64 = 30
    @Option(help: "The boot menu's name for this Windows.") var description = "Windows"
    @Option(help: "The GPT disk GUID, when libblkid cannot find it (partitions exposed as their own devices).") var diskGuid: String?
    @Option(help: "The Windows partition's unique GPT GUID, when libblkid cannot find it.") var windowsPartitionGuid: String?
    @Option(help: "The ESP's unique GPT GUID, when libblkid cannot find it.") var espPartitionGuid: String?
    @Option(help: ArgumentHelp("Where the EFI variables are.", visibility: .hidden)) var efivars = "/sys/firmware/efi/efivars"
    @Option(help: "The recovery partition (NTFS, or a folder): Winre.wim and boot.sdi go to its \\Recovery\\WindowsRE, the store gets the WinRE loader and ReAgent.xml names it.")
    var recovery: String?
    @Option(help: "The recovery partition's unique GPT GUID, when libblkid cannot find it (with --disk-guid).") var recoveryPartitionGuid: String?
    @Option(help: "The recovery partition's first byte on the disk, when libblkid cannot find it (for ReAgent.xml).") var recoveryOffset: UInt64?
    @Option(help: "MBR disks: the disk signature (0x1a2b3c4d), when libblkid cannot find it (partitions exposed as their own devices); with --windows-offset and --esp-offset.")
    var diskSignature: String?
    @Option(help: "MBR disks: the Windows partition's first byte on the disk.") var windowsOffset: UInt64?
    @Option(help: "MBR disks: the system partition's first byte on the disk.") var espOffset: UInt64?
    @Option(help: "The whole disk holding the system partition (BIOS: where the boot code goes), when libblkid cannot find it.") var disk: String?
    @Option(help: "The system partition's number on its disk (BIOS: GRUB's root partition), when libblkid cannot find it.") var espNumber: Int?
    @Option(help: "BIOS: a folder with GRUB's boot.img and core-msdosN.img (built by `imprint boot bios-code`); default: the boot environment's, or built now with grub-mkimage.")
    var biosBootCode: String?

    func run() throws {
        do {
            var windowsIdentity: PartitionIdentity
            var espIdentity: PartitionIdentity
            if let diskGuid, let windowsPartitionGuid, let espPartitionGuid {
                guard let disk = GUID(diskGuid), let windowsGUID = GUID(windowsPartitionGuid), let espGUID = GUID(espPartitionGuid) else {
                    throw BootError.unsupported("--disk-guid, --windows-partition-guid and --esp-partition-guid must be GUIDs")
                }
                windowsIdentity = PartitionIdentity(device: .gptPartition(partition: windowsGUID, disk: disk))
                espIdentity = PartitionIdentity(device: .gptPartition(partition: espGUID, disk: disk))
            } else if let diskSignature {
                guard let signature = UInt32(diskSignature.lowercased().replacingOccurrences(of: "0x", with: ""), radix: 16),
                      let windowsOffset, let espOffset else {
                    throw BootError.unsupported("--disk-signature must be hexadecimal (0x1a2b3c4d), with --windows-offset and --esp-offset")
                }
                windowsIdentity = PartitionIdentity(device: .mbrPartition(offset: windowsOffset, signature: signature), offset: windowsOffset)
                espIdentity = PartitionIdentity(device: .mbrPartition(offset: espOffset, signature: signature), offset: espOffset)
            } else {
                windowsIdentity = try PartitionIdentity.probe(windows)
                espIdentity = try PartitionIdentity.probe(esp)
            }
            if let disk { espIdentity.disk = disk }
            if let espNumber { espIdentity.number = espNumber }
            let firmware: Firmware
            switch self.firmware {
            case "auto":
                if case .mbrPartition = espIdentity.device { firmware = .bios } else { firmware = .uefi }
            case let name:
                guard let named = Firmware(rawValue: name) else { throw BootError.unsupported("unknown firmware \"\(name)\": uefi, bios or auto") }
                firmware = named
            }
            var recoveryEnvironment: RecoveryEnvironment?
            if let recovery {
                if let diskGuid, let recoveryPartitionGuid {
                    guard let disk = GUID(diskGuid), let partition = GUID(recoveryPartitionGuid), let recoveryOffset else {
                        throw BootError.unsupported("--recovery-partition-guid must be a GUID, and --recovery-offset give the partition's first byte")
                    }
                    recoveryEnvironment = RecoveryEnvironment(partition: .gptPartition(partition: partition, disk: disk), partitionOffset: recoveryOffset)
                } else if case let .mbrPartition(_, signature) = windowsIdentity.device, diskSignature != nil {
                    guard let recoveryOffset else { throw BootError.unsupported("--recovery-offset gives the recovery partition's first byte (with --disk-signature)") }
                    recoveryEnvironment = RecoveryEnvironment(partition: .mbrPartition(offset: recoveryOffset, signature: signature), partitionOffset: recoveryOffset)
                } else {
                    let identity = try PartitionIdentity.probe(recovery)
                    guard let offset = recoveryOffset ?? identity.offset else {
                        throw BootError.probe(device: recovery, reason: "libblkid finds no offset for it: give --recovery-offset")
                    }
                    recoveryEnvironment = RecoveryEnvironment(partition: identity.device, partitionOffset: offset)
                }
            }
            let configuration = BootConfiguration(firmware: firmware, systemPartition: espIdentity.device,
                                                  windowsPartition: windowsIdentity.device, locale: locale,
                                                  timeout: timeout, osDescription: description, recovery: recoveryEnvironment)
            // Named on the command line, WinRE is asked for: an image without Winre.wim is an error.
            let request = BootMaker.Request(windowsVolume: windows, systemPartition: esp, configuration: configuration,
                                            espDisk: espIdentity.disk, espNumber: espIdentity.number, efivars: efivars,
                                            recoveryVolume: recovery, recoveryRequired: true, biosBootCode: biosBootCode)
            _ = try BootMaker.make(request) { print($0) }
        } catch { throw fail(error) }
    }
}

/// `imprint boot show BCD`: every object and element of a store, as bcdedit /enum all would list them.
struct BootShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "List the objects and elements of a BCD store file.")

    @Argument(help: "A BCD file (EFI\\Microsoft\\Boot\\BCD).") var store: String

    func run() throws {
        do {
            // BCD.LOG1/BCD.LOG2 beside the store are replayed when Windows left it dirty.
            let hive = try Hive(contentsOf: store)
            if let replay = hive.replayed {
                FileHandle.standardError.write(Data("imprint: \(store) was not cleanly written; replayed its logs \(replay.summary)\n".utf8))
            }
            if let stale = hive.logReplayError {
                FileHandle.standardError.write(Data("imprint: warning: \(stale); listed as the file is\n".utf8))
            }
            let bcd = try BCDStore(hive: try hive.readTree())
            for object in bcd.objects {
                print(object.id.braced + "  type 0x" + String(object.type, radix: 16, uppercase: true))
                for element in object.elements { print("  \(element.type.keyName)  \(element.value)") }
            }
        } catch { throw fail(error) }
    }
}

/// `imprint boot driver-path`: the DevicePath edit the injectDrivers step makes.
struct BootDriverPath: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "driver-path",
        abstract: "Add a folder to DevicePath in the Windows volume's SOFTWARE hive, so Plug and Play searches it.")

    @Option(help: "The Windows volume: an NTFS partition or a folder.") var windows: String
    @Option(help: "The folder, as Windows sees it.") var folder = "%SystemDrive%\\Drivers"

    func run() throws {
        do {
            let change = try DriverSearchPath.add(folder, volume: windows)
            print("DevicePath: \(change.old ?? "(not set)") → \(change.new)")
        } catch { throw fail(error) }
    }
}

/// `imprint boot bios-code DIR`: GRUB's boot.img and the core images `boot make` installs on a
/// BIOS disk (the boot environment's build ships them; see BIOSBootCode).
struct BootBIOSCode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bios-code",
        abstract: "Build the BIOS boot code (GRUB i386-pc: boot.img, and one core image per MBR partition number that starts bootmgr) into a folder.")

    @Argument(help: "The folder to write boot.img and core-msdos1..4.img into.") var directory: String
    @Option(help: "GRUB's i386-pc module folder.") var grub = BIOSBootCode.grubDirectory

    func run() throws {
        do {
            try BIOSBootCode.build(into: directory, grub: grub)
            print("boot.img and \((1...4).map { BIOSBootCode.coreName(partition: $0) }.joined(separator: ", ")) in \(directory)")
        } catch { throw fail(error) }
    }
}
