import Foundation
import Hummingbird
import NIOCore
import NIOPosix

/// Files under a root folder (content, boot files) with what image downloads need: HEAD,
/// Content-Length, ETag and If-None-Match, one byte range (206, 416) for resumed downloads and
/// the agent's Range reads. Nothing outside the root is ever served.
enum ContentFiles {
    static let chunkSize = 256 * 1024

    /// `relative` are the path's segments as sent (percent-encoded).
    static func serve(root: String, relative: [String], request: Request, count: (@Sendable (Int) -> Void)?) async throws -> Response {
        guard let file = resolve(root: root, segments: relative) else { throw APIError.notFound("file") }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file),
              attributes[.type] as? FileAttributeType == .typeRegular,
              let size = (attributes[.size] as? NSNumber)?.int64Value else { throw APIError.notFound("file") }
        let modified = (attributes[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0)
        // Size and modification time: changes whenever the file is replaced, costs no hashing of
        // multi-gigabyte images.
        let etag = "\"\(String(size, radix: 16))-\(String(Int64(modified.timeIntervalSince1970 * 1000), radix: 16))\""

        var headers = HTTPFields()
        headers[.eTag] = etag
        headers[.acceptRanges] = "bytes"
        headers[.contentType] = contentType(file)
        headers[.lastModified] = httpDate(modified)

        if let condition = request.headers[.ifNoneMatch], matches(condition, etag) {
            return Response(status: .notModified, headers: headers)
        }

        var start: Int64 = 0, end: Int64 = size - 1, status = HTTPResponse.Status.ok
        // If-Range: a range only of the version the client already has; otherwise the whole file.
        let rangeApplies = request.headers[.ifRange].map { $0 == etag } ?? true
        if let rangeHeader = request.headers[.range], rangeApplies {
            switch parseRange(rangeHeader, size: size) {
            case .none: break
            case let .satisfiable(from, to):
                start = from; end = to; status = .partialContent
                headers[.contentRange] = "bytes \(from)-\(to)/\(size)"
            case .unsatisfiable:
                var error = APIError(.rangeNotSatisfiable, "the range \(rangeHeader) is outside the file's \(size) bytes", field: "Range")
                error.headers[.contentRange] = "bytes */\(size)"
                throw error
            }
        }
        let length = max(end - start + 1, 0)
        headers[.contentLength] = String(length)
        if request.method == .head { return Response(status: status, headers: headers) }

        guard let handle = FileHandle(forReadingAtPath: file) else { throw APIError.notFound("file") }
        let offset = start
        let body = ResponseBody(contentLength: Int(length)) { writer in
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(offset))
            var remaining = length
            while remaining > 0 {
                let want = Int(min(Int64(chunkSize), remaining))
                // Disk reads on the thread pool, not on the event loop or Swift's few cooperative threads.
                let data = try await NIOThreadPool.singleton.runIfActive { try handle.read(upToCount: want) ?? Data() }
                if data.isEmpty { break }  // truncated while we sent it: the client sees a short body
                try await writer.write(ByteBuffer(bytes: data))
                remaining -= Int64(data.count)
                count?(data.count)
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// The file the segments name, or nil when any segment is `.`, `..` or holds a slash or NUL
    /// once decoded, or when the real path (symlinks followed) leaves the root.
    static func resolve(root: String, segments: [String]) -> String? {
        guard !segments.isEmpty else { return nil }
        var decoded: [String] = []
        for segment in segments {
            guard let name = segment.removingPercentEncoding, !name.isEmpty, name != ".", name != "..",
                  !name.contains("/"), !name.contains("\0") else { return nil }
            decoded.append(name)
        }
        guard let realRoot = realPath(root) else { return nil }
        let candidate = realRoot + "/" + decoded.joined(separator: "/")
        guard let real = realPath(candidate), real.hasPrefix(realRoot + "/") else { return nil }
        return real
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func matches(_ condition: String, _ etag: String) -> Bool {
        condition.split(separator: ",").contains { item in
            let tag = item.trimmingCharacters(in: .whitespaces)
            return tag == "*" || tag == etag || tag == "W/" + etag
        }
    }

    enum RangeResult: Equatable { case none, satisfiable(Int64, Int64), unsatisfiable }

    /// One range of `bytes=a-b`, `bytes=a-` or `bytes=-n`. Several ranges, or a header we do not
    /// understand, get the whole file (RFC 9110 lets a server ignore Range).
    static func parseRange(_ header: String, size: Int64) -> RangeResult {
        let value = header.trimmingCharacters(in: .whitespaces)
        guard value.lowercased().hasPrefix("bytes="), !value.contains(",") else { return .none }
        let spec = value.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .none }
        let first = parts[0].trimmingCharacters(in: .whitespaces), second = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            guard let suffix = Int64(second), suffix >= 0 else { return .none }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .satisfiable(max(size - suffix, 0), size - 1)
        }
        guard let from = Int64(first), from >= 0 else { return .none }
        var to = size - 1
        if !second.isEmpty {
            guard let last = Int64(second), last >= from else { return .none }
            to = min(last, size - 1)
        }
        return from < size ? .satisfiable(from, to) : .unsatisfiable
    }

    static func contentType(_ path: String) -> String {
        switch (path as NSString).pathExtension.lowercased() {
        case "json": return "application/json"
        case "xml": return "application/xml"
        case "txt", "log", "ipxe": return "text/plain; charset=utf-8"
        case "xz": return "application/x-xz"
        default: return "application/octet-stream"
        }
    }

    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}
