import Foundation
import Primitives
import Hummingbird
import Multicast
import SequenceModel

/// The multicast sessions' routes: the administrator's list, create, one session (with its
/// members and its sender's live status), cancel and delete (admin token); and a session's
/// block manifest, which the agents fetch as they fetch /content (no token: what it says is
/// checked against the SHA-256 their check-in gave them).
public enum MulticastRoute: Sendable, Hashable {
    case list, create, session, cancel, delete
    case manifest

    var isAdmin: Bool { self != .manifest }
}

/// What an administrator asks for (the admin API's body, and the dashboard's form as JSON).
struct MulticastCreateRequest: Decodable {
    var name: String
    /// A path under the content folder...
    var file: String?
    /// ...or a library image, with "latest" (the default) or a version number.
    var image: String?
    var version: JSONValue?
    /// Left out: the server's next free address of --multicast-groups, with its port.
    var group: String?
    var port: Int?
    /// The cap, in megabits a second (default 100).
    var rateMbps: Double?
    /// Start when this many machines are heard (default 1)...
    var minMachines: Int?
    /// ...or at this time (ISO 8601), or this many seconds from now, whichever comes first.
    var startAt: String?
    var startAfterSeconds: Int?
    /// Which machines: these ids, or the next `count` that check in (default: minMachines).
    var machines: [String]?
    var count: Int?
}

extension ImprintServer {
    func multicast(_ route: MulticastRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        switch route {
        case .list:
            struct List: Encodable { var sessions: [MulticastSessionView] }
            var views: [MulticastSessionView] = []
            for session in try await storage.multicastSessions().prefix(500) {
                views.append(MulticastSessionView(session: session, members: try await storage.multicastMembers(session: session.id),
                                                  listing: true, sender: nil))
            }
            return JSON.response(List(sessions: views))

        case .create:
            let body = try decodeBody(MulticastCreateRequest.self, from: try await request.bodyData(limit: 256 << 10))
            let session = try await createMulticastSession(body)
            return JSON.response(try await multicastSessionView(session), status: .created)

        case .session:
            let id = try request.requiredParameter("id", context)
            guard let session = try await storage.multicastSession(id: id) else { throw APIError.notFound("multicast session \(id)") }
            return JSON.response(try await multicastSessionView(session))

        case .cancel:
            let id = try request.requiredParameter("id", context)
            return JSON.response(try await multicastSessionView(try await cancelMulticastSession(id: id)))

        case .delete:
            let id = try request.requiredParameter("id", context)
            guard let session = try await storage.multicastSession(id: id) else { throw APIError.notFound("multicast session \(id)") }
            if session.isOpen { _ = try await cancelMulticastSession(id: id) }
            guard try await storage.deleteMulticastSession(id: id) else { throw APIError.notFound("multicast session \(id)") }
            unlink(multicast.manifestPath(session: id))
            logger.info("multicast session \(id) (\(session.name)) deleted by an administrator")
            struct Deleted: Encodable { var deleted: String }
            return JSON.response(Deleted(deleted: id))

        case .manifest:
            let id = try request.requiredParameter("id", context)
            // The id is 16 hex digits: nothing else reaches the file system.
            guard parseSessionID(id) != nil, let session = try await storage.multicastSession(id: id), session.manifestSHA256 != nil,
                  let data = FileManager.default.contents(atPath: multicast.manifestPath(session: id)) else {
                throw APIError.notFound("multicast session \(id)'s manifest")
            }
            var response = JSON.raw(data, contentType: "application/octet-stream")
            response.headers[.cacheControl] = "no-cache"
            return response
        }
    }

    func multicastSessionView(_ session: MulticastSession) async throws -> MulticastSessionView {
        MulticastSessionView(session: session, members: try await storage.multicastMembers(session: session.id), listing: false,
                             sender: multicast.status(session: session.id).map(MulticastSenderView.init))
    }

    /// Ends an open session (its sender stops within a second); 409 for one that has ended.
    func cancelMulticastSession(id: String) async throws -> MulticastSession {
        let reason = "cancelled by an administrator"
        guard let ended = try await storage.endMulticastSession(id: id, state: .cancelled, reason: reason) else {
            guard let session = try await storage.multicastSession(id: id) else { throw APIError.notFound("multicast session \(id)") }
            throw APIError(.conflict, "multicast session \(id) has ended already (\(session.state.rawValue))", field: "id")
        }
        multicast.stop(session: id, reason: reason)
        logger.info("multicast session \(id) (\(ended.name)) cancelled by an administrator")
        return ended
    }

