import Digests
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix
import Synchronization

/// Images a deployment captures (`captureImage` steps that upload), received in pieces so a
/// dropped connection or a power cut goes on where it stopped:
///
/// 1. `POST /api/v1/deployments/{id}/captures/{name}` announces the file: `{"size": N,
///    "sha256": "<hex>"}`. The answer says how much the server already holds (`offset`): 0 for
///    a new upload, more for one that was interrupted with the same size and SHA-256.
/// 2. `PUT` of the same path sends bytes from `Upload-Offset: K` (which must equal the offset the
///    server holds: 409 with the right one otherwise). Whatever arrives before a connection
///    drops is kept. When the last byte is in, the server computes the SHA-256; only an equal
///    one moves the file into place (renamed over any earlier capture of the same name), so
///    the captures folder holds whole, verified images or nothing.
///
/// Only names a `captureImage` step of the deployment's own sequence uploads are accepted (a
/// `${Variable}` in the step's name matches one file-name word), into
/// `<captures>/<sequence>/<name>`: a deployment token cannot write anywhere else.
extension ImprintServer {
    struct UploadAnnouncement: Decodable {
        var size: UInt64
        var sha256: String
    }

    struct UploadStatus: Encodable {
        /// Bytes the server holds.
        var offset: UInt64
        var size: UInt64
        var complete: Bool
        /// Under the captures folder.
        var path: String
        var sha256: String
    }

    /// Where one upload's pieces and record live, and where it goes when whole.
    struct UploadFiles {
        var folder: String
        var final: String
        var partial: String
        var record: String
        var relative: String
    }

    func captureAnnounce(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        let files = try captureFiles(request, context, deployment)
        return try await announceUpload(files, request, limit: configuration.limits.captureBytes, limitOption: "--max-capture-size",
                                        what: "deployment \(deployment.id): capture")
    }

    /// Step 1 of a resumable upload (a capture, a WIM for the library): the size and SHA-256
    /// announced; answers how much the server holds already.
    func announceUpload(_ files: UploadFiles, _ request: Request, limit: UInt64, limitOption: String, what: String) async throws -> Response {
        var request = request
        let data = try await request.bodyData(limit: 4096)
        let announcement = try decodeBody(UploadAnnouncement.self, from: data)
        let sha256 = announcement.sha256.lowercased()
        guard sha256.count == 64, sha256.allSatisfy(\.isHexDigit) else {
            throw APIError(.unprocessableContent, "sha256 must be 64 hexadecimal digits", field: "sha256")
        }
        guard announcement.size > 0, announcement.size <= limit else {
            throw APIError(.contentTooLarge, "an upload is 1 byte to \(limit) bytes (\(limitOption)); this one is \(announcement.size)",
                           field: "size")
        }
        return try await uploads.exclusive(files.partial) {
            try FileManager.default.createDirectory(atPath: files.folder, withIntermediateDirectories: true)
            let status = { (offset: UInt64, complete: Bool) in
                UploadStatus(offset: offset, size: announcement.size, complete: complete, path: files.relative, sha256: sha256)
            }
            // Announced again after the last answer was lost: the file is in place already.
            if let record = UploadRecord.read(files.record), record.completed, record.matches(announcement.size, sha256),
               Self.fileSize(files.final) == announcement.size {
                return JSON.response(status(announcement.size, true))
            }
            var offset: UInt64 = 0
            if let record = UploadRecord.read(files.record), !record.completed, record.matches(announcement.size, sha256),
               let held = Self.fileSize(files.partial), held <= announcement.size {
                offset = held
            } else {
                unlink(files.partial)
                guard let fd = Self.openPartial(files.partial) else {
                    throw APIError(.internalServerError, "the server cannot create the upload's file")
                }
                Glibc.close(fd)
                try UploadRecord(size: announcement.size, sha256: sha256, completed: false).write(files.record)
            }
            let free = Self.freeBytes(files.folder)
            if let free, free < announcement.size - offset + (64 << 20) {
                throw APIError(.init(code: 507, reasonPhrase: "Insufficient Storage"), "the server has \(free) bytes free; \(announcement.size - offset) more are needed",
                               field: "size")
            }
            logger.info("\(what) \(files.relative) announced (\(announcement.size) bytes, \(offset) held)")
            return JSON.response(status(offset, false))
        }
    }

    func captureData(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        let files = try captureFiles(request, context, deployment)
        return try await receiveUpload(files, request, what: "deployment \(deployment.id): capture")
    }

