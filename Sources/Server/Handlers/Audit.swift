import Foundation
import Hummingbird
import NIOCore
import SequenceModel
import Synchronization

/// What a handler tells the audit log that the route alone cannot: the id of what it created
/// (a user, a token), or that nothing changed after all.
final class AuditNote: Sendable {
    private let state = Mutex<(id: String?, skip: Bool)>((nil, false))

    func object(_ id: String) { state.withLock { $0.id = id } }
    func skip() { state.withLock { $0.skip = true } }
    var id: String? { state.withLock { $0.id } }
    var skipped: Bool { state.withLock { $0.skip } }

    @TaskLocal static var current: AuditNote?
}

/// What a changing route changes, for the audit log: the kind of object, its id when the path
/// names it, and how its state is read before and after.
struct AuditSubject: Sendable {
    enum Snapshot: Sendable {
        case rules, sequence, machine, deployment, distributionPoint, multicastSession, user, token
        /// A file of the content folder: its path, size and SHA-256 (when known).
        case contentFile
        /// No state to read: the answer (JSON) is what the change made (a job, a new object).
        case answer
    }
    var kind: String
    var id: String?
    var snapshot: Snapshot
    /// The key of the answer's JSON holding the new object's id, for a route that creates one.
    var answerID: String?
}

extension ImprintServer {
    /// The audit record of one changing route: `body` runs, and when it answers with success,
    /// who (the request's `Principal`), when, the route, the object and its state before and
    /// after (secrets as "set") are appended. Reads and failed changes are not recorded.
    func audited(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext,
                 _ body: () async throws -> Response) async throws -> Response {
        guard let principal = Principal.current, let subject = Self.auditSubject(handler, request, context) else { return try await body() }
        let before = subject.id == nil ? nil : try? await auditSnapshot(subject.snapshot, id: subject.id)
        let note = AuditNote()
        var response = try await AuditNote.$current.withValue(note) { try await body() }
        guard response.status.code < 400, !note.skipped else { return response }
        var id = subject.id ?? note.id
        var after: JSONValue?
        if subject.snapshot == .answer || id == nil {
            after = await Self.answerJSON(&response)
            if id == nil, let key = subject.answerID, case let .object(object)? = after {
                if case let .string(value)? = object[key] { id = value } else if case let .object(inner)? = object[key], case let .string(value)? = inner["id"] { id = value }
            }
        }
        if subject.snapshot != .answer, let id { after = try? await auditSnapshot(subject.snapshot, id: id) }
        let route = RouteSpec.byHandler[handler]
        let entry = AuditEntry(id: 0, time: StoredTime.now(), actor: principal.name, role: principal.role, via: principal.via.rawValue,
                               action: route.map { "\($0.method.rawValue) \($0.path)" } ?? "\(request.method.rawValue) \(request.uri.path)",
                               objectKind: subject.kind, objectID: id, before: before.map(Self.auditMasked),
                               after: after.map(Self.auditMasked))
        do { try await storage.appendAudit(entry) } catch {
            // The change is made: the caller learns of it; the log says the record is missing.
            logger.error("audit: could not record \(entry.action) of \(entry.objectKind) \(entry.objectID ?? "") by \(entry.actor): \(error)")
        }
        return response
    }

