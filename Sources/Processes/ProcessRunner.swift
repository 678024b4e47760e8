import Glibc

/// Runs a program and waits for it: the one way the agent's tools (mkfs.*, mtools, efibootmgr),
/// task sequences' commands and the tests start processes.
///
/// A child that may have to be stopped (a timeout, a cancellation) leads a process group of
/// its own, so that all it started goes with it (a shell's background jobs too); any other stays
/// in ours and gets the terminal's Ctrl-C with us. It reads /dev/null unless given a file, and
/// holds no descriptor of ours besides its output, so neither a device the agent has open nor
/// one of our pipes reaches it, or a daemon it leaves behind.
public struct ProcessRunner: Sendable {
    public enum Output: Sendable {
        /// Standard output and error through one pipe, interleaved as on a terminal.
        case merged
        /// Standard error kept apart, in `ProcessResult.errorOutput`.
        case separate
        /// Both to /dev/null: for a program that leaves a daemon behind (ntfs-3g).
        case discarded
    }

    /// The child's whole environment; nil passes ours on. Its PATH is the one searched.
    public var environment: [String: String]?
    /// A file as standard input instead of /dev/null.
    public var inputFile: String?
    public var output: Output
    /// Keep all of the output in the result, not only its last lines (which errors carry).
    public var collectsOutput: Bool
    public var timeout: Duration?
    /// Asked several times a second while the program runs: true stops it as a timeout does.
    public var isCancelled: (@Sendable () -> Bool)?
    /// Between SIGTERM and SIGKILL: time for the program to clean up.
    public var gracePeriod: Duration

    public init(environment: [String: String]? = nil, inputFile: String? = nil, output: Output = .merged,
                collectsOutput: Bool = true, timeout: Duration? = nil, isCancelled: (@Sendable () -> Bool)? = nil,
                gracePeriod: Duration = .seconds(2)) {
        self.environment = environment
        self.inputFile = inputFile
        self.output = output
        self.collectsOutput = collectsOutput
        self.timeout = timeout
        self.isCancelled = isCancelled
        self.gracePeriod = gracePeriod
    }

