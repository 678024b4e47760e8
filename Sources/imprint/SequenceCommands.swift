import ArgumentParser
import CImprintSystem
import DiskModel
import Disks
import Failures
import Foundation
import SequenceModel
import SequenceRunner
import Transport

struct SequenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sequence",
        abstract: "Check and plan task sequences.",
        subcommands: [SequenceValidate.self, SequencePlan.self]
    )
}

/// `imprint sequence validate`
struct SequenceValidate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate", abstract: "Check a task sequence: every error with its JSON path and a hint.")

    @Argument(help: "The sequence: a file or an http(s) URL.") var sequence: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let data: Data
        do { data = try SequenceLoader.data(sequence, client: HTTPClient(options: TransferOptions())) } catch { throw fail(error) }
        let (parsed, issues) = SequenceParser.parse(data, origin: sequence)
        if json {
            struct Output: Encodable { var valid: Bool; var name: String?; var steps: Int?; var issues: [SequenceIssue] }
            try printJSON(Output(valid: parsed != nil, name: parsed?.name, steps: parsed?.allSteps.count, issues: issues))
        } else {
            for issue in issues { print(issue.description) }
            if let parsed {
                print("\(sequence): valid: \"\(parsed.name)\" version \(parsed.version), \(parsed.allSteps.count) steps"
                      + (issues.isEmpty ? "" : ", \(issues.count) warning(s)"))
            } else {
                print("\(sequence): \(issues.filter { $0.severity == .error }.count) error(s)")
            }
        }
        if parsed == nil { throw ExitCode(FailureKind.badInput.exitStatus) }
    }
}

/// Facts, server variables and disks for a plan or a run: the machine's own unless given.
struct MachineOptions: ParsableArguments {
    @Option(help: "Facts as JSON (from `imprint agent --facts-only` on the target machine) instead of this machine's.")
    var facts: String?
    @Option(help: "Disks as JSON (from `imprint disk list --json`) instead of this machine's.")
    var disks: String?
    @Option(help: "Per-machine variables as a JSON object, as the server would send them.")
    var variables: String?
    @OptionGroup var environment: EnvironmentOptions

    func load() throws -> (Facts, [String: String], [Disk]) {
        do {
            let disks: [Disk] = try self.disks.map { try JSONDecoder().decode([Disk].self, from: try read($0)) }
                ?? DiskInventory.scan(environment.environment)
            let facts = try self.facts.map { try JSONDecoder().decode(Facts.self, from: try read($0)) }
                ?? Facts.gather(sysRoot: environment.sysRoot, procRoot: environment.procRoot, disks: disks)
            let variables = try self.variables.map { try JSONDecoder().decode([String: String].self, from: try read($0)) } ?? [:]
            return (facts, variables, disks)
        } catch { throw fail(error) }
    }

    private func read(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot read") }
        return data
    }
}

/// `imprint sequence plan`
struct SequencePlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Dry run: the disk chosen, what would be wiped, which steps run or are skipped and why. Touches nothing.")

    @Argument(help: "The sequence: a file or an http(s) URL.") var sequence: String
    @OptionGroup var machine: MachineOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let loaded: TaskSequence
        do { loaded = try SequenceLoader.load(sequence, client: HTTPClient(options: TransferOptions())).0 } catch { throw fail(error) }
        let (facts, variables, disks) = try machine.load()
        let lines = SequencePlanner.plan(loaded, facts: facts, serverVariables: variables, disks: disks)
        if json { try printJSON(lines) } else { print(SequencePlanner.text(lines)) }
        if lines.contains(where: { $0.verdict == "fails" }) { throw ExitCode(3) }
    }
}

/// `imprint run`
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a task sequence on this machine.",
        discussion: "Steps that write disks need --yes, unless imprint runs as the boot environment's agent.")

    @Argument(help: "The sequence: a file or an http(s) URL.") var sequence: String
    @Flag(help: "Allow the steps that write disks.") var yes = false
    @Option(help: "The deployment server's URL, to report events to.") var server: String?
    @Option(help: "The deployment's token (with --server).") var token: String?
    @Option(help: "The deployment's id on the server (with --server).") var deployment: String?
    @Option(help: "Where events are kept until the server has them (default /var/lib/imprint/spool).") var spool: String?
    @Option(help: "A plain log file (default: beside a sequence read from a file, as on USB media).") var log: String?
    @Option(help: "A CA bundle for https.") var caBundle: String?
    @Option(help: "Download cache folder for every applyImage (default: each step's own).") var cache: String?
    @OptionGroup var machine: MachineOptions

    func run() throws {
        var transfer = TransferOptions()
        transfer.caBundle = caBundle
        let loaded: TaskSequence
        do { loaded = try SequenceLoader.load(sequence, client: HTTPClient(options: transfer)).0 } catch { throw fail(error) }
        let inBootEnvironment = AgentEnvironment.isBootEnvironment
        if !yes && !inBootEnvironment && loaded.allSteps.contains(where: \.action.isDestructive) {
            let (facts, variables, disks) = try machine.load()
            print(SequencePlanner.text(SequencePlanner.plan(loaded, facts: facts, serverVariables: variables, disks: disks)))
            print("nothing done: this sequence writes disks; add --yes to run it")
            throw ExitCode(2)
        }
        let (facts, variables, _) = try machine.load()
        var options = RunOptions()
        options.allowDestructive = yes || inBootEnvironment
        options.allowPowerActions = inBootEnvironment
        options.environment = machine.environment.environment
        options.transfer = transfer
        options.cacheDirectory = cache
        let isFile = !(sequence.hasPrefix("http://") || sequence.hasPrefix("https://"))
        if options.allowDestructive {
            options.recording = AgentEnvironment.localRecording(loaded, deploymentID: deployment, token: token, server: server,
                                                                environment: options.environment)
        }
        let result = try AgentEnvironment.execute(
            loaded, facts: facts, serverVariables: variables, options: options,
            spool: spool ?? "/var/lib/imprint/spool/" + (deployment ?? "local"),
            log: log ?? (isFile ? sequence + ".log" : nil),
            server: server.map { ($0, deployment ?? "", token ?? "") })
        if result.status != .success { throw result.exitCode }
    }
}

