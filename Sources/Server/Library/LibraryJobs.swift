import Foundation
import Logging
import Synchronization
import WIM

/// What a job was asked to do, as the admin API accepts it (and the job's record keeps it).
public struct LibraryImportRequest: Codable, Sendable {
    /// Under the content folder: an uploaded WIM (`library/wims/NAME`) or any WIM already there.
    public var file: String
    /// The other parts of a split set (`.swm`), under the content folder.
    public var parts: [String]?
}

public struct LibraryExtractRequest: Codable, Sendable {
    /// The imported WIM's id and the image in it (index or name).
    public var wim: String
    public var index: String
    /// The library image the extracted file becomes a version of (made when new).
    public var image: String
    public var description: String?
    /// none, xpress, lzx, lzms[:LEVEL]; nil copies the data as it is compressed.
    public var compress: String?
    public var solid: Bool?
    public var pipable: Bool?
}

public struct LibraryServiceRequest: Codable, Sendable {
    public var image: String
    public var version: Int
    public var drivers: [String]?
    public var files: [LibraryWork.Servicing.FileAddition]?
    public var delete: [String]?
}

/// Runs the library's jobs in the background, one at a time in the order they were made (each
/// uses every core already, and one at a time keeps the server's memory and disk use bounded).
/// A job's record in the database says where it is; a server that stops midway finds it
/// "running" at its next start and marks it failed, removing what it had half made (its
/// output is written under `library/.work` and moved into place only when whole): never left
/// "running", never half-imported. Queued jobs simply run then.
final class LibraryJobs: Sendable {
    private let wake = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private let pending = Atomic<Int>(0)
    /// The worker and the watch, cancelled when the server closes.
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let stopped = Atomic<Bool>(false)
    /// `ImprintServer.instanceName`, read once at start (it is kept in a file).
    private let instance = Mutex<String>("")

    /// Stops the worker (after the job it runs, if any) and the watch: the database is closing.
    func stop() async {
        stopped.store(true, ordering: .relaxed)
        let running = tasks.withLock { tasks in defer { tasks = [] }; return tasks }
        for task in running { task.cancel() }
        queued()
        for task in running { await task.value }
    }

    /// Seconds without a heartbeat after which a running job is taken for dead (its instance
    /// stopped); a running job beats at least every `heartbeatSeconds`.
    static let heartbeatSeconds = 5.0
    static let staleSeconds = 60.0

