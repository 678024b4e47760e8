import DiskModel
import Foundation
import Hummingbird
import SequenceModel

/// A task sequence's versions (list, one, restore), its check as an editor types, and the dry
/// run of it against a machine's facts, in the admin API.
public enum SequenceRoute: Sendable, Hashable {
    case versions, version, restore, validate, plan
}

/// What checking a sequence's text found: `imprint sequence validate`'s checker
/// (`SequenceParser`) after the library images it names are resolved as a check-in would.
struct SequenceCheck: Sendable, Encodable {
    var valid: Bool
    /// The sequence's own `name` and step count, when it parsed.
    var name: String?
    var steps: Int?
    var issues: [APIError.IssueBody]
    /// A library image the library lacks: PUT refuses it with this error (path: message).
    var unresolvable: APIError.IssueBody?

    var errors: [APIError.IssueBody] { issues.filter { $0.severity == SequenceIssue.Severity.error.rawValue } }
}

/// A version as the API shows it: the body with secret values as "(secret, set)".
struct SequenceVersionView: Encodable {
    var name: String
    var version: Int
    var current: Bool
    var saved: String
    var savedBy: String?
    var replaced: String?
    var replacedBy: String?
    var body: String?

    init(_ version: SequenceVersion, withBody: Bool) {
        name = version.name
        self.version = version.version
        current = version.isCurrent
        saved = version.saved
        savedBy = version.savedBy
        replaced = version.replaced
        replacedBy = version.replacedBy
        body = withBody ? SecretSealing.maskSequence(version.body) : nil
    }
}

/// The dry run of a sequence on one machine: what its agent would do.
public struct SequencePlanAnswer: Sendable, Encodable {
    public var sequence: String
    public var version: Int?
    public var machine: String?
    /// What the facts are: a machine's last check-in, or pasted.
    public var factsFrom: String
    /// The rule whose variables the plan runs with (the one the machine would get, when it
    /// names this sequence); nil: the sequence's own variables only.
    public var rule: Int?
    public var ruleNote: String
    /// What the server knows of the disks, which is what the plan chooses among.
    public var disks: [Facts.DiskSummary]
    public var disksNote: String
    public var steps: [SequencePlanner.Line]
    /// Each step that would write a disk, with what it would destroy.
    public var wipes: [String]
    /// A step would fail (no disk found, a layout that does not fit, content not verified).
    public var fails: Bool
}

extension ImprintServer {
    /// The checks of PUT /api/v1/admin/sequences/{name}, without saving: the editor's as-you-type
    /// check, the dashboard's save and the API's all come through here.
    func checkSequence(name: String, text: String) async throws -> SequenceCheck {
        // Library images resolved as a check-in would (a name the library lacks is an error);
        // what is stored names them still, so "latest" moves with the library.
        let resolved: String
        do { resolved = try await LibraryReferences.resolve(text, images: libraryImagesByName).body } catch let unresolvable as LibraryReferences.Unresolvable {
            let issue = APIError.IssueBody(severity: SequenceIssue.Severity.error.rawValue, path: unresolvable.path, message: unresolvable.description,
                                           hint: "the image library's images are on the Images page")
            return SequenceCheck(valid: false, issues: [issue], unresolvable: issue)
        }
        let (parsed, issues) = SequenceParser.parse(Data(resolved.utf8), origin: "sequence \(name)")
        let bodies = issues.map { APIError.IssueBody(severity: $0.severity.rawValue, path: $0.path, message: $0.message, hint: $0.hint) }
        return SequenceCheck(valid: parsed != nil && !bodies.contains { $0.severity == SequenceIssue.Severity.error.rawValue },
                             name: parsed?.name, steps: parsed?.allSteps.count, issues: bodies)
    }

