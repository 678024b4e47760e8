import Foundation
import Hummingbird
import SequenceModel

/// The image library's admin API (behind the admin token, as every admin route): uploads of
/// WIMs (resumable, as captures are), import, extract, service, retire and delete. The work is
/// done by `LibraryJobs`; these answer 202 with the job to follow.
public enum LibraryRoute: Sendable, Hashable {
    case overview, uploadAnnounce, uploadData, importWIM, wim, deleteWIM
    case extract, image, service, retire, deleteVersion, jobs, job
}

extension ImprintServer {
    /// Partial uploads and jobs' unfinished output: under the content folder (one filesystem,
    /// so moving a finished file into place is a rename) but hidden, never published.
    var libraryWorkDirectory: String { configuration.contentDirectory + "/library/.work" }

    /// How the library's jobs name this server instance: the same across its restarts (an id
    /// kept in its data folder), distinct between instances sharing a database (each has its
    /// own data folder), with the host for people reading it.
    var instanceName: String {
        var name = [CChar](repeating: 0, count: 256)
        let host = gethostname(&name, name.count) == 0 ? String(cString: name) : "localhost"
        let file = configuration.dataDirectory + "/instance-id"
        if let kept = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !kept.isEmpty {
            return "\(host)/\(kept)"
        }
        let made = String(UUID().uuidString.prefix(8)).lowercased()
        // Beside, then renamed: two first calls at once keep one of the two, whole.
        let temporary = file + ".\(made)"
        if FileManager.default.createFile(atPath: temporary, contents: Data(made.utf8)) { _ = rename(temporary, file) }
        let kept = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return "\(host)/\(kept ?? made)"
    }
    /// Uploads under way: kept across restarts (an upload goes on where it stopped), unlike
    /// the jobs' work folder.
    var libraryUploadDirectory: String { configuration.contentDirectory + "/library/.uploads" }

    /// A path an administrator gives under the content folder, checked: relative, no hidden or
    /// `..` component, and still inside the folder once its links are followed.
    func contentPath(_ relative: String, field: String) throws -> String {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !relative.isEmpty, !relative.hasPrefix("/"), parts.allSatisfy({ ContentFiles.isPublishedName(String($0)) }) else {
            throw LibraryError.badRequest(field: field, reason: "\(relative.debugDescription) is not a path under the content folder "
                                          + "(relative, no empty, hidden or '..' part)")
        }
        let root = configuration.contentDirectory
        let path = root + "/" + relative
        guard let real = realpath(path, nil) else {
            throw LibraryError.badRequest(field: field, reason: "\(relative): no such file under the content folder")
        }
        defer { free(real) }
        let resolved = String(cString: real)
        var realRoot = root
        if let resolvedRoot = realpath(root, nil) {
            realRoot = String(cString: resolvedRoot)
            free(resolvedRoot)
        }
        guard resolved.hasPrefix(realRoot + "/") else {
            throw LibraryError.badRequest(field: field, reason: "\(relative) leads out of the content folder")
        }
        return resolved
    }

    /// A library image's name from the path, where its spaces come as %20 (the router leaves
    /// percent-escapes as they are).
    static func imageName(_ request: Request, _ context: BasicRequestContext) throws -> String {
        let raw = try request.requiredParameter("name", context)
        guard let name = raw.removingPercentEncoding else {
            throw APIError(.badRequest, "the image's name in the path is not valid percent-encoding", field: "name")
        }
        return name
    }

