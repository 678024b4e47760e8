import Foundation
import Hummingbird
import SequenceModel

/// Check-in: the machine says what it is; rules and approvals decide what it runs.
extension ImprintServer {
    /// Facts of one machine are a few KiB even with a dozen disks; far more is not an agent.
    static let checkInBodyLimit = 64 << 10

    struct CheckInAnswer: Encodable {
        struct Assigned: Encodable {
            var id: String
            var token: String
            var sequenceUrl: String
            var variables: [String: String]
            /// The deployment's events so far end at this sequence number (0 for a new one): an
            /// agent taking over a deployment numbers its own events after it.
            var eventsAfter: Int
            /// True when the machine's own run came back from an interruption with its token
            /// (`CheckInRequest.resume`); absent otherwise.
            var resumed: Bool?
            /// With `resumed`: the run state the agent last sent (`PUT .../state`), absent when none.
            var runState: RunState?
            /// Where to fetch content from before the server: the base URLs (each ending in "/",
            /// mirroring /content/) of the distribution points whose rules match this machine and
            /// that were in sync with the content at their last report, in priority order;
            /// absent when none.
            var contentSources: [String]?
        }
        var status: String
        var deployment: Assigned?
        var retryAfter: Int?
        var message: String?
        /// The machine this check-in was taken for, so a technician at it can name it to an administrator.
        var machineId: String?
    }

