import Foundation
import Hummingbird
import SequenceModel

/// Check-in: the machine says what it is; rules and approvals decide what it runs.
extension ImprintServer {
    struct CheckInBody: Decodable { var facts: Facts }

    struct CheckInAnswer: Encodable {
        struct Assigned: Encodable {
            var id: String
            var token: String
            var sequenceUrl: String
            var variables: [String: String]
        }
        var status: String
        var deployment: Assigned?
        var retryAfter: Int?
        var message: String?
    }

    func checkIn(_ request: Request) async throws -> Response {
        var request = request
        let body = try decodeBody(CheckInBody.self, from: try await request.bodyData(limit: 1 << 20))
        let facts = body.facts
        guard !facts.macAddresses.isEmpty || !(facts.uuid ?? "").isEmpty || !(facts.serialNumber ?? "").isEmpty else {
            throw APIError(.unprocessableContent, "the facts name no MAC address, UUID or serial number to know the machine by",
                           field: "facts.macAddresses")
        }
        let base = publicURL(request)
        let answer: CheckInAnswer = try await checkInLock.withLock { try await storage.serializingCheckIns {
            let rules = try await storage.rules()
            let matched = rules.first { $0.name != Rule.defaultName && $0.matches(facts) }
            let fallback = rules.first { $0.name == Rule.defaultName }
            // A machine a rule names is known: it never waits for approval.
            let newState: Machine.State = matched != nil || configuration.unknownMachines == .default ? .approved : .pending
            let machine = try await storage.recordCheckIn(facts: facts, newState: newState)
            let token = Tokens.make()
            if let active = try await storage.activeDeployment(machineID: machine.id) {
                // Restarted mid-deployment: the same deployment, and only the new token works.
                try await storage.replaceToken(deploymentID: active.id, tokenHash: Tokens.hash(token))
                logger.info("machine \(machine.id) checked in again: deployment \(active.id) continues with a new token")
                return assigned(active, token: token)
            }
            if let done = try await finishedDeployment(machineID: machine.id) {
                return CheckInAnswer(status: "deployed", message: "deployed by deployment \(done.id) of \"\(done.sequenceName)\" "
                    + "(\(done.ended ?? done.created)); to image it again, choose Deploy again on the dashboard "
                    + "or POST /api/v1/admin/machines/\(machine.id)/redeploy")
            }
            let rule: Rule
            if let matched {
                rule = matched
            } else if machine.state == .approved || configuration.unknownMachines == .default, let fallback {
                rule = fallback
            } else {
                let message = machine.state == .approved
                    ? "approved, but no rule matches this machine and there is no rule named \"default\""
                    : "unknown machine \(machine.id): waiting for an administrator to approve it"
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter, message: message)
            }
            guard let sequence = try await storage.sequence(name: rule.sequence) else {
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter,
                                     message: "the rule for this machine names the sequence \"\(rule.sequence)\", which does not exist")
            }
            let id = UUID().uuidString.lowercased()
            var variables = rule.variables
            variables["ServerURL"] = base
            variables["DeploymentID"] = id
            let deployment = Deployment(id: id, machineID: machine.id, sequenceName: sequence.name, sequenceBody: sequence.body,
                                        variables: variables, tokenHash: Tokens.hash(token), state: .assigned, acknowledged: 0,
                                        created: Clock.now())
            try await storage.createDeployment(deployment)
            logger.info("machine \(machine.id): deployment \(id) of \"\(sequence.name)\"")
            return assigned(deployment, token: token)
        } }
        return JSON.response(answer)
    }

    fileprivate func assigned(_ deployment: Deployment, token: String) -> CheckInAnswer {
        CheckInAnswer(status: "assigned", deployment: .init(id: deployment.id, token: token,
                                                            sequenceUrl: "/api/v1/deployments/\(deployment.id)/sequence",
                                                            variables: deployment.variables))
    }
}
