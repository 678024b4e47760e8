import Boot
import DiskModel
import Disks
import Failures
import Foundation
import Primitives
import SequenceModel

/// makeBootable: what MDT runs bcdboot for. The boot manager and its resources go from the
/// applied image to the system partition, a new BCD store names the Windows partition (by its
/// GPT GUIDs, or MBR signature and offset); UEFI gets a "Windows Boot Manager" entry, BIOS the
/// boot code that starts bootmgr.
enum BootSteps {
    static func makeBootable(_ parameters: MakeBootableStep, _ step: Step, _ context: RunContext) throws {
        let windows = try context.volume(parameters.windows)
        let esp = try context.volume(parameters.esp)
        let windowsIdentity = try identity(of: windows, parameters.windows, context)
        let espIdentity = try identity(of: esp, parameters.esp, context)
        let firmware: Firmware
        switch context.substitute(parameters.firmware) {
        case "auto":
            if case .mbrPartition = espIdentity.device { firmware = .bios } else { firmware = .uefi }
        case let name:
            guard let named = Firmware(rawValue: name) else {
                throw StepFailure("makeBootable: unknown firmware \"\(name)\" (uefi, bios or auto)", kind: .badInput)
            }
            firmware = named
        }
        if firmware == .bios, case .gptPartition = espIdentity.device {
            throw StepFailure("makeBootable: BIOS boot needs an MBR disk; \"\(parameters.esp)\" is on a GPT disk (boot it by UEFI)", kind: .badInput)
        }
        // Windows RE: the volume named, or the recovery partition of the Windows disk.
        var recoveryVolume: Volume?
        switch parameters.recovery {
        case .off: break
        case let .volume(name): recoveryVolume = try context.volume(name)
        case .automatic: recoveryVolume = try recoveryPartitionVolume(of: windows, context)
        }
        let recovery = try recoveryVolume.map { volume -> RecoveryEnvironment in
            let identity = try identity(of: volume, "recovery", context)
            return RecoveryEnvironment(partition: identity.device, partitionOffset: volume.offset)
        }
        let configuration = BootConfiguration(firmware: firmware, systemPartition: espIdentity.device,
                                              windowsPartition: windowsIdentity.device,
                                              locale: context.substitute(parameters.locale), timeout: parameters.menuTimeout,
                                              osDescription: context.substitute(parameters.label), recovery: recovery)
        let efivars = context.options.environment.sysRoot + "/firmware/efi/efivars"
        let request = BootMaker.Request(windowsVolume: windows.device, systemPartition: esp.device, configuration: configuration,
                                        espDisk: espIdentity.disk, espNumber: espIdentity.number, efivars: efivars,
                                        recoveryVolume: recoveryVolume?.device,
                                        recoveryRequired: { if case .volume = parameters.recovery { return true } else { return false } }())
        _ = try BootMaker.make(request) { context.bus.log($0, step: step) }
    }

    /// The run's volume on the Windows disk whose partition has the Windows recovery type
    /// (GPT DE94BBA4-..., MBR 0x27), as the partition step's `recovery` role writes it.
    static func recoveryPartitionVolume(of windows: Volume, _ context: RunContext) throws -> Volume? {
        let disk = try DiskInventory.disk(windows.diskPath, context.options.environment)
        let recoveryOffsets = Set((disk.partitionTable?.partitions ?? []).filter { partition in
            GUID(partition.type) == PartitionRole.recovery.gptType || partition.type.lowercased() == "0x27"
        }.map(\.offset))
        return context.volumes.values.sorted { $0.offset < $1.offset }
            .first { $0.diskPath == windows.diskPath && recoveryOffsets.contains($0.offset) }
    }

    /// The volume's partition as BCD names it: its GPT unique GUID and the disk GUID, read
    /// from the table the partition step wrote (or findWindows found).
    static func identity(of volume: Volume, _ name: String, _ context: RunContext) throws -> PartitionIdentity {
        let disk = try DiskInventory.disk(volume.diskPath, context.options.environment)
        guard let table = disk.partitionTable else { throw StepFailure("\(volume.diskPath) has no partition table", kind: .disk) }
        guard let partition = table.partitions.first(where: { $0.offset == volume.offset }) else {
            throw StepFailure("volume \"\(name)\": no partition of \(volume.diskPath) starts at byte \(volume.offset)")
        }
        switch table.type {
        case .gpt:
            guard let diskText = table.id, let diskGUID = GUID(diskText),
                  let partText = partition.uuid, let partitionGUID = GUID(partText) else {
                throw StepFailure("\(volume.diskPath) partition \(partition.number): no GPT disk or partition GUID", kind: .disk)
            }
            return PartitionIdentity(device: .gptPartition(partition: partitionGUID, disk: diskGUID),
                                     disk: disk.path, number: partition.number)
        case .mbr:
            guard let idText = table.id, let signature = UInt32(idText.replacingOccurrences(of: "0x", with: ""), radix: 16) else {
                throw StepFailure("\(volume.diskPath): no MBR disk signature", kind: .disk)
            }
            return PartitionIdentity(device: .mbrPartition(offset: partition.offset, signature: signature),
                                     disk: disk.path, number: partition.number)
        }
    }
}