    /// Step 2 of a resumable upload: bytes from `Upload-Offset`, kept as they arrive; the file
    /// moves into place only whole and with the SHA-256 announced.
    func receiveUpload(_ files: UploadFiles, _ request: Request, what: String) async throws -> Response {
        guard let offsetText = request.headers[.uploadOffset], let offset = UInt64(offsetText) else {
            throw APIError(.badRequest, "Upload-Offset: the byte of the file this body starts at is required", field: "Upload-Offset")
        }
        return try await uploads.exclusive(files.partial) {
            guard let record = UploadRecord.read(files.record), !record.completed, let held = Self.fileSize(files.partial) else {
                throw APIError(.conflict, "no upload of \(files.relative) is under way: announce it first (POST)", field: "name")
            }
            guard offset == held else {
                var error = APIError(.conflict, "the server holds \(held) bytes of \(files.relative); send from there (Upload-Offset: \(held))",
                                     field: "Upload-Offset")
                error.headers[.uploadOffset] = String(held)
                throw error
            }
            let fd = Glibc.open(files.partial, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw APIError(.internalServerError, "the server cannot open the upload's file") }
            defer { Glibc.close(fd) }
            var position = held
            var tooLong = false
            do {
                for try await buffer in request.body {
                    guard position + UInt64(buffer.readableBytes) <= record.size else {
                        tooLong = true
                        break
                    }
                    try buffer.withUnsafeReadableBytes { bytes in
                        var done = 0
                        while done < bytes.count {
                            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(position) + off_t(done))
                            if n < 0 {
                                if errno == EINTR { continue }
                                throw APIError(errno == ENOSPC ? .init(code: 507, reasonPhrase: "Insufficient Storage") : .internalServerError,
                                               "the server could not store the upload: \(String(cString: strerror(errno)))")
                            }
                            done += n
                        }
                    }
                    position += UInt64(buffer.readableBytes)
                }
            } catch {
                // What arrived is kept (a dropped connection resumes after it); the file ends
                // at the last whole write.
                _ = ftruncate(fd, off_t(position))
                logger.info("\(what) \(files.relative) interrupted at \(position) of \(record.size) bytes")
                throw error
            }
            if tooLong {
                _ = ftruncate(fd, off_t(position))
                throw APIError(.contentTooLarge, "the body goes past the announced size of \(record.size) bytes", field: "Upload-Offset")
            }
            guard position == record.size else {
                return JSON.response(UploadStatus(offset: position, size: record.size, complete: false, path: files.relative, sha256: record.sha256))
            }
            guard fsync(fd) == 0 else { throw APIError(.internalServerError, "the server could not store the upload (fsync)") }
            let path = files.partial
            let digest = try await NIOThreadPool.singleton.runIfActive { try Self.sha256(ofFile: path) }
            guard digest == record.sha256 else {
                unlink(files.partial)
                unlink(files.record)
                logger.warning("\(what) \(files.relative) refused: SHA-256 \(digest), announced \(record.sha256)")
                throw APIError(.unprocessableContent, "the file received has SHA-256 \(digest), not the \(record.sha256) announced: "
                               + "it was not kept; announce it again and send it whole", field: "sha256")
            }
            guard rename(files.partial, files.final) == 0 else {
                throw APIError(.internalServerError, "the server could not move the upload into place")
            }
            try UploadRecord(size: record.size, sha256: record.sha256, completed: true).write(files.record)
            Self.syncFolder(files.folder)
            logger.info("\(what) \(files.relative) received whole (\(record.size) bytes, SHA-256 verified)")
            return JSON.response(UploadStatus(offset: record.size, size: record.size, complete: true, path: files.relative, sha256: record.sha256),
                                 status: .created)
        }
    }

    /// The files of the upload the request names, once the name is checked against the
    /// deployment's sequence.
    func captureFiles(_ request: Request, _ context: BasicRequestContext, _ deployment: Deployment) throws -> UploadFiles {
        let name = try request.requiredParameter("name", context)
        guard CaptureNames.isSafeFileName(name) else {
            throw APIError(.unprocessableContent, "\(name.prefix(100).debugDescription) is not a capture file name: letters, digits, "
                           + "'-', '_' and '.', ending in .wim, at most 128 characters", field: "name")
        }
        let allowed = CaptureNames.uploads(inSequence: deployment.sequenceBody)
        guard allowed.contains(where: { CaptureNames.matches(name, pattern: $0) }) else {
            throw APIError(.forbidden, "the sequence of deployment \(deployment.id) uploads no capture named \(name)"
                           + (allowed.isEmpty ? " (it uploads none)" : " (it uploads: \(allowed.joined(separator: ", ")))"), field: "name")
        }
        guard ImprintServer.validName(deployment.sequenceName), !deployment.sequenceName.hasPrefix(".") else {
            throw APIError(.internalServerError, "the deployment's sequence name cannot name a folder")
        }
        let folder = configuration.captureDirectory + "/" + deployment.sequenceName
        let key = deployment.id.filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return UploadFiles(folder: folder, final: folder + "/" + name, partial: folder + "/.\(name).\(key).partial",
                            record: folder + "/.\(name).\(key).json", relative: deployment.sequenceName + "/" + name)
    }

    static func fileSize(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(info.st_size)
    }

    static func openPartial(_ path: String) -> Int32? {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        return fd >= 0 ? fd : nil
    }

    static func freeBytes(_ folder: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(folder, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    static func syncFolder(_ folder: String) {
        let fd = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            Glibc.close(fd)
        }
    }

    static func sha256(ofFile path: String) throws -> String {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw APIError(.internalServerError, "the server cannot read the upload back") }
        defer { Glibc.close(fd) }
        do { return try SHA256Hasher.hex(reading: fd) } catch { throw APIError(.internalServerError, "the server cannot read the upload back") }
    }
}