    /// The object each changing route changes; nil for a read (and for each piece of an
    /// upload: its announcement and the import that follows are recorded instead).
    static func auditSubject(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext) -> AuditSubject? {
        func parameter(_ name: String) -> String? { context.parameters.get(name) }
        switch handler {
        case .adminPutSequence: return AuditSubject(kind: "sequence", id: parameter("name"), snapshot: .sequence)
        case .adminPutRules: return AuditSubject(kind: "rules", id: "rules", snapshot: .rules)
        case .adminRegisterMachine: return AuditSubject(kind: "machine", snapshot: .machine, answerID: "id")
        case .adminApproveMachine, .adminRedeployMachine, .dashboardApprove, .dashboardRedeploy:
            return AuditSubject(kind: "machine", id: parameter("id"), snapshot: .machine)
        case .adminResetDeploymentToken, .dashboardResetToken:
            return AuditSubject(kind: "deployment", id: parameter("id"), snapshot: .deployment)
        case let .library(route), let .dashboardLibrary(route):
            switch route {
            case .overview, .wim, .image, .jobs, .job, .uploadData: return nil
            case .uploadAnnounce: return AuditSubject(kind: "library upload", id: parameter("name"), snapshot: .answer)
            case .importWIM, .extract: return AuditSubject(kind: "library job", snapshot: .answer, answerID: "id")
            case .deleteWIM: return AuditSubject(kind: "library wim", id: parameter("id"), snapshot: .answer)
            case .service, .retire, .deleteVersion:
                return AuditSubject(kind: "library image", id: [parameter("name"), parameter("version")].compactMap { $0 }.joined(separator: " version "),
                                    snapshot: .answer)
            }
        case let .distributionPoints(route):
            switch route {
            case .put, .delete: return AuditSubject(kind: "distribution point", id: parameter("name"), snapshot: .distributionPoint)
            case .list, .manifest, .status: return nil
            }
        case let .multicast(route), let .dashboardMulticastAPI(route):
            switch route {
            case .create: return AuditSubject(kind: "multicast session", snapshot: .multicastSession, answerID: "id")
            case .cancel, .delete: return AuditSubject(kind: "multicast session", id: parameter("id"), snapshot: .multicastSession)
            case .list, .session, .manifest: return nil
            }
        case let .users(route):
            switch route {
            case .create: return AuditSubject(kind: "user", snapshot: .user)
            case .update, .delete: return AuditSubject(kind: "user", id: parameter("name"), snapshot: .user)
            case .createToken: return AuditSubject(kind: "token", snapshot: .token)
            case .revokeToken: return AuditSubject(kind: "token", id: parameter("id"), snapshot: .token)
            case .list, .user, .tokens, .me, .audit: return nil
            }
        case let .machines(route):
            switch route {
            case .reject, .forget: return AuditSubject(kind: "machine", id: parameter("id"), snapshot: .machine)
            // Each machine of a batch is recorded by `importMachines`, one entry each.
            case .machine, .importCSV: return nil
            }
        case let .dashboardMachines(route):
            switch route {
            case .register: return AuditSubject(kind: "machine", snapshot: .machine)
            case .reject, .forget: return AuditSubject(kind: "machine", id: parameter("id"), snapshot: .machine)
            case .inventory, .machine, .importCSV: return nil
            }
        case let .contentAdmin(route):
            // An upload is recorded once, by the piece that completes it (the others skip).
            switch route {
            case .uploadData: return AuditSubject(kind: "content", id: try? Self.contentPath(from: request, after: Self.adminContentUploads), snapshot: .contentFile)
            case .delete: return AuditSubject(kind: "content", id: try? Self.contentPath(from: request, after: Self.adminContentFiles), snapshot: .contentFile)
            case .list, .uploadAnnounce: return nil
            }
        case let .dashboardContent(route):
            switch route {
            case .uploadData: return AuditSubject(kind: "content", id: try? Self.contentPath(from: request, after: Self.dashboardContentUploads), snapshot: .contentFile)
            case .delete: return AuditSubject(kind: "content", id: try? Self.contentPath(from: request, after: Self.dashboardContentDelete), snapshot: .contentFile)
            case .page, .uploadAnnounce: return nil
            }
        case .deploymentReports, .dashboardDeployments:
            return nil
        case .sequences(.restore):
            return AuditSubject(kind: "sequence", id: parameter("name"), snapshot: .sequence)
        case .ruleTest, .sequences:
            return nil
        case let .dashboardRules(route):
            switch route {
            case .add, .edit, .move, .delete: return AuditSubject(kind: "rules", id: "rules", snapshot: .rules)
            case .page, .test: return nil
            }
        case let .dashboardSequences(route):
            switch route {
            // A new sequence's name is in the form: the handler tells the log (`AuditNote`).
            case .create: return AuditSubject(kind: "sequence", snapshot: .sequence)
            case .save, .restore: return AuditSubject(kind: "sequence", id: parameter("name"), snapshot: .sequence)
            case .list, .page, .validate, .plan, .version: return nil
            }
        case let .dashboardUsers(route):
            switch route {
            case .add: return AuditSubject(kind: "user", snapshot: .user)
            case .role, .password, .delete, .revokeTokens: return AuditSubject(kind: "user", id: parameter("name"), snapshot: .user)
            case .page, .audit: return nil
            }
        case .bootScript, .bootScriptForMAC, .bootFile, .checkIn, .deploymentSequence, .deploymentEvents, .deploymentState,
             .captureAnnounce, .captureData, .content, .metrics,
             .adminGetSequence, .adminListSequences, .adminGetRules, .adminMachines, .adminDeployments, .adminDeployment, .adminDeploymentEvents,
             .dashboard, .dashboardDeployment, .dashboardLive, .dashboardLogin, .dashboardLogout, .dashboardScript, .dashboardStyle,
             .dashboardImages, .dashboardImage, .dashboardDistributionPoints, .dashboardMulticast:
            return nil
        }
    }

