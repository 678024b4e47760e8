import Foundation
import SequenceModel
import Transport

/// Sends spooled events to the server in order, in batches, with the deployment's bearer
/// token, until the server acknowledges them; a server that is down or restarting only delays
/// them. The server stores each sequence number once, so resending after a lost answer is safe.
public final class EventReporter: @unchecked Sendable {
    public let endpoint: String
    private let spool: EventSpool
    private let client: HTTPClient
    private let condition = NSCondition()
    private var stopping = false
    private var running = false
    private var thread: Thread?
    /// The last problem talking to the server, for the log.
    public private(set) var lastError: String?

    public init(spool: EventSpool, endpoint: String, token: String, caBundle: String? = nil) {
        self.spool = spool
        self.endpoint = endpoint
        var options = TransferOptions()
        options.bearerToken = token
        options.caBundle = caBundle
        options.retries = 0
        options.connectTimeout = 5
        options.stallTimeout = 10
        client = HTTPClient(options: options)
    }

    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !running else { return }
        running = true
        let thread = Thread { [self] in loop() }
        thread.name = "imprint-events"
        self.thread = thread
        thread.start()
    }

    /// Wakes the sender: new events are in the spool.
    public func notify() {
        condition.lock()
        condition.signal()
        condition.unlock()
    }

    /// Sends what is left, for at most `timeout` seconds; true when everything was acknowledged.
    @discardableResult
    public func stop(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        stopping = true
        condition.broadcast()
        while running && Date() < deadline { _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.1))) }
        condition.unlock()
        return spool.acknowledged >= spool.lastSequence
    }

    private func loop() {
        var delay = 0.5
        while true {
            let pending = spool.events(after: spool.acknowledged, limit: 200)
            if pending.isEmpty {
                condition.lock()
                // Stopping ends the sender only once everything appended so far is acknowledged:
                // events emitted after the read above (the result, as the run ends) go first.
                if stopping && spool.acknowledged >= spool.lastSequence {
                    running = false; condition.broadcast(); condition.unlock(); return
                }
                _ = condition.wait(until: Date().addingTimeInterval(stopping ? 0.05 : 1))
                condition.unlock()
                continue
            }
            if send(pending) {
                delay = 0.5
                continue
            }
            condition.lock()
            if stopping && !running { condition.unlock(); return }
            _ = condition.wait(until: Date().addingTimeInterval(delay))
            let giveUp = stopping
            condition.unlock()
            delay = min(delay * 2, 30)
            if giveUp && delay >= 30 { break }
        }
        condition.lock()
        running = false
        condition.broadcast()
        condition.unlock()
    }

    private func send(_ events: [Event]) -> Bool {
        struct Batch: Encodable { var events: [Event] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let body = try? encoder.encode(Batch(events: events)) else { return false }
        do {
            let (status, answer) = try client.post(endpoint, json: body)
            guard (200..<300).contains(status) else {
                lastError = "the server answered \(status) to \(events.count) events"
                return false
            }
            struct Acknowledgement: Decodable { var acknowledged: Int }
            let acknowledged = (try? JSONDecoder().decode(Acknowledgement.self, from: answer))?.acknowledged
                ?? events.last?.sequence ?? 0
            if acknowledged > spool.acknowledged { spool.acknowledged = acknowledged }
            lastError = nil
            return true
        } catch {
            lastError = "\(error)"
            return false
        }
    }
}
