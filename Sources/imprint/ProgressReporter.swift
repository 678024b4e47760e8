import Failures
import Foundation
import SequenceRunner
import WIM
import Apply

/// How progress is shown: a bar on a terminal, JSON lines for programs, or nothing.
enum ProgressMode: String, ExpressibleByArgument, CaseIterable {
    case auto, bar, json, none
}

import ArgumentParser

/// Prints progress to standard error (the bar) or standard output (JSON lines).
final class ProgressReporter {
    let mode: ProgressMode
    private let start = Date()
    /// Rates are per phase: creating files says nothing about how fast data flows.
    private var phase = ""
    private var phaseStart = Date()
    private var lastDraw = Date.distantPast
    private var drewBar = false

    init(_ requested: ProgressMode) {
        if requested == .auto {
            mode = isatty(2) != 0 ? .bar : .none
        } else {
            mode = requested
        }
    }

    func report(_ phase: String, done: UInt64, total: UInt64, unit: String = "bytes", force: Bool = false) {
        if phase != self.phase {
            if drewBar { finishLine() }
            self.phase = phase
            phaseStart = Date()
        }
        switch mode {
        case .none, .auto:
            return
        case .json:
            let elapsed = Date().timeIntervalSince(start)
            let inPhase = Date().timeIntervalSince(phaseStart)
            var object: [String: Any] = ["type": "progress", "phase": phase, "done": done, "total": total, "unit": unit,
                                         "elapsedSeconds": (elapsed * 1000).rounded() / 1000]
            if total > 0 { object["percent"] = (Double(done) * 1000 / Double(total)).rounded() / 10 }
            if unit == "bytes", inPhase > 0 { object["bytesPerSecond"] = Int(Double(done) / inPhase) }
            emitJSON(object)
        case .bar:
            let now = Date()
            guard force || now.timeIntervalSince(lastDraw) >= 0.1 || done == total else { return }
            lastDraw = now
            let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            var line = String(format: "\r%@ [%@] %5.1f%%", phase.padding(toLength: 10, withPad: " ", startingAt: 0), bar, fraction * 100)
            if unit == "bytes" {
                let elapsed = max(now.timeIntervalSince(phaseStart), 0.001)
                line += "  \(formatBytes(done)) / \(formatBytes(total))  \(formatBytes(UInt64(Double(done) / elapsed)))/s"
            } else {
                line += "  \(done) / \(total) \(unit)"
            }
            FileHandle.standardError.write((line + "\u{1B}[K").data(using: .utf8)!)
            drewBar = true
        }
    }

    /// Ends the bar line so later output starts on a fresh line.
    func finishLine() {
        if drewBar {
            FileHandle.standardError.write("\n".data(using: .utf8)!)
            drewBar = false
        }
    }

    func event(_ object: [String: Any]) {
        if mode == .json { emitJSON(object) }
    }

    private func emitJSON(_ object: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
           let text = String(data: data, encoding: .utf8) {
            print(text)
            fflush(nil)
        }
    }

    func applyCallback() -> (ApplyProgress) -> Void {
        return { [self] progress in
            switch progress {
            case let .structure(done, total):
                report("creating", done: UInt64(done), total: UInt64(total), unit: "entries")
            case let .data(p):
                report("data", done: p.bytesDone, total: p.bytesTotal)
            case .metadata:
                report("metadata", done: 1, total: 1, unit: "steps", force: true)
            }
        }
    }
}

func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(n)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
}

/// Prints a failure the way a technician reads it; the exit status says its kind (README).
func fail(_ error: any Error) -> ExitCode {
    FileHandle.standardError.write(Data("imprint: error: \(error)\n".utf8))
    return ExitCode(FailureKind(of: error).exitStatus)
}

extension RunResult {
    /// The exit status of a finished run: 0; 128 + the signal for a run a signal stopped, as a
    /// shell reports it; otherwise its failure kind's status.
    var exitCode: ExitCode {
        if status == .success { return .success }
        let signal = applyStopSignal.load(ordering: .relaxed)
        if failure == .interrupted && signal != 0 { return ExitCode(128 + signal) }
        return ExitCode(failure?.exitStatus ?? FailureKind.internal.exitStatus)
    }
}
