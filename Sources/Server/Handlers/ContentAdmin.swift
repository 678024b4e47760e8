import Digests
import Foundation
import Hummingbird
import NIOCore
import NIOPosix
import SequenceModel
import Synchronization

/// The content folder for the administrator (issue 20): what /content publishes, with sizes,
/// SHA-256s and the sequences naming each file; resumable uploads into it (the same announce
/// and pieces as captures and the library's WIMs, `announceUpload`/`receiveUpload`); deletion.
///
/// Paths are relative to the content folder, `/`-separated; in a URL each part is
/// percent-encoded. A part that is empty, hidden (`.env`, `..`) or holds a NUL or a control
/// character, or a path that leads out of the folder through a link, is refused with 422 naming
/// it. `library/` is the image library's own (its WIMs, its content-addressed files): refused
/// here, with where to go instead.
public enum ContentRoute: Sendable, Hashable {
    case list, uploadAnnounce, uploadData, delete
}

/// A published file as the Content page and `GET /api/v1/admin/content` show it.
struct ContentFileView: Encodable, Sendable {
    var path: String
    var size: Int
    /// ISO 8601, UTC.
    var modified: String
    /// Nil until hashed (in the background, once per size and modification time).
    var sha256: String?
    /// The sequences whose steps name it (`/content/<path>` in any string, `${Variable}` in it
    /// standing for one name).
    var sequences: [ContentReferences.Reference]
}

struct ContentListing: Encodable, Sendable {
    var files: [ContentFileView]
    /// Published files in all (`files` is one page of them).
    var total: Int
    var totalBytes: Int
    /// Files of this page not hashed yet.
    var unhashed: Int
    /// The background hashing of this instance is under way.
    var hashing: Bool
    var page: Int
    var pages: Int
}

/// What a sequence's JSON says of content files: every `/content/...` in its strings.
enum ContentReferences {
    struct Reference: Encodable, Sendable, Equatable {
        var sequence: String
        /// The JSON path of the string (`$.steps[2].source`).
        var path: String
        /// The part after `/content/`, as the sequence writes it (variables and all).
        var reference: String
    }

    /// Characters that end a path inside a string (a command line, a URL with a query).
    private static let terminators: Set<Character> = [" ", "\"", "'", "?", "#", "\n", "\r", "\t", ",", ";", ")", "]", "}", "<", ">", "|"]

    static func find(sequence name: String, body: String) -> [Reference] {
        guard let root = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) else { return [] }
        var found: [Reference] = []
        func walk(_ value: JSONValue, _ path: String) {
            switch value {
            case let .string(text):
                var rest = Substring(text)
                while let range = rest.range(of: "/content/") {
                    let tail = rest[range.upperBound...]
                    let end = tail.firstIndex(where: { terminators.contains($0) }) ?? tail.endIndex
                    let reference = String(tail[..<end])
                    if !reference.isEmpty { found.append(Reference(sequence: name, path: path, reference: reference)) }
                    rest = tail[end...]
                }
            case let .array(items):
                for (index, item) in items.enumerated() { walk(item, "\(path)[\(index)]") }
            case let .object(members):
                for key in members.keys.sorted() { if let member = members[key] { walk(member, "\(path).\(key)") } }
            case .null, .bool, .number:
                return
            }
        }
        walk(root, "$")
        return found
    }

    /// Whether `reference` names `file`: the same path, a folder holding it (a driver folder),
    /// or a path with `${Variable}`s where each stands for one name or part of one.
    static func matches(_ file: String, reference: String) -> Bool {
        let decoded = reference.removingPercentEncoding ?? reference
        if !decoded.contains("${") {
            let folder = decoded.hasSuffix("/") ? decoded : decoded + "/"
            return file == decoded || file.hasPrefix(folder)
        }
        var pattern = "^"
        var rest = Substring(decoded)
        while let open = rest.range(of: "${") {
            pattern += NSRegularExpression.escapedPattern(for: String(rest[..<open.lowerBound]))
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                rest = rest[open.lowerBound...]
                break
            }
            pattern += "[^/]*"
            rest = rest[rest.index(after: close)...]
        }
        pattern += NSRegularExpression.escapedPattern(for: String(rest)) + "(/.*)?$"
        guard let expression = try? NSRegularExpression(pattern: pattern) else { return false }
        return expression.firstMatch(in: file, range: NSRange(file.startIndex..., in: file)) != nil
    }
}

/// This instance's background hashing of content files: one task at a time, one file at a
/// time (`ContentHashing` shares a file's reading with a manifest asking for it), so opening
/// the Content page often never reads a multi-gigabyte image more than once.
final class ContentHashQueue: Sendable {
    private let running = Mutex(false)

    var isRunning: Bool { running.withLock { $0 } }

