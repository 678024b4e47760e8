import Foundation
import Glibc
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix

/// Files under a root folder (content, boot files) with what image downloads need: HEAD,
/// Content-Length, ETag and If-None-Match, one byte range (206, 416) for resumed downloads and
/// the agent's Range reads.
///
/// Only the published set is served, the same rule for `--content` and `--boot`: a regular file
/// under the root, readable by others (mode o+r: what `umask 022` gives a copied image, not what
/// a file holding a password gets), reached through no name beginning with `.` (`.env`, `.git/`,
/// `..`), neither in the path as asked (percent-decoded) nor in its real path once symlinks are
/// followed. Anything else, whatever the reason, is the same 404 naming nothing, so a client
/// cannot tell a missing file from a refused one; the server's log says why a real file was refused.
enum ContentFiles {
    /// Large enough that per-chunk overhead is small next to copying, small enough that 20
    /// concurrent readers hold a few tens of MiB at most.
    static let chunkSize = 1 << 20

    /// `relative` are the path's segments as sent (percent-encoded).
    static func serve(root: String, relative: [String], request: Request, logger: Logger, accelRedirect: String? = nil,
                      count: (@Sendable (Int) -> Void)?) async throws -> Response {
        guard let file = resolve(root: root, segments: relative) else { throw APIError.notFound("file") }
        let reader: ContentFileReader
        switch ContentFileReader.open(file) {
        case let .published(opened): reader = opened
        case .missing: throw APIError.notFound("file")
        case let .unpublished(why):
            logger.notice("\(request.uri.path): not served: \(file) \(why)")
            throw APIError.notFound("file")
        }
        if let accelRedirect {
            // nginx sends the file (sendfile, its own ETag and ranges) from its internal
            // location; this answer only says which one, once every check above has passed.
            // The path goes as the client sent it (percent-encoded), which nginx decodes.
            var headers = HTTPFields()
            headers[.xAccelRedirect] = accelRedirect + relative.joined(separator: "/")
            return Response(status: .ok, headers: headers)
        }
        let size = reader.size, modified = reader.modified
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

    /// The real path of the file the segments name, or nil when it is not under the root or a
    /// name on the way begins with `.`: any segment once percent-decoded (`.env`, `%2e%2e`,
    /// `.git`), or holding a slash or NUL; or any component of the real path below the root (a
    /// symlink to a dotfile, to `.git/config`, or out of the root altogether).
    static func resolve(root: String, segments: [String]) -> String? {
        guard !segments.isEmpty else { return nil }
        var decoded: [String] = []
        for segment in segments {
            guard let name = segment.removingPercentEncoding, isPublishedName(name), !name.contains("/"), !name.contains("\0") else {
                return nil
            }
            decoded.append(name)
        }
        guard let realRoot = realPath(root) else { return nil }
        let under = realRoot == "/" ? "/" : realRoot + "/"
        guard let real = realPath(realRoot + "/" + decoded.joined(separator: "/")), real.hasPrefix(under),
              real.dropFirst(under.count).split(separator: "/", omittingEmptySubsequences: false).allSatisfy({ isPublishedName(String($0)) })
        else { return nil }
        return real
    }

    /// Not empty, and not hidden: `.`, `..` and every dotfile and dot-folder are never published.
    static func isPublishedName(_ name: String) -> Bool { !name.isEmpty && !name.hasPrefix(".") }

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
/// it is done. Size, time and mode come from the open descriptor, so what is checked is what is sent.
final class ContentFileReader: Sendable {
    private let descriptor: Int32
    let size: Int64
    let modified: Date

    enum Opened {
        case published(ContentFileReader)
        case missing
        /// A real file the published rule refuses, and why (for the server's log only).
        case unpublished(String)
    }

    /// O_NOFOLLOW: `path` is a real path, so a symlink there now was put in since it was resolved.
    /// O_NONBLOCK: a FIFO someone left in the folder must not hang the request at open.
    static func open(_ path: String) -> Opened {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard descriptor >= 0 else { return .missing }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            close(descriptor)
            return .missing
        }
        // A folder (or a device, a FIFO) is no file to send: as missing, and not worth a log line
        // each time someone asks for one.
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            return .missing
        }
        guard info.st_mode & S_IROTH != 0 else {
            close(descriptor)
            return .unpublished("has mode \(String(info.st_mode & 0o7777, radix: 8)), which does not let others read it: "
                                + "only files readable by all (chmod o+r) are published")
        }
        let modified = Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
        return .published(ContentFileReader(descriptor: descriptor, size: Int64(info.st_size), modified: modified))
    }

    private init(descriptor: Int32, size: Int64, modified: Date) {
        self.descriptor = descriptor
        self.size = size
        self.modified = modified
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

extension HTTPField.Name {
    /// nginx's internal redirect: it serves the named location instead of this answer's body.
    static let xAccelRedirect = HTTPField.Name("X-Accel-Redirect")!
}