    static func validMulticastName(_ name: String) -> Bool { validLibraryName(name) }

    /// Checks what an administrator asked (422 naming the field), stores the session and starts
    /// its sender, which first makes the block manifest.
    func createMulticastSession(_ body: MulticastCreateRequest) async throws -> MulticastSession {
        func refuse(_ field: String, _ message: String) -> APIError { APIError(.unprocessableContent, message, field: field) }
        guard Self.validMulticastName(body.name) else {
            throw refuse("name", "a session's name is 1 to 100 letters, digits, spaces, '-', '_', '.', '(' and ')'")
        }
        // The file: under the content folder, or a library version's.
        let relative: String
        var image: String?, imageVersion: Int?
        switch (body.file, body.image) {
        case (.some, .some):
            throw refuse("image", "give the file or a library image, not both")
        case (nil, nil):
            throw refuse("file", "give the file to send (a path under the content folder) or a library image (\"image\")")
        case let (file?, nil):
            relative = file
        case let (nil, name?):
            guard let library = try await storage.libraryImage(name: name) else { throw refuse("image", "the library has no image named \"\(name)\"") }
            let text = body.version?.scalarText ?? "latest"
            let version: LibraryVersion
            if text == "latest" {
                guard let latest = library.latest else { throw refuse("version", "every version of \"\(name)\" is retired: \"latest\" names none") }
                version = latest
            } else {
                guard let number = Int(text), let named = library.versions.first(where: { $0.version == number }) else {
                    throw refuse("version", "\"\(name)\" has no version \(text) (it has " + library.versions.map { String($0.version) }.joined(separator: ", ") + ")")
                }
                version = named
            }
            relative = version.file
            image = name
            imageVersion = version.version
        }
        let path: String
        do { path = try contentPath(relative, field: body.image == nil ? "file" : "image") } catch let error as LibraryError {
            if case let .badRequest(field, reason) = error { throw refuse(field, reason) }
            throw error
        }
        guard let identity = FileIdentity.of(path) else { throw refuse(body.image == nil ? "file" : "image", "\(relative) is not a regular file") }
        guard identity.size > 0 else { throw refuse("file", "\(relative) is empty: nothing to send") }
        // Where it goes.
        var addresses: [(group: String, port: Int)]?
        var group = "", port = 0
        if let port = body.port, !(1024...65535).contains(port) { throw refuse("port", "a session's port is 1024 to 65535, not \(port)") }
        if let given = body.group {
            guard IPv4.isMulticast(given) else {
                throw refuse("group", "\"\(given)\" is not an IPv4 multicast address (224.0.0.0 to 239.255.255.255; 239.x.x.x stays within a site)")
            }
            group = given
            port = body.port ?? configuration.multicastBasePort
        } else {
            addresses = configuration.multicastGroups.addresses(basePort: configuration.multicastBasePort)
                .map { (group: $0.group, port: body.port ?? $0.port) }
        }
        let rate = body.rateMbps ?? RuleMulticast.defaultRateMbps
        guard rate >= 0.1, rate <= 100_000 else { throw refuse("rateMbps", "rateMbps is 0.1 to 100000 (megabits a second), not \(rate)") }
        let minMachines = body.minMachines ?? 1
        guard (1...10_000).contains(minMachines) else { throw refuse("minMachines", "minMachines is 1 to 10000, not \(minMachines)") }
        var startAt: Date?
        switch (body.startAt, body.startAfterSeconds) {
        case (.some, .some): throw refuse("startAfterSeconds", "give startAt or startAfterSeconds, not both")
        case let (text?, nil):
            guard let date = try? Date(text, strategy: .iso8601) else {
                throw refuse("startAt", "\"\(text)\" is not a time such as 2026-03-01T08:00:00Z")
            }
            startAt = date
        case let (nil, seconds?):
            guard (0...7 * 86_400).contains(seconds) else { throw refuse("startAfterSeconds", "startAfterSeconds is 0 to 604800 (a week), not \(seconds)") }
            startAt = Date().addingTimeInterval(Double(seconds))
        case (nil, nil): break
        }
        // Which machines.
        var expectedMachines: [String]?, expectedCount: Int?
        switch (body.machines, body.count) {
        case (.some, .some): throw refuse("count", "give the machines or a count of machines, not both")
        case let (ids?, nil):
            guard !ids.isEmpty else { throw refuse("machines", "the list of machines is empty: list their ids, or give a count") }
            for (index, id) in ids.enumerated() {
                if try await storage.machine(id: id) == nil { throw refuse("machines[\(index)]", "no machine has the id \(id)") }
            }
            expectedMachines = Array(Set(ids)).sorted()
        case let (nil, count?):
            guard (1...10_000).contains(count) else { throw refuse("count", "count is 1 to 10000 machines, not \(count)") }
            expectedCount = count
        case (nil, nil):
            expectedCount = minMachines
        }
        let session = MulticastSession(
            id: Self.newMulticastID(), name: body.name, file: relative, image: image, imageVersion: imageVersion, size: identity.size,
            group: group, port: port, rateBitsPerSecond: Int(rate * 1_000_000), minMachines: minMachines,
            startAt: startAt.map { StoredTime.format.format($0) }, expectedMachines: expectedMachines, expectedCount: expectedCount, rule: nil,
            state: .waiting, reason: nil, created: StoredTime.now(), started: nil, ended: nil, passes: 0, bytesSent: 0, manifestSHA256: nil,
            instance: multicast.instanceName)
        let stored: MulticastSession
        do { stored = try await storage.createMulticastSession(session, addresses: addresses) } catch let conflict as MulticastConflict {
            throw APIError(conflict.field == "name" ? .conflict : .unprocessableContent, conflict.description, field: conflict.field)
        }
        logger.info("multicast session \(stored.id) (\(stored.name)) created: \(relative) to \(stored.group):\(stored.port)")
        multicast.launch(stored, self)
        return stored
    }

