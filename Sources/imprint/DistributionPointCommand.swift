import ArgumentParser
import Digests
import Failures
import Foundation
import Transport

/// `imprint dp`: what runs on a distribution point's host, next to the nginx that serves its
/// folder to the machines nearby.
struct DistributionPointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dp",
        abstract: "Keep a distribution point (a folder nginx serves near the machines) in sync with the server's content.",
        subcommands: [DistributionPointSyncCommand.self])
}

/// `imprint dp sync`: fetches the server's manifest, moves only what is missing or changed
/// (resumable, each file's SHA-256 checked before it is renamed into place), removes what is
/// no longer published, and reports what the point holds. Run it from cron or a systemd timer.
struct DistributionPointSyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Bring the folder to what the server publishes under /content/, and report to the server.",
        discussion: """
            Files whose size and SHA-256 match are left alone; SHA-256s are kept in DIR/.imprint-dp/cache.json \
            by path, size, modification time and inode, so unchanged files are not read again (--verify reads \
            them all). Hidden files and folders under DIR (names beginning with '.') are never served by the \
            server's rules, never listed, and never removed.
            """)

    @Option(help: "The deployment server, e.g. http://10.0.0.1:8080.") var server: String
    @Option(help: "The point's token (shown once when the point was created).") var token: String?
    @Option(help: "A file holding the point's token (kept out of the process list).") var tokenFile: String?
    @Option(help: "The folder nginx serves as the point's base URL.") var root: String
    @Flag(help: "Hash every file again, whatever the cache says (finds copies gone bad on disk).") var verify = false
    @Option(help: "A CA bundle for https.") var caBundle: String?

    func run() throws {
        do {
            let outcome = try PointSync(options: try settings()).run()
            print("imprint dp sync: " + outcome.summary)
            print("imprint dp sync: " + outcome.report)
            if let failure = outcome.failure { throw failure }
        } catch let error as ExitCode {
            throw error
        } catch {
            throw fail(error)
        }
    }

    func settings() throws(PointSyncError) -> PointSync.Options {
        let value: String
        switch (token, tokenFile) {
        case let (token?, nil): value = token
        case let (nil, file?):
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw .badOption("--token-file \(file) cannot be read")
            }
            value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        case (nil, nil): throw .badOption("give the point's token with --token or --token-file")
        case (_?, _?): throw .badOption("give --token or --token-file, not both")
        }
        guard !value.isEmpty else { throw .badOption("the token is empty") }
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        guard let bearer = BearerToken(value, for: base) else {
            throw .badOption("--server \(server) is not an http:// or https:// URL")
        }
        var transfer = TransferOptions()
        transfer.caBundle = caBundle
        // Only the server gets the token (the content comes from the same origin).
        transfer.bearerToken = bearer
        return PointSync.Options(server: base, root: root, verify: verify, transfer: transfer)
    }
}

/// Why a sync failed, for the technician at the point.
enum PointSyncError: Error, CustomStringConvertible, ClassifiedError {
    case badOption(String)
    /// The server refused or failed (its words), or could not be reached.
    case server(String)
    /// The manifest is not one this tool can follow safely.
    case badManifest(String)
    /// The folder: cannot be created, locked, read or written.
    case local(String)
    /// Some files could not be brought in sync; the others were, and the server was told.
    case incomplete(failed: Int, total: Int, first: String)

    var description: String {
        switch self {
        case let .badOption(message), let .server(message), let .badManifest(message), let .local(message): return message
        case let .incomplete(failed, total, first):
            return "\(failed) of \(total) files could not be brought in sync (the server was told); the first: \(first)"
        }
    }

    var failureKind: FailureKind {
        switch self {
        case .badOption, .badManifest: return .badInput
        case .server, .incomplete: return .network
        case .local: return .disk
        }
    }
}

/// One sync of a point's folder against the server's manifest.
struct PointSync {
    struct Options {
        /// Without a trailing slash.
        var server: String
        var root: String
        var verify: Bool
        var transfer: TransferOptions
    }

    /// What the server's manifest lists.
    struct Manifest: Decodable {
        struct File: Decodable {
            var path: String
            var size: UInt64
            var sha256: String
        }
        var version: String?
        var files: [File]
    }

