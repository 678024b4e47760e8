import Digests
import Foundation
import Glibc
import Hummingbird
import NIOPosix
import SequenceModel

/// The distribution points' routes: the administrator's list, create/update and delete (admin
/// token), and the points' own manifest and status (each point's own token).
public enum DistributionPointRoute: Sendable, Hashable {
    case list, put, delete
    case manifest, status

    /// The administrator's routes; the others authenticate the point itself.
    var isAdmin: Bool {
        switch self {
        case .list, .put, .delete: return true
        case .manifest, .status: return false
        }
    }
}

/// A distribution point is a plain HTTP server (nginx) near the machines, serving a copy of the
/// content folder under its base URL exactly as `/content/` does. `imprint dp sync`, on the
/// point's host, fetches the manifest (every published file with its size and SHA-256), moves
/// only what is missing or changed, and reports what it holds. A machine whose check-in matches
/// a point's rules gets the base URLs of the matching points that are in sync, in priority
/// order (`CheckInAnswer.Assigned.contentSources`).
extension ImprintServer {
    func distributionPoints(_ route: DistributionPointRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        switch route {
        case .list:
            let manifest = try await contentManifest(hashing: false)
            let points = try await storage.distributionPoints()
            struct List: Encodable {
                var content: ContentSummary
                var points: [PointView]
                var notes: [String]
            }
            return JSON.response(List(content: ContentSummary(manifest), points: points.map { PointView($0, current: manifest) },
                                      notes: []))

        case .put:
            let name = try request.requiredParameter("name", context)
            guard Self.validName(name) else {
                throw APIError(.unprocessableContent, "a distribution point's name is letters, digits, '-', '_' and '.'", field: "name")
            }
            let body = try decodeBody(PointRequest.self, from: try await request.bodyData(limit: 256 << 10))
            let settings = try Self.validated(body, name: name)
            let token = Tokens.make()
            let replace = body.newToken ?? false
            let saved: (point: DistributionPoint, created: Bool)
            do {
                saved = try await storage.putDistributionPoint(settings, tokenHash: Tokens.hash(token), replaceToken: replace)
            } catch let conflict as DistributionPointConflict {
                throw APIError(.conflict, conflict.description)
            }
            // The token leaves the server once: when the point is made, or when a new one is asked for.
            let issued = saved.created || replace
            logger.info("distribution point \(name) \(saved.created ? "created" : "updated")\(replace && !saved.created ? " with a new token" : ""): \(settings.url)")
            let manifest = try await contentManifest(hashing: false)
            struct Saved: Encodable {
                var point: PointView
                var token: String?
                var warnings: [String]
            }
            return JSON.response(Saved(point: PointView(saved.point, current: manifest), token: issued ? token : nil,
                                       warnings: []),
                                 status: saved.created ? .created : .ok)

        case .delete:
            let name = try request.requiredParameter("name", context)
            guard try await storage.deleteDistributionPoint(name: name) else { throw APIError.notFound("distribution point \"\(name)\"") }
            logger.info("distribution point \(name) deleted")
            struct Deleted: Encodable { var deleted: String }
            return JSON.response(Deleted(deleted: name))

        case .manifest:
            let point = try await authorizePoint(request)
            let manifest = try await contentManifest(hashing: true)
            var files: [ManifestBody.File] = []
            files.reserveCapacity(manifest.files.count)
            for file in manifest.files {
                // `hashing: true` hashes every file or throws.
                guard let sha256 = file.sha256 else { throw APIError(.serviceUnavailable, "\(file.path) could not be hashed; ask again") }
                files.append(.init(path: file.path, size: file.size, sha256: sha256))
            }
            logger.info("distribution point \(point.name): manifest of \(files.count) files sent")
            return JSON.response(ManifestBody(generated: StoredTime.now(), version: manifest.version ?? "", totalBytes: manifest.totalBytes,
                                              files: files))

        case .status:
            let point = try await authorizePoint(request)
            let report = try decodeBody(StatusReport.self, from: try await request.bodyData(limit: Self.statusBodyLimit))
            let status = try Self.validated(report)
            guard try await storage.storeDistributionStatus(name: point.name, status, heldVersion: ContentManifest.version(of: status.files)) else {
                throw APIError.notFound("distribution point \"\(point.name)\"")
            }
            let sync = DistributionSync(held: status.files, current: try await contentManifest(hashing: false))
            let errors = status.errors.isEmpty ? "" : ", \(status.errors.count) errors: \(status.errors.first ?? "")"
            logger.info("distribution point \(point.name): holds \(status.files.count) files, \(sync.inSync ? "in sync" : "not in sync")\(errors)")
            return JSON.response(sync)
        }
    }

