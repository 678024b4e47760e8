import ArgumentParser
import Boot
import Foundation
import Primitives
import Registry

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Make an applied Windows bootable: boot files, BCD store, firmware entry.",
        subcommands: [BootMake.self, BootShow.self, BootDriverPath.self]
    )
}

/// `imprint boot make`: bcdboot, from Linux.
struct BootMake: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make",
        abstract: "Copy the boot manager from the Windows volume to the ESP, write EFI\\Microsoft\\Boot\\BCD and add the UEFI boot entry.")

    @Option(help: "The Windows volume: an NTFS partition (or a folder holding the applied image).") var windows: String
    @Option(help: "The EFI system partition: a FAT partition (written with mtools), or a folder.") var esp: String
    @Option(help: "uefi (bios is not written yet).") var firmware = "uefi"
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

    func run() throws {
        do {
            guard let firmware = Firmware(rawValue: firmware) else {
                throw BootError.unsupported("unknown firmware \"\(firmware)\": uefi or bios")
            }
            let windowsIdentity: PartitionIdentity
            let espIdentity: PartitionIdentity
            if let diskGuid, let windowsPartitionGuid, let espPartitionGuid {
                guard let disk = GUID(diskGuid), let windowsGUID = GUID(windowsPartitionGuid), let espGUID = GUID(espPartitionGuid) else {
                    throw BootError.unsupported("--disk-guid, --windows-partition-guid and --esp-partition-guid must be GUIDs")
                }
                windowsIdentity = PartitionIdentity(device: .gptPartition(partition: windowsGUID, disk: disk))
                espIdentity = PartitionIdentity(device: .gptPartition(partition: espGUID, disk: disk))
            } else {
                windowsIdentity = try PartitionIdentity.probe(windows)
                espIdentity = try PartitionIdentity.probe(esp)
            }
            var recoveryEnvironment: RecoveryEnvironment?
            if let recovery {
                if let diskGuid, let recoveryPartitionGuid {
                    guard let disk = GUID(diskGuid), let partition = GUID(recoveryPartitionGuid), let recoveryOffset else {
                        throw BootError.unsupported("--recovery-partition-guid must be a GUID, and --recovery-offset give the partition's first byte")
                    }
                    recoveryEnvironment = RecoveryEnvironment(partition: .gptPartition(partition: partition, disk: disk), partitionOffset: recoveryOffset)
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
                                            recoveryVolume: recovery, recoveryRequired: true)
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
            let hive = try Hive(contentsOf: store)
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
