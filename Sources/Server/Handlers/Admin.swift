import Foundation
import Hummingbird
import SequenceModel

extension ImprintServer {
    /// What the admin API shows of a deployment: everything but the token's hash and the sequence.
    struct DeploymentSummary: Encodable {
        var id, machineId, sequence, state: String
        var currentStep: String?
        var percent: Double?
        var message: String?
        /// For a failed deployment: bad input, refused, network, disk, interrupted or internal.
        var failure: String?
        var acknowledged: Int
        /// Secret ones as the placeholder: the admin API never shows a secret's value.
        var variables: [String: String]
        var created: String
        var started, ended: String?
        /// When its current token was issued, and when an administrator last reset it (until the next check-in).
        var tokenIssued, tokenReset: String?
        /// How many times its machine's own run resumed it after an interruption (a power cut).
        var resumes: Int
        /// The image library's versions it was handed (one deployment's answer only).
        var libraryVersions: [LibraryVersionUsed]?

        init(_ d: Deployment) {
            id = d.id; machineId = d.machineID; sequence = d.sequenceName; state = d.state.rawValue
            currentStep = d.currentStep; percent = d.percent; message = d.message; failure = d.failure?.rawValue
            acknowledged = d.acknowledged
            variables = SecretSealing.mask(d.variables); created = d.created; started = d.started; ended = d.ended
            tokenIssued = d.tokenIssued ?? d.created; tokenReset = d.tokenReset; resumes = d.resumes
        }
    }

    /// A rule as the admin API shows it: secret values as the placeholder.
    static func masked(_ rule: Rule) -> Rule {
        var rule = rule
        rule.variables = SecretSealing.mask(rule.variables)
        return rule
    }

    /// Rules sent back with secrets left as the placeholder: each takes the value (sealed) of
    /// the stored rule it is, the one of the same name, or for an unnamed rule the one at the
    /// same position with the same match and pattern. A placeholder with nothing behind it is refused.
    static func keepingStoredSecrets(_ rules: [Rule], stored: [Rule]) throws -> [Rule] {
        var result = rules
        for (index, rule) in rules.enumerated() {
            for (name, value) in rule.variables where value == SecretSealing.placeholder {
                let same = rule.name.map { name in stored.first { $0.name == name } }
                    ?? (index < stored.count && stored[index].name == nil && stored[index].match == rule.match
                        && stored[index].pattern == rule.pattern ? stored[index] : nil)
                guard let kept = same?.variables[name], SecretBox.isSealed(kept) else {
                    let missing = PlaceholderWithoutValue(variable: name, field: "rules[\(index)].variables.\(name)")
                    throw APIError(.unprocessableContent, "rule \(index): " + missing.message, field: missing.field, index: index)
                }
                result[index].variables[name] = kept
            }
        }
        return result
    }

    /// A variable sent in sealed with another server's key (copied from its database): stored,
    /// it could never be opened for an agent.
    static func sealedElsewhere(_ variable: String, field: String, rule: Int? = nil) -> APIError {
        APIError(.unprocessableContent, (rule.map { "rule \($0): " } ?? "") + "\(variable) holds a value sealed with another server's key, "
                 + "which this server cannot open: send the value itself", field: field, index: rule)
    }

