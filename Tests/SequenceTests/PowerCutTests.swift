import Failures
import Foundation
import Testing
import TestSupport
@testable import SequenceModel
@testable import SequenceRunner

/// A run cut off as by a power cut (the agent killed with SIGKILL by a step of its own, so the
/// moment is exact) and run again: it goes on at the interrupted step from the state it kept
/// on the disk, never redoes a finished step, and refuses what it cannot resume safely.
@Suite(.serialized)
struct PowerCutTests {
    /// A command that kills the agent running it (its parent) the first time, as a power cut
    /// would, and succeeds when run again.
    func powerCut(_ lab: SequenceLab, again: Bool = true) -> String {
        let marker = lab.scratch.sub("cut-\(UUID().uuidString.prefix(6))")
        return """
            {"type": "runCommand", "name": "Power cut", "command": "if [ ! -e \(marker) ]; then touch \(marker); kill -9 $PPID; sleep 5; fi"\
            \(again ? ", \"runAgainAfterInterruption\": true" : "")}
            """
    }

    /// The run state files on the volume, decoded.
    func states(_ lab: SequenceLab, _ device: String) throws -> [RunState] {
        try lab.withMounted(device) { root in
            ["state-0.json", "state-1.json"].compactMap { name in
                FileManager.default.contents(atPath: root + "/" + RunState.folder + "/" + name).flatMap { try? RunState.decode($0) }
            }
        }
    }

