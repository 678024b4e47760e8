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
            let data = try await request.bodyData(limit: 4 << 20)
            // The check and the save the dashboard's editor uses too (Handlers/SequenceAdmin.swift).
            let saved = try await saveSequence(name: name, text: String(decoding: data, as: UTF8.self))
            struct Saved: Encodable { var name: String; var version: Int; var issues: [APIError.IssueBody] }
            return JSON.response(Saved(name: name, version: saved.version, issues: saved.issues))

        case .adminGetRules:
            struct Rules: Encodable { var rules: [Rule] }
            return JSON.response(Rules(rules: try await storage.rules().map(Self.masked)))

        case .adminPutRules:
            struct Rules: Codable { var rules: [Rule] }
            let sent = try decodeBody(Rules.self, from: try await request.bodyData(limit: 1 << 20)).rules
            // The check the dashboard's rule forms store through too (Handlers/RuleTester.swift).
            let rules = try await replaceRulesChecked(sent)
            return JSON.response(Rules(rules: rules.map(Self.masked)))

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
            // Checked and stored as the dashboard's form and a CSV import's rows are (Handlers/Machines.swift).
            let checked = try Self.machineRegistration(macs: registration.macs ?? [], uuid: registration.uuid, serial: registration.serial,
                                                       manufacturer: registration.manufacturer, model: registration.model)
            return JSON.response(try await registerMachine(checked), status: .created)

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
            // Filtered and paged (Handlers/DeploymentReports.swift), never every deployment at once.
            return try await deploymentListResponse(request)

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

        case .ruleTest, .sequences, .dashboardRules, .dashboardSequences:
            // Handled by their own functions (Handlers/RuleTester.swift, SequenceAdmin.swift, the dashboard's).
            throw APIError.notFound("route")
        case .deploymentReports, .contentAdmin, .dashboardDeployments, .dashboardContent:
            // Handled by their own functions (Handlers/DeploymentReports.swift, ContentAdmin.swift, the dashboard's).
            throw APIError.notFound("route")
        case .bootScript, .bootScriptForMAC, .bootFile, .checkIn, .deploymentSequence, .deploymentEvents, .deploymentState, .content, .metrics,
             .captureAnnounce, .captureData,
             .dashboard, .dashboardDeployment, .dashboardLive, .dashboardApprove, .dashboardRedeploy, .dashboardResetToken,
             .dashboardLogin, .dashboardLogout, .dashboardScript, .dashboardStyle, .library,
             .dashboardImages, .dashboardImage, .dashboardLibrary, .distributionPoints, .dashboardDistributionPoints,
             .multicast, .dashboardMulticast, .dashboardMulticastAPI, .users, .dashboardUsers, .machines, .dashboardMachines:
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
