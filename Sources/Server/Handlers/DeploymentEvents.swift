import DiskModel
import Foundation
import Hummingbird
import SequenceModel

/// What a running deployment fetches and reports, with its token.
extension ImprintServer {
    /// The deployment the bearer token belongs to: 401 without a token, 403 with a wrong one or
    /// once the deployment has ended (its result is stored; nothing more is accepted).
    func authorizedDeployment(_ request: Request, _ context: BasicRequestContext) async throws -> Deployment {
        let id = try request.requiredParameter("id", context)
        guard let token = request.bearerToken else {
            var error = APIError(.unauthorized, "this needs the deployment's token: Authorization: Bearer <token>", field: "Authorization")
            error.headers[.wwwAuthenticate] = "Bearer"
            throw error
        }
        // An unknown id answers as a wrong token does, so ids cannot be probed.
        guard let deployment = try await storage.deployment(id: id), Tokens.equal(deployment.tokenHash, Tokens.hash(token)) else {
            throw APIError(.forbidden, "the token is not valid for this deployment", field: "Authorization")
        }
        guard deployment.isActive else {
            throw APIError(.forbidden, "deployment \(id) has ended (\(deployment.state.rawValue)); its token is no longer valid",
                           field: "Authorization")
        }
        return deployment
    }

    func deploymentSequence(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        // Checked again here: the setting may have changed since the check-in.
        let secrets = Self.secretNames(sequenceBody: deployment.sequenceBody, variables: deployment.variables)
        if !secrets.isEmpty { try requireSecretsChannel(sequenceName: deployment.sequenceName, secrets: secrets) }
        let body = try openingSecrets(of: deployment) { try $0.openSequence(deployment.sequenceBody, what: "deployment \(deployment.id)") }
        return JSON.raw(Data(body.utf8), contentType: "application/json")
    }

    func deploymentEvents(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        var request = request
        let data = try await request.bodyData(limit: 1 << 20)
        let batch: EventBatch
        do { batch = try EventBatch.decode(data) } catch { throw APIError(invalidBody: error, index: error.eventIndex) }
        let perBatch = configuration.limits.eventsPerBatch
        guard batch.events.count <= perBatch else {
            throw APIError(.contentTooLarge, "a batch holds at most \(perBatch) events; this one has \(batch.events.count): send them in several",
                           field: "events")
        }
        if let problem = batch.firstProblem {
            throw APIError(.unprocessableContent, "event \(problem.index): \(problem.message)", field: problem.fieldPath, index: problem.index)
        }
        // The agent redacts too, but only what it knows is secret: whatever it sends, the
        // deployment's secret values (of any length) are not stored, shown or streamed.
        let redactor = try openingSecrets(of: deployment) { try redactors.redactor(for: deployment, sealing: $0) }
        let events = batch.events.map(redactor.redact)
        let result: EventIngestResult
        do {
            result = try await storage.storeEvents(deploymentID: deployment.id, events: events, limits: configuration.limits.events)
        } catch let StorageError.ended(ended) {
            // Another batch holding a result was stored first: a deployment ends once.
            throw APIError(.conflict, StorageError.ended(ended).description, field: "events")
        }
        metrics.addEvents(result.inserted)
        struct Answer: Encodable {
            var acknowledged: Int
            var stored: Int
            var state: String
            /// Acknowledged but not stored, past the deployment's limits (with why).
            var refused: Int?
            var limit: String?
        }
        var answer = Answer(acknowledged: result.acknowledged, stored: result.inserted, state: result.deployment.state.rawValue)
        if result.refused > 0 {
            let limits = configuration.limits.events
            answer.refused = result.refused
            answer.limit = "deployment \(deployment.id) may store \(limits.perDeployment) events and \(limits.bytesPerDeployment) bytes of events: "
                + "\(result.refused) of this batch were acknowledged but not stored; its result is always stored"
            logger.warning("deployment \(deployment.id): \(result.refused) events past its limits not stored")
        }
        return JSON.response(answer)
    }

    /// The agent's run state (`RunState`), kept so that the machine's own run, back from a power
    /// cut, gets it again with its deployment. Authorized as events are; 204 whether it was
    /// kept or was older than the one kept (a late retry of an earlier save).
    func deploymentState(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let deployment = try await authorizedDeployment(request, context)
        var request = request
        let data: Data
        do { data = try await request.bodyData(limit: RunState.sizeLimit) } catch var error as APIError where error.status == .contentTooLarge {
            error.message = "a run state is at most \(RunState.sizeLimit / 1024) KiB (\(error.message)): this is not one an agent writes"
            throw error
        }
        var state: RunState
        do { state = try RunState.decode(data) } catch { throw APIError(invalidBody: error) }
        guard state.deploymentID == deployment.id else {
            // The other id quoted and cut short: it is whatever the caller wrote.
            let named = state.deploymentID.map { "deployment \($0.prefix(100).debugDescription)" } ?? "no deployment"
            throw APIError(.unprocessableContent, "this run state is of \(named), not of deployment \(deployment.id)", field: "deploymentID")
        }
        // The agent leaves secret variables out; whatever it sends, the deployment's secret
        // values are not stored (as for events), nor a variable named like a secret, whose
        // value the server may not know (set while the sequence ran).
        let redactor = try openingSecrets(of: deployment) { try redactors.redactor(for: deployment, sealing: $0) }
        let secretNames = Set(Self.secretNames(sequenceBody: deployment.sequenceBody, variables: deployment.variables))
        state.variables = state.variables.reduce(into: [:]) { kept, variable in
            kept[variable.key] = secretNames.contains(variable.key) || SecretNames.looksSecret(variable.key)
                ? SecretRedactor.mask : redactor.redact(variable.value)
        }
        try await storage.storeRunState(state, deploymentID: deployment.id)
        return Response(status: .noContent)
    }
}
