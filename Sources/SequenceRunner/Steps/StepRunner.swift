import Foundation
import SequenceModel
import Synchronization

/// Sends each step to the code for its type.
enum StepRunner {
    static func run(_ step: Step, _ context: RunContext) throws {
        switch step.action {
        case .group: break
        case let .selectDisk(rules): try DiskSteps.selectDisk(rules, step, context)
        case let .partition(layout): try DiskSteps.partition(layout, step, context)
        case let .format(volume, spec): try DiskSteps.format(volume, spec, step, context)
        case let .findWindows(rules, volume): try RefreshSteps.findWindows(rules, volume, step, context)
        case let .cleanVolume(volume, mode, folders): try RefreshSteps.cleanVolume(volume, mode, folders, step, context)
        case let .applyImage(parameters): try ImageSteps.applyImage(parameters, step, context)
        case let .writeImage(parameters): try RawImageSteps.writeImage(parameters, step, context)
        case let .captureImage(parameters): try CaptureSteps.captureImage(parameters, step, context)
        case let .injectDrivers(parameters): try DriverSteps.injectDrivers(parameters, step, context)
        case let .makeBootable(parameters): try BootSteps.makeBootable(parameters, step, context)
        case let .unattend(parameters): try UnattendWriter.run(parameters, step, context)
        case let .runCommand(parameters): try CommandStep.run(parameters, step, context)
        case let .setVariable(name, value):
            let resolved = context.substitute(value)
            context.variables.set(name, resolved)
            context.bus.log("\(name) = \(context.variables.redact(resolved))", step: step)
        case .reboot, .poweroff:
            context.powerAction = step.action
        }
    }

    /// Progress of a step as an event: percent, bytes, total and rate.
    static func progress(_ context: RunContext, _ step: Step, _ message: String, bytes: UInt64, total: UInt64?, rate: Double? = nil) {
        let percent = total.map { $0 > 0 ? min(100, Double(bytes) * 100 / Double($0)) : 100 }
        context.bus.emit(Event(kind: .progress, step: step.number, name: step.name, type: step.type, percent: percent,
                               bytes: bytes, total: total, rate: rate, message: message))
    }
}

/// Bytes per second over the last few seconds, for progress events.
final class RateMeter: Sendable {
    private let samples = Mutex<[(Date, UInt64)]>([])

    func rate(_ bytes: UInt64) -> Double {
        let now = Date()
        return samples.withLock { samples in
            samples.append((now, bytes))
            samples.removeAll { now.timeIntervalSince($0.0) > 5 }
            guard let first = samples.first, now.timeIntervalSince(first.0) > 0.2 else { return 0 }
            return Double(bytes - min(bytes, first.1)) / now.timeIntervalSince(first.0)
        }
    }
}

extension String {
    /// nil for "": an optional setting left empty by a variable means "not given".
    var nonEmpty: String? { isEmpty ? nil : self }
}
