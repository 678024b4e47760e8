import Foundation
import SequenceModel
import Synchronization
import Transport

/// Sends spooled events to the server in order, in batches, with the deployment's bearer
/// token, until the server acknowledges them; a server that is down or restarting only delays
/// them. The server stores each sequence number once, so resending after a lost answer is safe.
public final class EventReporter: Sendable {
    public let endpoint: String
    private let spool: EventSpool
    private let client: HTTPClient
    private struct State {
        var stopping = false
        var running = false
        var lastError: String?
    }
    private let state = Mutex(State())
    /// Wakes the sender: new events are in the spool, or it should stop. `wakeRaised` keeps a
    /// burst of events to one pending wake-up instead of a count of them.
    private let wake = DispatchSemaphore(value: 0)
    private let wakeRaised = Atomic<Bool>(false)
    /// Signalled once by the sender as it ends.
    private let ended = DispatchSemaphore(value: 0)
    /// The last problem talking to the server, for the log.
    public var lastError: String? { state.withLock { $0.lastError } }

    public init(spool: EventSpool, endpoint: String, token: String, caBundle: String? = nil) {
        self.spool = spool
        self.endpoint = endpoint
        var options = TransferOptions()
        // The token is for the server that issued it; the endpoint is on that server.
        options.bearerToken = BearerToken(token, for: endpoint)
        options.caBundle = caBundle
        options.retries = 0
        options.connectTimeout = 5
        options.stallTimeout = 10
        client = HTTPClient(options: options)
    }

    public func start() {
        let starts = state.withLock { state -> Bool in
            guard !state.running else { return false }
            state.running = true
            return true
        }
        guard starts else { return }
        let thread = Thread { [self] in loop() }
        thread.name = "imprint-events"
        thread.start()
    }

    /// Wakes the sender: new events are in the spool.
    public func notify() {
        if !wakeRaised.exchange(true, ordering: .acquiringAndReleasing) { wake.signal() }
    }

    /// Sends what is left, for at most `timeout` seconds; true when everything was acknowledged.
    @discardableResult
    public func stop(timeout: Double) -> Bool {
        let running = state.withLock { state -> Bool in
            state.stopping = true
            return state.running
        }
        wake.signal()
        if running { _ = ended.wait(timeout: .now() + timeout) }
        return spool.acknowledged >= spool.lastSequence
    }

    private func loop() {
        var delay = 0.5
        while true {
            // Lowered before the spool is read: a notify from now on wakes the next wait.
            wakeRaised.store(false, ordering: .sequentiallyConsistent)
            let pending = spool.events(after: spool.acknowledged, limit: 200)
            if pending.isEmpty {
                let stopping = state.withLock { $0.stopping }
                // Stopping ends the sender only once everything appended so far is acknowledged:
                // events emitted after the read above (the result, as the run ends) go first.
                if stopping && spool.acknowledged >= spool.lastSequence { break }
                _ = wake.wait(timeout: .now() + (stopping ? 0.05 : 1))
                continue
            }
            if send(pending) {
                delay = 0.5
                continue
            }
            _ = wake.wait(timeout: .now() + delay)
            let giveUp = state.withLock { $0.stopping }
            delay = min(delay * 2, 30)
            if giveUp && delay >= 30 { break }
        }
        state.withLock { $0.running = false }
        ended.signal()
    }

    private func send(_ events: [Event]) -> Bool {
        struct Batch: Encodable { var events: [Event] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let body = try? encoder.encode(Batch(events: events)) else { return false }
        do {
            let (status, answer) = try client.post(endpoint, json: body)
            guard (200..<300).contains(status) else {
                let error = "the server answered \(status) to \(events.count) events"
                state.withLock { $0.lastError = error }
                return false
            }
            struct Acknowledgement: Decodable { var acknowledged: Int }
            let acknowledged = (try? JSONDecoder().decode(Acknowledgement.self, from: answer))?.acknowledged
                ?? events.last?.sequence ?? 0
            if acknowledged > spool.acknowledged { spool.acknowledged = acknowledged }
            state.withLock { $0.lastError = nil }
            return true
        } catch {
            let problem = "\(error)"
            state.withLock { $0.lastError = problem }
            return false
        }
    }
}