    /// Hashes `entries` (those without a current hash) unless a hashing is under way; true
    /// when one is (already, or now).
    @discardableResult
    func start(_ entries: [ContentCatalog.Entry], server: ImprintServer) -> Bool {
        guard !entries.isEmpty else { return isRunning }
        let started = running.withLock { busy -> Bool in
            guard !busy else { return false }
            busy = true
            return true
        }
        guard started else { return true }
        Task { [self] in
            defer { running.withLock { $0 = false } }
            for entry in entries {
                do {
                    let digest = try await server.contentHashing.digest(of: entry)
                    try await server.storage.storeContentHash(ContentHash(path: entry.path, size: digest.size, modifiedNanoseconds: digest.modifiedNanoseconds,
                                                                          sha256: digest.sha256, hashed: StoredTime.now()))
                } catch let error as ContentCatalog.HashingError {
                    server.logger.warning("content: \(entry.path) not hashed: \(error.description)")
                } catch {
                    // The database closed (the server stopping) or the thread pool is gone.
                    server.logger.info("content: background hashing stopped: \(error)")
                    return
                }
            }
            await server.contentHashing.forgetRecentView()
        }
        return true
    }
}

extension ImprintServer {
    /// Files listed per page (the Content page and the API's default).
    static let contentPerPage = 500

    /// Where partial uploads into the content folder wait: hidden, never published or listed.
    var contentUploadDirectory: String { configuration.contentDirectory + "/.uploads" }

