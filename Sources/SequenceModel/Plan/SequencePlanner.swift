import DiskModel
import Foundation
import SequenceModel

/// A dry run (the agent's `imprint sequence plan` and the server's plan against a machine's facts):
/// which steps would run or be skipped and why, the disk each selection would
/// choose, and exactly what each partition step would wipe and create. Touches nothing.
public enum SequencePlanner {
    public struct Line: Sendable, Encodable {
        public var step: String
        public var name: String
        public var type: String
        /// `runs`, `skipped`, or `fails` (a selection that would find no disk).
        public var verdict: String
        public var destructive: Bool
        public var details: [String]
    }

    public static func plan(_ sequence: TaskSequence, facts: Facts, serverVariables: [String: String] = [:],
                            disks: [Disk]) -> [Line] {
        var variables = Variables(facts: facts.variables, sequence: sequence.variables, server: serverVariables, secrets: sequence.secrets)
        var lines: [Line] = []
        var chosen: (disk: Disk, rules: DiskRules, selection: DiskSelection)?

        func walk(_ steps: [Step], skippedBy: String?) {
            for step in steps {
                var verdict = "runs"
                var details: [String] = []
                if let skippedBy {
                    verdict = "skipped"
                    details.append(skippedBy)
                } else if let condition = step.condition {
                    let (holds, why) = condition.evaluate { variables.substitute($0) }
                    if !holds { verdict = "skipped"; details.append("condition not met: \(why)") } else { details.append("condition holds: \(why)") }
                }
                if verdict == "runs" { describe(step, &details, &verdict) }
                lines.append(Line(step: step.number, name: step.name, type: step.type, verdict: verdict,
                                  destructive: step.action.isDestructive, details: details.map { variables.redact($0) }))
                if case let .group(children) = step.action {
                    walk(children, skippedBy: verdict == "skipped" ? skippedBy ?? "its group \(step.number) is skipped" : nil)
                }
            }
        }

        func describe(_ step: Step, _ details: inout [String], _ verdict: inout String) {
            switch step.action {
            case let .selectDisk(rules):
                let selection = DiskSelector.evaluate(rules, disks: disks)
                details += selection.report().split(separator: "\n").map(String.init)
                if let disk = selection.chosen {
                    chosen = (disk, rules, selection)
                    variables.set("TargetDisk", disk.path)
                    variables.set("TargetDiskSize", String(disk.size))
                } else {
                    verdict = "fails"
                }
            case let .findWindows(rules, volume):
                var rules = rules
                rules.wipe = true
                if rules.hasWindows == nil { rules.hasWindows = true }
                let selection = DiskSelector.evaluate(rules, disks: disks)
                if let disk = selection.chosen, let windows = disk.windowsToRefresh {
                    details.append("Windows on \(disk.path) partition \(windows.partition.map(String.init) ?? "-")"
                                   + (windows.hasUsers ? " with Users" : "") + ": volume \"\(volume)\"")
                    // Later steps' conditions see the facts the run would have.
                    variables.setWindowsFacts(WindowsFacts.variables(windows.details))
                    if let known = windows.details { details.append("it is " + known.summary) }
                    details += windows.problems
                    if disk.filesystems.contains(where: \.isBitLocker) {
                        verdict = "fails"
                        details.append("a BitLocker-encrypted volume is on the disk: suspend or decrypt it first")
                    }
                } else {
                    verdict = "fails"
                    details += selection.report().split(separator: "\n").map(String.init)
                }
            case let .partition(layout):
                guard let chosen else { verdict = "fails"; details.append("no disk selected"); return }
                do {
                    let plan = try DiskPlan.make(layout: layout, on: chosen.disk, rules: chosen.rules, selection: chosen.selection)
                    details += plan.description.split(separator: "\n").map(String.init)
                } catch {
                    verdict = "fails"
                    details.append(error.description)
                }
            case let .format(volume, spec):
                details.append("would format volume \"\(volume)\" as \(spec.filesystem.rawValue)" + (spec.label.map { " \"\($0)\"" } ?? ""))
            case let .cleanVolume(volume, mode, folders):
                details.append(mode == .move ? "would move \(folders.joined(separator: ", ")) of volume \"\(volume)\" into Windows.old (Users stays)"
                                             : "would delete \(folders.joined(separator: ", ")) on volume \"\(volume)\" (Users stays)")
            case let .applyImage(parameters) where parameters.library != nil:
                details.append("would apply the \(parameters.library?.description ?? ""), as imprint-server resolves it, to volume \"\(parameters.target)\"")
            case let .applyImage(parameters):
                details.append("would apply image \(variables.substitute(parameters.image)) of \(variables.substitute(parameters.source)) "
                               + "to volume \"\(parameters.target)\" (\(parameters.mode.rawValue))")
                verify(parameters.source, parameters.sha256, &details, &verdict)
            case let .writeImage(parameters):
                let target = parameters.target == "disk" ? (chosen?.disk.path ?? "the selected disk") : "volume \"\(parameters.target)\""
                details.append("would write \(variables.substitute(parameters.source)) onto \(target), replacing everything on it")
                verify(parameters.source, parameters.sha256, &details, &verdict)
            case let .captureImage(parameters):
                let destination = parameters.upload.map { "upload it to the server as \(variables.substitute($0))" }
                    ?? "write it to \(variables.substitute(parameters.path ?? ""))"
                details.append("would capture volume \"\(parameters.volume)\" into image \"\(variables.substitute(parameters.imageName))\" "
                               + "(\(parameters.compress)) and \(destination); the volume is only read")
                if !parameters.allowNotGeneralized {
                    details.append("refuses a Windows that sysprep has not generalized (allowNotGeneralized: false)")
                }
            case let .injectDrivers(parameters):
                details.append("would copy matching drivers from \(variables.substitute(parameters.source)) to volume \"\(parameters.target)\"")
            case let .makeBootable(parameters):
                let firmware = variables.substitute(parameters.firmware)
                let uefi = "copy the boot manager from volume \"\(parameters.windows)\" to the ESP \"\(parameters.esp)\", "
                    + "write EFI\\Microsoft\\Boot\\BCD and add the \"Windows Boot Manager\" firmware entry"
                let bios = "copy bootmgr from volume \"\(parameters.windows)\" to the system partition \"\(parameters.esp)\", write \\Boot\\BCD, "
                    + "and overwrite the disk's boot code: the MBR's first 440 bytes (the partition table stays), the system partition's "
                    + "boot sector (its NTFS parameters stay) and the unused sectors between the MBR and the first partition (GRUB's core image)"
                switch firmware {
                case "uefi": details.append("would " + uefi)
                case "bios": details.append("would " + bios)
                default: details.append("on a GPT disk would \(uefi); on an MBR disk (BIOS) would \(bios)")
                }
            case let .unattend(parameters):
                details.append("would write Windows/Panther/unattend.xml on volume \"\(parameters.target)\"")
            case let .runCommand(parameters):
                details.append("would run: " + parameters.command.map { variables.substitute($0) }.joined(separator: " "))
            case let .setVariable(name, value):
                let resolved = variables.substitute(value)
                variables.set(name, resolved)
                details.append("\(name) = \(resolved)")
            case .reboot, .poweroff:
                details.append("would \(step.type) at the end")
            case .group:
                break
            }
        }

        /// An image over plain HTTP with no SHA-256: a warning line, or a failing step when the
        /// sequence requires verified content (the run refuses it before the first step).
        func verify(_ source: String, _ sha256: String?, _ details: inout [String], _ verdict: inout String) {
            let resolved = variables.substitute(source)
            guard UnverifiedContent.isUnverified(source: resolved, sha256: sha256.map { variables.substitute($0) }) else { return }
            if sequence.requireVerifiedContent {
                verdict = "fails"
                details.append(UnverifiedContent.refusal(resolved))
            } else {
                details.append("warning: " + UnverifiedContent.warning(resolved))
            }
        }

        walk(sequence.steps, skippedBy: nil)
        return lines
    }

    public static func text(_ lines: [Line]) -> String {
        lines.map { line in
            let mark = line.verdict == "runs" ? (line.destructive ? "RUNS (writes the disk)" : "runs") : line.verdict.uppercased()
            return "\(line.step)  \(line.type)  \"\(line.name)\"  \(mark)" + line.details.map { "\n      " + $0 }.joined()
        }.joined(separator: "\n")
    }
}
