import Crypto
import DiskModel
import Foundation
import Hummingbird
import NIOCore

/// An error the client should see: a status and `{"error": "...", "field": "..."}`, plus
/// details (the issues of a sequence, the index of a bad event) where they help.
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var field: String?
    public var index: Int?
    public var issues: [IssueBody]?
    /// Seconds after which asking again may succeed (429, 409): in the body for agents, and as Retry-After.
    public var retryAfter: Int?
    /// For an internal error: what the server's log files its details under.
    public var id: String?
    public var headers: HTTPFields = [:]

    public struct IssueBody: Codable, Sendable {
        public var severity: String
        public var path: String
        public var message: String
        public var hint: String?
    }

    public init(_ status: HTTPResponse.Status, _ message: String, field: String? = nil, index: Int? = nil, issues: [IssueBody]? = nil) {
        self.status = status
        self.message = message
        self.field = field
        self.index = index
        self.issues = issues
    }

    struct Body: Encodable {
        var error: String
        var field: String?
        var index: Int?
        var issues: [IssueBody]?
        var retryAfter: Int?
        var id: String?
    }

    var response: Response {
        var response = JSON.response(Body(error: message, field: field, index: index, issues: issues, retryAfter: retryAfter, id: id),
                                     status: status)
        for field in headers { response.headers.append(field) }
        if let retryAfter, response.headers[.retryAfter] == nil { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }

    static func notFound(_ what: String) -> APIError { APIError(.notFound, "\(what) not found") }

    /// What a client learns of anything that is not an APIError: that it happened, and the id
    /// under which the server's log has it. Database errors, paths and stack details stay in the log.
    static func `internal`(id: String) -> APIError {
        var error = APIError(.internalServerError, "internal error")
        error.id = id
        return error
    }
}

extension ImprintServer {
    /// The one place a handler's error becomes an answer (the API, agents' endpoints, boot
    /// scripts, content and the dashboard alike): an APIError as it says; anything else as
    /// `500 {"error": "internal error", "id": ID}`, with the whole error in the server's log
    /// under the same id, so an administrator finds it from what a user reports.
    func errorResponse(_ error: any Error, _ request: Request) -> Response {
        if let error = error as? APIError { return error.response }
        let id = Self.errorID()
        logger.error("internal error \(id): \(request.method) \(request.uri.path): \(error)")
        return APIError.internal(id: id).response
    }

    /// 8 random bytes as hex: unique enough to find one entry in a log, and telling nothing.
    static func errorID() -> String { Tokens.make(bytes: 8) }
}

enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        // Our own types always encode; should one not, the client still gets JSON.
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":"the response could not be encoded"}"#.utf8)
        return raw(data, status: status, contentType: "application/json")
    }

    static func raw(_ data: Data, status: HTTPResponse.Status = .ok, contentType: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.contentLength] = String(data.count)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension Request {
    /// The whole body, at most `limit` bytes: 413 past it (checked on Content-Length first, so
    /// an oversized upload is refused before it is read).
    mutating func bodyData(limit: Int) async throws -> Data {
        if let declared = headers[.contentLength].flatMap(Int.init), declared > limit {
            throw APIError(.contentTooLarge, "the body is \(declared) bytes; the limit is \(limit)")
        }
        do {
            let buffer = try await collectBody(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "the body is larger than the limit of \(limit) bytes")
        } catch is NIOTooManyBytesError {
            // A chunked body (no Content-Length) found too large as it arrives.
            throw APIError(.contentTooLarge, "the body is larger than the limit of \(limit) bytes")
        }
    }

    /// The token of `Authorization: Bearer <token>`, nil when there is none.
    var bearerToken: String? {
        guard let value = headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    func requiredParameter(_ name: String, _ context: some RequestContext) throws -> String {
        guard let value = context.parameters.get(name), !value.isEmpty else {
            throw APIError(.badRequest, "the path has no \(name)", field: name)
        }
        return value
    }
}

/// Decodes a JSON body, turning the decoder's complaint into a message with the field's path.
func decodeBody<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    do {
        return try JSONDecoder().decode(type, from: data)
    } catch {
        throw APIError(invalidBody: JSONProblem(error))
    }
}

extension APIError {
    /// 422 naming the field at fault (none when the body is not JSON at all).
    init(invalidBody problem: JSONProblem, index: Int? = nil) {
        let syntax = problem.location.isEmpty && problem.reason.hasPrefix("not valid JSON")
        self.init(.unprocessableContent, syntax ? "the body is not valid JSON" : problem.reason, field: problem.fieldPath, index: index)
    }
}

enum Tokens {
    /// Random bytes as hex; 32 of them make what the agent holds (only its hash is stored).
    static func make(bytes: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Compares every byte whatever the first difference, so timing reveals nothing of the hash.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<x.count { difference |= x[i] ^ y[i] }
        return difference == 0
    }
}
