import CCurl
import Foundation

extension TransferOptions {
    /// Where `url` can be fetched, best first: its copies on the mirrors of the longest prefix
    /// it starts with, then the URL itself. Alternatives that are not usable URLs are left out
    /// (the URL itself still serves), so a bad mirror setting never stops a deployment.
    func sources(for url: String) -> SourceList {
        let match = mirrors.filter { !$0.prefix.isEmpty && url.hasPrefix($0.prefix) }.max { $0.prefix.count < $1.prefix.count }
        guard let match else { return SourceList(url) }
        let rest = url.dropFirst(match.prefix.count)
        var copies: [String] = []
        for alternative in match.alternatives {
            let copy = alternative + rest
            guard copy != url, !copies.contains(copy), (try? validateURL(copy)) != nil else { continue }
            copies.append(copy)
        }
        return SourceList(url, copies: copies)
    }
}

/// The places one file can come from, in order: the mirrors' copies, then the URL itself. The
/// URL itself is the authority and is never passed over: its answers are final, as they are
/// without mirrors. A value: a transfer (or a range reader, across its reads) keeps one.
struct SourceList: Sendable {
    /// The copies, then the URL itself, last.
    let urls: [String]
    private(set) var current = 0
    /// Indexes of sources not to ask again for this file.
    private var skipped: Set<Int> = []
    /// The version each source last announced in an answer that was used: ETags differ in
    /// form between servers, so they are compared per source only.
    private var validators: [Int: Validator] = [:]
    private(set) var served: [ServedBytes] = []
    private(set) var failures: [SourceFailure] = []

    init(_ url: String, copies: [String] = []) {
        urls = copies + [url]
    }

    var url: String { urls[current] }
    var origin: String { urls[urls.count - 1] }
    /// The URL itself: no source left to move to, so it answers as it would without mirrors.
    var isOrigin: Bool { current == urls.count - 1 }
    var hasCopies: Bool { urls.count > 1 }

    /// The version the current source announced earlier in this transfer.
    var validator: Validator? { validators[current] }

    /// The current source's answer was used: later answers must be of this version.
    mutating func remember(_ validator: Validator) { validators[current] = validator }

    /// Counts `bytes` as sent by the current source, after what came before.
    mutating func record(_ bytes: UInt64) {
        guard bytes > 0 else { return }
        if let last = served.last, last.url == url {
            served[served.count - 1].bytes += bytes
        } else {
            served.append(ServedBytes(url: url, bytes: bytes))
        }
    }

    /// The bytes counted so far are gone (the partial file started over).
    mutating func forgetServed() { served.removeAll() }

    mutating func noteFailure(_ error: TransportError, passedOver: Bool) {
        let source = url
        let failure = SourceFailure(url: source, reason: error.reason(for: source), passedOver: passedOver)
        failures.removeAll { $0.url == source }
        failures.append(failure)
    }

    /// Moves to the next source not passed over; false when that meant going back to the first
    /// (every source has had its turn: a round is over).
    mutating func advance() -> Bool {
        var next = current
        repeat { next = (next + 1) % urls.count } while skipped.contains(next)
        let wrapped = next <= current
        current = next
        return !wrapped
    }

    /// The current source will not be asked again for this file.
    mutating func passOver() {
        guard !isOrigin else { return }
        skipped.insert(current)
        validators[current] = nil
        _ = advance()
    }

    /// Back to the URL itself alone (a second transfer after the copies were wrong).
    mutating func onlyOrigin() {
        skipped = Set(0..<(urls.count - 1))
        current = urls.count - 1
        served.removeAll()
    }
}

extension TransportError {
    /// The description without the URL it starts with, for a list that names the URL itself.
    func reason(for url: String) -> String {
        let text = description
        return text.hasPrefix(url + ": ") ? String(text.dropFirst(url.count + 2)) : text
    }
}