    /// A relative path an administrator gives for a file of the content folder (percent-decoded
    /// already), checked part by part. Not required to exist.
    static func checkedContentPath(_ relative: String, field: String = "path") throws(APIError) -> String {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !relative.isEmpty, relative.utf8.count <= 1024 else {
            throw APIError(.unprocessableContent, "a content path is 1 to 1024 bytes, relative to the content folder, such as images/install.wim", field: field)
        }
        for part in parts {
            guard ContentFiles.isPublishedName(part), part.utf8.count <= 255,
                  !part.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw APIError(.unprocessableContent, "\(relative.debugDescription) is not a path inside the content folder: "
                               + "each part must be a name (not empty, not beginning with '.', so no '..', at most 255 bytes, no control characters)",
                               field: field)
            }
        }
        if parts.first == "library" {
            throw APIError(.unprocessableContent, "library/ holds the image library's files: upload a WIM on the Images page "
                           + "(or POST /api/v1/admin/library/uploads/NAME), delete versions and WIMs there", field: field)
        }
        return parts.joined(separator: "/")
    }

    /// The content path a request's URL names after `prefix` (each part percent-decoded).
    static func contentPath(from request: Request, after prefix: String) throws(APIError) -> String {
        let path = request.uri.path
        guard path.hasPrefix(prefix) else { throw APIError(.unprocessableContent, "the URL names no file under the content folder", field: "path") }
        var parts: [String] = []
        for segment in path.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false) {
            guard let decoded = segment.removingPercentEncoding else {
                throw APIError(.badRequest, "the path is not valid percent-encoding", field: "path")
            }
            parts.append(decoded)
        }
        return try checkedContentPath(parts.joined(separator: "/"))
    }

    /// The folder that holds `relative` (created when `create`), checked to be inside the
    /// content folder once its links are followed; with the file's name.
    func contentParent(_ relative: String, create: Bool) throws(APIError) -> (folder: String, name: String) {
        let root = configuration.contentDirectory
        let parts = relative.split(separator: "/").map(String.init)
        guard let name = parts.last else { throw APIError(.unprocessableContent, "no file named", field: "path") }
        let parent = ([root] + parts.dropLast()).joined(separator: "/")
        if create {
            do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
                throw APIError(.unprocessableContent, "\(relative): its folder cannot be made (\(parts.dropLast().joined(separator: "/")) "
                               + "is a file, or not writable)", field: "path")
            }
        }
        guard let realRoot = ContentFiles.realPath(root), let realParent = ContentFiles.realPath(parent) else {
            throw APIError.notFound("content file \(relative)")
        }
        guard realParent == realRoot || realParent.hasPrefix(realRoot + "/") else {
            throw APIError(.unprocessableContent, "\(relative) leads out of the content folder (through a link)", field: "path")
        }
        return (realParent, name)
    }

    func contentAdmin(_ route: ContentRoute, _ request: Request, _ context: BasicRequestContext, prefix: String) async throws -> Response {
        switch route {
        case .list:
            let page = try Self.pageNumber(request)
            return JSON.response(try await contentListing(page: page))
        case .uploadAnnounce, .uploadData:
            return try await contentUpload(route, request, path: try Self.contentPath(from: request, after: prefix))
        case .delete:
            return JSON.response(try await deleteContent(try Self.contentPath(from: request, after: prefix)))
        }
    }

    /// One page of the published files, with what is known of their SHA-256s (the rest hashed
    /// in the background) and the sequences naming them.
    func contentListing(page: Int) async throws -> ContentListing {
        let root = configuration.contentDirectory
        let scanned = try await NIOThreadPool.singleton.runIfActive { ContentCatalog.scan(root: root) }
        let known = try await storage.contentHashes()
        let references = try await storage.sequences().flatMap { ContentReferences.find(sequence: $0.name, body: $0.body) }
        let perPage = Self.contentPerPage
        let shown = scanned.dropFirst((page - 1) * perPage).prefix(perPage)
        var unhashed: [ContentCatalog.Entry] = []
        let files = shown.map { entry -> ContentFileView in
            var sha256: String?
            if let hash = known[entry.path], hash.size == entry.size, hash.modifiedNanoseconds == entry.modifiedNanoseconds {
                sha256 = hash.sha256
            } else {
                unhashed.append(entry)
            }
            let modified = Date(timeIntervalSince1970: Double(entry.modifiedNanoseconds) / 1e9)
            return ContentFileView(path: entry.path, size: entry.size, modified: StoredTime.format.format(modified), sha256: sha256,
                                   sequences: references.filter { ContentReferences.matches(entry.path, reference: $0.reference) })
        }
        let hashing = contentHashQueue.start(unhashed, server: self)
        return ContentListing(files: files, total: scanned.count, totalBytes: scanned.reduce(0) { $0 + $1.size }, unhashed: unhashed.count,
                              hashing: hashing, page: page, pages: max(1, (scanned.count + perPage - 1) / perPage))
    }

    /// The upload's files: the file in place at the end, its pieces and record meanwhile under
    /// `.uploads` (named by the path's SHA-256: one flat hidden folder whatever the depth).
    func contentUploadFiles(_ relative: String) throws -> UploadFiles {
        let (folder, name) = try contentParent(relative, create: true)
        var info = stat()
        if stat(folder + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw APIError(.conflict, "\(relative) is a folder: a file cannot take its place", field: "path")
        }
        try FileManager.default.createDirectory(atPath: contentUploadDirectory, withIntermediateDirectories: true)
        let key = SHA256Hasher.hex(of: Array(relative.utf8))
        return UploadFiles(folder: folder, final: folder + "/" + name, partial: contentUploadDirectory + "/\(key).upload",
                           record: contentUploadDirectory + "/\(key).upload.json", relative: relative)
    }

    private func contentUpload(_ route: ContentRoute, _ request: Request, path: String) async throws -> Response {
        let files = try contentUploadFiles(path)
        if route == .uploadAnnounce {
            return try await announceUpload(files, request, limit: configuration.limits.captureBytes, limitOption: "--max-capture-size",
                                            what: "content upload")
        }
        let response = try await receiveUpload(files, request, what: "content upload")
        guard response.status == .created else {
            // A piece, not the end: the audit log records the file once, when it is in place.
            AuditNote.current?.skip()
            return response
        }
        // Verified against the SHA-256 announced: kept, so the file is not read again to list it.
        var info = stat()
        if stat(files.final, &info) == 0, let record = UploadRecord.read(files.record) {
            try await storage.storeContentHash(ContentHash(path: path, size: Int(info.st_size), modifiedNanoseconds: ContentCatalog.nanoseconds(info.st_mtim),
                                                           sha256: record.sha256, hashed: StoredTime.now()))
        }
        await contentHashing.forgetRecentView()
        return response
    }

    struct DeletedContent: Encodable {
        var path: String
        var size: Int
        var sha256: String?
    }

    /// Removes one file (a link: the link, never what it points at); never a folder.
    func deleteContent(_ relative: String) async throws -> DeletedContent {
        let (folder, name) = try contentParent(relative, create: false)
        let file = folder + "/" + name
        var info = stat()
        guard lstat(file, &info) == 0 else { throw APIError.notFound("content file \(relative)") }
        switch info.st_mode & S_IFMT {
        case S_IFREG, S_IFLNK: break
        case S_IFDIR: throw APIError(.unprocessableContent, "\(relative) is a folder: only files are deleted here", field: "path")
        default: throw APIError(.unprocessableContent, "\(relative) is not a regular file", field: "path")
        }
        let hash = try await storage.contentHash(path: relative)
        guard unlink(file) == 0 else {
            throw APIError(.internalServerError, "\(relative) could not be deleted: \(String(cString: strerror(errno)))")
        }
        try await storage.deleteContentHashes(paths: [relative])
        await contentHashing.forgetRecentView()
        logger.info("content: \(relative) deleted (\(info.st_size) bytes) by \(Principal.current?.name ?? "?")")
        return DeletedContent(path: relative, size: Int(info.st_size), sha256: hash?.sha256)
    }

    /// A content file as the audit log keeps it: path, size, SHA-256 when known; nil when
    /// there is none.
    func contentAuditSnapshot(_ relative: String) async throws -> JSONValue? {
        guard let (folder, name) = try? contentParent(relative, create: false) else { return nil }
        var info = stat()
        guard stat(folder + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        let hash = try await storage.contentHash(path: relative)
        let current = hash.map { $0.size == Int(info.st_size) && $0.modifiedNanoseconds == ContentCatalog.nanoseconds(info.st_mtim) } ?? false
        var object: [String: JSONValue] = ["path": .string(relative), "size": .number(Double(info.st_size))]
        if current, let hash { object["sha256"] = .string(hash.sha256) }
        return .object(object)
    }
}
