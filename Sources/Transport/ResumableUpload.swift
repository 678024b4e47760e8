import Foundation

/// Sends a file to the deployment server's capture endpoint so that a dropped connection, a
/// server restart or a 409 never costs what was already sent (the protocol is in the server's
/// `openapi.yaml`, `/api/v1/deployments/{id}/captures/{name}`):
///
/// 1. POST `{"size", "sha256"}`: the server answers how many bytes it holds (`offset`).
/// 2. PUT the rest from `Upload-Offset: offset`. A drop: announce again and go on from what the
///    server says it kept. The server answers 201 once the whole file is in and its SHA-256 is
///    the announced one.
///
/// Attempts that moved bytes forward do not count against `options.retries`: only a run of
/// failures with no progress ends the upload.
public struct ResumableUpload: Sendable {
    public let client: HTTPClient
    /// `<server>/api/v1/deployments/<id>/captures/<name>`.
    public let url: String

    public init(client: HTTPClient, url: String) {
        self.client = client
        self.url = url
    }

    public struct Outcome: Sendable {
        /// Where the server keeps it, under its captures folder.
        public var path: String
        /// Bytes sent by this call (less than the size when an earlier run had sent some).
        public var sent: UInt64
        /// Times the upload went on after a drop or a refusal.
        public var resumes: Int
    }

    struct Status: Decodable {
        var offset: UInt64
        var complete: Bool
        var path: String
    }

    /// Uploads `file` (`size` bytes with SHA-256 `sha256`, hex); `progress` gets the bytes the
    /// server holds after each piece.
    public func send(file: String, size: UInt64, sha256: String, progress: (UInt64) -> Void) throws -> Outcome {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TransportError.network(url: url, reason: "\(file): \(String(cString: strerror(errno)))", attempts: 0) }
        defer { close(fd) }
        let options = client.options
        var failures = 0
        var delay = options.retryDelay
        var sent: UInt64 = 0
        var resumes = 0

        func backOff(_ error: Error) throws {
            failures += 1
            if failures > options.retries { throw error }
            resumes += 1
            let deadline = Date().addingTimeInterval(delay)
            while Date() < deadline {
                if options.isCancelled() { throw TransportError.cancelled(url: url) }
                Thread.sleep(forTimeInterval: 0.05)
            }
            delay = min(delay * 2, options.maxRetryDelay)
        }

        while true {
            if options.isCancelled() { throw TransportError.cancelled(url: url) }
            let announcement = try JSONSerialization.data(withJSONObject: ["size": size, "sha256": sha256])
            let announced: Result<(status: Int, body: Data), TransportError> = Result { () throws(TransportError) in
                try client.post(url, json: announcement)
            }
            let status: Status
            switch announced {
            case let .failure(error):
                try backOff(error)
                continue
            case let .success((code, body)) where code == 409:
                // The server still finishes an earlier request for this upload.
                try backOff(TransportError.http(url: url, status: code, message: Self.message(body)))
                continue
            case let .success((code, body)):
                guard code == 200 else { throw TransportError.http(url: url, status: code, message: Self.message(body)) }
                status = try JSONDecoder().decode(Status.self, from: body)
            }
            progress(status.offset)
            if status.complete || status.offset == size { return Outcome(path: status.path, sent: sent, resumes: resumes) }
            guard status.offset < size else {
                throw TransportError.http(url: url, status: 200, message: "the server holds \(status.offset) bytes of a \(size)-byte file")
            }
            let attempt: Result<HTTPClient.UploadAnswer, TransportError> = Result { () throws(TransportError) in
                try client.putFile(url, fd: fd, offset: status.offset, length: size - status.offset,
                                   headers: ["Upload-Offset: \(status.offset)"])
            }
            let answer: HTTPClient.UploadAnswer
            switch attempt {
            case let .failure(error):
                if case .cancelled = error { throw error }
                // What reached the server is kept there: the next announcement says how much.
                try backOff(error)
                continue
            case let .success(value):
                answer = value
            }
            sent += answer.sent
            switch answer.status {
            case 201:
                let done = try JSONDecoder().decode(Status.self, from: answer.body)
                progress(size)
                return Outcome(path: done.path, sent: sent, resumes: resumes)
            case 200, 409:
                // Part of the file is in, or the server held another offset: ask again.
                if answer.sent > 0 { failures = 0; delay = options.retryDelay }
                try backOff(TransportError.http(url: url, status: answer.status, message: Self.message(answer.body)))
            case 500..<600:
                try backOff(TransportError.http(url: url, status: answer.status, message: Self.message(answer.body)))
            default:
                // 4xx: the request itself is refused (a wrong SHA-256, a name not allowed).
                throw TransportError.http(url: url, status: answer.status, message: Self.message(answer.body))
            }
        }
    }

    static func message(_ body: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let text = object["error"] as? String { return text }
        return String(decoding: body.prefix(300), as: UTF8.self)
    }
}