    /// A status lists every file a point holds: 100 000 files take about 10 MiB of JSON.
    static let statusBodyLimit = 64 << 20

    /// The point whose token the request carries: 401 without one, 403 when no point has it.
    func authorizePoint(_ request: Request) async throws -> DistributionPoint {
        guard let token = request.bearerToken else {
            var error = APIError(.unauthorized, "a distribution point sends Authorization: Bearer <the token it was given at creation>",
                                 field: "Authorization")
            error.headers[.wwwAuthenticate] = "Bearer"
            throw error
        }
        // Looked up by the token's SHA-256: the database compares hashes of random tokens, so how
        // long it takes tells nothing about any token.
        guard let point = try await storage.distributionPoint(tokenHash: Tokens.hash(token)) else {
            throw APIError(.forbidden, "no distribution point has this token (the point was deleted, or given a new token): "
                           + "an administrator gives it one with PUT /api/v1/admin/distribution-points/NAME and \"newToken\": true",
                           field: "Authorization")
        }
        return point
    }

    // MARK: - Requests and answers

    struct PointRequest: Decodable {
        var url: String
        var subnets: [String]?
        var gateways: [String]?
        var priority: Int?
        /// Replaces the point's token (the answer shows the new one once).
        var newToken: Bool?
    }

    static func validated(_ body: PointRequest, name: String) throws -> DistributionPointSettings {
        let url = body.url.trimmingCharacters(in: .whitespaces)
        guard url.count <= 2000, !url.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7f }),
              let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty else {
            throw APIError(.unprocessableContent, "the url must be an http:// or https:// URL such as http://dp1.example.org/content/", field: "url")
        }
        guard components.user == nil, components.password == nil, components.query == nil, components.fragment == nil else {
            throw APIError(.unprocessableContent, "the url must carry no user, password, query or fragment: agents append file paths to it",
                           field: "url")
        }
        guard url.hasSuffix("/") else {
            throw APIError(.unprocessableContent, "the url must end with \"/\": it is the folder that mirrors /content/ (agents append "
                           + "images/x.wim to it)", field: "url")
        }
        let subnetTexts = body.subnets ?? [], gatewayTexts = body.gateways ?? []
        guard subnetTexts.count <= 256, gatewayTexts.count <= 256 else {
            throw APIError(.unprocessableContent, "at most 256 subnets and 256 gateways", field: subnetTexts.count > 256 ? "subnets" : "gateways")
        }
        var subnets: [String] = []
        for (index, text) in subnetTexts.enumerated() {
            do { subnets.append(try IPSubnet(parsing: text).description) } catch {
                throw APIError(.unprocessableContent, error.message, field: "subnets[\(index)]", index: index)
            }
        }
        var gateways: [String] = []
        for (index, text) in gatewayTexts.enumerated() {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            guard IPSubnet.bytes(trimmed) != nil, !trimmed.contains("/") else {
                throw APIError(.unprocessableContent, "\"\(text)\" is not an IP address (a default gateway such as 10.1.0.1)",
                               field: "gateways[\(index)]", index: index)
            }
            gateways.append(trimmed)
        }
        guard !subnets.isEmpty || !gateways.isEmpty else {
            throw APIError(.unprocessableContent, "name the machines that use this point: subnets (such as 10.1.0.0/16, matched against "
                           + "the address a check-in comes from) and/or gateways", field: "subnets")
        }
        let priority = body.priority ?? 100
        guard (0...1_000_000).contains(priority) else {
            throw APIError(.unprocessableContent, "priority is 0 to 1000000 (lower first)", field: "priority")
        }
        return DistributionPointSettings(name: name, url: url, subnets: subnets, gateways: gateways, priority: priority)
    }

    /// What `imprint dp sync` sends after each sync.
    struct StatusReport: Decodable {
        /// Path under the point's root → SHA-256: what it holds now.
        var files: [String: String]
        var complete: Bool?
        var errors: [String]?
        var summary: String?
    }

    static func validated(_ report: StatusReport) throws -> DistributionPointStatus {
        for (path, sha256) in report.files {
            guard path.utf8.count <= 4096, !path.isEmpty, !path.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw APIError(.unprocessableContent, "\(path.prefix(100).debugDescription) is not a file path", field: "files")
            }
            guard sha256.utf8.count == 64, sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw APIError(.unprocessableContent, "the SHA-256 of \(path.prefix(200).debugDescription) is not 64 lower-case hex digits",
                               field: "files")
            }
        }
        // What the point says is shown on the dashboard: bounded, one line each.
        let errors = (report.errors ?? []).prefix(100).map { DashboardTimeline.clipped($0, to: 1000) }
        return DistributionPointStatus(files: report.files, reported: StoredTime.now(), complete: report.complete ?? errors.isEmpty,
                                       errors: Array(errors), summary: report.summary.map { DashboardTimeline.clipped($0, to: 500) })
    }

    struct ManifestBody: Encodable {
        struct File: Encodable {
            var path: String
            var size: Int
            var sha256: String
        }
        var generated: String
        /// The SHA-256 of every path and SHA-256 (`ContentManifest.version`): the content's version.
        var version: String
        var totalBytes: Int
        var files: [File]
    }

    struct ContentSummary: Encodable {
        var files: Int
        var totalBytes: Int
        /// Nil while a changed file waits to be hashed (at the next manifest a point asks for).
        var version: String?
        var unhashed: Int

        init(_ manifest: ContentManifest) {
            files = manifest.files.count
            totalBytes = manifest.totalBytes
            version = manifest.version
            unhashed = manifest.unhashed
        }
    }

    /// A point as the admin API shows it: never its token's hash, and its files counted, not listed.
    struct PointView: Encodable {
        struct Status: Encodable {
            var reported: String
            var complete: Bool
            var errors: [String]
            var summary: String?
            var files: Int
        }
        var name: String
        var url: String
        var subnets: [String]
        var gateways: [String]
        var priority: Int
        var created: String
        var updated: String
        var status: Status?
        var sync: DistributionSync

        init(_ point: DistributionPoint, current: ContentManifest) {
            name = point.name; url = point.settings.url; subnets = point.settings.subnets; gateways = point.settings.gateways
            priority = point.settings.priority; created = point.created; updated = point.updated
            status = point.status.map { Status(reported: $0.reported, complete: $0.complete, errors: $0.errors, summary: $0.summary, files: $0.files.count) }
            sync = DistributionSync(held: point.status?.files, current: current)
        }
    }

    // MARK: - Check-in

    /// The base URLs of the points whose rules match this machine and that are in sync with the
    /// content as it is now, in priority order; nil when there is none (the agent then fetches
    /// from the server alone). Read after the check-in's lock is released: it walks the content
    /// folder (sizes and times only, never hashing; the view is reused for a few seconds). A
    /// point is in sync when the version of what it reported is the content's version now
    /// (equal versions: the same paths with the same SHA-256s), so its file list is not read.
    func contentSources(client: String, facts: Facts) async throws -> [String]? {
        let matching = try await storage.distributionPointChoices().filter {
            $0.heldVersion != nil && Self.matches($0.settings, client: client, gateways: Self.defaultGateways(facts))
        }
        guard !matching.isEmpty else { return nil }
        let current = try await contentHashing.recentView(maxAge: .seconds(5)) { try await self.contentManifest(hashing: false) }
        guard let version = current.version else { return nil }
        let sources = matching.filter { $0.heldVersion == version }.map(\.settings.url)
        return sources.isEmpty ? nil : sources
    }

    /// The default gateways the agent reports in its facts (`Facts.defaultGateways`; none from
    /// agents older than it, chosen by subnet alone then).
    static func defaultGateways(_ facts: Facts) -> [String] { facts.defaultGateways ?? [] }

    /// A subnet containing the address the check-in came from, or a gateway the machine reports.
    static func matches(_ point: DistributionPointSettings, client: String, gateways: [String]) -> Bool {
        if point.subnets.contains(where: { (try? IPSubnet(parsing: $0))?.contains(client) ?? false }) { return true }
        let reported = Set(gateways.compactMap(IPSubnet.bytes))
        return point.gateways.contains { IPSubnet.bytes($0).map(reported.contains) ?? false }
    }

    // MARK: - The manifest

    /// Every published file under --content with its size and SHA-256. `hashing`: files whose
    /// size or time changed since they were last hashed are hashed now (on the thread pool, one
    /// request hashing a file at a time, others waiting for it) and their hashes kept; without,
    /// they are listed with no SHA-256 (the dashboard, the admin API and check-ins never wait
    /// for gigabytes to be read).
    func contentManifest(hashing: Bool) async throws -> ContentManifest {
        let root = configuration.contentDirectory
        let scanned = try await NIOThreadPool.singleton.runIfActive { ContentCatalog.scan(root: root) }
        let known = try await storage.contentHashes()
        var files: [ContentManifest.File] = []
        files.reserveCapacity(scanned.count)
        for entry in scanned {
            if let hash = known[entry.path], hash.size == entry.size, hash.modifiedNanoseconds == entry.modifiedNanoseconds {
                files.append(.init(path: entry.path, size: entry.size, sha256: hash.sha256))
            } else if hashing {
                let digest: ContentCatalog.Digest
                do { digest = try await contentHashing.digest(of: entry) } catch let error as ContentCatalog.HashingError {
                    var refusal = APIError(.serviceUnavailable, "\(entry.path) could not be hashed: \(error.description)")
                    refusal.retryAfter = 60
                    throw refusal
                }
                try await storage.storeContentHash(ContentHash(path: entry.path, size: digest.size, modifiedNanoseconds: digest.modifiedNanoseconds,
                                                               sha256: digest.sha256, hashed: StoredTime.now()))
                files.append(.init(path: entry.path, size: digest.size, sha256: digest.sha256))
            } else {
                files.append(.init(path: entry.path, size: entry.size, sha256: nil))
            }
        }
        if hashing {
            let present = Set(scanned.map(\.path))
            try await storage.deleteContentHashes(paths: known.keys.filter { !present.contains($0) })
            // Check-ins see the files hashed just now at once: a point about to report them
            // must not wait for the shared view to age out.
            await contentHashing.forgetRecentView()
        }
        return ContentManifest(files: files)
    }

    // MARK: - Dashboard

    /// GET /dashboard/distribution-points
    func dashboardDistributionPointsPage(access: DashboardAccess) async throws -> Response {
        let manifest = try await contentManifest(hashing: false)
        let points = try await storage.distributionPoints()
        let versions = try await storage.libraryImages().flatMap { image in image.versions.filter { $0.state == .ready } }
        return dashboardHTML(DistributionPointsPage.index(points, current: manifest, versions: versions, csrf: access.csrfToken))
    }
}