    /// 16 random hex digits, never all zeros (a session and a receiver id are UInt64s that 0 does not name).
    static func newMulticastID() -> String {
        while true {
            let id = Tokens.make(bytes: 8)
            if parseSessionID(id) != 0 { return id }
        }
    }

    /// Keeps the session's manifest where its URL serves it and records its SHA-256: from
    /// then on check-ins put machines in it. Safe to do twice (the sender's task and a check-in).
    func recordSessionManifest(_ session: MulticastSession, _ prepared: PreparedManifest) async throws {
        let path = multicast.manifestPath(session: session.id)
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: multicast.sessionFolder, withIntermediateDirectories: true)
            try writeWhole(prepared.encoded, to: path)
        }
        if session.manifestSHA256 != prepared.sha256 { try await storage.setMulticastManifest(id: session.id, sha256: prepared.sha256) }
    }

    // MARK: - Check-ins

    /// A step that fetches a file of this server's /content: where the step is, its source as
    /// the agent reaches it, and the file's path under the content folder and real path.
    struct MulticastCandidate {
        var source: String
        var relative: String
        var path: String
    }

    /// The file under the content folder a step's source names on this server (`${ServerURL}/content/…`
    /// or the public URL written out), nil for any other source; `url`: the source as the agent
    /// reaches it. With `variables` (what the sequence starts with), a source naming them
    /// (`${ServerURL}/content/images/${ImageFile}`) is read with them written out; one naming a
    /// variable the server cannot know (a fact, one a step sets) or a secret names no file.
    func contentFile(ofSource source: String, variables: Variables? = nil) -> (relative: String, path: String, url: String)? {
        var source = source
        if let variables, source.contains("$") {
            var unknown = false
            let expanded = variables.substitute(source, unknown: { _ in unknown = true })
            guard !unknown, variables.redact(expanded) == expanded else { return nil }
            source = expanded
        }
        for prefix in ["${ServerURL}/content/", publicURL + "/content/"] where source.hasPrefix(prefix) {
            let rest = source.dropFirst(prefix.count)
            guard !rest.contains("?"), !rest.contains("#"), !rest.contains("${"), let relative = String(rest).removingPercentEncoding,
                  let path = try? contentPath(relative, field: "source") else { return nil }
            return (relative, path, publicURL + "/content/" + rest)
        }
        return nil
    }

    /// The variables a sequence starts with, as far as the server knows them: the sequence's
    /// defaults and `server` (the rule's, ServerURL, DeploymentID), the machine's facts left
    /// out (the agent's own facts win over any value under their names).
    static func startingVariables(_ body: String, server: [String: String]) -> Variables {
        let top = (try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)))?.objectValue
        var defaults: [String: String] = [:]
        for (name, value) in top?["variables"]?.objectValue ?? [:] { defaults[name] = value.scalarText }
        let secrets = Set((top?["secrets"]?.arrayValue ?? []).compactMap(\.stringValue))
        return Variables(facts: [:], sequence: defaults.filter { !FactNames.all.contains($0.key) },
                         server: server.filter { !FactNames.all.contains($0.key) }, secrets: secrets)
    }

    /// Walks a sequence's steps (and groups'); `visit` gets every applyImage and writeImage step
    /// fetching a file of this server that carries no multicast session yet, and returns the
    /// session's fields for it (nil: unchanged).
    static func rewriteImageSteps(_ body: String, _ visit: ([String: JSONValue]) async throws -> JSONValue?) async throws -> String? {
        guard let root = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)), var top = root.objectValue,
              let steps = top["steps"]?.arrayValue else { return nil }
        var changed = false
        func walk(_ steps: [JSONValue]) async throws -> [JSONValue] {
            var result: [JSONValue] = []
            for step in steps {
                guard var fields = step.objectValue else { result.append(step); continue }
                if let inner = fields["steps"]?.arrayValue { fields["steps"] = .array(try await walk(inner)) }
                let type = fields["type"]?.stringValue
                if type == "applyImage" || type == "writeImage", fields["multicast"] == nil, fields["source"]?.stringValue != nil,
                   let multicast = try await visit(fields) {
                    fields["multicast"] = multicast
                    changed = true
                }
                result.append(.object(fields))
            }
            return result
        }
        top["steps"] = .array(try await walk(steps))
        guard changed else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(JSONValue.object(top)), as: UTF8.self)
    }

    /// The real paths of the files this server serves that a sequence's image steps fetch.
    func multicastCandidatePaths(in body: String, rule: Rule) async -> [String] {
        var paths: [String] = []
        let variables = Self.startingVariables(body, server: rule.variables.merging(["ServerURL": publicURL]) { _, new in new })
        _ = try? await Self.rewriteImageSteps(body) { fields in
            if let source = fields["source"]?.stringValue, let file = contentFile(ofSource: source, variables: variables) { paths.append(file.path) }
            return nil
        }
        return paths
    }

    /// The longest a check-in waits for a block manifest being made: under the agent's 30 s
    /// stall timeout, so its check-in is answered rather than sent again (which would meet the
    /// deployment the first one made, with its token already issued).
    static let manifestWaitSeconds = 20.0

    /// After rules are stored: the manifests of the files their multicast rules' sequences
    /// fetch are made in the background now, so the first machine's check-in finds them ready.
    func warmMulticastManifests(_ rules: [Rule]) {
        let multicastRules = rules.filter { $0.multicast != nil }
        guard !multicastRules.isEmpty else { return }
        Task(executorPreference: multicast.backgroundExecutor) { [self] in
            for rule in multicastRules {
                guard let sequence = try? await storage.sequence(name: rule.sequence) else { continue }
                let body = (try? await LibraryReferences.resolve(sequence.body, images: libraryImagesByName).body) ?? sequence.body
                for path in Set(await multicastCandidatePaths(in: body, rule: rule)) {
                    guard let identity = FileIdentity.of(path) else { continue }
                    do { _ = try await multicast.manifests.prepare(identity, executor: multicast.backgroundExecutor) } catch {
                        logger.error("multicast: rule \(rule.multicastKey): the block manifest of \(path) cannot be made: \(error)")
                    }
                }
            }
        }
    }

    /// Before the check-in lock: makes (or waits for, `manifestWaitSeconds` at most) the block manifests
    /// a machine's session will need: of the files its rule's sequence fetches when the rule
    /// makes sessions, or when an open session's manifest is still being made. The lock is not
    /// held meanwhile: other machines' check-ins do not wait for a disk being read.
    func prepareMulticastManifests(facts: Facts) async {
        do {
            let rules = try await storage.rules()
            guard let rule = rules.first(where: { $0.name != Rule.defaultName && $0.matches(facts) })
                    ?? rules.first(where: { $0.name == Rule.defaultName }) else { return }
            let open = try await storage.openMulticastSessions()
            let unprepared = open.filter { $0.manifestSHA256 == nil }
            guard rule.multicast != nil || !unprepared.isEmpty, let sequence = try await storage.sequence(name: rule.sequence) else { return }
            let body = (try? await LibraryReferences.resolve(sequence.body, images: libraryImagesByName).body) ?? sequence.body
            let waiting = Set(unprepared.compactMap { try? contentPath($0.file, field: "file") })
            for path in Set(await multicastCandidatePaths(in: body, rule: rule)) where rule.multicast != nil || waiting.contains(path) {
                guard let identity = FileIdentity.of(path) else { continue }
                if await multicast.manifests.prepare(identity, executor: multicast.backgroundExecutor, waitingAtMost: Self.manifestWaitSeconds) == nil {
                    logger.warning("multicast: the block manifest of \(path) is not ready after \(Int(Self.manifestWaitSeconds)) s (it is still being made): this machine fetches the file by HTTP")
                }
            }
        } catch {
            logger.error("multicast: cannot prepare this check-in's sessions: \(error)")
        }
    }

    /// Under the check-in lock: puts the machine in a session for each image step fetching a
    /// file of this server that a waiting or running session sends and that takes this machine
    /// (it lists it; its count is not reached; or it is its rule's), or in a new session of its
    /// rule's; the step gets `"multicast"` (the descriptor). Returns the sequence to store and
    /// the memberships to record once the deployment is.
    func assignMulticast(body: String, machine: Machine, rule: Rule, deploymentID: String) async throws
        -> (body: String, members: [MulticastMember]) {
        var open: [MulticastSession]?
        var members: [MulticastMember] = []
        /// By real path: two steps fetching one file share one membership.
        var joined: [String: JSONValue] = [:]
        let server = rule.variables.merging(["ServerURL": publicURL, "DeploymentID": deploymentID]) { _, new in new }
        let variables = Self.startingVariables(body, server: server)
        let rewritten = try await Self.rewriteImageSteps(body) { fields in
            guard let source = fields["source"]?.stringValue, let file = contentFile(ofSource: source, variables: variables),
                  let identity = FileIdentity.of(file.path) else { return nil }
            if let descriptor = joined[file.path] { return descriptor }
            if open == nil { open = try await storage.openMulticastSessions() }
            var chosen: (MulticastSession, PreparedManifest)?
            for session in Self.preferred(open ?? [], machine: machine) where session.size == identity.size {
                guard (try? contentPath(session.file, field: "file")) == file.path,
                      try await accepts(session, machine: machine, rule: rule, pending: members),
                      let prepared = try await sessionManifest(session, identity) else { continue }
                chosen = (session, prepared)
                break
            }
            if chosen == nil, let settings = rule.multicast, let prepared = multicast.manifests.cached(identity) {
                if let made = try await ruleSession(rule, settings, file: file.relative, identity: identity, prepared: prepared) {
                    open?.append(made)
                    chosen = (made, prepared)
                }
            }
            guard let (session, prepared) = chosen else { return nil }
            let receiver = Self.newMulticastID()
            members.append(MulticastMember(session: session.id, machineID: machine.id, deploymentID: deploymentID, receiver: receiver,
                                           state: .assigned, assigned: StoredTime.now(), done: nil))
            // The file's URL as the agent reaches it (the variables written out: the receiver expands none).
            let url = file.url
            let descriptor = MulticastSessionDescriptor(session: session.id, receiver: receiver, group: session.group, port: session.port,
                                                        source: url, size: session.size,
                                                        manifest: publicURL + "/api/v1/multicast/sessions/\(session.id)/manifest",
                                                        manifestSHA256: prepared.sha256)
            let value = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(descriptor))
            joined[file.path] = value
            logger.info("machine \(machine.id): multicast session \(session.id) (\(session.name)) for \(file.relative), receiver \(receiver)")
            return value
        }
        return (rewritten ?? body, members)
    }

    /// Sessions that list the machine first, then those taking a count, then rules' sessions.
    static func preferred(_ sessions: [MulticastSession], machine: Machine) -> [MulticastSession] {
        func rank(_ session: MulticastSession) -> Int {
            if session.expectedMachines?.contains(machine.id) == true { return 0 }
            if session.expectedCount != nil { return 1 }
            return 2
        }
        return sessions.filter { $0.isOpen }.sorted { rank($0) < rank($1) }
    }

    /// Whether the session takes this machine: it lists it; it takes a count not reached yet
    /// (this check-in's own memberships counted); or a rule made it and this machine came by that rule.
    func accepts(_ session: MulticastSession, machine: Machine, rule: Rule, pending: [MulticastMember]) async throws -> Bool {
        if let ids = session.expectedMachines { return ids.contains(machine.id) }
        if let count = session.expectedCount {
            let members = try await storage.multicastMembers(session: session.id)
            if members.contains(where: { $0.machineID == machine.id }) { return true }
            return members.count + pending.count(where: { $0.session == session.id }) < count
        }
        if let key = session.rule { return rule.multicast != nil && key == rule.multicastKey }
        return false
    }

    /// The session's manifest when it is made: kept already, or made for this very file (the
    /// sender's task may not have recorded it yet). Nil: not ready, the machine goes by HTTP.
    func sessionManifest(_ session: MulticastSession, _ identity: FileIdentity) async throws -> PreparedManifest? {
        if let sha = session.manifestSHA256 {
            guard let data = FileManager.default.contents(atPath: multicast.manifestPath(session: session.id)),
                  let manifest = try? BlockManifest(decoding: [UInt8](data), name: session.id) else { return nil }
            let prepared = PreparedManifest(manifest: manifest, encoded: [UInt8](data))
            return prepared.sha256 == sha ? prepared : nil
        }
        guard let prepared = multicast.manifests.cached(identity) else { return nil }
        try await recordSessionManifest(session, prepared)
        return prepared
    }

    /// A new session for a rule's machines and this file: it starts when `minMachines` have
    /// joined or `waitSeconds` from now. Nil when no group address is free (logged).
    func ruleSession(_ rule: Rule, _ settings: RuleMulticast, file: String, identity: FileIdentity, prepared: PreparedManifest) async throws
        -> MulticastSession? {
        let id = Self.newMulticastID()
        let now = Date()
        let session = MulticastSession(
            id: id, name: "rule \(rule.multicastKey) \(id)", file: file, image: nil, imageVersion: nil, size: identity.size, group: "", port: 0,
            rateBitsPerSecond: settings.rateBitsPerSecond, minMachines: settings.machines,
            startAt: StoredTime.format.format(now.addingTimeInterval(Double(settings.wait))), expectedMachines: nil, expectedCount: nil,
            rule: rule.multicastKey, state: .waiting, reason: nil, created: StoredTime.format.format(now), started: nil, ended: nil,
            passes: 0, bytesSent: 0, manifestSHA256: nil, instance: multicast.instanceName)
        let stored: MulticastSession
        do {
            stored = try await storage.createMulticastSession(session, addresses: configuration.multicastGroups.addresses(basePort: configuration.multicastBasePort))
        } catch let conflict as MulticastConflict {
            logger.error("multicast: rule \(rule.multicastKey) cannot make a session for \(file): \(conflict.description)")
            return nil
        }
        try await recordSessionManifest(stored, prepared)
        var recorded = stored
        recorded.manifestSHA256 = prepared.sha256
        logger.info("multicast session \(id) made by rule \(rule.multicastKey) for \(file): \(stored.group):\(stored.port), starts with \(settings.machines) machine(s) or in \(settings.wait) s")
        multicast.launch(recorded, self)
        return recorded
    }
}