    /// What a sync did, and what the server made of the report.
    struct Outcome {
        var summary: String
        var report: String
        var failure: PointSyncError?
    }

    /// A SHA-256 this tool computed, valid while the file keeps its size, time and inode.
    struct CacheEntry: Codable, Equatable {
        var size: UInt64
        var modified: Int
        var inode: UInt64
        var sha256: String
    }

    struct Cache: Codable {
        var format = 1
        var files: [String: CacheEntry] = [:]
    }

    let options: Options
    /// The tool's own folder under the root: hidden, so never served, listed or removed.
    var stateFolder: String { options.root + "/.imprint-dp" }
    var cachePath: String { stateFolder + "/cache.json" }
    /// Downloads in progress, by SHA-256: a sync cut short goes on from there at the next run.
    var stagingFolder: String { stateFolder + "/staging" }

    func run() throws(PointSyncError) -> Outcome {
        do { try FileManager.default.createDirectory(atPath: stagingFolder, withIntermediateDirectories: true) } catch {
            throw .local("\(stagingFolder) cannot be created: \(error.localizedDescription)")
        }
        // nginx's workers (www-data) must reach every file: the root itself must be searchable.
        chmod(options.root, 0o755)
        let lock = try lockRoot()
        defer { close(lock) }

        let client = HTTPClient(options: options.transfer)
        let manifest = try fetchManifest(client)
        var wanted: [String: Manifest.File] = [:]
        for file in manifest.files {
            guard Self.safeSegments(file.path) != nil else {
                throw .badManifest("the manifest lists \(file.path.debugDescription), which is not a path under the folder this tool may write "
                                   + "(empty, hidden or '..' parts): nothing was changed")
            }
            guard file.sha256.utf8.count == 64, file.sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw .badManifest("the manifest gives \(file.path) the SHA-256 \(file.sha256.debugDescription): nothing was changed")
            }
            guard wanted.updateValue(file, forKey: file.path) == nil else {
                throw .badManifest("the manifest lists \(file.path) twice: nothing was changed")
            }
        }

        var cache = loadCache()
        var errors: [String] = []
        var held: [String: String] = [:]
        var counts = (fetched: 0, fetchedBytes: UInt64(0), unchanged: 0, corrupt: 0, removed: 0, hashed: 0)

        // What is no longer published goes first: it frees the space the new files need.
        counts.removed = removeUnlisted(keeping: Set(wanted.keys), errors: &errors)
        cache.files = cache.files.filter { wanted[$0.key] != nil }

        for file in manifest.files {
            let local = options.root + "/" + file.path
            let known = cache.files[file.path]
            var info = stat()
            var corrupt = false
            if lstat(local, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
                let current = CacheEntry(size: UInt64(info.st_size), modified: Self.nanoseconds(info.st_mtim), inode: UInt64(info.st_ino), sha256: "")
                if current.size == file.size {
                    var sha256: String
                    if !options.verify, let known, known.size == current.size, known.modified == current.modified, known.inode == current.inode {
                        sha256 = known.sha256
                    } else {
                        do { sha256 = try Self.sha256(of: local) } catch {
                            errors.append("\(file.path): \(error)")
                            continue
                        }
                        counts.hashed += 1
                    }
                    var entry = current
                    entry.sha256 = sha256
                    cache.files[file.path] = entry
                    if sha256 == file.sha256 {
                        counts.unchanged += 1
                        held[file.path] = sha256
                        continue
                    }
                    held[file.path] = sha256
                }
                // This point held the right copy (the cache says so) and it is no longer that:
                // a disk error or someone's hand, not a new version on the server.
                corrupt = known?.sha256 == file.sha256
            }
            do {
                let bytes = try fetch(file, to: local, client: client)
                counts.fetched += 1
                counts.fetchedBytes += bytes
                if corrupt {
                    counts.corrupt += 1
                    print("replaced \(file.path): the copy here no longer had SHA-256 \(file.sha256)")
                }
                var after = stat()
                if lstat(local, &after) == 0 {
                    cache.files[file.path] = CacheEntry(size: UInt64(after.st_size), modified: Self.nanoseconds(after.st_mtim),
                                                        inode: UInt64(after.st_ino), sha256: file.sha256)
                }
                held[file.path] = file.sha256
            } catch {
                errors.append("\(file.path): \(error)")
            }
        }
        cleanStaging(keeping: Set(manifest.files.map(\.sha256)))
        if let problem = saveCache(cache) { errors.append(problem) }