/// The published files as they are now; `sha256` nil for a file not hashed since it changed.
struct ContentManifest: Sendable {
    struct File: Sendable {
        var path: String
        var size: Int
        var sha256: String?
    }
    var files: [File]

    var totalBytes: Int { files.reduce(0) { $0 + $1.size } }
    var unhashed: Int { files.count(where: { $0.sha256 == nil }) }
    /// path → SHA-256 of the files hashed.
    var hashes: [String: String] {
        Dictionary(files.compactMap { file in file.sha256.map { (file.path, $0) } }, uniquingKeysWith: { first, _ in first })
    }

    /// The content's version: a SHA-256 of every path with its SHA-256 (a point's files give
    /// the same when it holds the same); nil while a file waits to be hashed.
    var version: String? {
        guard unhashed == 0 else { return nil }
        return Self.version(of: hashes)
    }

    static func version(of files: [String: String]) -> String {
        let hasher = SHA256Hasher()
        for path in files.keys.sorted() { hasher.update(Array("\(path)\t\(files[path] ?? "")\n".utf8)) }
        return hasher.finish()
    }
}

/// How what a point reported compares with the content as it is now. In sync: it holds every
/// published file with its current SHA-256 and nothing else.
struct DistributionSync: Encodable, Sendable {
    var inSync: Bool
    /// Published files the point does not hold.
    var missing: Int
    /// Files it holds with another SHA-256 than the published one.
    var differing: Int
    /// Files it holds that are no longer published.
    var extra: Int
    /// Published files changed since they were last hashed: no point can be known to hold them.
    var unhashed: Int
    /// The version of what it holds (`ContentManifest.version`), and of the content now.
    var heldVersion: String?
    var currentVersion: String?

