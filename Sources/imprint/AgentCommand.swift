import ArgumentParser
import Foundation
import SequenceModel
import SequenceRunner
import Transport

/// `imprint agent`: what the boot environment runs. Checks in with the machine's facts,
/// receives the deployment the server's rules chose (sequence, variables, token), runs it and
/// reports every event.
struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Check in with the deployment server, run the deployment it assigns, report.")

    @Option(help: "The deployment server, e.g. http://10.0.0.1:8080.") var server: String
    @Option(help: "A CA bundle for https.") var caBundle: String?
    @Option(help: "Where events are kept until the server has them.") var spool = "/var/lib/imprint/spool"
    @Option(help: "The plain log file.") var log = "/var/log/imprint.log"
    @Flag(help: "Print this machine's facts as JSON and stop.") var factsOnly = false
    @OptionGroup var environment: EnvironmentOptions

    struct CheckIn: Decodable {
        struct Deployment: Decodable {
            var id: String
            var token: String
            var sequenceUrl: String
            var variables: [String: String]?
            /// The server holds this deployment's events up to this number (another agent ran
            /// it before this one took it over): ours are numbered after it.
            var eventsAfter: Int?
            /// The server handed the deployment back to a run that resumes after an interruption.
            var resumed: Bool?
            /// The last run state the server has of this deployment.
            var runState: RunState?
            /// Distribution points for this machine, best first: base URLs mirroring the
            /// server's `/content/` tree, each ending with "/". The server itself comes after
            /// them and is not listed.
            var contentSources: [String]?
        }
        var status: String
        var deployment: Deployment?
        var retryAfter: Double?
        var message: String?
    }

    /// An answer that says to wait and ask again: the deployment is running under another
    /// agent's token (409), or too many new machines came from this address (429).
    struct Refusal: Decodable {
        var error: String
        var retryAfter: Double?
    }

    /// The server's content, wherever the sequence names it (the address the agent reached the
    /// server at, or the `ServerURL` the server calls itself), copied on `sources`. A source that
    /// is not an http(s) URL is left out with a warning: the server still serves everything.
    static func contentMirrors(_ sources: [String], server: String, publicURL: String?) -> [ContentMirrors] {
        var alternatives: [String] = []
        for source in sources {
            let trimmed = source.trimmingCharacters(in: .whitespaces)
            let lower = trimmed.lowercased()
            guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), URL(string: trimmed)?.host != nil,
                  !trimmed.contains(where: { $0.isWhitespace }) else {
                FileHandle.standardError.write(Data("imprint: warning: the content source \(source.debugDescription) is not an http or https URL; it is not used\n".utf8))
                continue
            }
            // Joined to the rest of each path as a string: the folder needs its slash.
            let folder = trimmed.hasSuffix("/") ? trimmed : trimmed + "/"
            if !alternatives.contains(folder) { alternatives.append(folder) }
        }
        guard !alternatives.isEmpty else { return [] }
        var prefixes = [server.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/content/"]
        if let publicURL, !publicURL.isEmpty {
            let own = publicURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/content/"
            if !prefixes.contains(own) { prefixes.append(own) }
        }
        return prefixes.map { ContentMirrors(prefix: $0, alternatives: alternatives) }
    }

    func run() throws {
        let facts = Facts.gather(sysRoot: environment.sysRoot, procRoot: environment.procRoot)
        if factsOnly { return try printJSON(facts) }
        var transfer = TransferOptions()
        transfer.caBundle = caBundle
        let client = HTTPClient(options: transfer)
        let base = server.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        // A deployment this machine was running when it lost power: its state on the disk holds
        // the deployment and its token, which lets the server hand it back at once.
        let interrupted = RunStateFinder.find(environment.environment).first { $0.state.deploymentID != nil && $0.state.token != nil }
        let claim = interrupted.flatMap { found in
            found.state.deploymentID.flatMap { id in found.state.token.map { CheckInRequest.Resume(deployment: id, token: $0) } }
        }
        if let interrupted, let id = interrupted.state.deploymentID {
            print("imprint: \(interrupted.disk) partition \(interrupted.partition) holds the state of deployment \(id), interrupted: asking the server to go on with it")
        }
        let body = try JSONEncoder().encode(CheckInRequest(facts: facts, resume: claim))
        var assigned: CheckIn.Deployment?
        while assigned == nil {
            let answer: CheckIn
            do {
                let (status, data) = try client.post(base + "/api/v1/agents/checkin", json: body)
                if status == 409 || status == 429, let refusal = try? JSONDecoder().decode(Refusal.self, from: data) {
                    // Not an error of this machine: the server asks it to wait (a deployment of
                    // this machine is running elsewhere with its token, or a burst of new
                    // machines from this address). It says how long; never hammer it.
                    let wait = min(max(refusal.retryAfter ?? 30, 5), 600)
                    let what = status == 409 ? "the server will not hand this machine's deployment to a second agent yet"
                                             : "the server is limiting new machines"
                    FileHandle.standardError.write(Data("imprint: \(what): \(refusal.error); checking in again in \(Int(wait)) s\n".utf8))
                    Thread.sleep(forTimeInterval: wait)
                    continue
                }
                guard (200..<300).contains(status) else { throw ValidationError("check-in refused: HTTP \(status) \(String(decoding: data.prefix(300), as: UTF8.self))") }
                answer = try JSONDecoder().decode(CheckIn.self, from: data)
            } catch {
                FileHandle.standardError.write(Data("imprint: check-in with \(base) failed: \(error); retrying in 10 s\n".utf8))
                Thread.sleep(forTimeInterval: 10)
                continue
            }
            switch answer.status {
            case "assigned": assigned = answer.deployment
            case "pending":
                print("waiting for an administrator to approve this machine" + (answer.message.map { ": \($0)" } ?? ""))
                Thread.sleep(forTimeInterval: min(max(answer.retryAfter ?? 30, 1), 300))
            case "deployed":
                // Deploy once: the server sends a deployed machine's network boot back to its disk;
                // reaching the agent anyway (a USB stick, a forced boot) changes nothing on it.
                throw fail(ValidationError("this machine is already deployed, nothing was changed: " + (answer.message ?? "")))
            case "rejected":
                // An administrator refused this machine: nothing is changed on it, and checking in
                // again would get the same answer until one approves it.
                throw fail(ValidationError("an administrator rejected this machine, nothing was changed: " + (answer.message ?? "")))
            default:
                throw fail(ValidationError("the server has no deployment for this machine" + (answer.message.map { ": \($0)" } ?? "")))
            }
        }
        guard let deployment = assigned else { return }
        var authorized = transfer
        // Only the server that issued the token gets it back: a sequence's mirrors, driver
        // indexes and whatever they redirect to never see it.
        authorized.bearerToken = BearerToken(deployment.token, for: base)
        let sequenceURL = deployment.sequenceUrl.hasPrefix("http") ? deployment.sequenceUrl : base + deployment.sequenceUrl
        let loaded: TaskSequence
        do { loaded = try SequenceLoader.load(sequenceURL, client: HTTPClient(options: authorized)).0 } catch { throw fail(error) }
        // Of the disk's state and the server's, the newer; only ever of this deployment and sequence.
        var resume = interrupted?.state.deploymentID == deployment.id ? interrupted?.state : nil
        if let kept = deployment.runState, kept.deploymentID == deployment.id, !kept.ended, kept.revision > resume?.revision ?? 0 {
            resume = kept
        }
        if let state = resume, state.sequenceDigest != loaded.digest {
            print("imprint: the interrupted run's state is of another version of the sequence: starting from its first step")
            resume = nil
        }
        var options = RunOptions()
        options.recording = RunRecording(deploymentID: deployment.id, token: deployment.token, server: base,
                                         sequenceDigest: loaded.digest ?? "", resume: resume)
        options.allowDestructive = true
        options.allowPowerActions = AgentEnvironment.isBootEnvironment
        options.environment = environment.environment
        options.transfer = authorized
        options.transfer.mirrors = Self.contentMirrors(deployment.contentSources ?? [], server: base,
                                                       publicURL: deployment.variables?["ServerURL"])
        if let mirrors = options.transfer.mirrors.first {
            print("imprint: content from: " + mirrors.alternatives.joined(separator: ", ") + ", then the server (\(mirrors.prefix))")
        }
        let result = try AgentEnvironment.execute(loaded, facts: facts, serverVariables: deployment.variables ?? [:], options: options,
                                                  spool: spool + "/" + deployment.id, log: log,
                                                  server: (base, deployment.id, deployment.token), eventsAfter: deployment.eventsAfter ?? 0)
        if result.status != .success { throw result.exitCode }
    }
}
