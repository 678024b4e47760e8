import Foundation
import SequenceModel

/// Where a running sequence's events go: the spool (and from it the server), the plain log
/// file, and the terminal. Secrets are redacted before anything leaves, and progress is thinned
/// to one event a second per step for the spool and the server (the terminal sees every one).
public final class EventBus: @unchecked Sendable {
    public let spool: EventSpool
    public var reporter: EventReporter?
    private let logFile: FileHandle?
    private let display: TerminalDisplay?
    private let lock = NSLock()
    private var lastProgress: [String: Date] = [:]
    /// Steps (not groups) finished or skipped, and how many there are: set by the engine, turned
    /// into each step event's `overall` percent.
    private var stepsDone = 0
    private var stepCount = 0
    /// Secret values to hide, set by the engine as variables change.
    var redact: @Sendable (String) -> String = { $0 }

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

    func countSteps(total: Int) {
        lock.withLock { stepCount = total; stepsDone = 0 }
    }

    func stepsFinished(_ count: Int) {
        lock.withLock { stepsDone = min(stepCount, stepsDone + count) }
    }

    @discardableResult
    public func emit(_ event: Event) -> Event? {
        var event = event
        event.message = event.message.map(redact)
        if event.kind == .stepStarted || event.kind == .stepEnded || event.kind == .progress {
            let (done, total) = lock.withLock { (stepsDone, stepCount) }
            if total > 0 {
                let running = event.kind == .progress ? min(max(event.percent ?? 0, 0), 100) / 100 : 0
                event.overall = min(100, (Double(done) + running) * 100 / Double(total))
            }
        }
        display?.show(event)
        if event.kind == .progress, let step = event.step, (event.percent ?? 0) < 100 {
            lock.lock()
            let now = Date()
            let recent = lastProgress[step].map { now.timeIntervalSince($0) < 1 } ?? false
            if !recent { lastProgress[step] = now }
            lock.unlock()
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
final class TerminalDisplay: @unchecked Sendable {
    private let isTerminal = isatty(2) == 1
    private var barShown = false
    private let lock = NSLock()

    func show(_ event: Event) {
        lock.lock()
        defer { lock.unlock() }
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

    func finish() {
        lock.lock()
        if barShown { write("\n"); barShown = false }
        lock.unlock()
    }

    private func write(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }
}
