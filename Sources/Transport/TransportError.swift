import Failures
import Foundation

/// Every way a transfer can fail, worded for the technician at the machine: each case names
/// the URL (or file), and where it matters the attempt and the byte offset.
public enum TransportError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The server answered 4xx/5xx; `message` is the start of the body (servers explain there).
    case http(url: String, status: Int, message: String)
    /// No usable answer after every retry: curl's own words, with the offset reached.
    case network(url: String, reason: String, attempts: Int)
    case checksumMismatch(url: String, expected: String, actual: String)
    /// The body ended before the length the server announced.
    case truncated(url: String, received: UInt64, expected: UInt64)
    case noSpace(path: String, needed: UInt64, available: UInt64)
    case io(path: String, operation: String, errno: Int32)
    case tooLarge(url: String, limit: Int)
    case cancelled(url: String)
    case invalidURL(String)
    /// The file changed on the server between two requests (ETag or Last-Modified differ).
    case remoteChanged(url: String, detail: String)
    /// The server answered in a way this client cannot use (no ranges, a wrong Content-Range).
    case unexpectedResponse(url: String, detail: String)
    /// The caller's sink refused the data at `offset`.
    case consumer(url: String, offset: UInt64, message: String)

    public var description: String {
        switch self {
        case let .http(url, status, message):
            let detail = message.isEmpty ? "" : ": \(message)"
            return "\(url): the server answered HTTP \(status)\(detail)"
        case let .network(url, reason, attempts):
            return "\(url): \(reason) (gave up after \(attempts) attempt\(attempts == 1 ? "" : "s"))"
        case let .checksumMismatch(url, expected, actual):
            return "\(url): SHA-256 of the data is \(actual) but \(expected) was expected; the data was discarded"
        case let .truncated(url, received, expected):
            return "\(url): the data ends after \(received) bytes, \(expected) were expected"
        case let .noSpace(path, needed, available):
            return "\(path): not enough free space, \(needed) bytes needed but only \(available) available"
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .tooLarge(url, limit):
            return "\(url): the response is larger than the \(limit)-byte limit"
        case let .cancelled(url):
            return "\(url): the transfer was cancelled"
        case let .invalidURL(url):
            return "\(url.debugDescription) is not a usable URL (only http:// and https:// without spaces or control characters)"
        case let .remoteChanged(url, detail):
            return "\(url): the file changed on the server during the transfer (\(detail))"
        case let .unexpectedResponse(url, detail):
            return "\(url): \(detail)"
        case let .consumer(url, offset, message):
            return "\(url): the data could not be processed at byte \(offset): \(message)"
        }
    }
}

extension TransportError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .http, .network, .truncated, .remoteChanged, .unexpectedResponse: return .network
        case .checksumMismatch, .tooLarge, .invalidURL: return .badInput
        case .noSpace, .io: return .disk
        case .cancelled: return .interrupted
        // The consumer (an apply, a disk write) failed; its own error says more.
        case .consumer: return .disk
        }
    }
}