    static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 200 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    func admin(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        switch handler {
        case .adminListSequences:
            struct Item: Encodable { var name: String; var updated: String }
            struct List: Encodable { var sequences: [Item] }
            return JSON.response(List(sequences: try await storage.sequences().map { Item(name: $0.name, updated: $0.updated) }))

        case .adminGetSequence:
            let name = try request.requiredParameter("name", context)
            guard let sequence = try await storage.sequence(name: name) else { throw APIError.notFound("sequence \"\(name)\"") }
            return JSON.raw(Data(SecretSealing.maskSequence(sequence.body).utf8), contentType: "application/json")

        case .adminPutSequence:
            let name = try request.requiredParameter("name", context)
            guard Self.validName(name) else {
                throw APIError(.unprocessableContent, "a sequence name is letters, digits, '-', '_' and '.'", field: "name")
            }
            let data = try await request.bodyData(limit: 4 << 20)
            // Library images resolved as a check-in would (a name the library lacks is refused
            // here); what is stored names them still, so "latest" moves with the library.
            let resolved: String
            do { resolved = try await LibraryReferences.resolve(String(decoding: data, as: UTF8.self), images: libraryImagesByName).body } catch let
                unresolvable as LibraryReferences.Unresolvable {
                throw APIError(.unprocessableContent, "\(unresolvable.path): \(unresolvable.description)", field: unresolvable.path)
            }
            let (_, issues) = SequenceParser.parse(Data(resolved.utf8), origin: "sequence \(name)")
            let bodies = issues.map { APIError.IssueBody(severity: $0.severity.rawValue, path: $0.path, message: $0.message, hint: $0.hint) }
            let errors = issues.filter { $0.severity == .error }
            if let first = errors.first {
                throw APIError(.unprocessableContent, "the sequence has \(errors.count) error(s); first: \(first.path): \(first.message)",
                               field: first.path, issues: bodies)
            }
            // What an administrator got from GET and sent back: the secrets left as the placeholder keep their values.
            let stored = try await storage.sequence(name: name)?.body
            let body: String
            do { body = try SecretSealing.keepingStoredSecrets(String(decoding: data, as: UTF8.self), stored: stored) } catch {
                throw APIError(.unprocessableContent, error.message, field: error.field)
            }
            if let foreign = sealing.unopenableSealedValue(inSequence: body) {
                throw Self.sealedElsewhere(foreign, field: "$.variables.\(foreign)")
            }
            try await storage.putSequence(name: name, body: body)
            struct Saved: Encodable { var name: String; var issues: [APIError.IssueBody] }
            return JSON.response(Saved(name: name, issues: bodies))

        case .adminGetRules:
            struct Rules: Encodable { var rules: [Rule] }
            return JSON.response(Rules(rules: try await storage.rules().map(Self.masked)))

        case .adminPutRules:
            struct Rules: Decodable { var rules: [Rule] }
            var rules = try decodeBody(Rules.self, from: try await request.bodyData(limit: 1 << 20)).rules
            var names = Set<String>()
            for (index, rule) in rules.enumerated() {
                if rule.pattern.isEmpty && rule.match != .any {
                    throw APIError(.unprocessableContent, "rule \(index) has an empty pattern", field: "rules[\(index)].pattern", index: index)
                }
                if let name = rule.name, !names.insert(name).inserted {
                    throw APIError(.unprocessableContent, "two rules are named \"\(name)\"", field: "rules[\(index)].name", index: index)
                }
                // A rule naming a missing sequence would leave its machines waiting with no visible cause.
                if try await storage.sequence(name: rule.sequence) == nil {
                    throw APIError(.unprocessableContent, "rule \(index) names the sequence \"\(rule.sequence)\", which does not exist",
                                   field: "rules[\(index)].sequence", index: index)
                }
                if let problem = rule.multicast?.problem {
                    throw APIError(.unprocessableContent, "rule \(index): " + problem.message, field: "rules[\(index)].multicast.\(problem.field)", index: index)
                }
                for key in rule.variables.keys where !key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) || key.isEmpty {
                    throw APIError(.unprocessableContent, "\"\(key)\" is not a variable name", field: "rules[\(index)].variables.\(key)", index: index)
                }
            }
            rules = try Self.keepingStoredSecrets(rules, stored: try await storage.rules())
            for (index, rule) in rules.enumerated() {
                if let foreign = sealing.unopenableSealedValue(in: rule.variables) {
                    throw Self.sealedElsewhere(foreign, field: "rules[\(index)].variables.\(foreign)", rule: index)
                }
            }
            try await storage.replaceRules(rules)
            warmMulticastManifests(rules)
            struct Rules2: Encodable { var rules: [Rule] }
            return JSON.response(Rules2(rules: rules.map(Self.masked)))

        case .adminMachines:
            struct List: Encodable { var machines: [Machine] }
            return JSON.response(List(machines: try await storage.machines()))

        case .adminRegisterMachine:
            // An administrator vouches for a machine before it boots: by any of its MACs, its UUID
            // or its serial; with --require-registration only such machines may check in.
            struct Registration: Decodable {
                var macs: [String]?
                var uuid: String?
                var serial: String?
                var manufacturer: String?
                var model: String?
            }
            let registration = try decodeBody(Registration.self, from: try await request.bodyData(limit: 64 << 10))
            let identity: MachineIdentity
            do {
                identity = try MachineIdentity(macs: registration.macs ?? [], uuid: registration.uuid, serial: registration.serial, prefix: "",
                                               macsField: "macs", uuidField: "uuid", serialField: "serial")
            } catch { throw APIError(.unprocessableContent, error.message, field: error.field) }
            guard !identity.isEmpty else {
                throw APIError(.unprocessableContent, "name the machine by at least one MAC address, its UUID or its serial number", field: "macs")
            }
            for (field, value) in [("manufacturer", registration.manufacturer), ("model", registration.model)] {
                if let value, value.count > 200 || value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                    throw APIError(.unprocessableContent, "at most 200 characters and no control characters", field: field)
                }
            }
            do {
                let machine = try await storage.registerMachine(identity, manufacturer: registration.manufacturer, model: registration.model)
                logger.info("machine \(machine.id) registered by an administrator: \(Self.describe(identity))")
                return JSON.response(machine, status: .created)
            } catch let conflict as RegistrationConflict {
                throw APIError(.conflict, conflict.message, field: conflict.field)
            }

