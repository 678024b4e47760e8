import Foundation
import SequenceModel
import Synchronization

/// Where a running sequence's events go: the spool (and from it the server), the plain log
/// file, and the terminal. Secrets are redacted before anything leaves, and progress is thinned
/// to one event a second per step for the spool and the server (the terminal sees every one).
public final class EventBus: Sendable {
    public let spool: EventSpool
    private let logFile: FileHandle?
    private let display: TerminalDisplay?
    private struct State {
        var reporter: EventReporter?
        var redactor = SecretRedactor.none
        var lastProgress: [String: Date] = [:]
        var stepsDone = 0
        var stepCount = 0
    }
    private let state = Mutex(State())

    /// Told after each event reaches the spool.
    public var reporter: EventReporter? {
        get { state.withLock { $0.reporter } }
        set { state.withLock { $0.reporter = newValue } }
    }
    /// Secret values to hide, set by the run as its variables change.
    var redactor: SecretRedactor {
        get { state.withLock { $0.redactor } }
        set { state.withLock { $0.redactor = newValue } }
    }

    public init(spool: EventSpool, logPath: String? = nil, terminal: Bool = false) {
        self.spool = spool
        if let logPath {
            FileManager.default.createFile(atPath: logPath, contents: nil)
            logFile = FileHandle(forWritingAtPath: logPath)
            _ = try? logFile?.seekToEnd()
        } else {
            logFile = nil
        }
        display = terminal ? TerminalDisplay() : nil
    }

    /// Steps (not groups) finished or skipped, and how many there are: set by the engine, turned
    /// into each step event's `overall` percent.
    func countSteps(total: Int) {
        state.withLock { $0.stepCount = total; $0.stepsDone = 0 }
    }

    func stepsFinished(_ count: Int) {
        state.withLock { $0.stepsDone = min($0.stepCount, $0.stepsDone + count) }
    }

    @discardableResult
    public func emit(_ event: Event) -> Event? {
        let (redactor, done, total, reporter) = state.withLock { ($0.redactor, $0.stepsDone, $0.stepCount, $0.reporter) }
        var event = redactor.redact(event)
        if event.kind == .stepStarted || event.kind == .stepEnded || event.kind == .progress {
            if total > 0 {
                let running = event.kind == .progress ? min(max(event.percent ?? 0, 0), 100) / 100 : 0
                event.overall = min(100, (Double(done) + running) * 100 / Double(total))
            }
        }
        display?.show(event)
        if event.kind == .progress, let step = event.step, (event.percent ?? 0) < 100 {
            let now = Date()
            let recent = state.withLock { state -> Bool in
                let recent = state.lastProgress[step].map { now.timeIntervalSince($0) < 1 } ?? false
                if !recent { state.lastProgress[step] = now }
                return recent
            }
            if recent { return nil }
        }
        let numbered = spool.append(event, sync: event.kind != .progress)
        if let data = (numbered.logLine + "\n").data(using: .utf8) { logFile?.write(data) }
        reporter?.notify()
        return numbered
    }

    public func log(_ message: String, step: Step? = nil, level: String = "info") {
        emit(Event(kind: .log, step: step?.number, level: level, message: message))
    }

    public func close() {
        display?.finish()
        try? logFile?.synchronize()
        try? logFile?.close()
    }
}

/// A progress bar with the current step on a terminal (stderr), a line per step otherwise.
final class TerminalDisplay: Sendable {
    private let isTerminal = isatty(2) == 1
    /// Whether the last line is a progress bar; holding it also keeps lines from mixing.
    private let barShown = Mutex(false)

    func show(_ event: Event) {
        barShown.withLock { barShown in
            switch event.kind {
            case .progress:
                guard isTerminal else { return }
                let percent = min(max(event.percent ?? 0, 0), 100)
                let filled = Int(percent / 100 * 30)
                var line = "\r[\(event.step ?? "")] \(event.message ?? "") [" + String(repeating: "#", count: filled)
                    + String(repeating: ".", count: 30 - filled) + String(format: "] %5.1f%%", percent)
                if let rate = event.rate, rate > 0 { line += String(format: "  %.1f MiB/s", rate / 1_048_576) }
                write(line + "\u{1B}[K")
                barShown = true
            default:
                if barShown { write("\n"); barShown = false }
                write(event.logLine + "\n")
            }
        }
    }

    func finish() {
        barShown.withLock { barShown in
            if barShown { write("\n"); barShown = false }
        }
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}
