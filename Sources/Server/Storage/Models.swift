import Foundation
import SequenceModel

/// A machine that has checked in. `pending` ones wait for an administrator's approval.
public struct Machine: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable { case pending, approved }
    public var id: String
    public var macs: [String]
    public var uuid: String?
    public var serial: String?
    public var manufacturer: String?
    public var model: String?
    public var facts: Facts?
    public var state: State
    public var firstSeen: String
    public var lastSeen: String
}

/// One entry of the ordered rule list: the first whose pattern matches the machine chooses its
/// sequence. The rule named `default` is never matched in order; it is what unknown (or
/// approved but unmatched) machines get.
public struct Rule: Sendable, Codable, Equatable {
    public enum Field: String, Sendable, Codable, CaseIterable { case mac, uuid, serial, model, any }
    public var name: String?
    public var match: Field
    public var pattern: String
    public var sequence: String
    public var variables: [String: String]

    public init(name: String? = nil, match: Field, pattern: String, sequence: String, variables: [String: String] = [:]) {
        self.name = name
        self.match = match
        self.pattern = pattern
        self.sequence = sequence
        self.variables = variables
    }

    public static let defaultName = "default"

    public func matches(_ facts: Facts) -> Bool {
        switch match {
        case .any: return true
        case .mac: return facts.macAddresses.contains { Glob.matches(Rule.normalizedMAC(pattern), Rule.normalizedMAC($0)) }
        case .uuid: return facts.uuid.map { Glob.matches(pattern, $0) } ?? false
        case .serial: return facts.serialNumber.map { Glob.matches(pattern, $0) } ?? false
        case .model: return facts.model.map { Glob.matches(pattern, $0) } ?? false
        }
    }

    /// `AA-BB-...` (as Windows writes them) and `aa:bb:...` are the same address.
    static func normalizedMAC(_ text: String) -> String { text.lowercased().replacingOccurrences(of: "-", with: ":") }
}

public struct StoredSequence: Sendable, Codable, Equatable {
    public var name: String
    public var body: String
    public var updated: String
}

public struct Deployment: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable, CaseIterable { case assigned, running, succeeded, failed }
    public var id: String
    public var machineID: String
    public var sequenceName: String
    /// The sequence as it was when assigned: editing it later does not change a running deployment.
    public var sequenceBody: String
    public var variables: [String: String]
    /// SHA-256 (hex) of the bearer token; the token itself is never stored.
    public var tokenHash: String
    public var state: State
    public var currentStep: String?
    public var percent: Double?
    public var message: String?
    /// Every event 1...acknowledged is stored.
    public var acknowledged: Int
    public var created: String
    public var started: String?
    public var ended: String?

    public var isActive: Bool { state == .assigned || state == .running }
}

/// An event as stored: what the agent sent, plus the server-wide change id (increasing across
/// every deployment, so a dashboard can ask for "everything after change N").
public struct StoredEvent: Sendable, Codable, Equatable {
    public var changeID: Int
    public var received: String
    public var event: Event
}

/// What storing a batch of events did.
public struct EventIngestResult: Sendable {
    public var inserted: Int
    public var acknowledged: Int
    public var deployment: Deployment
}

enum Clock {
    /// A value type (no ICU formatter built per call: that cost more than the rest of an event batch).
    static let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)

    static func now() -> String { format.format(Date()) }
}
