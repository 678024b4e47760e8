import Foundation
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

    /// Runs to completion with output to the log, line by line; killed when the step times out.
    static func spawn(_ arguments: [String], environment: [String: String], context: RunContext, step: Step, quiet: Bool) throws -> Int32 {
        guard let program = arguments.first else { throw StepFailure("empty command") }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw StepFailure("cannot make a pipe") }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if quiet {
            // ntfs-3g leaves a daemon behind that would hold a pipe open forever.
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
            posix_spawn_file_actions_adddup2(&actions, ends[1], 2)
        }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { (key: String, value: String) in strdup(key + "=" + value) } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid = pid_t()
        let rc = posix_spawnp(&pid, program, &actions, nil, &argv, &envp)
        close(ends[1])
        guard rc == 0 else {
            close(ends[0])
            throw StepFailure("cannot start \(program): \(String(cString: strerror(rc)))")
        }
        // A watcher kills the command when the step is cancelled (timeout).
        let child = pid
        let watcher = Thread {
            while kill(child, 0) == 0 {
                if context.cancelled.value { kill(child, SIGTERM); Thread.sleep(forTimeInterval: 2); kill(child, SIGKILL); return }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        watcher.start()
        var pending = Data()
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                if !quiet { context.bus.log(line, step: step) }
            }
        }
        if !pending.isEmpty, !quiet { context.bus.log(String(decoding: pending, as: UTF8.self), step: step) }
        close(ends[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if context.cancelled.value { throw StepFailure("\(program) was stopped: the step ran out of time") }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}

/// A value as one POSIX shell word: `'it'\''s'`.
func shellQuoted(_ value: String) -> String {
    "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
