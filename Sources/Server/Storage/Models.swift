import Failures
import Foundation
import Primitives
import SequenceModel

/// A machine that has checked in, or that an administrator registered. `pending` ones wait for
/// an administrator's approval; `rejected` ones were refused by one, and their check-ins are
/// told so (no deployment) until an administrator approves them. Its identity (MACs, UUID, serial) is what it first claimed or
/// what the administrator registered, and never changes through a check-in: a check-in that
/// contradicts it becomes another machine, with the contradiction in `conflicts`.
public struct Machine: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable, CaseIterable { case pending, approved, rejected }
    public var id: String
    /// Every MAC the machine claimed. Each MAC belongs to at most one machine (the first that
    /// claimed it): a MAC here that another machine owns does not send its `/boot/{mac}.ipxe` here.
    public var macs: [String]
    public var uuid: String?
    public var serial: String?
    public var manufacturer: String?
    public var model: String?
    public var facts: Facts?
    public var state: State
    /// Empty for a machine registered by an administrator that has not checked in yet.
    public var firstSeen: String
    public var lastSeen: String
    /// The address its first check-in came from (nil for a registered machine).
    public var firstAddress: String?
    /// When an administrator registered it (nil for a machine known from a check-in).
    public var registered: String?
    /// The known machines whose identity this one's first check-in contradicted: why it waits
    /// for an administrator whatever the rules say.
    public var conflicts: [IdentityConflict]
    /// When an administrator rejected it (state `rejected`); nil otherwise.
    public var rejected: String? = nil
}

/// A check-in that claimed part of a known machine's identity and contradicted the rest: the
/// known machine was left as it was, and the check-in became a new pending machine.
public struct IdentityConflict: Sendable, Codable, Equatable {
    public var machineID: String
    /// What the check-in shares with that machine (`MAC 52:54:00:12:34:56`, `serial ABC123`).
    public var matching: [String]
    /// What it contradicts (`MAC`, `UUID`, `serial`: theirs, ours).
    public var differing: [String]
    /// "conflicts with machine X: serial ABC123 matches; MAC differs (X has 52:54:..., this check-in 52:54:...)"
    public var description: String

    public init(machineID: String, matching: [String], differing: [String]) {
        self.machineID = machineID
        self.matching = matching
        self.differing = differing
        description = "conflicts with machine \(machineID): " + matching.joined(separator: ", ")
            + (matching.count == 1 ? " matches" : " match") + "; " + differing.joined(separator: "; ")
    }
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
    /// Machines of this rule deploying the same file share a multicast session, made at the
    /// first one's check-in; nil: each fetches its own copy.
    public var multicast: RuleMulticast?

    public init(name: String? = nil, match: Field, pattern: String, sequence: String, variables: [String: String] = [:],
                multicast: RuleMulticast? = nil) {
        self.name = name
        self.match = match
        self.pattern = pattern
        self.sequence = sequence
        self.variables = variables
        self.multicast = multicast
    }

    /// What sessions this rule makes are known by: its name, or its match and pattern.
    public var multicastKey: String { name ?? "\(match.rawValue):\(pattern)" }

    public static let defaultName = "default"

    /// Case-insensitively: MACs, UUIDs, serials and models come in either case.
    public func matches(_ facts: Facts) -> Bool {
        let glob = Glob(match == .mac ? Rule.normalizedMAC(pattern) : pattern, .caseInsensitive)
        switch match {
        case .any: return true
        case .mac: return facts.macAddresses.contains { glob.matches(Rule.normalizedMAC($0)) }
        case .uuid: return facts.uuid.map(glob.matches) ?? false
        case .serial: return facts.serialNumber.map(glob.matches) ?? false
        case .model: return facts.model.map(glob.matches) ?? false
        }
    }

    /// `AA-BB-...` (as Windows writes them) and `aa:bb:...` are the same address.
    static func normalizedMAC(_ text: String) -> String { text.lowercased().replacingOccurrences(of: "-", with: ":") }
}

/// A rule's `"multicast"`: its machines deploying the same file share one session, which
/// starts when `minMachines` have joined or `waitSeconds` after it was made (the first
/// machine's check-in), sending at most `rateMbps`.
public struct RuleMulticast: Sendable, Codable, Equatable {
    public var minMachines: Int?
    public var waitSeconds: Int?
    public var rateMbps: Double?

    public init(minMachines: Int? = nil, waitSeconds: Int? = nil, rateMbps: Double? = nil) {
        self.minMachines = minMachines
        self.waitSeconds = waitSeconds
        self.rateMbps = rateMbps
    }

    public static let defaultMinMachines = 1
    public static let defaultWaitSeconds = 60
    public static let defaultRateMbps = 100.0

    public var machines: Int { minMachines ?? Self.defaultMinMachines }
    public var wait: Int { waitSeconds ?? Self.defaultWaitSeconds }
    public var rateBitsPerSecond: Int { Int((rateMbps ?? Self.defaultRateMbps) * 1_000_000) }

    /// What is wrong with it, as (field under the rule's "multicast", message); nil when nothing.
    public var problem: (field: String, message: String)? {
        if let minMachines, !(1...10_000).contains(minMachines) { return ("minMachines", "minMachines is 1 to 10000, not \(minMachines)") }
        if let waitSeconds, !(0...86_400).contains(waitSeconds) { return ("waitSeconds", "waitSeconds is 0 to 86400 (a day), not \(waitSeconds)") }
        if let rateMbps, !(rateMbps >= 0.1 && rateMbps <= 100_000) {
            return ("rateMbps", "rateMbps is 0.1 to 100000 (megabits a second), not \(rateMbps)")
        }
        return nil
    }
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
    /// What kind of failure ended it, when it failed and the agent said.
    public var failure: FailureKind?
    /// Every event 1...acknowledged is stored.
    public var acknowledged: Int
    public var created: String
    public var started: String?
    public var ended: String?
    /// When the current token was issued (nil: when the deployment was created, before migration 4).
    public var tokenIssued: String?
    /// When an administrator revoked the token: the machine's next check-in gets a new one at once.
    public var tokenReset: String?
    /// How many times its machine came back from an interruption (a power cut) and resumed it
    /// with its run's token.
    public var resumes = 0

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
    /// Events acknowledged but not stored: past the deployment's limits.
    public var refused = 0
}

/// Times as the database stores them: ISO 8601, UTC, milliseconds (text sorts in time order).
enum StoredTime {
    /// A value type (no ICU formatter built per call: that cost more than the rest of an event batch).
    static let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)

    static func now() -> String { format.format(Date()) }

    /// A time `now()` wrote, or nil.
    static func parse(_ text: String) -> Date? { try? format.parse(text) }
}
