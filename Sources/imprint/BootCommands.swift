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
            let configuration = BootConfiguration(firmware: firmware, systemPartition: espIdentity.device,
                                                  windowsPartition: windowsIdentity.device, locale: locale,
                                                  timeout: timeout, osDescription: description)
            let request = BootMaker.Request(windowsVolume: windows, systemPartition: esp, configuration: configuration,
                                            espDisk: espIdentity.disk, espNumber: espIdentity.number, efivars: efivars)
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