    /// Checks and stores a sequence (the admin API's PUT, the dashboard's save and restore):
    /// its warnings and its new version number, or a 422 naming the first error's path.
    func saveSequence(name: String, text: String) async throws -> (issues: [APIError.IssueBody], version: Int) {
        guard Self.validName(name) else {
            throw APIError(.unprocessableContent, "a sequence name is letters, digits, '-', '_' and '.'", field: "name")
        }
        let check = try await checkSequence(name: name, text: text)
        if let unresolvable = check.unresolvable {
            throw APIError(.unprocessableContent, "\(unresolvable.path): \(unresolvable.message)", field: unresolvable.path)
        }
        let errors = check.errors
        if let first = errors.first {
            throw APIError(.unprocessableContent, "the sequence has \(errors.count) error(s); first: \(first.path): \(first.message)",
                           field: first.path, issues: check.issues)
        }
        // What an administrator got from GET and sent back: the secrets left as the placeholder keep their values.
        let stored = try await storage.sequence(name: name)?.body
        let body: String
        do { body = try SecretSealing.keepingStoredSecrets(text, stored: stored) } catch {
            throw APIError(.unprocessableContent, error.message, field: error.field)
        }
        if let foreign = sealing.unopenableSealedValue(inSequence: body) {
            throw Self.sealedElsewhere(foreign, field: "$.variables.\(foreign)")
        }
        let version = try await storage.putSequence(name: name, body: body, by: Principal.current?.name)
        return (check.issues, version)
    }

    /// Puts an earlier version back as a new version (the one it replaces is kept, like any
    /// save's), checked as a save is: a version naming a library image since deleted is refused.
    func restoreSequence(name: String, version number: Int) async throws -> Int {
        guard let version = try await storage.sequenceVersion(name: name, version: number) else {
            throw APIError.notFound("version \(number) of sequence \"\(name)\"")
        }
        guard !version.isCurrent else {
            throw APIError(.conflict, "version \(number) is the current version of \"\(name)\" already", field: "version")
        }
        // Its secrets are sealed as they were stored: they go back as they are.
        return try await saveSequence(name: name, text: version.body).version
    }

    static func versionNumber(_ request: Request, _ context: BasicRequestContext) throws -> Int {
        let text = try request.requiredParameter("version", context)
        guard let number = Int(text), number >= 1 else {
            throw APIError(.badRequest, "a version is a number from 1", field: "version")
        }
        return number
    }

    func sequencesAPI(_ route: SequenceRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        let name = try request.requiredParameter("name", context)
        switch route {
        case .versions:
            let versions = try await storage.sequenceVersions(name: name)
            guard !versions.isEmpty else { throw APIError.notFound("sequence \"\(name)\"") }
            struct List: Encodable { var versions: [SequenceVersionView] }
            return JSON.response(List(versions: versions.map { SequenceVersionView($0, withBody: false) }))

        case .version:
            let number = try Self.versionNumber(request, context)
            guard let version = try await storage.sequenceVersion(name: name, version: number) else {
                throw APIError.notFound("version \(number) of sequence \"\(name)\"")
            }
            return JSON.response(SequenceVersionView(version, withBody: true))

        case .restore:
            let version = try await restoreSequence(name: name, version: try Self.versionNumber(request, context))
            struct Restored: Encodable { var name: String; var version: Int; var restored: Int }
            return JSON.response(Restored(name: name, version: version, restored: try Self.versionNumber(request, context)))

        case .validate:
            let data = try await request.bodyData(limit: 4 << 20)
            return JSON.response(try await checkSequence(name: name, text: String(decoding: data, as: UTF8.self)))

        case .plan:
            struct Body: Decodable { var machine: String?; var facts: Facts? }
            let body = try decodeBody(Body.self, from: try await request.bodyData(limit: 1 << 20))
            let tested = try await testedMachine(id: body.machine, facts: body.facts)
            return JSON.response(try await planSequence(name: name, machine: tested.machine, facts: tested.facts))
        }
    }