    /// The object's state as an administrator may see it (secret values masked); nil when it
    /// does not exist.
    func auditSnapshot(_ snapshot: AuditSubject.Snapshot, id: String?) async throws -> JSONValue? {
        func json(_ value: some Encodable) throws -> JSONValue? {
            try JSONDecoder().decode(JSONValue.self, from: JSON.encoder.encode(value))
        }
        switch snapshot {
        case .rules:
            struct Rules: Encodable { var rules: [Rule] }
            return try json(Rules(rules: try await storage.rules().map(Self.masked)))
        case .contentFile:
            guard let id else { return nil }
            return try await contentAuditSnapshot(id)
        case .answer:
            return nil
        default:
            break
        }
        guard let id else { return nil }
        switch snapshot {
        case .sequence:
            guard let sequence = try await storage.sequence(name: id) else { return nil }
            let masked = SecretSealing.maskSequence(sequence.body)
            return (try? JSONDecoder().decode(JSONValue.self, from: Data(masked.utf8))) ?? .string(masked)
        case .machine:
            guard let machine = try await storage.machine(id: id) else { return nil }
            struct View: Encodable {
                var id: String, state: String, macs: [String]
                var uuid, serial, manufacturer, model, registered, redeployRequested: String?
            }
            return try json(View(id: machine.id, state: machine.state.rawValue, macs: machine.macs, uuid: machine.uuid, serial: machine.serial,
                                 manufacturer: machine.manufacturer, model: machine.model, registered: machine.registered,
                                 redeployRequested: try await storage.redeployRequested(machineID: id)))
        case .deployment:
            return try await storage.deployment(id: id).flatMap { try json(DeploymentSummary($0)) }
        case .distributionPoint:
            guard let point = try await storage.distributionPoint(name: id) else { return nil }
            struct View: Encodable { var settings: DistributionPointSettings; var token: String; var created, updated: String }
            return try json(View(settings: point.settings, token: point.tokenHash, created: point.created, updated: point.updated))
        case .multicastSession:
            return try await storage.multicastSession(id: id).flatMap { try json($0) }
        case .user:
            // With its tokens: a revocation shows in the tokens' revoked times.
            guard let user = try await storage.user(name: id) else { return nil }
            return try json(UserView(user, tokens: try await storage.apiTokens(user: id)))
        case .token:
            return try await storage.apiToken(id: id).flatMap { try json($0) }
        case .rules, .answer, .contentFile:
            return nil
        }
    }

    /// Keys whose values are secrets: the log says that they are set, never what they are.
    static let secretKeys: Set<String> = ["token", "secret", "password", "passwordhash", "tokenhash"]

    /// Secret values as "set": the placeholder the API shows for a secret variable, sealed
    /// values, and the values of keys that hold secrets.
    static func auditMasked(_ value: JSONValue) -> JSONValue {
        switch value {
        case let .string(text):
            return text == SecretSealing.placeholder || SecretBox.isSealed(text) ? .string("set") : value
        case let .array(items):
            return .array(items.map(auditMasked))
        case let .object(members):
            var masked: [String: JSONValue] = [:]
            for (key, member) in members {
                if secretKeys.contains(key.lowercased()), case .string = member { masked[key] = .string("set") } else { masked[key] = auditMasked(member) }
            }
            return .object(masked)
        case .null, .bool, .number:
            return value
        }
    }

    /// The answer's JSON, when it is a small JSON body; the response keeps its body (read here
    /// into memory and given back whole).
    static func answerJSON(_ response: inout Response) async -> JSONValue? {
        guard response.headers[.contentType]?.hasPrefix("application/json") == true,
              let length = response.body.contentLength, length <= 256 << 10 else { return nil }
        let collector = BodyCollector()
        do { try await response.body.write(collector) } catch { return nil }
        let buffer = collector.buffer
        response.body = ResponseBody(byteBuffer: buffer)
        return try? JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
    }
}

/// A response body written into memory.
final class BodyCollector: ResponseBodyWriter, Sendable {
    private let collected = Mutex(ByteBuffer())

    var buffer: ByteBuffer { collected.withLock { $0 } }

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        collected.withLock { $0.writeBuffer(&buffer) }
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