    static func validLibraryName(_ name: String) -> Bool {
        (1...100).contains(name.count) && name.first != " " && name.last != " "
            && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || " -_.()".unicodeScalars.contains($0)) }
    }

    func library(_ route: LibraryRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        do {
            return try await libraryRoute(route, request, context)
        } catch let error as LibraryError {
            if case let .badRequest(field, _) = error { throw APIError(.unprocessableContent, error.description, field: field) }
            throw APIError(.unprocessableContent, error.description)
        }
    }

    private func libraryRoute(_ route: LibraryRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        switch route {
        case .overview:
            return JSON.response(try await libraryOverview())

        case .uploadAnnounce, .uploadData:
            let name = try request.requiredParameter("name", context)
            let lowered = name.lowercased()
            let asWIM = lowered.hasSuffix(".swm") || lowered.hasSuffix(".esd") ? String(name.dropLast(4)) + ".wim" : name
            guard CaptureNames.isSafeFileName(asWIM) else {
                throw APIError(.unprocessableContent, "\(name.prefix(100).debugDescription) is not a WIM file name: letters, digits, '-', '_' and '.', "
                               + "ending in .wim, .esd or .swm, at most 128 characters", field: "name")
            }
            // An imported WIM's file is what its record describes: not replaced under it.
            if try await storage.libraryWIMs().contains(where: { $0.file == "library/wims/" + name }) {
                throw APIError(.conflict, "library/wims/\(name) is imported already: forget it first (DELETE its WIM) or upload under another name", field: "name")
            }
            let folder = configuration.contentDirectory + "/library/wims"
            try FileManager.default.createDirectory(atPath: libraryUploadDirectory, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let files = UploadFiles(folder: folder, final: folder + "/" + name, partial: libraryUploadDirectory + "/\(name).upload",
                                    record: libraryUploadDirectory + "/\(name).upload.json", relative: "library/wims/" + name)
            if route == .uploadAnnounce {
                return try await announceUpload(files, request, limit: configuration.limits.captureBytes, limitOption: "--max-capture-size",
                                                what: "library upload")
            }
            return try await receiveUpload(files, request, what: "library upload")

        case .importWIM:
            let body = try decodeBody(LibraryImportRequest.self, from: try await request.bodyData(limit: 64 << 10))
            _ = try contentPath(body.file, field: "file")
            for (index, part) in (body.parts ?? []).enumerated() { _ = try contentPath(part, field: "parts[\(index)]") }
            if try await storage.libraryWIMs().contains(where: { $0.file == body.file }) {
                throw APIError(.conflict, "\(body.file) is imported already", field: "file")
            }
            return try await queueJob(.import, body)

        case .wim:
            let id = try request.requiredParameter("id", context)
            guard let wim = try await storage.libraryWIM(id: id) else { throw APIError.notFound("imported WIM \(id)") }
            return JSON.response(wim)

        case .deleteWIM:
            let id = try request.requiredParameter("id", context)
            guard let wim = try await storage.libraryWIM(id: id), try await storage.deleteLibraryWIM(id: id) else {
                throw APIError.notFound("imported WIM \(id)")
            }
            // An uploaded file goes with its record; one registered from elsewhere in the content stays.
            if wim.file.hasPrefix("library/wims/") { unlink(configuration.contentDirectory + "/" + wim.file) }
            return JSON.response(wim)

        case .extract:
            let body = try decodeBody(LibraryExtractRequest.self, from: try await request.bodyData(limit: 64 << 10))
            guard Self.validLibraryName(body.image) else {
                throw APIError(.unprocessableContent, "a library image's name is 1 to 100 letters, digits, spaces, '-', '_', '.', '(' and ')'", field: "image")
            }
            guard let wim = try await storage.libraryWIM(id: body.wim) else {
                throw APIError(.unprocessableContent, "no imported WIM has the id \(body.wim)", field: "wim")
            }
            if let number = Int(body.index) {
                guard wim.images.contains(where: { $0.index == number }) else {
                    throw APIError(.unprocessableContent, "\(wim.file) has images 1 to \(wim.images.count), not \(number)", field: "index")
                }
            } else if !wim.images.contains(where: { $0.name?.lowercased() == body.index.lowercased() }) {
                throw APIError(.unprocessableContent, "\(wim.file) has no image named \"\(body.index)\"", field: "index")
            }
            _ = try LibraryJobs.layout(body.compress, solid: body.solid, pipable: body.pipable)
            return try await queueJob(.extract, body)

        case .image:
            return JSON.response(try await libraryImageDetail(name: try Self.imageName(request, context)))

        case .service:
            let (image, version) = try await libraryVersion(request, context)
            struct Changes: Decodable {
                var drivers: [String]?
                var files: [LibraryWork.Servicing.FileAddition]?
                var delete: [String]?
            }
            let changes = try decodeBody(Changes.self, from: try await request.bodyData(limit: 256 << 10))
            let body = LibraryServiceRequest(image: image.name, version: version.version, drivers: changes.drivers, files: changes.files, delete: changes.delete)
            for (index, folder) in (body.drivers ?? []).enumerated() { _ = try LibraryWork.driverPackages(in: try contentPath(folder, field: "drivers[\(index)]")) }
            for (index, file) in (body.files ?? []).enumerated() {
                _ = try contentPath(file.source, field: "files[\(index)].source")
                guard file.destination.hasPrefix("/"), !file.destination.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
                    throw APIError(.unprocessableContent, "a destination is a path in the image from its root, such as /Windows/Setup/Scripts/SetupComplete.cmd",
                                   field: "files[\(index)].destination")
                }
            }
            for (index, path) in (body.delete ?? []).enumerated() where !path.hasPrefix("/") || path == "/" {
                throw APIError(.unprocessableContent, "a path to delete is a file or folder of the image from its root, not the root", field: "delete[\(index)]")
            }
            guard !(body.drivers ?? []).isEmpty || !(body.files ?? []).isEmpty || !(body.delete ?? []).isEmpty else {
                throw APIError(.unprocessableContent, "a servicing adds drivers or files, or deletes files: this one does nothing", field: "drivers")
            }
            return try await queueJob(.service, body)

        case .retire:
            let (image, version) = try await libraryVersion(request, context)
            if let blocker = try await versionBlocker(image, version, deleting: false) { throw APIError(.conflict, blocker) }
            guard let retired = try await storage.setLibraryVersionState(image: image.name, version: version.version, state: .retired) else {
                throw APIError.notFound("version \(version.version) of \"\(image.name)\"")
            }
            logger.info("library: \(image.name) version \(version.version) retired")
            return JSON.response(retired)

        case .deleteVersion:
            let (image, version) = try await libraryVersion(request, context)
            if let blocker = try await versionBlocker(image, version, deleting: true) { throw APIError(.conflict, blocker) }
            guard let sharing = try await storage.deleteLibraryVersion(image: image.name, version: version.version) else {
                throw APIError.notFound("version \(version.version) of \"\(image.name)\"")
            }
            // Files are content-addressed: one another version still names stays.
            if sharing == 0 { unlink(configuration.contentDirectory + "/" + version.file) }
            logger.info("library: \(image.name) version \(version.version) deleted\(sharing == 0 ? " with its file" : "")")
            return JSON.response(version)

        case .jobs:
            struct List: Encodable { var jobs: [LibraryJob] }
            return JSON.response(List(jobs: try await storage.libraryJobs(limit: 200)))

        case .job:
            let id = try request.requiredParameter("id", context)
            guard let job = try await storage.libraryJob(id: id) else { throw APIError.notFound("library job \(id)") }
            return JSON.response(job)
        }
    }

    /// What `GET /api/v1/admin/library` answers and the dashboard's Images page shows.
    struct LibraryOverview: Encodable {
        var images: [ImageSummary]
        var wims: [LibraryWIM]
        /// The newest 50.
        var jobs: [LibraryJob]
    }

    /// Each sequence's library references, its JSON read once (not once per image).
    static func libraryReferences(in sequences: [StoredSequence]) -> [(sequence: String, reference: LibraryReferences.Reference)] {
        sequences.flatMap { sequence in LibraryReferences.find(inSequence: sequence.body).map { (sequence.name, $0) } }
    }

    func libraryOverview() async throws -> LibraryOverview {
        let references = Self.libraryReferences(in: try await storage.sequences())
        let images = try await storage.libraryImages().map { ImageSummary($0, references: references) }
        return LibraryOverview(images: images, wims: try await storage.libraryWIMs(), jobs: try await storage.libraryJobs(limit: 50))
    }

    /// What `GET /api/v1/admin/library/images/{name}` answers and the image's dashboard page shows.
    struct LibraryImageDetail: Encodable {
        var image: ImageSummary
        /// The deployments that applied one of its versions (which machine got which).
        var deployments: [LibraryUse]
    }

    func libraryImageDetail(name: String) async throws -> LibraryImageDetail {
        guard let image = try await storage.libraryImage(name: name) else { throw APIError.notFound("library image \"\(name)\"") }
        return LibraryImageDetail(image: ImageSummary(image, references: Self.libraryReferences(in: try await storage.sequences())),
                                  deployments: try await storage.libraryUses(image: name, version: nil))
    }

    private func queueJob<T: Encodable>(_ kind: LibraryJob.Kind, _ request: T) async throws -> Response {
        let now = StoredTime.now()
        let job = LibraryJob(id: UUID().uuidString.lowercased(), kind: kind, state: .queued, request: try StoredJSON.text(request),
                             percent: nil, message: "queued", log: [now + " queued"], result: nil, created: now)
        try await storage.createLibraryJob(job)
        libraryJobs.queued()
        logger.info("library job \(job.id) (\(kind.rawValue)) queued")
        return JSON.response(job, status: .accepted)
    }

    private func libraryVersion(_ request: Request, _ context: BasicRequestContext) async throws -> (LibraryImage, LibraryVersion) {
        let name = try Self.imageName(request, context)
        let text = try request.requiredParameter("version", context)
        guard let number = Int(text) else { throw APIError(.badRequest, "a version is a number, not \"\(text)\"", field: "version") }
        guard let image = try await storage.libraryImage(name: name), let version = image.versions.first(where: { $0.version == number }) else {
            throw APIError.notFound("version \(number) of library image \"\(name)\"")
        }
        return (image, version)
    }

    /// Why a version may not be retired or deleted now, or nil: a sequence names it (by number,
    /// or by "latest" when it is the last one ready), or a running deployment is applying it.
    func versionBlocker(_ image: LibraryImage, _ version: LibraryVersion, deleting: Bool) async throws -> String? {
        let lastReady = image.versions.filter { $0.state == .ready }.map(\.version) == [version.version]
        for sequence in try await storage.sequences() {
            for reference in LibraryReferences.find(inSequence: sequence.body) where reference.image == image.name {
                if deleting && reference.version == version.version {
                    return "sequence \"\(sequence.name)\" names version \(version.version) of \"\(image.name)\" (\(reference.path)): change it first"
                }
                if reference.version == nil && lastReady && version.state == .ready {
                    return "sequence \"\(sequence.name)\" deploys the latest \"\(image.name)\" (\(reference.path)), and version \(version.version) is the only one ready"
                }
            }
        }
        let active = try await storage.libraryUses(image: image.name, version: version.version).filter { $0.state == "assigned" || $0.state == "running" }
        if let use = active.first {
            return "deployment \(use.deploymentID) (machine \(use.machineID)) is applying version \(version.version) of \"\(image.name)\""
                + (active.count > 1 ? " (and \(active.count - 1) more)" : "") + ": wait until it ends"
        }
        return nil
    }

    /// The library images by name, for resolving sequences.
    func libraryImagesByName() async throws -> [String: LibraryImage] {
        Dictionary(try await storage.libraryImages().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }
}

/// A library image as the admin API and the dashboard show it: its versions, and the sequences
/// naming it.
struct ImageSummary: Encodable {
    var name: String
    var description: String?
    var created: String
    var latest: Int?
    var versions: [LibraryVersion]
    var sequences: [SequenceUse]
    /// Bytes on disk for all its versions (a file two versions share counted once).
    var diskBytes: UInt64

    struct SequenceUse: Encodable {
        var sequence: String
        /// Nil: "latest".
        var version: Int?
    }

    init(_ image: LibraryImage, references: [(sequence: String, reference: LibraryReferences.Reference)]) {
        name = image.name
        description = image.description
        created = image.created
        latest = image.latest?.version
        versions = image.versions
        sequences = references.filter { $0.reference.image == image.name }.map { SequenceUse(sequence: $0.sequence, version: $0.reference.version) }
        var seen = Set<String>()
        diskBytes = image.versions.reduce(0) { seen.insert($1.file).inserted ? $0 + $1.size : $0 }
    }
}