    init(held: [String: String]?, current: ContentManifest) {
        unhashed = current.unhashed
        currentVersion = current.version
        guard let held else {
            inSync = false
            missing = current.files.count
            differing = 0
            extra = 0
            return
        }
        var missing = 0, differing = 0
        for file in current.files {
            guard let have = held[file.path] else {
                missing += 1
                continue
            }
            if let sha256 = file.sha256, have != sha256 { differing += 1 }
        }
        let published = Set(current.files.map(\.path))
        extra = held.keys.count(where: { !published.contains($0) })
        self.missing = missing
        self.differing = differing
        heldVersion = ContentManifest.version(of: held)
        inSync = missing == 0 && differing == 0 && extra == 0 && unhashed == 0
    }
}

/// The published set of `ContentFiles`, listed: what a point must hold to serve what /content serves.
enum ContentCatalog {
    struct Entry: Sendable {
        /// Under the root, `/`-separated, not percent-encoded.
        var path: String
        /// The real path, symlinks followed.
        var real: String
        var size: Int
        var modifiedNanoseconds: Int
    }

    /// Every path /content would serve (the same `resolve` and `ContentFileReader.open` decide),
    /// sorted. A folder reached twice through symlinks is listed under the first path found (a
    /// symlink to a folder above it would otherwise make endless paths).
    static func scan(root: String) -> [Entry] {
        guard let realRoot = ContentFiles.realPath(root) else { return [] }
        var entries: [Entry] = []
        var entered: Set<String> = [realRoot]
        func walk(_ segments: [String]) {
            let folder = ([root] + segments).joined(separator: "/")
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
            for name in names.sorted() where ContentFiles.isPublishedName(name) {
                let child = segments + [name]
                guard let real = ContentFiles.resolve(root: root, segments: child.map(encode)) else { continue }
                var info = stat()
                guard stat(real, &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    if entered.insert(real).inserted { walk(child) }
                case S_IFREG:
                    // Published only when readable by others, as the server decides at each request.
                    guard case .published = ContentFileReader.open(real) else { continue }
                    entries.append(Entry(path: child.joined(separator: "/"), real: real, size: Int(info.st_size),
                                         modifiedNanoseconds: nanoseconds(info.st_mtim)))
                default:
                    continue
                }
            }
        }
        walk([])
        return entries.sorted { $0.path < $1.path }
    }