/// What the server knows of one upload, beside its data: the size and SHA-256 announced, and
/// whether it was received whole.
struct UploadRecord: Codable {
    var size: UInt64
    var sha256: String
    var completed: Bool

    func matches(_ size: UInt64, _ sha256: String) -> Bool { self.size == size && self.sha256 == sha256 }

    static func read(_ path: String) -> UploadRecord? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(UploadRecord.self, from: data)
    }

    /// Beside, then renamed: a record is whole or the earlier one.
    func write(_ path: String) throws {
        let data = try JSONEncoder().encode(self)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data), rename(temporary, path) == 0 else {
            unlink(temporary)
            throw APIError(.internalServerError, "the server cannot record the upload")
        }
    }
}

/// The file names a deployment may upload: those its sequence's `captureImage` steps name.
enum CaptureNames {
    static func isSafeFileName(_ name: String) -> Bool {
        guard (5...128).contains(name.count), name.lowercased().hasSuffix(".wim"), let first = name.unicodeScalars.first,
              CharacterSet.alphanumerics.contains(first), first.isASCII else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)) }
            && !name.contains("..")
    }

    /// Every `upload` of a `captureImage` step, at any depth of groups.
    static func uploads(inSequence body: String) -> [String] {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [] }
        var names: [String] = []
        func walk(_ steps: Any?) {
            for step in steps as? [[String: Any]] ?? [] {
                if step["type"] as? String == "captureImage", let upload = step["upload"] as? String { names.append(upload) }
                walk(step["steps"])
            }
        }
        walk(json["steps"])
        return names
    }

    /// `pattern` literally, except that each `${Variable}` stands for one run of letters,
    /// digits, '-', '_' and '.'.
    static func matches(_ name: String, pattern: String) -> Bool {
        var parts: [String] = []
        var rest = Substring(pattern)
        while let open = rest.range(of: "${"), let close = rest[open.upperBound...].firstIndex(of: "}") {
            parts.append(String(rest[..<open.lowerBound]))
            rest = rest[rest.index(after: close)...]
        }
        parts.append(String(rest))
        if parts.count == 1 { return name == pattern }
        let word = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
        func match(_ text: Substring, _ index: Int) -> Bool {
            let literal = parts[index]
            guard text.hasPrefix(literal) else { return false }
            let after = text.dropFirst(literal.count)
            if index == parts.count - 1 { return after.isEmpty }
            // A variable takes one or more word characters: try each length.
            var end = after.startIndex
            while end < after.endIndex, let scalar = after[end].unicodeScalars.first, after[end].unicodeScalars.count == 1,
                  scalar.isASCII, word.contains(scalar) {
                end = after.index(after: end)
                if match(after[end...], index + 1) { return true }
            }
            return false
        }
        return match(Substring(name), 0)
    }
}

/// One request at a time per upload: a second PUT of the same file while one is under way
/// answers 409 rather than interleave.
final class ResumableUploads: Sendable {
    private let busy = Mutex<Set<String>>([])

    func exclusive<T>(_ key: String, _ body: () async throws -> T) async throws -> T {
        let taken = busy.withLock { $0.insert(key).inserted }
        guard taken else {
            var error = APIError(.conflict, "another request for this upload is under way; ask again shortly")
            error.retryAfter = 2
            throw error
        }
        defer { _ = busy.withLock { $0.remove(key) } }
        return try await body()
    }
}

extension HTTPField.Name {
    /// The byte of the file a capture's PUT body starts at (and, in a 409, the one to send from).
    static let uploadOffset = HTTPField.Name("Upload-Offset")!
}