    /// For the system's tools (mkfs.*, mtools, efibootmgr): the sbin directories a plain user's
    /// PATH may lack, and the C locale, so their messages parse and read alike on every machine.
    public static var systemTools: ProcessRunner {
        ProcessRunner(environment: ["PATH": (getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin",
                                    "LC_ALL": "C"])
    }

    /// Runs `arguments` to its end. A status other than 0 is returned, not thrown (see
    /// `ProcessResult.checked()`); a timeout or a cancellation is thrown once the program and its
    /// group have ended.
    public func run(_ arguments: [String]) throws(ProcessError) -> ProcessResult {
        // Lines only when someone reads them: a test may collect megabytes of JSON.
        try run(arguments, splittingLines: false) { _ in }
    }

    /// Runs `arguments` to its end, giving `onLine` each line of output as it comes.
    public func run(_ arguments: [String], onLine: (String) -> Void) throws(ProcessError) -> ProcessResult {
        try run(arguments, splittingLines: true, onLine)
    }

    private func run(_ arguments: [String], splittingLines: Bool, _ onLine: (String) -> Void) throws(ProcessError) -> ProcessResult {
        let (pid, readEnds) = try spawn(arguments)
        var streams = readEnds.map { OutputStream(descriptor: $0, keepsAll: collectsOutput, splitsLines: splittingLines) }
        defer { for stream in streams { close(stream.descriptor) } }
        let started = ContinuousClock.now
        var stop: (reason: ProcessError.Reason, killAt: ContinuousClock.Instant)?
        var exited = false
        while true {
            // Until it is reaped below, the child stays a zombie whose PID, which is also its
            // group's ID, no new process can take: signalling the group never hits a stranger.
            exited = exited || Self.hasExited(pid)
            let now = ContinuousClock.now
            if let stop, exited, streams.allSatisfy(\.atEnd) || now >= stop.killAt { break }
            if stop == nil, exited {
                // What it wrote is in the pipes; a background job of its own may hold them open
                // for ever (ntfs-3g's daemon), so take what is there and do not wait for more.
                for _ in 0..<64 { guard Self.readReady(&streams, waitingMilliseconds: 0, onLine) else { break } }
                break
            }
            if stop == nil, timeout == nil, isCancelled == nil, streams.allSatisfy(\.atEnd) { break }
            if stop == nil {
                if let timeout, now - started >= timeout { stop = (.timedOut(timeout), now + gracePeriod) }
                if let isCancelled, isCancelled() { stop = (.cancelled, now + gracePeriod) }
                if stop != nil { kill(-pid, SIGTERM) }
            } else if let killAt = stop?.killAt, now >= killAt {
                kill(-pid, SIGKILL)
            }
            _ = Self.readReady(&streams, waitingMilliseconds: 25, onLine)
        }
        // Whatever of the group outlived SIGTERM (the child may have ended before its jobs).
        if stop != nil { kill(-pid, SIGKILL) }
        var waitStatus: Int32 = 0
        while waitpid(pid, &waitStatus, 0) < 0 && errno == EINTR {}
        for index in streams.indices { streams[index].finish(onLine) }
        let signal = waitStatus & 0x7f == 0 ? nil : waitStatus & 0x7f
        // Standard error, when kept apart, is where a program says why it failed.
        let tailText = String(decoding: streams.last { !$0.recent.isEmpty }?.recent ?? [], as: UTF8.self)
        let result = ProcessResult(
            command: arguments, status: signal.map { 128 + $0 } ?? (waitStatus >> 8) & 0xff, signal: signal,
            output: streams.first?.collected ?? [], errorOutput: streams.count > 1 ? streams[1].collected : [],
            outputTail: tailText.split(separator: "\n").suffix(20).map(String.init))
        if let stop { throw ProcessError(result, stop.reason) }
        return result
    }

    /// The command as a technician would type it, for logs: `mkfs.ntfs -L 'Windows 11'`.
    public static func commandLine(_ arguments: [String]) -> String {
        arguments.map { argument in
            guard argument.isEmpty || argument.contains(where: { " '\"$\\;&|<>*?()".contains($0) }) else { return argument }
            return "'" + argument.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// Starts the child; returns its PID and our ends of its output pipes (none when discarded).
    private func spawn(_ arguments: [String]) throws(ProcessError) -> (pid_t, [Int32]) {
        func cannotStart(_ why: String) -> ProcessError {
            ProcessError(command: arguments, reason: .cannotStart(why), status: 127, signal: nil, outputTail: [])
        }
        func systemError(_ operation: String) -> String { "\(operation): \(String(cString: strerror(errno)))" }
        guard let program = arguments.first, !program.isEmpty else { throw cannotStart("no program named") }
        let searchPath = environment.map { $0["PATH"] ?? "" } ?? getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        guard let executable = Self.locate(program, searchPath: searchPath) else {
            throw cannotStart("no such program in \(searchPath) (is its package installed?)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Descriptors only the child keeps, closed here once it has its copies.
        var childsEnds: [Int32] = []
        defer { for descriptor in childsEnds { close(descriptor) } }
        if let inputFile {
            let input = open(inputFile, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else { throw cannotStart(systemError("cannot read its input \(inputFile)")) }
            childsEnds.append(input)
            posix_spawn_file_actions_adddup2(&actions, input, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        let pipedDescriptors: [[Int32]] = switch output {
        case .merged: [[1, 2]]
        case .separate: [[1], [2]]
        case .discarded: []
        }
        var readEnds: [Int32] = []
        for targets in pipedDescriptors {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else {
                for end in readEnds { close(end) }
                throw cannotStart(systemError("cannot make a pipe"))
            }
            // Close-on-exec, so that no child another thread spawns meanwhile inherits them.
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            readEnds.append(ends[0])
            childsEnds.append(ends[1])
            for descriptor in targets { posix_spawn_file_actions_adddup2(&actions, ends[1], descriptor) }
        }
        if output == .discarded {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        _ = addCloseFrom.map { $0(&actions, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // No signal blocked, every signal at its default: an ignored SIGPIPE (imprint ignores it)
        // would otherwise carry over into the program. A group of its own if it may be stopped.
        var noSignals = sigset_t(), allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        let ownGroup = timeout != nil || isCancelled != nil
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | (ownGroup ? POSIX_SPAWN_SETPGROUP : 0)))

        var argv = arguments.map { strdup($0) } + [nil]
        var envp = (environment ?? [:]).map { strdup($0.key + "=" + $0.value) } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid = pid_t()
        let spawned = environment == nil
            ? posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
            : posix_spawn(&pid, executable, &actions, &attributes, &argv, &envp)
        guard spawned == 0 else {
            for end in readEnds { close(end) }
            throw cannotStart(String(cString: strerror(spawned)))
        }
        return (pid, readEnds)
    }

    /// `program` itself when it is a path, otherwise the first executable file of that name in
    /// `searchPath`: the PATH the child gets, where posix_spawnp would search ours.
    private static func locate(_ program: String, searchPath: String) -> String? {
        if program.contains("/") { return program }
        for directory in searchPath.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + program
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Whether the child has ended, leaving it unreaped (WNOWAIT).
    private static func hasExited(_ pid: pid_t) -> Bool {
        var info = siginfo_t()
        return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._kill.si_pid == pid
    }

    /// Reads what the open streams have, waiting at most `waitingMilliseconds` for something;
    /// whether there was anything.
    private static func readReady(_ streams: inout [OutputStream], waitingMilliseconds: Int32, _ onLine: (String) -> Void) -> Bool {
        let open = streams.indices.filter { !streams[$0].atEnd }
        var descriptors = open.map { pollfd(fd: streams[$0].descriptor, events: Int16(POLLIN), revents: 0) }
        guard poll(&descriptors, nfds_t(descriptors.count), waitingMilliseconds) > 0 else { return false }
        for (index, polled) in zip(open, descriptors) where polled.revents != 0 { streams[index].read(onLine) }
        return true
    }
}

/// glibc has closed every other descriptor in the child in one file action since 2.34, but
/// declares it for _GNU_SOURCE only, which Swift's Glibc module lacks: found at run time. Without
/// it, only descriptors opened close-on-exec stay out of the child.
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? =
    dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }

/// One output pipe of the child: its bytes kept (all, or the last few KiB for an error), and
/// cut into lines when someone reads them.
private struct OutputStream {
    let descriptor: Int32
    let keepsAll: Bool
    let splitsLines: Bool
    var atEnd = false
    var collected: [UInt8] = []
    var recent: [UInt8] = []
    var partialLine: [UInt8] = []

    /// Reads once (poll said there is something), giving `onLine` the lines it completes.
    mutating func read(_ onLine: (String) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return }
        guard count > 0 else { atEnd = true; return }
        let chunk = buffer[0..<count]
        if keepsAll { collected += chunk }
        recent = Array((recent + chunk).suffix(8192))
        guard splitsLines else { return }
        partialLine += chunk
        var lineStart = partialLine.startIndex
        while let newline = partialLine[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
            onLine(String(decoding: partialLine[lineStart..<newline], as: UTF8.self))
            lineStart = newline + 1
        }
        partialLine.removeSubrange(..<lineStart)
        // A program that only ever rewrites one line (progress with \r) must not grow it unbounded.
        if partialLine.count > 65536 { finish(onLine) }
    }

    /// The last line, which had no newline.
    mutating func finish(_ onLine: (String) -> Void) {
        if !partialLine.isEmpty { onLine(String(decoding: partialLine, as: UTF8.self)) }
        partialLine = []
    }
}

/// What a program did: its status and what it wrote.
public struct ProcessResult: Sendable {
    public var command: [String]
    /// The exit status; 128 + n when signal n killed it, as a shell reports.
    public var status: Int32
    public var signal: Int32?
    /// Standard output, or both outputs when merged (empty unless collected).
    public var output: [UInt8]
    /// Standard error when kept apart.
    public var errorOutput: [UInt8]
    /// The last lines written (of standard error, when kept apart and not empty).
    public var outputTail: [String]

    public var text: String { String(decoding: output, as: UTF8.self) }

    /// Itself when the program succeeded (status 0); otherwise an error with the end of its output.
    @discardableResult
    public func checked() throws(ProcessError) -> ProcessResult {
        guard status == 0 else { throw ProcessError(self, .failed) }
        return self
    }
}

/// Why a program did not succeed: the command, its status and the end of its output, where a
/// program usually says why.
public struct ProcessError: Error, CustomStringConvertible, Sendable {
    public enum Reason: Sendable, Equatable {
        /// It could not be run at all: missing, not executable, no pipe.
        case cannotStart(String)
        /// It ended with a status other than 0, or a signal killed it.
        case failed
        case timedOut(Duration)
        case cancelled
    }

    public var command: [String]
    public var reason: Reason
    /// As in `ProcessResult`; 127 when it could not start, as a shell says.
    public var status: Int32
    public var signal: Int32?
    public var outputTail: [String]

    public var description: String {
        let command = ProcessRunner.commandLine(command)
        let what = switch reason {
        case let .cannotStart(why): "cannot start \(self.command.first ?? "a program"): \(why)"
        case .failed: signal.map { "\(command) was killed by signal \($0) (\(String(cString: strsignal($0))))" }
            ?? "\(command) exited with status \(status)"
        case let .timedOut(limit): "\(command) was stopped: it ran out of time (\(limit.components.seconds) s)"
        case .cancelled: "\(command) was stopped: cancelled"
        }
        return outputTail.isEmpty ? what : what + ":\n  " + outputTail.joined(separator: "\n  ")
    }
}

extension ProcessError {
    init(_ result: ProcessResult, _ reason: Reason) {
        self.init(command: result.command, reason: reason, status: result.status, signal: result.signal, outputTail: result.outputTail)
    }
}
