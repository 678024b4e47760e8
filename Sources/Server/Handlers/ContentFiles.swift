import Foundation
import Hummingbird
import NIOCore
import NIOPosix

/// Files under a root folder (content, boot files) with what image downloads need: HEAD,
/// Content-Length, ETag and If-None-Match, one byte range (206, 416) for resumed downloads and
/// the agent's Range reads. Nothing outside the root is ever served.
enum ContentFiles {
    /// Large enough that per-chunk overhead is small next to copying, small enough that 20
    /// concurrent readers hold a few tens of MiB at most.
    static let chunkSize = 1 << 20

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

        let reader = try ContentFileReader(path: file)
        let offset = start
        let body = ResponseBody(contentLength: Int(length)) { writer in
            var position = offset, remaining = length
            while remaining > 0 {
                let want = Int(min(Int64(chunkSize), remaining))
                // Disk reads on the thread pool, not on the event loop or Swift's few cooperative
                // threads, straight into the buffer that is sent (no intermediate copy).
                let at = position
                let buffer = try await NIOThreadPool.singleton.runIfActive { try reader.read(want, at: at) }
                if buffer.readableBytes == 0 { break }  // truncated while we sent it: the client sees a short body
                try await writer.write(buffer)
                position += Int64(buffer.readableBytes)
                remaining -= Int64(buffer.readableBytes)
                count?(buffer.readableBytes)
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

/// An open file read with pread (no shared seek position), closed when the last response using
/// it is done.
final class ContentFileReader: Sendable {
    private let descriptor: Int32

    init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw APIError.notFound("file") }
    }

    deinit { close(descriptor) }

    func read(_ count: Int, at offset: Int64) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { bytes -> Int in
            var done = 0
            while done < count {
                let n = pread(descriptor, bytes.baseAddress.map { $0 + done }, count - done, off_t(offset) + off_t(done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    break  // end of file
                } else if errno != EINTR {
                    // A disk error mid-response: the connection is cut, never padded or truncated silently.
                    throw IOError(errnoCode: errno, reason: "pread at \(offset + Int64(done))")
                }
            }
            return done
        }
        return buffer
    }
}
