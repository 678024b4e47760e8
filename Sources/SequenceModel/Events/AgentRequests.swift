import DiskModel
import Foundation

// What an agent posts to the server, decoded and checked one way: the server's check-in and
// event handlers call these, and so does the fuzzer (Fuzz/CheckInFuzz.swift), which is why they
// live here and not in the server (whose module needs Hummingbird, which the fuzzer does not build).

/// The body of `POST /api/v1/agents/checkin`.
public struct CheckInRequest: Sendable, Codable, Equatable {
    /// An agent that restarted in the middle of a deployment (a power cut) and found the run's
    /// state on the disk: the deployment and the token it was running with. The server hands
    /// that deployment back at once (with a new token) when the token is the current one.
    public struct Resume: Sendable, Codable, Equatable {
        public var deployment: String
        public var token: String
        public init(deployment: String, token: String) {
            self.deployment = deployment
            self.token = token
        }
    }

    public var facts: Facts
    public var resume: Resume?

    public init(facts: Facts, resume: Resume? = nil) {
        self.facts = facts
        self.resume = resume
    }

    /// Any bytes: the request, or why not with the JSON path of the value at fault.
    public static func decode(_ data: Data) throws(JSONProblem) -> CheckInRequest {
        do { return try JSONDecoder().decode(CheckInRequest.self, from: data) } catch { throw JSONProblem(error) }
    }
}

/// The body of `POST /api/v1/deployments/{id}/events`.
public struct EventBatch: Sendable, Codable, Equatable {
    public var events: [Event]

    public init(events: [Event]) { self.events = events }

    /// Any bytes: the batch, or why not with the JSON path of the value at fault
    /// (`events[3].kind`; `JSONProblem.eventIndex` is then 3).
    public static func decode(_ data: Data) throws(JSONProblem) -> EventBatch {
        do { return try JSONDecoder().decode(EventBatch.self, from: data) } catch { throw JSONProblem(error) }
    }

    /// The first event that decoded but makes no sense, with the field at fault and why.
    public var firstProblem: EventProblem? {
        for (index, event) in events.enumerated() {
            if let (field, message) = Self.problem(event) { return EventProblem(index: index, field: field, message: message) }
        }
        return nil
    }

    /// Parsers of event times, made once (an ISO8601DateFormatter per event was a fifth of the server's CPU under load).
    static let fractionalTime = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let plainTime = Date.ISO8601FormatStyle()

    /// What the decoder cannot check: numbering from 1, a real time, a result with a status.
    static func problem(_ event: Event) -> (field: String, message: String)? {
        if event.sequence < 1 { return ("sequence", "sequence numbers start at 1") }
        if (try? fractionalTime.parse(event.time)) == nil && (try? plainTime.parse(event.time)) == nil {
            return ("time", "\"\(event.time)\" is not an ISO 8601 time")
        }
        if event.kind == .result && event.status == nil { return ("status", "a result event needs a status") }
        if let percent = event.percent, !(0...100).contains(percent) { return ("percent", "percent must be between 0 and 100") }
        if let overall = event.overall, !(0...100).contains(overall) { return ("overall", "overall must be between 0 and 100") }
        return nil
    }
}

/// An event of a batch the server refuses (422): `events[index].field`, and why.
public struct EventProblem: Sendable, Equatable {
    public var index: Int
    public var field: String
    public var message: String

    /// `events[3].time`, as an API error's `field` names it.
    public var fieldPath: String { "events[\(index)].\(field)" }
}

extension JSONProblem {
    /// The event a batch's decoding error is in: 3 for `events[3].kind`; nil when the batch
    /// itself is at fault.
    public var eventIndex: Int? {
        guard location.count >= 2, location[0] == .key("events"), case let .index(index) = location[1] else { return nil }
        return index
    }
}