/// Runs a sequence with events to the spool, the log, the terminal and the server.
enum AgentEnvironment {
    /// A run of `sequence` that keeps its state, going on from the newest unfinished state on
    /// this machine's disks left by the same sequence (and deployment, when there is one).
    static func localRecording(_ sequence: TaskSequence, deploymentID: String?, token: String?, server: String?,
                               environment: DiskEnvironment) -> RunRecording {
        let digest = sequence.digest ?? ""
        let found = RunStateFinder.find(environment).first { $0.state.sequenceDigest == digest && $0.state.deploymentID == deploymentID }
        if let found {
            print("imprint: \(found.disk) partition \(found.partition) holds the state of an interrupted run of \"\(sequence.name)\": going on with it")
        }
        return RunRecording(deploymentID: deploymentID, token: token, server: server.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "/")) },
                            sequenceDigest: digest, resume: found?.state)
    }

    /// The boot environment marks itself (Initramfs/ writes this file; `imprint.agent` on the
    /// kernel command line says the same), so its agent may write disks without --yes.
    static var isBootEnvironment: Bool {
        FileManager.default.fileExists(atPath: "/etc/imprint-boot-environment")
            || ((try? String(contentsOfFile: "/proc/cmdline", encoding: .utf8))?.split(separator: " ").contains("imprint.agent") ?? false)
    }

    static func execute(_ sequence: TaskSequence, facts: Facts, serverVariables: [String: String], options: RunOptions,
                        spool spoolPath: String, log: String?, server: (url: String, deployment: String, token: String)?,
                        eventsAfter: Int = 0, beforePowerAction: () -> Void = {}) throws -> RunResult {
        // The spool and the log live only inside runReported, so their files are closed before
        // the power action and a USB stick holding them can be unmounted.
        let result = try runReported(sequence, facts: facts, serverVariables: serverVariables, options: options,
                                     spool: spoolPath, log: log, server: server, eventsAfter: eventsAfter)
        if result.status == .success, options.allowPowerActions, let action = result.powerAction {
            // The USB stick's log must be complete and its FAT clean before the power goes.
            beforePowerAction()
            sync()
            _ = imprint_reboot(action == "poweroff" ? 1 : 0)
        }
        return result
    }

    private static func runReported(_ sequence: TaskSequence, facts: Facts, serverVariables: [String: String], options: RunOptions,
                                    spool spoolPath: String, log: String?,
                                    server: (url: String, deployment: String, token: String)?, eventsAfter: Int) throws -> RunResult {
        let spool: EventSpool
        do { spool = try EventSpool(directory: spoolPath, numberingAfter: eventsAfter) } catch { throw fail(error) }
        let bus = EventBus(spool: spool, logPath: log, terminal: true)
        if let server {
            let endpoint = server.url.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
                + "/api/v1/deployments/\(server.deployment)/events"
            let reporter = EventReporter(spool: spool, endpoint: endpoint, token: server.token, caBundle: options.transfer.caBundle)
            bus.reporter = reporter
            reporter.start()
        }
        Interruption.install()
        // A stream whose reader stops (a failed apply) must be an error, not a killed agent.
        signal(SIGPIPE, SIG_IGN)
        var serverVariables = serverVariables
        if let server {
            serverVariables["ServerURL"] = serverVariables["ServerURL"] ?? server.url.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            serverVariables["DeploymentID"] = server.deployment
        }
        let result = SequenceEngine(sequence: sequence, facts: facts, serverVariables: serverVariables, options: options, bus: bus).run()
        if let reporter = bus.reporter, !reporter.stop(timeout: 60) {
            FileHandle.standardError.write(Data("imprint: warning: the server has not confirmed every event (\(reporter.lastError ?? "no answer")); they stay in \(spoolPath)\n".utf8))
        }
        bus.close()
        return result
    }
}