    /// A name as a URL path segment: what `resolve` decodes back to the same name.
    static func encode(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: unreserved) ?? name
    }

    private static let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")

    static func nanoseconds(_ time: timespec) -> Int { Int(time.tv_sec) * 1_000_000_000 + Int(time.tv_nsec) }

    struct Digest: Sendable {
        var sha256: String
        var size: Int
        var modifiedNanoseconds: Int
    }

    /// Why a file could not be hashed; the caller names the file (by its published path, not
    /// where it lies on the server's disk).
    struct HashingError: Error, CustomStringConvertible {
        var description: String
    }

    /// SHA-256 of the file, with the size and time it had while it was read: read again when
    /// they changed meanwhile (a copy still being written), so the hash kept is of one version.
    static func hash(_ path: String) throws -> Digest {
        for _ in 0..<3 {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            guard descriptor >= 0 else { throw HashingError(description: "cannot be opened: \(String(cString: strerror(errno)))") }
            defer { close(descriptor) }
            var before = stat()
            guard fstat(descriptor, &before) == 0 else { throw HashingError(description: "cannot be read: \(String(cString: strerror(errno)))") }
            let sha256: String
            do { sha256 = try SHA256Hasher.hex(reading: descriptor) } catch { throw HashingError(description: error.description) }
            var after = stat()
            guard fstat(descriptor, &after) == 0 else { throw HashingError(description: "cannot be read: \(String(cString: strerror(errno)))") }
            if before.st_size == after.st_size, nanoseconds(before.st_mtim) == nanoseconds(after.st_mtim) {
                return Digest(sha256: sha256, size: Int(after.st_size), modifiedNanoseconds: nanoseconds(after.st_mtim))
            }
        }
        throw HashingError(description: "changed each time it was read (a copy still being written?): ask again when it is done")
    }
}