    @Test func bareMetalRunCutAfterTheApplyGoesOnWithoutApplyingAgain() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "target", size: 2 << 30)
        try lab.wim(try lab.windowsTree(), "win.wim")
        let sequence = """
            {"name": "bare metal", "variables": {"AdminPassword": "Secret-Pa55"}, "steps": [
               {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
               {"type": "partition", "name": "Layout", "layout": \(DeploymentTests.uefiLayout)},
               {"type": "setVariable", "name": "Note", "variable": "Chosen", "value": "disk ${TargetDisk}"},
               {"type": "applyImage", "name": "Apply", "source": "\(lab.www)/win.wim", "image": "1", "target": "windows"},
               \(powerCut(lab)),
               {"type": "runCommand", "name": "After", "command": "echo after the cut: ${Chosen}"}]}
            """
        let cut = try lab.run(sequence: sequence, deployment: "d-bare")
        #expect(cut.result.status == 128 + SIGKILL, "the run was not cut: \(cut.result.stderr)")
        try disk.dropOthersViews()
        let kept = try #require(try states(lab, disk.device + "p3").max { $0.revision < $1.revision }, "no run state on the volume")
        #expect(kept.deploymentID == "d-bare" && !kept.ended)
        #expect(kept.steps["4"] == .ended && kept.steps["5"] == .started && kept.steps["6"] == nil)
        #expect(kept.volumes["windows"]?.partition == 3)
        #expect(kept.variables["Chosen"] == "disk \(disk.device)")
        #expect(kept.variables["AdminPassword"] == nil, "a secret variable was kept on the disk")
        #expect(kept.token == "secret-token-1")
        #expect(kept.disk?.partitionTableID != nil)

        let resumed = try lab.run(sequence: sequence, deployment: "d-bare")
        #expect(resumed.result.status == 0, "\(resumed.result.stderr)")
        let statuses = ended(resumed.events)
        #expect(statuses["1"] == .skipped && statuses["2"] == .skipped && statuses["3"] == .skipped && statuses["4"] == .skipped)
        #expect(statuses["5"] == .success && statuses["6"] == .success)
        #expect(resumed.events.first { $0.kind == .stepEnded && $0.step == "4" }?.message == "done before the interruption")
        #expect(!resumed.events.contains { $0.kind == .progress && $0.step == "4" }, "the image was applied again")
        #expect(resumed.log.contains("resumed after an interruption"), "\(resumed.log)")
        #expect(resumed.log.contains("after the cut: disk \(disk.device)"), "the variables did not come back")
        try lab.withMounted(disk.device + "p3") { root in
            #expect(FileManager.default.contents(atPath: root + "/Windows/explorer.exe")
                    == FileManager.default.contents(atPath: lab.scratch.sub("tree/Windows/explorer.exe")))
            #expect(!FileManager.default.fileExists(atPath: root + "/" + RunState.folder), "the finished run left its state")
        }
    }

    @Test func aCommandCutOffIsNotRunAgainUnlessItSaysSoAndASwappedDiskIsRefused() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "target", size: 2 << 30)
        let sequence = """
            {"name": "commands", "steps": [
               {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
               {"type": "partition", "name": "Layout", "layout": \(DeploymentTests.uefiLayout)},
               \(powerCut(lab, again: false))]}
            """
        let cut = try lab.run(sequence: sequence, deployment: "d-cmd")
        #expect(cut.result.status == 128 + SIGKILL, "the run was not cut: \(cut.result.stderr)")
        try disk.dropOthersViews()

        let refused = try lab.run(sequence: sequence, deployment: "d-cmd")
        #expect(refused.result.status == FailureKind.refused.exitStatus, "\(refused.result.stderr)")
        let message = refused.events.first { $0.kind == .result }?.message ?? ""
        #expect(message.contains("cannot tell what the command had done") && message.contains("runAgainAfterInterruption"), "\(message)")

        // The same run's state, but the disk is no longer the one it chose (its partition table
        // has another id, as a disk swapped for an identical one): refused, nothing written.
        let other = """
            {"name": "commands again", "steps": [
               {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
               {"type": "partition", "name": "Layout", "layout": \(DeploymentTests.uefiLayout)},
               \(powerCut(lab))]}
            """
        let again = try lab.run(sequence: other, deployment: "d-swap")
        #expect(again.result.status == 128 + SIGKILL, "the run was not cut: \(again.result.stderr)")
        try disk.dropOthersViews()
        // sgdisk has no -q: an unknown option makes it do nothing, yet exit 0.
        try run(["sgdisk", "-U", "R", disk.device])
        let before = try lab.sha256(disk.device)
        let swapped = try lab.run(sequence: other, deployment: "d-swap")
        #expect(swapped.result.status == FailureKind.refused.exitStatus, "\(swapped.result.stderr)")
        let reason = swapped.events.first { $0.kind == .result }?.message ?? ""
        #expect(reason.contains("is not in this machine any more") && reason.contains("partition table id"), "\(reason)")
        #expect(try lab.sha256(disk.device) == before, "the refused run wrote the disk")
    }

    @Test func aRefreshCutAfterItsCleanUpGoesOnWithOneWindowsOld() throws {
        let lab = try SequenceLab()
        let size: UInt64 = 1536 << 20
        let disk = try LoopDisk(lab.scratch, "installed", size: size) { image in
            try writeJSON("label: dos\nstart=2048, type=7, bootable\n", image + ".sfdisk")
            try run(["sfdisk", "-q", image], stdinFile: image + ".sfdisk")
        }
        try makeFakeWindows(on: disk, offset: 1 << 20, size: size - (1 << 20), scratch: lab.scratch)
        try lab.wim(try lab.windowsTree("new-tree", version: "new"), "new.wim")
        let sequence = """
            {"name": "refresh", "steps": [
              {"type": "findWindows", "name": "Find", "as": "os", "rules": {"name": "\(disk.device)"}},
              {"type": "cleanVolume", "name": "Old system aside", "volume": "os", "mode": "move"},
              \(powerCut(lab)),
              {"type": "applyImage", "name": "Apply", "source": "\(lab.www)/new.wim", "image": "1", "target": "os"}]}
            """
        let cut = try lab.run(sequence: sequence, deployment: "d-refresh")
        #expect(cut.result.status == 128 + SIGKILL, "the run was not cut: \(cut.result.stderr)")
        try disk.dropOthersViews()

        // Another deployment of the same refresh (the interrupted one was given up): nothing to
        // resume, yet findWindows finds the refresh under way and the clean-up is not done twice.
        let fresh = try lab.run(sequence: sequence, deployment: "d-refresh-2")
        #expect(fresh.result.status == 0, "\(fresh.result.stderr)")
        #expect(fresh.log.contains("a refresh begun earlier was interrupted on this volume"), "\(fresh.log)")
        #expect(fresh.log.contains("done by an earlier run of this refresh"), "\(fresh.log)")

        let view = try disk.view(offset: 1 << 20, size: size - (1 << 20))
        try lab.withMounted(view) { root in
            #expect(fileText(root + "/Users/Alice/Documents/thesis.txt") == "thesis", "a user file changed")
            #expect(fileText(root + "/Windows.old/Windows/System32/config/SYSTEM") == "regf", "the old system is not in Windows.old")
            #expect(!FileManager.default.fileExists(atPath: root + "/Windows.old.000"), "a second Windows.old was made")
            #expect(fileText(root + "/Windows/version.txt") == "new")
            #expect(!FileManager.default.fileExists(atPath: root + "/" + RunState.folder), "the finished refresh left its record")
        }
        try disk.detach(view: view)
    }
}