        case .adminResetDeploymentToken:
            return JSON.response(DeploymentSummary(try await resetDeploymentToken(id: try request.requiredParameter("id", context))))

        case .adminApproveMachine:
            let id = try request.requiredParameter("id", context)
            guard try await storage.setMachineState(id: id, state: .approved), let machine = try await storage.machine(id: id) else {
                throw APIError.notFound("machine \(id)")
            }
            return JSON.response(machine)

        case .adminRedeployMachine:
            let id = try request.requiredParameter("id", context)
            guard try await storage.requestRedeploy(machineID: id), let machine = try await storage.machine(id: id) else {
                throw APIError.notFound("machine \(id)")
            }
            return JSON.response(machine)

        case .adminDeployments:
            struct List: Encodable { var deployments: [DeploymentSummary] }
            return JSON.response(List(deployments: try await storage.deployments().map(DeploymentSummary.init)))

        case .adminDeployment:
            let id = try request.requiredParameter("id", context)
            guard let deployment = try await storage.deployment(id: id) else { throw APIError.notFound("deployment \(id)") }
            var summary = DeploymentSummary(deployment)
            summary.libraryVersions = try await storage.libraryVersions(deploymentID: id)
            return JSON.response(summary)

        case .adminDeploymentEvents:
            let id = try request.requiredParameter("id", context)
            guard try await storage.deployment(id: id) != nil else { throw APIError.notFound("deployment \(id)") }
            var after = 0
            if let text = request.uri.queryParameters.get("after") {
                guard let value = Int(text), value >= 0 else {
                    throw APIError(.badRequest, "after must be a sequence number (0 or more)", field: "after")
                }
                after = value
            }
            var limit = 1000
            if let text = request.uri.queryParameters.get("limit") {
                guard let value = Int(text), (1...10000).contains(value) else {
                    throw APIError(.badRequest, "limit must be between 1 and 10000", field: "limit")
                }
                limit = value
            }
            struct List: Encodable { var events: [StoredEvent]; var last: Int }
            let events = try await storage.events(deploymentID: id, afterSequence: after, limit: limit)
            return JSON.response(List(events: events, last: events.last?.event.sequence ?? after))

        case .bootScript, .bootScriptForMAC, .bootFile, .checkIn, .deploymentSequence, .deploymentEvents, .deploymentState, .content, .metrics,
             .captureAnnounce, .captureData,
             .dashboard, .dashboardDeployment, .dashboardLive, .dashboardApprove, .dashboardRedeploy, .dashboardResetToken,
             .dashboardLogin, .dashboardLogout, .dashboardScript, .dashboardStyle, .library,
             .dashboardImages, .dashboardImage, .dashboardLibrary, .distributionPoints, .dashboardDistributionPoints,
             .multicast, .dashboardMulticast, .dashboardMulticastAPI, .users, .dashboardUsers:
            // Not an admin route: `handle` never sends these here. Listed, not `default`, so a new
            // handler makes the compiler ask where it belongs.
            throw APIError.notFound("route")
        }
    }

    /// Revokes an active deployment's token (the admin API and the dashboard's button): the
    /// agent holding it is gone or not to be trusted, so the token stops working now and the
    /// machine's next check-in gets a new one without waiting; a warning event records it.
    func resetDeploymentToken(id: String) async throws -> Deployment {
        let notice = "token reset by an administrator: the previous token no longer works; the machine's next check-in gets a new one"
        guard let deployment = try await storage.revokeToken(deploymentID: id, notice: notice) else {
            throw APIError.notFound("deployment \(id)")
        }
        guard deployment.isActive else {
            throw APIError(.conflict, "deployment \(id) has ended (\(deployment.state.rawValue)); it has no token to reset")
        }
        logger.warning("deployment \(id): \(notice)")
        return deployment
    }
}