extension HTTPClient {
    /// One attempt's outcome with several sources: besides the single-source outcomes, a
    /// source that cannot serve this file (404, another size, no ranges) is passed over.
    enum SourceAttempt<T> {
        case done(T)
        /// Worth another try: at the next source at once, or after a pause once every source
        /// has had its turn. `progressed` rounds do not use up a retry.
        case retry(TransportError, progressed: Bool)
        /// Start over at the same source (the file changed, the server ignored a range).
        case restart
        /// Not this source for this file; never returned for the URL itself.
        case passOver(TransportError)
    }

    /// `withRetries` across sources: an attempt that fails moves to the next source and the
    /// body continues from where the last one stopped; the pause and the retry budget apply
    /// to whole rounds of the list, so a single source behaves exactly as `withRetries`.
    func withSources<T>(_ sources: inout SourceList,
                        _ body: (_ sources: inout SourceList, _ attempt: Int) throws(TransportError) -> SourceAttempt<T>) throws(TransportError) -> T {
        var attempt = 0, failures = 0, restarts = 0
        var delay = options.retryDelay
        var roundProgressed = false
        while true {
            if options.isCancelled() { throw .cancelled(url: sources.url) }
            attempt += 1
            switch try body(&sources, attempt) {
            case let .done(value):
                return value
            case .restart:
                restarts += 1
                // A server that changes the file on every request would otherwise loop forever.
                if restarts > options.retries + 1 {
                    throw .remoteChanged(url: sources.url, detail: "it changed on each of \(restarts) attempts")
                }
            case let .passOver(error):
                guard !sources.isOrigin else { throw error }
                sources.noteFailure(error, passedOver: true)
                sources.passOver()
            case let .retry(error, progressed):
                if sources.hasCopies { sources.noteFailure(error, passedOver: false) }
                roundProgressed = roundProgressed || progressed
                // Another source may well have it: no reason to wait before asking it.
                if sources.advance() { continue }
                if roundProgressed {
                    failures = 0
                    delay = options.retryDelay
                }
                roundProgressed = false
                failures += 1
                if failures > options.retries { throw error }
                try pause(delay, url: sources.url)
                delay = min(delay * 2, options.maxRetryDelay)
            }
        }
    }

    /// `failure(of:)` for one source of several: what the URL itself would end the transfer
    /// with (a 404, a refused certificate) only passes a mirror over. Errors of this side
    /// (disk, cancellation, the sink) stay final.
    func judge<T>(_ response: CurlResponse, _ sources: SourceList, attempt: Int, offset: UInt64?,
                  progressed: Bool) throws(TransportError) -> SourceAttempt<T>? {
        do {
            if let error = try failure(of: response, url: sources.url, attempt: attempt, offset: offset) {
                return .retry(error, progressed: progressed)
            }
            return nil
        } catch {
            let ours = response.failure != nil || response.cancelled || options.isCancelled()
            if !sources.isOrigin, !ours {
                switch error {
                case .http, .network: return .passOver(error)
                default: break
                }
            }
            throw error
        }
    }
}

extension ServedBytes {
    /// The sources of a transfer for a log line; "" when the URL had no copies (there is
    /// nothing to tell beyond what the line already says).
    static func summary(mirrored: Bool, _ served: [ServedBytes], _ failures: [SourceFailure], refetched: Bool) -> String {
        guard mirrored else { return "" }
        var text = served.isEmpty ? "no bytes served in this run" : "served by "
            + served.map { "\($0.url): \(formatBytes($0.bytes))" }.joined(separator: "; then ")
        if refetched { text += "; fetched again from the server because the copies did not match the SHA-256" }
        if !failures.isEmpty {
            text += " (" + failures.map { "\($0.url) \($0.passedOver ? "passed over" : "failed"): \($0.reason)" }
                .joined(separator: "; ") + ")"
        }
        return text
    }

    /// 1024-based, as disk tools print sizes.
    static func formatBytes(_ bytes: UInt64) -> String {
        let units: [(String, Double)] = [("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024)]
        for (name, size) in units where Double(bytes) >= size {
            return String(format: "%.1f %@", Double(bytes) / size, name)
        }
        return "\(bytes) bytes"
    }
}
