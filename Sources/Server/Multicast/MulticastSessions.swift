import Crypto
import Foundation
import Logging
import Multicast
import Synchronization

/// A block manifest ready to hand out: the manifest, its encoding (what the manifest URL
/// serves) and the encoding's SHA-256 (what the check-in gives receivers, the trusted channel).
struct PreparedManifest: Sendable {
    var manifest: BlockManifest
    var encoded: [UInt8]
    var sha256: String

    init(manifest: BlockManifest, encoded: [UInt8]) {
        self.manifest = manifest
        self.encoded = encoded
        sha256 = SHA256.hash(data: encoded).map { String(format: "%02x", $0) }.joined()
    }
}

/// A file as the manifest cache knows it: its real path, and the size and modification time
/// that say it is still the file a manifest was made of (a file replaced gets a new manifest).
struct FileIdentity: Sendable, Hashable {
    var path: String
    var size: UInt64
    var modifiedNanoseconds: Int64

    static func of(_ path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return FileIdentity(path: path, size: UInt64(info.st_size),
                            modifiedNanoseconds: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }

    /// The cache file's name: nothing of the path shows in it.
    var key: String {
        SHA256.hash(data: Data("\(path)\n\(size)\n\(modifiedNanoseconds)".utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// Block manifests by file, made once per version of a file (reading a multi-gigabyte image
/// takes a while) and kept under the data folder, so sessions of the same file (a rule's, one
/// after the other) and a restarted server do not read it again.
final class MulticastManifests: Sendable {
    let folder: String
    private let ready = Mutex<[FileIdentity: PreparedManifest]>([:])
    private let making = Mutex<[FileIdentity: Task<PreparedManifest, any Error>]>([:])

    init(folder: String) { self.folder = folder }

    /// The manifest of this version of the file when it is made already (in memory or on disk).
    func cached(_ identity: FileIdentity) -> PreparedManifest? {
        if let hit = ready.withLock({ $0[identity] }) { return hit }
        let file = folder + "/" + identity.key + ".manifest"
        guard let data = FileManager.default.contents(atPath: file),
              let manifest = try? BlockManifest(decoding: [UInt8](data), name: file), manifest.fileSize == identity.size else { return nil }
        let prepared = PreparedManifest(manifest: manifest, encoded: [UInt8](data))
        ready.withLock { $0[identity] = prepared }
        return prepared
    }

    /// The manifest, made now when it is not yet; callers asking for the same file at once
    /// share one reading of it. The coordinating task runs on `executor` (the server's
    /// background executor); the reading itself on a thread of its own, as the library's jobs
    /// do theirs: it blocks for as long as the disk takes, which no pool's thread should.
    func prepare(_ identity: FileIdentity, executor: (any TaskExecutor)?) async throws -> PreparedManifest {
        if let hit = cached(identity) { return hit }
        let folder = self.folder
        let task = making.withLock { tasks in
            if let running = tasks[identity] { return running }
            let task = Task(executorPreference: executor) { () async throws -> PreparedManifest in
                let manifest = try await onOwnThread { () throws -> BlockManifest in try BlockManifest.make(path: identity.path) }
                let prepared = PreparedManifest(manifest: manifest, encoded: manifest.encoded())
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try writeWhole(prepared.encoded, to: folder + "/" + identity.key + ".manifest")
                return prepared
            }
            tasks[identity] = task
            return task
        }
        do {
            let prepared = try await task.value
            ready.withLock { $0[identity] = prepared }
            making.withLock { $0[identity] = nil }
            return prepared
        } catch {
            making.withLock { $0[identity] = nil }
            throw error
        }
    }

    /// `prepare`, waiting at most `seconds` (the manifest goes on being made after): nil when
    /// it was not ready by then or could not be made.
    func prepare(_ identity: FileIdentity, executor: (any TaskExecutor)?, waitingAtMost seconds: Double) async -> PreparedManifest? {
        if let hit = cached(identity) { return hit }
        let answered = OneAnswer()
        return await withCheckedContinuation { (continuation: CheckedContinuation<PreparedManifest?, Never>) in
            let answer: @Sendable (PreparedManifest?) -> Void = { value in
                if answered.first() { continuation.resume(returning: value) }
            }
            Task(executorPreference: executor) { answer(try? await self.prepare(identity, executor: executor)) }
            Task(executorPreference: executor) {
                try? await Task.sleep(for: .seconds(seconds))
                answer(nil)
            }
        }
    }
}

/// Whichever of two racing tasks answers first.
private final class OneAnswer: Sendable {
    private let answered = Mutex(false)
    func first() -> Bool { answered.withLock { done in defer { done = true }; return !done } }
}

/// Runs `work` on a new thread and waits for it without holding any pool's thread.
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 4 << 20
        thread.start()
    }
}

/// Writes beside, then renames: a reader never sees half a file.
func writeWhole(_ bytes: [UInt8], to path: String) throws {
    let temporary = path + ".\(UUID().uuidString.prefix(8)).tmp"
    try Data(bytes).write(to: URL(fileURLWithPath: temporary))
    guard rename(temporary, path) == 0 else {
        unlink(temporary)
        throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
    }
}

/// One session's sender as its thread and the server's loop share it: what the sender last
/// reported, what the database says of the members, and why it should stop.
final class MulticastRunner: Sendable {
    struct State {
        /// Set: the sender stops at its next look (cancelled, the server stopping).
        var stopReason: String?
        /// Members as stored, by receiver id.
        var members: [String: MulticastMember.State] = [:]
        /// Every machine the session expects is in it.
        var expectedReached = false
        var status: MulticastSenderStatus?
        var startedAt: Date?
        var lastNeed = Date()
        /// Why it finished by itself.
        var finishedWhy: String?
    }

    let sessionID: String
    let state = Mutex(State())

    init(sessionID: String) { self.sessionID = sessionID }

    var status: MulticastSenderStatus? { state.withLock { $0.status } }

    func stop(_ reason: String) { state.withLock { if $0.stopReason == nil { $0.stopReason = reason } } }

    /// The sender's question, about every 20 ms: stop when asked to; when every member has
    /// received the whole file and every machine expected has joined; or when, once started,
    /// no receiver has needed anything for `idleSeconds`.
    func shouldStop(_ status: MulticastSenderStatus, idleSeconds: Double) -> Bool {
        state.withLock { s in
            s.status = status
            if s.stopReason != nil { return true }
            let now = Date()
            if s.startedAt == nil, status.state == .sending || status.state == .idle {
                s.startedAt = now
                s.lastNeed = now
            }
            if status.receivers.contains(where: { $0.blocksNeeded > 0 && ($0.state == "waiting" || $0.state == "receiving") }) { s.lastNeed = now }
            if s.expectedReached, !s.members.isEmpty,
               s.members.allSatisfy({ $0.value == .done || status.finished.contains($0.key) }) {
                s.finishedWhy = "every machine in the session (\(s.members.count)) received the whole file"
                return true
            }
            if s.startedAt != nil, now.timeIntervalSince(s.lastNeed) >= idleSeconds {
                s.finishedWhy = "no machine needed anything for \(Int(idleSeconds)) s"
                return true
            }
            return false
        }
    }

    func report(_ status: MulticastSenderStatus) { state.withLock { $0.status = status } }
}

/// The server's multicast sessions: each open one this instance made runs a `MulticastSender`
/// on a thread of its own, followed by a task that writes what it did to the database (about
/// once a second) and reads back the members and whether the session was cancelled. A server
/// that stops ends its sessions as failed; one that stopped without that (killed) finds them
/// open at its next start and fails them then ("interrupted"), as the library's jobs.
final class MulticastSessions: Sendable {
    let manifests: MulticastManifests
    /// Where each session's manifest is kept (what its URL serves).
    let sessionFolder: String
    private let runners = Mutex<[String: (runner: MulticastRunner, task: Task<Void, Never>)]>([:])
    private let executor = Mutex<(any TaskExecutor)?>(nil)
    private let stopped = Atomic<Bool>(false)
    /// `ImprintServer.instanceName`, read once at start.
    let instance = Mutex<String>("")

    init(dataDirectory: String) {
        manifests = MulticastManifests(folder: dataDirectory + "/multicast/manifests")
        sessionFolder = dataDirectory + "/multicast/sessions"
    }

    var backgroundExecutor: (any TaskExecutor)? { executor.withLock { $0 } }
    var instanceName: String { instance.withLock { $0 } }

    func manifestPath(session id: String) -> String { sessionFolder + "/\(id).manifest" }

    /// Fails the sessions this instance left open (it stopped without ending them).
    func start(_ server: ImprintServer, on executor: (any TaskExecutor)?) async {
        self.executor.withLock { $0 = executor }
        let name = server.instanceName
        instance.withLock { $0 = name }
        do {
            for session in try await server.storage.openMulticastSessions(instance: name) {
                let reason = "interrupted: the server stopped while the session was \(session.state.rawValue) "
                    + "(\(session.passes) passes, \(session.bytesSent) bytes sent); its machines fetch the rest by HTTP — create it again"
                _ = try await server.storage.endMulticastSession(id: session.id, state: .failed, reason: reason)
                server.logger.warning("multicast session \(session.id) (\(session.name)): \(reason)")
            }
        } catch {
            server.logger.error("multicast: cannot check the sessions left open: \(error)")
        }
    }

    /// Stops every sender (each ends its session as failed) and waits for them.
    func stop() async {
        stopped.store(true, ordering: .relaxed)
        let running = runners.withLock { Array($0.values) }
        for entry in running { entry.runner.stop("interrupted: the server stopped while the session was open") }
        for entry in running { await entry.task.value }
    }

    /// The live status of a session's sender, when this instance runs it.
    func status(session id: String) -> MulticastSenderStatus? {
        runners.withLock { $0[id]?.runner.status }
    }

    func isRunning(session id: String) -> Bool { runners.withLock { $0[id] != nil } }

    /// Tells a session's sender to stop (it was cancelled or deleted).
    func stop(session id: String, reason: String) {
        runners.withLock { $0[id]?.runner.stop(reason) }
    }

    /// Starts the session's sender: its manifest first (made now when it is not yet), then the
    /// thread, until the session ends.
    func launch(_ session: MulticastSession, _ server: ImprintServer) {
        guard !stopped.load(ordering: .relaxed) else { return }
        let runner = MulticastRunner(sessionID: session.id)
        runners.withLock { entries in
            guard entries[session.id] == nil else { return }
            let task = Task(executorPreference: backgroundExecutor) { [self] in
                await run(session, runner, server)
                _ = self.runners.withLock { $0.removeValue(forKey: session.id) }
            }
            entries[session.id] = (runner, task)
        }
    }

    /// What was last written of a session, so only changes are written.
    private struct Written {
        var passes = 0
        var bytesSent: UInt64 = 0
        var started = false
        var members: [String: MulticastMember.State] = [:]
    }

    private func run(_ session: MulticastSession, _ runner: MulticastRunner, _ server: ImprintServer) async {
        let logger = server.logger
        var written = Written()
        do {
            let path = try server.contentPath(session.file, field: "file")
            guard let identity = FileIdentity.of(path) else { throw MulticastSessionError("\(session.file) is not a regular file any more") }
            guard identity.size == session.size else {
                throw MulticastSessionError("\(session.file) is \(identity.size) bytes now, not the \(session.size) it was when the session was made")
            }
            let prepared = try await manifests.prepare(identity, executor: backgroundExecutor)
            // Cancelled (or the server stopping) while the manifest was being made: no sender.
            if let reason = runner.state.withLock({ $0.stopReason }) { throw MulticastSessionError(reason) }
            try await server.recordSessionManifest(session, prepared)
            guard let number = parseSessionID(session.id) else { throw MulticastSessionError("the session id \(session.id) is not 16 hex digits") }
            let configuration = server.configuration
            var options = MulticastSenderOptions(group: session.group, port: session.port, rateBitsPerSecond: session.rateBitsPerSecond)
            options.interfaceAddress = configuration.multicastInterfaceAddress
            options.ttl = configuration.multicastTTL
            options.minReceivers = max(1, session.minMachines)
            options.startAt = session.startAt.flatMap(StoredTime.parse)
            let sender = try MulticastSender(path: path, manifest: prepared.manifest, session: number, options: options)
            await refresh(session, runner, server, &written)
            let outcome = Mutex<Result<Void, any Error>?>(nil)
            let idle = configuration.multicastIdleSeconds
            let thread = Thread {
                let result = Result { try sender.run(shouldStop: { runner.shouldStop($0, idleSeconds: idle) }, report: { runner.report($0) }) }
                outcome.withLock { $0 = result }
            }
            thread.stackSize = 4 << 20
            thread.start()
            logger.info("multicast session \(session.id) (\(session.name)): sending \(session.file) to \(session.group):\(session.port) at \(session.rateBitsPerSecond) bit/s, manifest SHA-256 \(prepared.sha256)")
            while true {
                // The database hears of the sender once a second, however often it reports.
                try? await Task.sleep(for: .seconds(1))
                let ended = outcome.withLock { $0 }
                await refresh(session, runner, server, &written)
                guard let ended else { continue }
                try ended.get()
                break
            }
            let (stopReason, finishedWhy) = runner.state.withLock { ($0.stopReason, $0.finishedWhy) }
            if let stopReason {
                // Cancelled (ended already, so this changes nothing) or the server stopping.
                _ = try await server.storage.endMulticastSession(id: session.id, state: .failed, reason: stopReason)
            } else {
                let reason = finishedWhy ?? "the sender stopped"
                _ = try await server.storage.endMulticastSession(id: session.id, state: .finished, reason: reason)
                logger.info("multicast session \(session.id) (\(session.name)) finished: \(reason)")
            }
        } catch {
            let reason = (error as? LibraryError).map(\.description) ?? "\(error)"
            logger.error("multicast session \(session.id) (\(session.name)) failed: \(reason)")
            _ = try? await server.storage.endMulticastSession(id: session.id, state: .failed, reason: reason)
        }
    }

    /// Writes what the sender did since the last time (passes, bytes, the start, members heard
    /// receiving, done or leaving), then reads back the session and its members: cancelled
    /// (here or by another instance) stops the sender; the members say when it is complete.
    private func refresh(_ session: MulticastSession, _ runner: MulticastRunner, _ server: ImprintServer, _ written: inout Written) async {
        let storage = server.storage
        do {
            if let status = runner.status {
                let starting = !written.started && (status.state == .sending || status.state == .idle)
                if starting || status.passes != written.passes || status.bytesSent != written.bytesSent {
                    try await storage.updateMulticastProgress(id: session.id, passes: status.passes, bytesSent: status.bytesSent,
                                                              started: starting ? StoredTime.now() : nil)
                    written.passes = status.passes
                    written.bytesSent = status.bytesSent
                    written.started = written.started || starting
                }
                var changes: [String: MulticastMember.State] = [:]
                for receiver in status.receivers {
                    switch receiver.state {
                    case "receiving": changes[receiver.receiver] = .receiving
                    case "leaving": changes[receiver.receiver] = .left
                    case "done": changes[receiver.receiver] = .done
                    default: break
                    }
                }
                for receiver in status.finished { changes[receiver] = .done }
                changes = changes.filter { written.members[$0.key] != $0.value && written.members[$0.key] != .done }
                if !changes.isEmpty {
                    try await storage.updateMulticastMembers(session: session.id, states: changes)
                    written.members.merge(changes) { _, new in new }
                }
            }
            guard let current = try await storage.multicastSession(id: session.id) else {
                runner.stop("the session was deleted")
                return
            }
            if !current.isOpen { runner.stop("the session was \(current.state.rawValue)" + (current.reason.map { ": \($0)" } ?? "")) }
            let members = try await storage.multicastMembers(session: session.id)
            let reached = Self.expectedReached(current, members)
            runner.state.withLock { state in
                state.members = Dictionary(members.map { ($0.receiver, $0.state) }, uniquingKeysWith: { _, last in last })
                state.expectedReached = reached
            }
        } catch {
            server.logger.error("multicast session \(session.id): cannot record its progress: \(error)")
        }
    }

    /// Every machine the session waits for is in it: each listed one, the count, or for a
    /// rule's session its minimum.
    static func expectedReached(_ session: MulticastSession, _ members: [MulticastMember]) -> Bool {
        if let ids = session.expectedMachines { return Set(ids).isSubset(of: Set(members.map(\.machineID))) }
        if let count = session.expectedCount { return members.count >= count }
        return members.count >= max(1, session.minMachines)
    }
}

/// Why a session's sender could not start or go on, in a technician's words.
struct MulticastSessionError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