/// A session as the admin API and the dashboard show it: its record, its members (or only
/// their counts, in the list), and its sender's live status when this instance runs it.
struct MulticastSessionView: Encodable {
    var session: MulticastSession
    var members: [MulticastMember]
    var listing: Bool
    var sender: MulticastSenderView?

    private enum Extra: String, CodingKey { case members, memberCounts, sender, rateMbps }

    func encode(to encoder: any Encoder) throws {
        try session.encode(to: encoder)
        var container = encoder.container(keyedBy: Extra.self)
        var counts: [String: Int] = [:]
        for state in MulticastMember.State.allCases { counts[state.rawValue] = members.count(where: { $0.state == state }) }
        try container.encode(counts, forKey: .memberCounts)
        try container.encode(Double(session.rateBitsPerSecond) / 1_000_000, forKey: .rateMbps)
        if !listing {
            try container.encode(members, forKey: .members)
            try container.encodeIfPresent(sender, forKey: .sender)
        }
    }
}

/// What the sender reports, as JSON.
struct MulticastSenderView: Encodable {
    struct Receiver: Encodable {
        var receiver: String
        var address: String
        var state: String
        var blocksNeeded: Int
        var lastHeard: String
    }
    var state: String
    var receivers: [Receiver]
    var finished: [String]
    var passes: Int
    var bytesSent: UInt64
    var datagramsSent: UInt64

    init(_ status: MulticastSenderStatus) {
        state = status.state.rawValue
        receivers = status.receivers.map {
            Receiver(receiver: $0.receiver, address: $0.address, state: $0.state, blocksNeeded: $0.blocksNeeded,
                     lastHeard: StoredTime.format.format($0.lastHeard))
        }
        finished = status.finished
        passes = status.passes
        bytesSent = status.bytesSent
        datagramsSent = status.datagramsSent
    }
}