    /// Marks the jobs this instance (or a dead one) left running failed, removes their files,
    /// and starts the worker (which runs the queued ones) and the watch for dead instances.
    func start(_ server: ImprintServer, on executor: (any TaskExecutor)?) async {
        let name = server.instanceName
        instance.withLock { $0 = name }
        await failInterrupted(server, includingOwn: true)
        // A file a job moved into place just before its server stopped, its version never
        // recorded: no version names it, nothing will. An hour old at least, so that a job of
        // another instance sharing the folder has long recorded its own.
        let files = server.configuration.contentDirectory + "/library/files"
        if let names = try? FileManager.default.contentsOfDirectory(atPath: files), !names.isEmpty,
           let images = try? await server.storage.libraryImages() {
            let named = Set(images.flatMap { $0.versions.map(\.file) })
            for name in names where !named.contains("library/files/" + name) && Self.age(files + "/" + name) > 3600 {
                unlink(files + "/" + name)
                server.logger.warning("library: \(name) removed at start: a job stopped before recording its version")
            }
        }
        let watch = Task(executorPreference: executor) { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(Self.staleSeconds / 2))
                if Task.isCancelled { break }
                await failInterrupted(server, includingOwn: false)
            }
        }
        let worker = Task(executorPreference: executor) { [self] in await self.loop(server) }
        tasks.withLock { $0 = [watch, worker] }
    }

    /// Fails running jobs whose instance is gone: this one's, left by its previous run
    /// (`includingOwn`, at start), and any whose heartbeat stopped; removes their work files.
    private func failInterrupted(_ server: ImprintServer, includingOwn: Bool) async {
        do {
            for var job in try await server.storage.libraryJobs(state: .running) {
                let own = job.instance == instance.withLock { $0 }
                let silent = job.heartbeat.flatMap(StoredTime.parse).map { Date().timeIntervalSince($0) > Self.staleSeconds } ?? true
                guard (includingOwn && own) || silent else { continue }
                job.state = .failed
                job.ended = StoredTime.now()
                job.message = "interrupted: the server \(own ? "" : "(\(job.instance ?? "another instance")) ")stopped while the job ran "
                    + "(at \(Int(job.percent ?? 0))%); nothing it had begun was kept — start it again"
                job.log.append(StoredTime.now() + " " + (job.message ?? ""))
                try await server.storage.updateLibraryJob(job)
                server.logger.warning("library job \(job.id) (\(job.kind.rawValue)): \(job.message ?? "")")
                let work = server.libraryWorkDirectory
                for name in (try? FileManager.default.contentsOfDirectory(atPath: work)) ?? [] where name.hasPrefix(job.id) {
                    try? FileManager.default.removeItem(atPath: work + "/" + name)
                }
            }
        } catch {
            server.logger.error("library jobs: cannot check the running ones: \(error)")
        }
    }

    static func age(_ path: String) -> TimeInterval {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Date().timeIntervalSince1970 - TimeInterval(info.st_mtim.tv_sec)
    }

    /// Says a job was queued: the worker takes it after those before it.
    func queued() {
        pending.add(1, ordering: .relaxed)
        wake.withLock { continuation in
            continuation?.resume()
            continuation = nil
        }
    }

    private func loop(_ server: ImprintServer) async {
        while !stopped.load(ordering: .relaxed) {
            do {
                while !stopped.load(ordering: .relaxed), let job = try await server.storage.libraryJobs(state: .queued).first {
                    // Not taken (another instance took it, or its start could not be recorded):
                    // a pause before the queue is read again, not a busy loop.
                    if !(await run(job, server)) { try? await Task.sleep(for: .seconds(1)) }
                }
            } catch {
                server.logger.error("library jobs: \(error)")
                try? await Task.sleep(for: .seconds(5))
            }
            if pending.exchange(0, ordering: .relaxed) > 0 { continue }
            await withCheckedContinuation { continuation in
                wake.withLock { $0 = continuation }
                // A job queued between the check and here must not wait for the next one.
                if pending.load(ordering: .relaxed) > 0 {
                    wake.withLock { $0?.resume(); $0 = nil }
                }
            }
        }
    }

    /// Progress the job's thread reports; the loop stores it once a second.
    private final class Report: Sendable {
        let state = Mutex<(line: String, percent: Double)?>(nil)
    }

    /// Runs a queued job; false when this instance did not take it.
    @discardableResult
    private func run(_ queuedJob: LibraryJob, _ server: ImprintServer) async -> Bool {
        var job = queuedJob
        job.state = .running
        job.started = StoredTime.now()
        job.instance = instance.withLock { $0 }
        job.heartbeat = job.started
        job.log.append(StoredTime.now() + " started on \(job.instance ?? "")")
        do {
            // Instances sharing the database each watch the queue: one takes the job.
            guard try await server.storage.claimLibraryJob(job) else { return false }
        } catch {
            server.logger.error("library job \(job.id): cannot record its start: \(error)")
            return false
        }
        server.logger.info("library job \(job.id) (\(job.kind.rawValue)) started")
        let report = Report()
        let log = Mutex<[String]>([])
        let progress: LibraryWork.Progress = { what, done, total in
            report.state.withLock { $0 = (what, total > 0 ? min(100, Double(done) * 100 / Double(total)) : 0) }
        }
        let say: @Sendable (String) -> Void = { line in log.withLock { $0.append(StoredTime.now() + " " + line) } }
        let finished = Mutex<Result<Outcome, Error>?>(nil)
        // The records the work needs, read here (the job's thread does no database call).
        let records: Result<Records, Error> = await Result { try await Records.read(for: job, server.storage) }
        let thread = Thread { [job] in
            let result = Result { try LibraryJobs.perform(job, records: try records.get(), server: server, progress: progress, say: say) }
            finished.withLock { $0 = result }
        }
        thread.stackSize = 8 << 20
        thread.start()
        var lastLine = ""
        var stored = job
        while true {
            try? await Task.sleep(for: .milliseconds(250))
            let done = finished.withLock { $0 }
            let lines = log.withLock { lines in defer { lines.removeAll() }; return lines }
            job.log += lines
            if let (line, percent) = report.state.withLock({ $0 }) {
                job.percent = percent
                if line != lastLine {
                    job.log.append(StoredTime.now() + " " + line)
                    lastLine = line
                }
                job.message = String(format: "%@: %.0f%%", line, percent)
            }
            if let done {
                job.ended = StoredTime.now()
                do {
                    // What it made is recorded before the job says it succeeded.
                    let result = try await LibraryJobs.record(try done.get(), server: server)
                    job.state = .succeeded
                    job.result = result
                    job.percent = 100
                    job.message = "made \(result)"
                } catch {
                    job.state = .failed
                    job.message = "\(error)"
                }
                job.log.append(StoredTime.now() + " " + (job.message ?? ""))
                try? await server.storage.updateLibraryJob(job)
                server.logger.info("library job \(job.id) (\(job.kind.rawValue)) \(job.state.rawValue): \(job.message ?? "")")
                return true
            }
            // Stored when something moved (the log, the percent), and as a heartbeat.
            let beat = StoredTime.parse(stored.heartbeat ?? "").map { Date().timeIntervalSince($0) >= Self.heartbeatSeconds } ?? true
            if job.percent != stored.percent || job.log.count != stored.log.count || beat {
                job.heartbeat = StoredTime.now()
                try? await server.storage.updateLibraryJob(job)
                stored = job
            }
        }
    }

    /// What a job made, recorded once its files are in place.
    enum Outcome: Sendable {
        case wim(LibraryWIM)
        /// A version of `image`; its number is given when it is recorded.
        case version(image: String, description: String?, LibraryVersion)
    }

    /// Records what a job made; returns how the job names it ("a1b2c3d4", "Windows 11 Pro/3").
    private static func record(_ outcome: Outcome, server: ImprintServer) async throws -> String {
        switch outcome {
        case let .wim(wim):
            do { try await server.storage.insertLibraryWIM(wim) } catch let conflict as LibraryConflict {
                throw LibraryError.badRequest(field: "file", reason: conflict.description)
            }
            return wim.id
        case let .version(image, description, template):
            let version = try await server.storage.addLibraryVersion(image: image, description: description) { number in
                var version = template
                version.version = number
                return version
            }
            return "\(image)/\(version.version)"
        }
    }

    /// The job's work, on its own thread: returns what it made.
    /// What a job reads from the database before its work starts.
    struct Records: Sendable {
        var wim: LibraryWIM?
        var image: LibraryImage?

        static func read(for job: LibraryJob, _ storage: any ServerStorage) async throws -> Records {
            let decoder = JSONDecoder()
            switch job.kind {
            case .import:
                return Records()
            case .extract:
                let request = try decoder.decode(LibraryExtractRequest.self, from: Data(job.request.utf8))
                return Records(wim: try await storage.libraryWIM(id: request.wim))
            case .service:
                let request = try decoder.decode(LibraryServiceRequest.self, from: Data(job.request.utf8))
                return Records(image: try await storage.libraryImage(name: request.image))
            }
        }
    }

    private static func perform(_ job: LibraryJob, records: Records, server: ImprintServer, progress: @escaping LibraryWork.Progress,
                                say: @escaping @Sendable (String) -> Void) throws -> Outcome {
        let decoder = JSONDecoder()
        switch job.kind {
        case .import:
            let request = try decoder.decode(LibraryImportRequest.self, from: Data(job.request.utf8))
            let path = try server.contentPath(request.file, field: "file")
            let parts = try (request.parts ?? []).enumerated().map { try server.contentPath($1, field: "parts[\($0)]") }
            say("reading \(request.file)" + (parts.isEmpty ? "" : " and \(parts.count) more parts"))
            let inspection = try LibraryWork.inspect(path, parts: parts, progress: progress)
            say("\(inspection.images.count) images, \(inspection.compression)\(inspection.solid ? " (solid)" : ""), SHA-256 \(inspection.sha256)")
            let wim = LibraryWIM(id: String(UUID().uuidString.prefix(8)).lowercased(), file: request.file, parts: request.parts ?? [],
                                 sha256: inspection.sha256, size: inspection.size, compression: inspection.compression,
                                 solid: inspection.solid, pipable: inspection.pipable, images: inspection.images, imported: StoredTime.now())
            return .wim(wim)
        case .extract:
            let request = try decoder.decode(LibraryExtractRequest.self, from: Data(job.request.utf8))
            guard let wim = records.wim else {
                throw LibraryError.badRequest(field: "wim", reason: "no imported WIM has the id \(request.wim)")
            }
            let source = try server.contentPath(wim.file, field: "wim")
            let parts = try wim.parts.map { try server.contentPath($0, field: "wim") }
            let archive = try WIMArchive(path: source, referenceParts: parts)
            let index = try archive.image(request.index)
            let layout = try LibraryJobs.layout(request.compress, solid: request.solid, pipable: request.pipable)
            let temporary = server.libraryWorkDirectory + "/\(job.id).wim"
            say("extracting image \(index) of \(wim.file)" + (layout.compress.map { " (recompressing: \($0))" } ?? " (its data copied as it is)"))
            try LibraryWork.extract(from: source, parts: parts, index: index, to: temporary, layout: layout, progress: progress)
            let origin = LibraryVersion.Origin(kind: .extract, wim: wim.id, index: index, fromVersion: nil, job: job.id,
                                               changes: ["image \(index) of \(wim.file)"])
            return try store(temporary, image: request.image, description: request.description, origin: origin, job: job, server: server,
                             progress: progress, say: say)
        case .service:
            let request = try decoder.decode(LibraryServiceRequest.self, from: Data(job.request.utf8))
            guard let image = records.image,
                  let version = image.versions.first(where: { $0.version == request.version }) else {
                throw LibraryError.badRequest(field: "version", reason: "the library has no version \(request.version) of \"\(request.image)\"")
            }
            let servicing = LibraryWork.Servicing(drivers: request.drivers ?? [], files: request.files ?? [], delete: request.delete ?? [])
            let temporary = server.libraryWorkDirectory + "/\(job.id).wim"
            say("servicing version \(version.version) of \(image.name)")
            let changes = try LibraryWork.service(try server.contentPath(version.file, field: "version"), with: servicing,
                                                  resolve: { (try? server.contentPath($0, field: "source")) ?? "/nonexistent/\($0)" },
                                                  to: temporary, progress: progress)
            for change in changes { say(change) }
            let origin = LibraryVersion.Origin(kind: .service, wim: nil, index: nil, fromVersion: version.version, job: job.id, changes: changes)
            return try store(temporary, image: image.name, description: nil, origin: origin, job: job, server: server, progress: progress, say: say)
        }
    }

    /// Moves a finished WIM to `library/files/<sha256>.wim` (an equal file already there is
    /// kept: stored once); its version is recorded after.
    private static func store(_ temporary: String, image: String, description: String?, origin: LibraryVersion.Origin, job: LibraryJob,
                              server: ImprintServer, progress: @escaping LibraryWork.Progress, say: @Sendable (String) -> Void) throws -> Outcome {
        // Its data came from a WIM the import checked whole (copied as stored, or decoded with
        // every SHA-1 checked) or was written here from files: reading it back whole again
        // would double the job's time on a large image.
        let inspection = try LibraryWork.inspect(temporary, verifyBlobs: false, progress: progress)
        let relative = "library/files/\(inspection.sha256).wim"
        let final = server.configuration.contentDirectory + "/" + relative
        try FileManager.default.createDirectory(atPath: (final as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: final) {
            say("an equal file is in the library already: stored once")
            unlink(temporary)
        } else {
            guard rename(temporary, final) == 0 else { throw WIMWriteError.io(path: final, operation: "rename into place", errno: errno) }
        }
        ImprintServer.syncFolder((final as NSString).deletingLastPathComponent)
        return .version(image: image, description: description,
                        LibraryVersion(image: image, version: 0, state: .ready, file: relative, sha256: inspection.sha256, size: inspection.size,
                                       compression: inspection.compression, solid: inspection.solid, pipable: inspection.pipable,
                                       details: inspection.images[0], origin: origin, created: StoredTime.now()))
    }

    static func layout(_ compress: String?, solid: Bool?, pipable: Bool?) throws -> LibraryWork.Layout {
        var layout = LibraryWork.Layout(solid: solid ?? false, pipable: pipable ?? false)
        if let compress {
            guard let choice = CompressionChoice(parsing: compress) else {
                throw LibraryError.badRequest(field: "compress", reason: "compress is none, xpress, lzx or lzms, optionally :LEVEL (1-100); not \"\(compress)\"")
            }
            layout.compress = choice
        }
        if layout.solid && layout.pipable { throw LibraryError.badRequest(field: "solid", reason: "a WIM is solid or pipable, not both") }
        return layout
    }

}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
