import Apply
import Foundation
import Processes
import SequenceModel

/// runCommand: a program in the agent's environment, its output in the log, its exit code
/// checked; the target volume optionally mounted (ntfs-3g) for its duration.
enum CommandStep {
    static func run(_ parameters: RunCommandStep, _ step: Step, _ context: RunContext) throws {
        var arguments = parameters.command.map(context.substitute)
        if parameters.shell, let script = parameters.command.last {
            arguments[arguments.count - 1] = context.variables.substitute(script, escape: shellQuoted)
        }
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in parameters.environment { environment[key] = context.substitute(value) }
        var mountPoint: String?
        if let name = parameters.mountVolume {
            let volume = try context.volume(name)
            let point = "/run/imprint/mnt/" + name.filter { $0.isLetter || $0.isNumber || $0 == "_" }
            try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
            let status = try spawn(["ntfs-3g", volume.device, point], environment: environment, context: context, step: step, quiet: true)
            guard status == 0 else { throw StepFailure("mounting \(volume.device) on \(point) failed (ntfs-3g exit \(status))") }
            mountPoint = point
            context.variables.set("TargetMount", point)
            environment["TargetMount"] = point
        }
        defer {
            if let mountPoint { _ = try? spawn(["umount", mountPoint], environment: environment, context: context, step: step, quiet: true) }
        }
        if mountPoint != nil, parameters.command.contains(where: { $0.contains("${TargetMount}") }) {
            arguments = parameters.command.map { context.variables.substitute($0, escape: parameters.shell ? shellQuoted : { $0 }) }
        }
        let status = try spawn(arguments, environment: environment, context: context, step: step, quiet: false)
        guard parameters.successCodes.contains(status) else {
            throw StepFailure("\(arguments.first ?? "command") exited with status \(status)")
        }
    }

    /// Runs to completion with output to the log, line by line; stopped, with all it started,
    /// when the step times out. Quiet: no output at all, for ntfs-3g, whose daemon would hold a
    /// pipe open for as long as the volume stays mounted.
    static func spawn(_ arguments: [String], environment: [String: String], context: RunContext, step: Step, quiet: Bool) throws -> Int32 {
        let cancelled = context.cancelled
        // In a process group of its own, the command is out of reach of the terminal's Ctrl-C:
        // the SIGINT imprint's handler records stops it as a timeout does. Mounting and
        // unmounting (quiet) are short and must finish, or the volume would stay mounted after a
        // step that ran out of time.
        let stop: @Sendable () -> Bool = { cancelled.value || applyStopSignal.load(ordering: .relaxed) == SIGINT }
        let runner = ProcessRunner(environment: environment, output: quiet ? .discarded : .merged, collectsOutput: false,
                                   isCancelled: quiet ? nil : stop)
        do {
            return try runner.run(arguments) { context.bus.log($0, step: step) }.status
        } catch where error.reason == .cancelled {
            let program = arguments.first ?? "command"
            throw StepFailure(cancelled.value ? "\(program) was stopped: the step ran out of time" : "\(program) was stopped by SIGINT",
                              kind: .interrupted)
        } catch {
            throw StepFailure(error.description)
        }
    }
}

/// A value as one POSIX shell word: `'it'\''s'`.
func shellQuoted(_ value: String) -> String {
    "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
