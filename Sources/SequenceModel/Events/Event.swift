import Failures
import Foundation

/// What a running sequence reports: to the local spool, to the server, to the terminal and to
/// the log. Numbered so the server stores each once however often it is sent.
public struct Event: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case sequenceStarted, stepStarted, progress, stepEnded, log, result
    }

    public enum Status: String, Sendable, Codable {
        case success, failed, skipped
        /// Failed, but the step said continueOnError.
        case failedContinued
    }

    /// 1, 2, 3...: the order of events in one deployment; the server acknowledges up to one.
    public var sequence: Int
    /// ISO 8601, UTC, with milliseconds.
    public var time: String
    public var kind: Kind
    /// The step number (`2.1`) and name, for step events.
    public var step: String?
    public var name: String?
    public var type: String?
    public var status: Status?
    /// Seconds, for stepEnded and result.
    public var duration: Double?
    /// The step's own progress.
    public var percent: Double?
    /// The whole sequence's progress: steps done (skipped ones included) plus the running step's
    /// share, over every step that is not a group. What the dashboard's bar shows.
    public var overall: Double?
    public var bytes: UInt64?
    public var total: UInt64?
    /// Bytes per second.
    public var rate: Double?
    /// `info`, `warning`, `error` for log events.
    public var level: String?
    public var message: String?
    /// For a failed step or result: what kind of failure (the dashboard groups by it).
    public var failure: FailureKind?

    public init(sequence: Int = 0, time: Date = Date(), kind: Kind, step: String? = nil, name: String? = nil, type: String? = nil,
                status: Status? = nil, duration: Double? = nil, percent: Double? = nil, bytes: UInt64? = nil,
                total: UInt64? = nil, rate: Double? = nil, level: String? = nil, message: String? = nil, failure: FailureKind? = nil) {
        self.sequence = sequence
        self.time = Event.timestamp(time)
        self.kind = kind
        self.step = step
        self.name = name
        self.type = type
        self.status = status
        self.duration = duration
        self.percent = percent
        self.bytes = bytes
        self.total = total
        self.rate = rate
        self.level = level
        self.message = message
        self.failure = failure
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// One line a technician reads in the log file.
    public var logLine: String {
        let clock = String(time.dropFirst(11).prefix(12))
        let where_ = step.map { "[\($0)] " } ?? ""
        switch kind {
        case .sequenceStarted: return "\(clock) sequence \"\(name ?? "")\" started" + (message.map { ": \($0)" } ?? "")
        case .stepStarted: return "\(clock) \(where_)\(name ?? "") (\(type ?? "")) started"
        case .progress:
            var text = "\(clock) \(where_)\(message ?? "progress")"
            if let percent { text += String(format: " %.1f%%", percent) }
            if let bytes { text += " \(bytes) bytes" + (total.map { " of \($0)" } ?? "") }
            if let rate { text += String(format: " %.1f MiB/s", rate / 1_048_576) }
            return text
        case .stepEnded:
            return "\(clock) \(where_)\(name ?? "") \(status?.rawValue ?? "")" + (duration.map { String(format: " in %.1f s", $0) } ?? "")
                + (message.map { ": \($0)" } ?? "")
        case .log: return "\(clock) \(where_)\(level ?? "info"): \(message ?? "")"
        case .result:
            return "\(clock) sequence \(status?.rawValue ?? "")" + (duration.map { String(format: " in %.1f s", $0) } ?? "")
                + (message.map { ": \($0)" } ?? "")
        }
    }
}
