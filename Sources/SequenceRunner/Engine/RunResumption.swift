import Apply
import DiskModel
import Disks
import Foundation
import SequenceModel

/// Going on with a run a power cut interrupted: what the finished steps had set up is found
/// again (the disk by its identity, the volumes by partition, the variables), and the step that
/// was cut off runs again only when that is safe.
enum RunResumption {
    /// Sets the context up as the interrupted run had it. Refuses, before anything is written,
    /// a disk that is not the run's any more (swapped, re-partitioned by someone else).
    static func restore(_ state: RunState, _ sequence: TaskSequence, _ context: RunContext) throws {
        let interrupted = state.interruptedStep(in: sequence)
        let done = sequence.allSteps.filter { state.steps[$0.number] == .ended && $0.children.isEmpty }.count
        // The server's copy shows what it masked as such: never a value to take back.
        for (name, value) in state.variables where context.variables.facts[name] == nil && value != SecretRedactor.mask {
            context.variables.set(name, value)
        }
        context.driverPaths = state.driverPaths
        if let record = state.disk {
            // A cut-off step that rewrites the partition table may have left a new id or none.
            var record = record
            if let interrupted, interrupted.rewritesPartitionTable { record.partitionTableID = nil }
            let disk = try findDisk(record, context)
            context.selectedDisk = disk
            if let rules = rulesOfRun(sequence, state) {
                var rules = rules
                // The run chose this disk and has written it: it is the run's to write again.
                rules.wipe = true
                context.diskRules = rules
                context.diskSelection = DiskSelector.evaluate(rules, disks: [disk])
            }
            for (name, volume) in state.volumes.sorted(by: { $0.key < $1.key }) {
                try restoreVolume(name, volume, on: disk, context)
            }
        }
        for (name, volume) in context.volumes {
            // An unattend written before the cut is updated, never replaced, by what follows.
            if let files = try? openVolumeFiles(volume.device) {
                if let xml = try? files.read(UnattendWriter.destination) { context.unattendWritten[name] = String(decoding: xml, as: UTF8.self) }
                try? files.close()
            }
        }
        context.keeper?.countResume()
        let at = interrupted.map { "step \($0.number) (\($0.name), \($0.type)) was cut off and goes on" } ?? "no step was under way"
        context.bus.log("resumed after an interruption (resume \(state.resumes + 1) of this run): \(done) steps were done before it; \(at)",
                        level: "warning")
    }

    /// Throws when `step`, begun before the interruption, may not simply run again.
    static func mayRunAgain(_ step: Step, _ context: RunContext) throws {
        switch step.action {
        case let .runCommand(parameters) where !parameters.runAgainAfterInterruption:
            throw StepFailure("step \(step.number) (\(step.name)) was running a command when the machine lost power; Imprint cannot "
                              + "tell what the command had done, so it does not run it again. If running it twice is safe, "
                              + "add \"runAgainAfterInterruption\": true to the step; otherwise finish its work by hand and "
                              + "deploy again. Nothing else was changed.", kind: .refused)
        default:
            // Every other step reaches the same end when run again on what its first run left:
            // partition and format (nothing after them had begun), a refresh's clean-up (its
            // record on the volume), an apply (it rewrites the image's files), the rest
            // rewrite whole files.
            context.bus.log("step \(step.number) was cut off by the interruption: running it again", level: "warning")
        }
    }

    private static func findDisk(_ record: DiskRecord, _ context: RunContext) throws -> Disk {
        let disks = try DiskInventory.scan(context.options.environment)
        let matching = disks.filter { disk in
            record.mismatch(DiskRecord(disk)) == nil
        }
        let what = [record.model, record.serial.map { "serial \($0)" }, ByteSize.format(record.size)].compactMap { $0 }.joined(separator: ", ")
        guard let disk = matching.first else {
            let reasons = disks.map { disk in
                "\(disk.path): " + (record.mismatch(DiskRecord(disk)) ?? "?")
            }
            throw StepFailure("the disk this run was writing (\(what)) is not in this machine any more, or was changed since: "
                              + (reasons.isEmpty ? "no disks found" : reasons.joined(separator: "; "))
                              + ". Nothing was written. Put the disk back, or deploy again from the start.", kind: .refused)
        }
        guard matching.count == 1 else {
            throw StepFailure("\(matching.count) disks match the one this run was writing (\(what)): "
                              + matching.map(\.path).joined(separator: ", ") + "; nothing was written, as Imprint cannot tell which", kind: .refused)
        }
        return disk
    }

    private static func restoreVolume(_ name: String, _ record: VolumeRecord, on disk: Disk, _ context: RunContext) throws {
        guard let partition = disk.partitionTable?.partitions.first(where: { $0.number == record.partition }),
              partition.offset == record.offset, partition.size == record.size else {
            // The table was being rewritten when the power went: the step doing it runs again
            // and makes the volumes anew.
            return
        }
        let exposure = try PartitionAccess.device(for: partition, of: disk)
        context.exposures.append(exposure)
        guard let device = exposure.devices.first else { throw StepFailure("\(disk.path): partition \(partition.number) has no device", kind: .disk) }
        context.volumes[name] = Volume(device: device.path, offset: partition.offset, size: partition.size,
                                       sectorSize: record.sectorSize, diskPath: disk.path, partition: partition.number)
        context.variables.set(KnownVariables.volume(name), device.path)
    }

    /// The rules of the step that chose the disk (the last of them that had ended).
    private static func rulesOfRun(_ sequence: TaskSequence, _ state: RunState) -> DiskRules? {
        sequence.allSteps.last { step in
            guard state.steps[step.number] == .ended else { return false }
            switch step.action {
            case .selectDisk, .findWindows: return true
            default: return false
            }
        }.flatMap { step in
            switch step.action {
            case let .selectDisk(rules): return rules
            case let .findWindows(rules, _): return rules
            default: return nil
            }
        }
    }
}

extension Step {
    /// Partition and raw image steps write the partition table anew.
    var rewritesPartitionTable: Bool {
        switch action {
        case .partition, .writeImage: return true
        default: return false
        }
    }
}