/// Hashing of published files, one at a time per file: many points asking for the manifest
/// after a new image arrived read it once, not once each. And the recent view of the content
/// that check-ins share.
actor ContentHashing {
    private var running: [String: Task<ContentCatalog.Digest, Error>] = [:]
    private var recent: (made: ContinuousClock.Instant, manifest: ContentManifest)?

    func digest(of entry: ContentCatalog.Entry) async throws -> ContentCatalog.Digest {
        let key = "\(entry.path)\u{0}\(entry.size)\u{0}\(entry.modifiedNanoseconds)"
        if let task = running[key] { return try await task.value }
        let real = entry.real
        let task = Task { try await NIOThreadPool.singleton.runIfActive { try ContentCatalog.hash(real) } }
        running[key] = task
        defer { running[key] = nil }
        return try await task.value
    }

    func forgetRecentView() { recent = nil }

    /// The manifest `make` made less than `maxAge` ago, or a new one.
    func recentView(maxAge: Duration, _ make: @Sendable () async throws -> ContentManifest) async throws -> ContentManifest {
        if let recent, ContinuousClock.now - recent.made < maxAge { return recent.manifest }
        let manifest = try await make()
        recent = (ContinuousClock.now, manifest)
        return manifest
    }
}

/// The dashboard's Distribution points page: each point, its URL and rules, when it last
/// reported, whether it is in sync and what differs, and which library versions it holds.
/// Everything a point or an administrator wrote is escaped.
enum DistributionPointsPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    static func index(_ points: [DistributionPoint], current: ContentManifest, versions: [LibraryVersion], csrf: String) -> String {
        var body = "<h1>Distribution points</h1>"
        body += "<p class=\"hint\" id=\"content-version\">Content: \(current.files.count) files, \(DashboardImagesPage.bytes(UInt64(current.totalBytes)))"
            + (current.version.map { ", version <code>\(escape(String($0.prefix(12))))</code>" } ?? "")
            + (current.unhashed > 0 ? "; \(current.unhashed) changed file(s) not hashed yet (the next manifest a point asks for hashes them)" : "")
            + "</p>"
        guard !points.isEmpty else {
            body += "<p class=\"empty\">No distribution point yet: create one with PUT /api/v1/admin/distribution-points/NAME "
                + "and run imprint dp sync on its host.</p>"
            return DashboardPage.page(title: "Imprint: distribution points", body: body, csrf: csrf, feed: false)
        }
        body += "<table id=\"distribution-points\"><tr><th>Name</th><th>URL</th><th>Rules</th><th>Priority</th><th>Last sync</th>"
            + "<th>State</th><th>Library versions</th></tr>"
        for point in points {
            let sync = DistributionSync(held: point.status?.files, current: current)
            let rules = point.settings.subnets.map { "subnet " + $0 } + point.settings.gateways.map { "gateway " + $0 }
            body += "<tr class=\"distribution-point \(sync.inSync ? "in-sync" : "out-of-sync")\" data-point=\"\(escape(point.name))\">"
                + "<td>\(escape(point.name))</td><td><code>\(escape(point.settings.url))</code></td>"
                + "<td>\(rules.map(escape).joined(separator: "<br>"))</td><td>\(point.settings.priority)</td>"
                + "<td class=\"when\">\(lastSync(point))</td><td class=\"sync\">\(state(point, sync))</td>"
                + "<td class=\"versions\">\(libraryVersions(point, versions))</td></tr>"
        }
        body += "</table>"
        body += "<p class=\"hint\">In sync: the point's last report lists every published file with its current SHA-256 and nothing else. "
            + "Machines whose check-in matches a point's rules get the points in sync as their content sources, lowest priority number first.</p>"
        return DashboardPage.page(title: "Imprint: distribution points", body: body, csrf: csrf, feed: false)
    }

    static func lastSync(_ point: DistributionPoint) -> String {
        guard let status = point.status else { return "never reported" }
        return escape(status.reported) + (status.summary.map { "<div class=\"summary\">\(escape($0))</div>" } ?? "")
    }

    static func state(_ point: DistributionPoint, _ sync: DistributionSync) -> String {
        var html: String
        if point.status == nil {
            html = "<span class=\"failed\">not in sync</span>: never reported"
        } else if sync.inSync {
            html = "<span class=\"succeeded\">in sync</span>"
        } else {
            let parts = [(sync.missing, "missing"), (sync.differing, "different"), (sync.extra, "no longer published"),
                         (sync.unhashed, "changed on the server, not hashed yet")]
                .filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }
            html = "<span class=\"failed\">not in sync</span>" + (parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))
        }
        if let held = sync.heldVersion { html += "<div class=\"hint\">holds version <code>\(escape(String(held.prefix(12))))</code></div>" }
        if let errors = point.status?.errors, !errors.isEmpty {
            html += "<ul class=\"changes\">" + errors.prefix(5).map { "<li class=\"failure\">\(escape($0))</li>" }.joined()
                + (errors.count > 5 ? "<li>\(errors.count - 5) more</li>" : "") + "</ul>"
        }
        return html
    }

    /// Which ready library versions the point holds (their file with their SHA-256).
    static func libraryVersions(_ point: DistributionPoint, _ versions: [LibraryVersion]) -> String {
        guard !versions.isEmpty else { return "" }
        let files = point.status?.files ?? [:]
        let held = versions.filter { files[$0.file] == $0.sha256 }, lacking = versions.filter { files[$0.file] != $0.sha256 }
        func names(_ list: [LibraryVersion]) -> String { list.map { "\($0.image) v\($0.version)" }.map(escape).joined(separator: ", ") }
        return (held.isEmpty ? "" : "<div class=\"held\">holds \(names(held))</div>")
            + (lacking.isEmpty ? "" : "<div class=\"lacking hint\">lacks \(names(lacking))</div>")
    }
}
