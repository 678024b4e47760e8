import Foundation
import Testing
import TestSupport
@testable import SequenceModel
@testable import SequenceRunner

extension DeploymentTests {
    /// A step's timeout stops that step's work through the run's own stop request; the
    /// process-wide signal flag belongs to the signal handlers alone. So a SIGTERM that arrives
    /// while a step runs out of time is kept, and the apply after it stops at once (the engine
    /// once stored SIGALRM over the flag and then reset it to 0, and the SIGTERM was lost).
    @Test func aSIGTERMDuringATimedOutStepIsNotLost() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "target", size: 1 << 30)
        try lab.wim(try lab.windowsTree(), "win.wim")
        let marker = lab.scratch.sub("slow-step-started")
        let file = lab.scratch.sub("sequence.json")
        try writeJSON("""
            {"name": "timeout and signal", "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "partition", "layout": \(Self.uefiLayout)},
              {"type": "runCommand", "name": "Slow", "command": "touch \(marker) && exec sleep 30", "timeout": 3, "continueOnError": true},
              {"type": "applyImage", "name": "Apply", "source": "\(lab.www)/win.wim", "image": "1", "target": "windows"},
              {"type": "runCommand", "name": "Never", "command": ["true"]}]}
            """, file)
        let spool = lab.scratch.sub("spool")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: imprintBinary)
        process.arguments = ["run", file, "--spool", spool, "--yes"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The signal arrives while the slow step runs, before its timeout.
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: marker) && process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let reached = FileManager.default.fileExists(atPath: marker)
        if reached { kill(process.processIdentifier, SIGTERM) } else { process.terminate() }
        process.waitUntilExit()
        try #require(reached, "the slow step never started")

        let events = EventSpool.read(spool + "/events.jsonl")
        let slow = events.first { $0.kind == .stepEnded && $0.step == "3" }
        #expect(slow?.status == .failedContinued && slow?.message?.contains("timed out") == true, "\(String(describing: slow))")
        let apply = events.first { $0.kind == .stepEnded && $0.step == "4" }
        #expect(apply?.status == .failed && apply?.message?.contains("signal \(SIGTERM)") == true,
                "the SIGTERM was lost: \(String(describing: apply))")
        #expect(!started(events).contains("5"))
        #expect(process.terminationStatus != 0)
    }
}
