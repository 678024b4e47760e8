import Apply
import DiskModel
import Disks
import Failures
import Foundation
import InstalledWindows
import SequenceModel

/// findWindows and cleanVolume: a refresh finds the installed Windows, never formats it, and
/// moves or deletes the old system folders while the users' files stay.
enum RefreshSteps {
    static func findWindows(_ rules: DiskRules, _ name: String, _ step: Step, _ context: RunContext) throws {
        // Finding is not wiping: a disk with Windows holds data by definition.
        var rules = rules
        rules.wipe = true
        if rules.hasWindows == nil { rules.hasWindows = true }
        let disks = try DiskInventory.scan(context.options.environment)
        let selection = DiskSelector.evaluate(rules, disks: disks)
        context.bus.log(selection.report(), step: step)
        guard let disk = selection.chosen else {
            let encrypted = disks.filter { $0.filesystems.contains(where: \.isBitLocker) }
            if let locked = encrypted.first {
                throw StepFailure("no readable Windows found; \(locked.path) holds a BitLocker-encrypted volume: "
                                  + "suspend BitLocker (manage-bde -protectors -disable C:) or decrypt it in Windows first, "
                                  + "then run the refresh again. Nothing was changed.", kind: .refused)
            }
            throw StepFailure("no Windows installation found on any disk the rules allow:\n" + selection.report(), kind: .refused)
        }
        if let locked = disk.partitionTable?.partitions.first(where: { $0.filesystem?.isBitLocker == true }) {
            throw StepFailure("\(disk.path) partition \(locked.number) is BitLocker-encrypted: suspend BitLocker "
                              + "(manage-bde -protectors -disable C:) or decrypt it in Windows first. Nothing was changed.", kind: .refused)
        }
        guard let installation = disk.windowsToRefresh else {
            throw StepFailure("\(disk.path) holds no Windows installation (the rules chose it with \"hasWindows\": false)", kind: .refused)
        }
        guard let number = installation.partition,
              let partition = disk.partitionTable?.partitions.first(where: { $0.number == number }) else {
            throw StepFailure("\(disk.path): Windows is on the whole disk (no partition table); a refresh needs a partitioned disk", kind: .refused)
        }
        let exposure = try PartitionAccess.device(for: partition, of: disk)
        context.exposures.append(exposure)
        guard let device = exposure.devices.first else { throw StepFailure("\(disk.path): partition \(number) has no device", kind: .disk) }
        context.volumes[name] = Volume(device: device.path, offset: partition.offset, size: partition.size,
                                       sectorSize: disk.logicalSectorSize, diskPath: disk.path, partition: number)
        context.selectedDisk = disk
        context.diskRules = rules
        context.diskSelection = selection
        context.variables.set(KnownVariables.volume(name), device.path)
        context.variables.set("WindowsDisk", disk.path)
        if let old = installation.refreshInProgress {
            context.bus.log("a refresh begun earlier was interrupted on this volume (the old system is in \(old)): going on with it", step: step)
        }
        context.bus.log("Windows on \(disk.path) partition \(number)" + (installation.label.map { " (\($0))" } ?? "")
                        + (installation.hasUsers ? ", with Users" : "") + ": volume \"\(name)\" is \(device.path)", step: step)
        noteWindowsFacts(installation, step, context)
    }

    /// The chosen installation's details become the `windows.*` facts (those of an earlier
    /// findWindows go); what could not be read is a warning naming the volume and the file.
    static func noteWindowsFacts(_ installation: WindowsInstallation, _ step: Step, _ context: RunContext) {
        let facts = WindowsFacts.variables(installation.details)
        context.variables.setWindowsFacts(facts)
        if let details = installation.details {
            context.bus.log("it is " + details.summary, step: step)
        }
        for problem in installation.problems {
            context.bus.log(problem, step: step, level: "warning")
        }
        if facts.isEmpty {
            context.bus.log("nothing could be read of this Windows: the windows.* facts are not set", step: step, level: "warning")
        }
    }

    static func cleanVolume(_ name: String, _ mode: CleanupMode, _ folders: [String], _ step: Step, _ context: RunContext) throws {
        let volume = try context.volume(name)
        let cleanup = try RefreshCleanup(mode: mode, folders: folders.map(context.substitute))
        let target = try NTFSTarget(device: volume.device)
        let report = try target.cleanUp(cleanup)
        try target.close()
        context.bus.log(report.description, step: step)
    }
}