    /// The dry run of the stored sequence `name` on a machine (`imprint sequence plan`'s
    /// planner, on the disks the machine reported): with the variables of the rule the machine
    /// would get when that rule names this sequence, secrets as "(secret, set)" (never opened).
    func planSequence(name: String, machine: Machine?, facts: Facts) async throws -> SequencePlanAnswer {
        guard let stored = try await storage.sequenceVersions(name: name).first else { throw APIError.notFound("sequence \"\(name)\"") }
        // Secret values as the placeholder: a plan shows what would run, never a secret.
        let masked = SecretSealing.maskSequence(stored.body)
        let body = (try? await LibraryReferences.resolve(masked, images: libraryImagesByName).body) ?? masked
        let (parsed, issues) = SequenceParser.parse(Data(body.utf8), origin: "sequence \(name)")
        guard let sequence = parsed else {
            let bodies = issues.map { APIError.IssueBody(severity: $0.severity.rawValue, path: $0.path, message: $0.message, hint: $0.hint) }
            throw APIError(.unprocessableContent, "the sequence \"\(name)\" does not parse any more: fix it first", field: issues.first?.path, issues: bodies)
        }
        let test = try await ruleTest(machine: machine, facts: facts, rules: nil)
        var variables: [String: String] = ["ServerURL": publicURL, "DeploymentID": "(made at the check-in)"]
        var rule: Int?
        let ruleNote: String
        if let chosen = test.chosen, test.sequence == name {
            rule = chosen
            for (key, value) in test.variables ?? [:] where variables[key] == nil { variables[key] = value }
            ruleNote = "with the variables of rule \(chosen)\(test.rules[chosen].name.map { " (\($0))" } ?? ""), the one this machine gets"
        } else if let chosen = test.chosen, let other = test.sequence {
            ruleNote = "this machine's rule (\(chosen)) gives it \"\(other)\", not this sequence: planned with the sequence's own variables"
        } else {
            ruleNote = "no rule gives this machine a sequence now (\(test.reason)): planned with the sequence's own variables"
        }
        let lines = SequencePlanner.plan(sequence, facts: facts, serverVariables: variables, disks: Self.disks(reportedIn: facts))
        // Each writing step's "would ..." line, with the losses the disk plan lists under it.
        let wipes = lines.filter { $0.destructive && $0.verdict == "runs" }.map { line -> String in
            var what = "writes the disk"
            if let start = line.details.firstIndex(where: { $0.contains("WIPE") || $0.hasPrefix("would") }) {
                let losses = line.details[(start + 1)...].prefix { $0.hasPrefix("  - ") }.map { $0.dropFirst(4) }
                what = line.details[start] + (losses.isEmpty ? "" : " " + losses.joined(separator: "; "))
            }
            return "step \(line.step) \"\(line.name)\" (\(line.type)): " + what
        }
        return SequencePlanAnswer(sequence: name, version: stored.version, machine: machine?.id,
                                  factsFrom: machine.map { "machine \($0.id)'s last check-in (\($0.lastSeen))" } ?? "the facts given",
                                  rule: rule, ruleNote: ruleNote, disks: facts.disks, disksNote: Self.disksNote,
                                  steps: lines, wipes: wipes, fails: lines.contains { $0.verdict == "fails" })
    }

    static let disksNote = "The server knows each disk as the machine's check-in reported it (path, size, model, transport, removable, "
        + "whether Windows is on it), not its partitions: a disk with Windows is taken to hold an NTFS file system, any other to be blank. "
        + "At the machine, `imprint sequence plan` lists exactly what is on each disk."

    /// The disks a check-in reported, as the disk rules see disks: enough for a selection
    /// (size, transport, removable, model, serial, Windows), nothing of their partitions.
    static func disks(reportedIn facts: Facts) -> [Disk] {
        facts.disks.map { summary in
            let windows = summary.hasWindows ? [WindowsInstallation(partition: nil, label: nil, systemRoot: "Windows", hasUsers: false)] : []
            return Disk(name: (summary.path as NSString).lastPathComponent, path: summary.path, size: summary.size, model: summary.model,
                        serial: summary.serial, transport: Transport(rawValue: summary.transport) ?? .unknown, removable: summary.removable,
                        filesystem: summary.hasWindows ? Filesystem(type: "ntfs", label: "Windows, as the machine reported") : nil,
                        windows: windows)
        }
    }

    /// Which rules name each sequence, by the sequence's name: (index, rule name).
    func rulesBySequence() async throws -> [String: [(index: Int, name: String?)]] {
        var uses: [String: [(index: Int, name: String?)]] = [:]
        for (index, rule) in try await storage.rules().enumerated() { uses[rule.sequence, default: []].append((index, rule.name)) }
        return uses
    }
}