    func checkIn(_ request: Request, client: String) async throws -> Response {
        var request = request
        let data: Data
        do { data = try await request.bodyData(limit: Self.checkInBodyLimit) } catch var error as APIError where error.status == .contentTooLarge {
            error.message = "the check-in is larger than \(Self.checkInBodyLimit / 1024) KiB; a machine's facts take a few KiB"
            error.field = "facts"
            throw error
        }
        let checkIn: CheckInRequest
        do { checkIn = try CheckInRequest.decode(data) } catch { throw APIError(invalidBody: error) }
        let facts = checkIn.facts
        let claim: MachineIdentity
        do { claim = try MachineIdentity(checkIn: facts) } catch { throw APIError(.unprocessableContent, error.message, field: error.field) }
        // Block manifests this machine's multicast session needs, made before the lock (a large
        // image takes a while to read, and no other check-in waits for that).
        await prepareMulticastManifests(facts: facts)
        var answer: CheckInAnswer = try await checkInLock.withLock { try await storage.serializingCheckIns {
            let rules = try await storage.rules()
            // The rule tester (POST /api/v1/admin/rules/test) shows what this same choice makes of a machine.
            let assignment = RuleAssignment(facts: facts, rules: rules)
            // A machine a rule names is known: it never waits for approval (unless its check-in
            // contradicts another machine's identity: then it always does).
            let policy = CheckInPolicy(newState: assignment.newMachineState(unknownMachines: configuration.unknownMachines),
                                       mayCreate: !configuration.requireRegistration, sourceAddress: client,
                                       newMachinesPerMinute: configuration.newMachinesPerMinute)
            let machine: Machine
            switch try await storage.identifyCheckIn(claim, facts: facts, policy: policy) {
            case let .known(known): machine = known
            case let .created(created):
                logger.info("new machine \(created.id) (\(created.state.rawValue)) from \(client)")
                machine = created
            case let .conflicting(created):
                let conflicts = created.conflicts.map(\.description).joined(separator: "; ")
                logger.warning("check-in from \(client) contradicts known machines, which were left as they were; it is pending machine \(created.id): \(conflicts)")
                machine = created
            case let .unregistered(conflicts):
                let related = conflicts.isEmpty ? "" : " (" + conflicts.map(\.description).joined(separator: "; ") + ")"
                logger.warning("check-in from \(client) refused: not a registered machine\(related)")
                throw APIError(.forbidden, "this machine (\(Self.describe(claim))) is not registered, and this server takes only registered "
                               + "machines (--require-registration): an administrator registers it with POST /api/v1/admin/machines",
                               field: "facts")
            case let .tooManyNewMachines(count, retryAfter):
                var error = APIError(.tooManyRequests, "\(count) new machines checked in from \(client) in the last minute, the most one "
                                     + "address may add: check in again in \(retryAfter) s")
                error.retryAfter = retryAfter
                throw error
            }
            if machine.state == .rejected {
                // Before anything else, a resumed run included: an administrator refused this
                // machine. The agent stops (it does not retry); nothing is handed out, and an
                // active deployment's token is never re-issued to it.
                logger.warning("rejected machine \(machine.id) checked in from \(client): told so, no deployment")
                return CheckInAnswer(status: "rejected",
                                     message: "an administrator rejected this machine (machine \(machine.id)\(machine.rejected.map { ", \($0)" } ?? "")): "
                                        + "this server gives it no deployment; an administrator may approve it on the dashboard or with "
                                        + "POST /api/v1/admin/machines/\(machine.id)/approve",
                                     machineId: machine.id)
            }
            let active = try await storage.activeDeployment(machineID: machine.id)
            let resumed = checkIn.resume.flatMap { resume in active.map { Self.isOwnRun($0, resume) } } ?? false
            if let resume = checkIn.resume, !resumed {
                // The administrator learns why from the log; the caller only gets today's answer.
                let why = active.map { resume.deployment == $0.id ? "not the deployment's current token" : "its active deployment is \($0.id)" }
                    ?? "it has no active deployment"
                // The claimed id quoted and cut short: it is whatever the caller wrote.
                let claimed = resume.deployment.prefix(100).debugDescription
                logger.warning("machine \(machine.id) checked in from \(client) claiming to resume deployment \(claimed) with its token, refused (\(why)): taken as an ordinary check-in")
            }
            if !machine.conflicts.isEmpty && machine.state == .pending {
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter,
                                     message: "this machine's identity contradicts a machine the server knows (same MAC, UUID or serial "
                                        + "with a different rest): it waits as machine \(machine.id) until an administrator approves it",
                                     machineId: machine.id)
            }
            if let active {
                return try await takeOver(active, machine: machine, client: client, resumed: resumed)
            }
            if let done = try await finishedDeployment(machineID: machine.id) {
                return CheckInAnswer(status: "deployed", message: "deployed by deployment \(done.id) of \"\(done.sequenceName)\" "
                    + "(\(done.ended ?? done.created)); to image it again, choose Deploy again on the dashboard "
                    + "or POST /api/v1/admin/machines/\(machine.id)/redeploy", machineId: machine.id)
            }
            guard let rule = assignment.rule(approved: machine.state == .approved, unknownMachines: configuration.unknownMachines)?.rule else {
                let message = machine.state == .approved
                    ? "approved, but no rule matches this machine and there is no rule named \"default\""
                    : "unknown machine \(machine.id): waiting for an administrator to approve it"
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter, message: message, machineId: machine.id)
            }
            guard let sequence = try await storage.sequence(name: rule.sequence) else {
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter,
                                     message: "the rule for this machine names the sequence \"\(rule.sequence)\", which does not exist",
                                     machineId: machine.id)
            }
            let id = UUID().uuidString.lowercased()
            var variables = rule.variables
            variables["ServerURL"] = publicURL
            variables["DeploymentID"] = id
            if let refusal = try secretsRefusal(sequenceName: sequence.name, sequenceBody: sequence.body, variables: variables, machine: machine) {
                return refusal
            }
            // The library images it names become the versions' files: the deployment keeps
            // what it was handed, and records which versions those were.
            let resolved: (body: String, used: [(image: String, version: Int)])
            do { resolved = try await LibraryReferences.resolve(sequence.body, images: libraryImagesByName) } catch {
                return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter,
                                     message: "the sequence \"\(sequence.name)\" names a library image the server cannot resolve: \(error)",
                                     machineId: machine.id)
            }
            // Image steps whose file a multicast session sends (or the rule's would) get the
            // session as "multicast"; a session that cannot be joined leaves the step to HTTP.
            var multicast: (body: String, members: [MulticastMember]) = (resolved.body, [])
            do { multicast = try await assignMulticast(body: resolved.body, machine: machine, rule: rule, deploymentID: id) } catch {
                logger.error("machine \(machine.id): no multicast session for deployment \(id), its images come by HTTP: \(error)")
            }
            let token = Tokens.make()
            let now = StoredTime.now()
            let deployment = Deployment(id: id, machineID: machine.id, sequenceName: sequence.name, sequenceBody: multicast.body,
                                        variables: variables, tokenHash: Tokens.hash(token), state: .assigned, acknowledged: 0,
                                        created: now, tokenIssued: now)
            try await storage.createDeployment(deployment)
            try await storage.recordDeploymentImages(deploymentID: id, resolved.used)
            for member in multicast.members { try await storage.addMulticastMember(member) }
            let versions = resolved.used.map { ", library image \"\($0.image)\" version \($0.version)" }.joined()
            logger.info("machine \(machine.id): deployment \(id) of \"\(sequence.name)\"\(versions)")
            return try assigned(deployment, token: token, eventsAfter: 0)
        } }
        // After the lock: choosing the points walks the content folder, which other check-ins
        // need not wait for. A failure here costs the machine its nearby sources, not its deployment.
        if answer.deployment != nil {
            do { answer.deployment?.contentSources = try await contentSources(client: client, facts: facts) } catch {
                logger.error("check-in from \(client): the distribution points could not be chosen, the machine fetches from this server: \(error)")
            }
        }
        return JSON.response(answer)
    }

    /// A check-in of a machine whose deployment is active: the agent that holds its token may
    /// still be running it, so a new token (and the sequence with its variables) goes out only
    /// once the deployment has been quiet for --token-reissue-after seconds or an administrator
    /// reset its token, as Ironic does; each re-issue is a warning in the deployment's events.
    /// `resumed`: the machine, back from a power cut, proved with `CheckInRequest.resume` (the
    /// deployment and its current token, read from the run state on its disk) that the cut run
    /// was its own; it gets a new token at once, since nobody else holds that token.
    private func takeOver(_ active: Deployment, machine: Machine, client: String, resumed: Bool) async throws -> CheckInAnswer {
        let activity = try await storage.eventActivity(deploymentID: active.id)
        let lastHeard = max(active.tokenIssued ?? active.created, activity.lastReceived ?? "")
        let quiet = (try? StoredTime.format.parse(lastHeard)).map { Date().timeIntervalSince($0) } ?? .infinity
        let reissued = "token re-issued to machine \(machine.id), which checked in again from \(client): "
        let notice: String
        if resumed {
            notice = "resumed after an interruption: machine \(machine.id) checked in again from \(client) with its run's token; "
                + "a new token was issued and the previous one no longer works"
        } else if let reset = active.tokenReset {
            notice = reissued + "an administrator reset the token at \(reset); the previous token no longer works"
        } else if quiet >= Double(configuration.tokenReissueAfter) {
            notice = reissued + "the deployment had sent nothing for \(Int(quiet)) s; the previous token no longer works"
        } else {
            let wait = max(1, Int((Double(configuration.tokenReissueAfter) - quiet).rounded(.up)))
            var error = APIError(.conflict, "deployment \(active.id) is running with a token already issued; it can be re-issued after "
                                 + "\(configuration.tokenReissueAfter) s of silence (in \(wait) s at the earliest) or by an administrator "
                                 + "(POST /api/v1/admin/deployments/\(active.id)/reset-token)")
            error.retryAfter = wait
            logger.warning("machine \(machine.id) checked in from \(client) while deployment \(active.id) runs: refused a second token")
            throw error
        }
        if let refusal = try secretsRefusal(sequenceName: active.sequenceName, sequenceBody: active.sequenceBody,
                                            variables: active.variables, machine: machine) {
            return refusal
        }
        let token = Tokens.make()
        guard let after = try await storage.reissueToken(deploymentID: active.id, tokenHash: Tokens.hash(token), notice: notice,
                                                         resumed: resumed) else {
            throw APIError(.conflict, "deployment \(active.id) ended while this check-in was taken; check in again")
        }
        logger.warning("deployment \(active.id): \(notice)")
        var answer = try assigned(active, token: token, eventsAfter: after)
        if resumed {
            answer.deployment?.resumed = true
            answer.deployment?.runState = try await storage.runState(deploymentID: active.id)
        }
        return answer
    }

    /// Whether `resume` proves the check-in comes from the active deployment's own run: its id,
    /// and the token it currently has (compared by hash in constant time, as the events' token is).
    static func isOwnRun(_ active: Deployment, _ resume: CheckInRequest.Resume) -> Bool {
        // Both compared, whatever the first says: the time taken tells nothing of which was wrong.
        let sameToken = Tokens.equal(active.tokenHash, Tokens.hash(resume.token))
        return sameToken && resume.deployment == active.id
    }

    /// Why a deployment carrying secrets (the sequence's `secrets`, or variables named like
    /// passwords, keys and tokens) may not go to this machine over this connection: only over
    /// this server's TLS (unless --allow-secrets-over-http) and only to an approved machine.
    /// Nil when it may. Plain HTTP throws 403 (a setting to change); a pending machine waits.
    func secretsRefusal(sequenceName: String, sequenceBody: String, variables: [String: String], machine: Machine?) throws -> CheckInAnswer? {
        let secrets = Self.secretNames(sequenceBody: sequenceBody, variables: variables)
        guard !secrets.isEmpty else { return nil }
        try requireSecretsChannel(sequenceName: sequenceName, secrets: secrets)
        if let machine, machine.state != .approved {
            return CheckInAnswer(status: "pending", retryAfter: configuration.retryAfter,
                                 message: "the sequence \"\(sequenceName)\" carries secrets (\(secrets.joined(separator: ", "))): it goes only to a "
                                    + "machine an administrator approved; waiting for machine \(machine.id) to be approved",
                                 machineId: machine.id)
        }
        return nil
    }

    func requireSecretsChannel(sequenceName: String, secrets: [String]) throws {
        guard configuration.tlsCertificate == nil, !configuration.allowSecretsOverHTTP else { return }
        throw APIError(.forbidden, "the sequence \"\(sequenceName)\" carries secrets (\(secrets.joined(separator: ", "))), which this server "
                       + "releases only over HTTPS: start imprint-server with --tls-certificate and --tls-key (or, behind a TLS proxy "
                       + "or in a closed lab, --allow-secrets-over-http)")
    }

    /// The secret variables a deployment holds, sorted; the sequence's own list and names alike.
    static func secretNames(sequenceBody: String, variables: [String: String]) -> [String] {
        SecretSealing.secretNames(sequenceBody: sequenceBody, variables: variables).sorted()
    }

    /// Opens a deployment's secrets for its agent. When they do not open (the server's key, a
    /// damaged row), the agent is told only that; the log says exactly what, for the administrator.
    func openingSecrets<T>(of deployment: Deployment, _ body: (SecretSealing) throws -> T) throws -> T {
        do { return try body(sealing) } catch {
            logger.error("deployment \(deployment.id): \(error)")
            throw APIError(.internalServerError, "the server cannot open the secrets of deployment \(deployment.id): its log says why")
        }
    }

    /// What a refused machine is, for its own console: its identifiers as it sent them (checked).
    static func describe(_ claim: MachineIdentity) -> String {
        var parts: [String] = []
        if !claim.macs.isEmpty { parts.append("MAC " + claim.macs.joined(separator: ", ")) }
        if let uuid = claim.uuid { parts.append("UUID \(uuid)") }
        if let serial = claim.serial { parts.append("serial \(serial)") }
        return parts.joined(separator: ", ")
    }

    /// The answer that hands the agent its deployment: the one place, with the sequence itself,
    /// where secret values leave the server opened.
    fileprivate func assigned(_ deployment: Deployment, token: String, eventsAfter: Int) throws -> CheckInAnswer {
        let variables = try openingSecrets(of: deployment) { try $0.open(deployment.variables, what: "deployment \(deployment.id)") }
        return CheckInAnswer(status: "assigned", deployment: .init(id: deployment.id, token: token,
                                                                   sequenceUrl: "/api/v1/deployments/\(deployment.id)/sequence",
                                                                   variables: variables, eventsAfter: eventsAfter),
                             machineId: deployment.machineID)
    }
}