        let summary = "\(counts.fetched) \(counts.fetched == 1 ? "file" : "files") fetched, \(formatBytes(counts.fetchedBytes)); "
            + "\(counts.unchanged) unchanged; \(counts.corrupt) corrupt \(counts.corrupt == 1 ? "copy" : "copies") replaced; "
            + "\(counts.removed) removed"
        let report = try sendStatus(held: held, errors: errors, summary: summary + "; \(counts.hashed) hashed", client: client)
        for error in errors { FileHandle.standardError.write(Data("imprint dp sync: \(error)\n".utf8)) }
        let failure = errors.first.map { PointSyncError.incomplete(failed: errors.count, total: manifest.files.count, first: $0) }
        return Outcome(summary: summary, report: "\(counts.hashed) hashed; " + report, failure: failure)
    }

    // MARK: - The server

    func fetchManifest(_ client: HTTPClient) throws(PointSyncError) -> Manifest {
        let url = options.server + "/api/v1/distribution/manifest"
        let data: Data
        // A manifest lists every file: 100 000 files take about 15 MiB.
        do { data = try client.fetch(url, limit: 512 << 20) } catch {
            if case let .http(_, status, message) = error, status == 401 || status == 403 {
                throw .server("the server refused this point's token (HTTP \(status)): \(Self.errorText(message))")
            }
            throw .server("the manifest could not be fetched: \(error)")
        }
        do { return try JSONDecoder().decode(Manifest.self, from: data) } catch {
            throw .server("\(url) did not answer with a manifest (is --server the imprint server?): \(error)")
        }
    }

    /// PUT /api/v1/distribution/status; what the server makes of it, in a line.
    func sendStatus(held: [String: String], errors: [String], summary: String, client: HTTPClient) throws(PointSyncError) -> String {
        struct Report: Encodable {
            var files: [String: String]
            var complete: Bool
            var errors: [String]
            var summary: String
        }
        struct Answer: Decodable {
            var inSync: Bool
            var missing, differing, extra, unhashed: Int
            var currentVersion: String?
        }
        let url = options.server + "/api/v1/distribution/status"
        let body: Data
        do { body = try JSONEncoder().encode(Report(files: held, complete: errors.isEmpty, errors: errors, summary: summary)) } catch {
            throw .local("the status could not be encoded: \(error)")
        }
        let status: Int, data: Data
        do { (status, data) = try client.put(url, json: body) } catch { throw .server("the status could not be sent: \(error)") }
        guard (200..<300).contains(status) else {
            throw .server("the server refused the status (HTTP \(status)): \(Self.errorText(String(decoding: data.prefix(500), as: UTF8.self)))")
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: data) else { return "the server took the status" }
        if answer.inSync {
            return "the server reports this point in sync" + (answer.currentVersion.map { " (content version \($0.prefix(12)))" } ?? "")
        }
        let parts = [(answer.missing, "missing"), (answer.differing, "different"), (answer.extra, "no longer published"),
                     (answer.unhashed, "changed on the server since")].filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }
        return "the server reports this point not in sync" + (parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))
    }

    /// The server's `{"error": "..."}`, or the body as it came.
    static func errorText(_ body: String) -> String {
        struct Problem: Decodable { var error: String }
        return (try? JSONDecoder().decode(Problem.self, from: Data(body.utf8)))?.error ?? body
    }

    /// Downloads through the staging folder (resumable, SHA-256 checked by `HTTPClient.download`),
    /// then renames into place: nginx never serves half a file. Returns the bytes moved.
    func fetch(_ file: Manifest.File, to local: String, client: HTTPClient) throws -> UInt64 {
        guard let segments = Self.safeSegments(file.path) else { throw PointSyncError.badManifest("\(file.path) is not a safe path") }
        let url = options.server + "/content/" + segments.map(Self.encode).joined(separator: "/")
        let staged = stagingFolder + "/" + file.sha256
        print("fetching \(file.path) (\(formatBytes(file.size)))")
        let result = try client.download(url, to: staged, expectedSHA256: file.sha256) { _ in }
        guard result.bytes == file.size else {
            unlink(staged)
            throw PointSyncError.server("\(url) sent \(result.bytes) bytes, the manifest says \(file.size)")
        }
        // Readable by nginx's workers, whatever the umask.
        chmod(staged, 0o644)
        let folder = (local as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        } catch {
            throw PointSyncError.local("\(folder) cannot be created: \(error.localizedDescription)")
        }
        guard rename(staged, local) == 0 else {
            throw PointSyncError.local("\(local) cannot be replaced: \(String(cString: strerror(errno)))")
        }
        return result.bytes
    }

    // MARK: - The folder

    /// One sync at a time per folder (a cron job that overlaps the previous one).
    func lockRoot() throws(PointSyncError) -> Int32 {
        let path = stateFolder + "/lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .local("\(path) cannot be opened: \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw .local("another imprint dp sync is running on \(options.root); it holds \(path)")
        }
        return descriptor
    }

    /// Removes every file under the root the manifest does not list, and the folders left
    /// empty; hidden names (the tool's own folder, an administrator's dotfiles) are never touched.
    func removeUnlisted(keeping wanted: Set<String>, errors: inout [String]) -> Int {
        var removed = 0
        func walk(_ relative: String) {
            let folder = relative.isEmpty ? options.root : options.root + "/" + relative
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
            for name in names.sorted() where !name.hasPrefix(".") {
                let path = relative.isEmpty ? name : relative + "/" + name
                let full = options.root + "/" + path
                var info = stat()
                guard lstat(full, &info) == 0 else { continue }
                if info.st_mode & S_IFMT == S_IFDIR {
                    walk(path)
                    // Only when empty; a folder still holding listed (or hidden) files stays.
                    if rmdir(full) == 0 { print("removed folder \(path)") }
                } else if !wanted.contains(path) {
                    if unlink(full) == 0 {
                        removed += 1
                        print("removed \(path): no longer published")
                    } else {
                        errors.append("\(path): no longer published, but cannot be removed: \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        walk("")
        return removed
    }

    /// Downloads of files no longer wanted (the server's copy changed meanwhile) are dropped.
    func cleanStaging(keeping shas: Set<String>) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: stagingFolder) else { return }
        for name in names {
            let sha = name.hasSuffix(".partial") ? String(name.dropLast(".partial".count)) : name
            if !shas.contains(sha) { unlink(stagingFolder + "/" + name) }
        }
    }

    func loadCache() -> Cache {
        // A damaged or missing cache costs one reading of every file, nothing else.
        guard let data = FileManager.default.contents(atPath: cachePath), let cache = try? JSONDecoder().decode(Cache.self, from: data),
              cache.format == 1 else { return Cache() }
        return cache
    }

    /// Nil when saved; otherwise why not (the next run reads every file again).
    func saveCache(_ cache: Cache) -> String? {
        do {
            let data = try JSONEncoder().encode(cache)
            try data.write(to: URL(fileURLWithPath: cachePath), options: .atomic)
            return nil
        } catch {
            return "\(cachePath) cannot be written (the next sync reads every file again): \(error.localizedDescription)"
        }
    }

    // MARK: - Helpers

    /// The path's parts when every one is a name this tool may create under the root: not
    /// empty, not hidden (so never `.` or `..`), no NUL.
    static func safeSegments(_ path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !segments.isEmpty, segments.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(".") && !$0.contains("\0") && $0.utf8.count <= 255 })
        else { return nil }
        return segments
    }

    static func encode(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: unreserved) ?? name
    }

    private static let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")

    static func nanoseconds(_ time: timespec) -> Int { Int(time.tv_sec) * 1_000_000_000 + Int(time.tv_nsec) }

    struct ReadError: Error, CustomStringConvertible {
        var description: String
    }

    static func sha256(of path: String) throws -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { throw ReadError(description: "cannot be opened: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        do { return try SHA256Hasher.hex(reading: descriptor) } catch { throw ReadError(description: error.description) }
    }
}
