import DiskModel
import Disks
import Failures
import Foundation
import SequenceModel

/// selectDisk, partition, format: the disk layer, with the sequence's variables and events.
enum DiskSteps {
    static func selectDisk(_ rules: DiskRules, _ step: Step, _ context: RunContext) throws {
        let disks = try DiskInventory.scan(context.options.environment)
        let selection = DiskSelector.evaluate(rules, disks: disks)
        context.bus.log(selection.report(), step: step)
        let disk = try DiskSelector.choose(rules, disks: disks)
        context.selectedDisk = disk
        context.diskRules = rules
        context.diskSelection = selection
        context.variables.set("TargetDisk", disk.path)
        context.variables.set("TargetDiskSize", String(disk.size))
        context.variables.set("TargetDiskModel", disk.model ?? "")
        context.variables.set("TargetDiskSerial", disk.serial ?? "")
    }

    static func partition(_ layout: PartitionLayout, _ step: Step, _ context: RunContext) throws {
        guard let disk = context.selectedDisk, let rules = context.diskRules, let selection = context.diskSelection else {
            throw StepFailure("no disk was selected (a selectDisk step must come first)", kind: .badInput)
        }
        let plan = try DiskPlan.make(layout: layout, on: disk, rules: rules, selection: selection)
        context.bus.log(plan.description, step: step)
        let prepared = try DiskPreparer.prepare(plan, environment: context.options.environment) { line in
            context.bus.log(line, step: step)
        }
        context.exposures.append(prepared.partitions)
        // The disk now holds what we wrote: a later writeImage to it must not refuse it for
        // holding data, and must check it against what it is now.
        context.selectedDisk = try DiskInventory.disk(disk.path, context.options.environment)
        context.diskRules?.wipe = true
        for planned in plan.layout.partitions {
            guard let id = planned.id, let device = prepared.partitions.device(planned.number) else { continue }
            context.volumes[id] = Volume(device: device.path, offset: device.offset, size: device.size,
                                         sectorSize: plan.layout.sectorSize, diskPath: disk.path, partition: planned.number)
            context.variables.set(KnownVariables.volume(id), device.path)
        }
    }

    static func format(_ name: String, _ spec: FormatSpec, _ step: Step, _ context: RunContext) throws {
        let volume = try context.volume(name)
        try Formatter.format(spec, device: volume.device, startSector: volume.offset / UInt64(volume.sectorSize),
                             sectorSize: volume.sectorSize) { context.bus.log($0, step: step) }
    }
}
