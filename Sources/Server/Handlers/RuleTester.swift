import Foundation
import Hummingbird
import SequenceModel

/// Which rule a check-in gives a machine: the first rule in order (the one named `default`
/// aside) whose pattern matches its facts; failing that, the rule named `default` when the
/// machine is approved or unknown machines get it. The check-in decides by this, and the rule
/// tester shows what it makes of a machine: one piece of code, so the tester cannot disagree.
struct RuleAssignment: Sendable {
    var matched: (index: Int, rule: Rule)?
    var fallback: (index: Int, rule: Rule)?

    init(facts: Facts, rules: [Rule]) {
        matched = rules.enumerated().first { $0.element.name != Rule.defaultName && $0.element.matches(facts) }.map { ($0.offset, $0.element) }
        fallback = rules.enumerated().first { $0.element.name == Rule.defaultName }.map { ($0.offset, $0.element) }
    }

    /// The state a machine checking in for the first time is created in: a machine a rule
    /// names is known, so it never waits for approval.
    func newMachineState(unknownMachines: ServerConfiguration.UnknownMachines) -> Machine.State {
        matched != nil || unknownMachines == .default ? .approved : .pending
    }

    /// The rule the machine gets; nil: it waits (pending, or approved with nothing to give it).
    func rule(approved: Bool, unknownMachines: ServerConfiguration.UnknownMachines) -> (index: Int, rule: Rule)? {
        if let matched { return matched }
        if approved || unknownMachines == .default { return fallback }
        return nil
    }
}

/// `POST /api/v1/admin/rules/test` (and the dashboard's tester): a machine, known or described
/// by pasted facts, against the stored rules or a draft of them.
public enum RuleTest {
    /// What a rule makes of the machine's facts, with what was compared.
    public struct Evaluation: Sendable, Encodable, Equatable {
        public var index: Int
        public var name: String?
        public var match: String
        public var pattern: String
        public var sequence: String
        /// `Rule.matches`, as the check-in asks it (the `default` rule is never matched in order).
        public var matches: Bool
        public var why: String
    }

    public struct Answer: Sendable, Encodable {
        /// The known machine tested (nil: pasted facts, taken as a machine checking in for the first time).
        public var machine: String?
        /// pending, approved or rejected; for pasted facts, the state a first check-in would create.
        public var machineState: String
        /// The rules were a draft (not what is stored).
        public var draft: Bool
        public var rules: [Evaluation]
        /// The rule the machine gets (an index into `rules`), nil when it gets none.
        public var chosen: Int?
        /// matched, default, rejected, or waiting.
        public var outcome: String
        public var reason: String
        public var sequence: String?
        /// Whether the sequence the rule names is stored (a check-in waits when it is not).
        public var sequenceExists: Bool?
        /// What the deployment would carry: the rule's variables (secrets as "(secret, set)")
        /// and the server's own.
        public var variables: [String: String]?
        /// Why the machine would not get a new deployment now whatever the rules say (it has
        /// one running, or was deployed and not asked to deploy again).
        public var note: String?
    }

    /// Each rule against `facts`, what was compared named: the verdict is `Rule.matches`
    /// itself; for a MAC rule, the MAC that matched is found by asking it of each MAC alone.
    static func evaluate(_ rules: [Rule], facts: Facts) -> [Evaluation] {
        rules.enumerated().map { index, rule in
            let isDefault = rule.name == Rule.defaultName
            let matches = !isDefault && rule.matches(facts)
            let quoted = "\"\(rule.pattern)\""
            var why: String
            switch rule.match {
            case .any:
                why = "matches any machine"
            case .mac:
                let macs = facts.macAddresses
                if let hit = macs.first(where: { mac in
                    var one = facts
                    one.macAddresses = [mac]
                    return rule.matches(one)
                }) {
                    why = "MAC \(hit) matches \(quoted)"
                } else {
                    why = macs.isEmpty ? "the machine reported no MAC" : "no MAC (\(macs.joined(separator: ", "))) matches \(quoted)"
                }
            case .uuid:
                why = compared("UUID", facts.uuid, quoted, matches)
            case .serial:
                why = compared("serial number", facts.serialNumber, quoted, matches)
            case .model:
                why = compared("model", facts.model, quoted, matches)
            }
            if isDefault {
                why = "the rule named \"default\": never matched in order; what an approved machine no rule matches gets "
                    + "(and an unknown one, with --unknown-machines default)"
            }
            return Evaluation(index: index, name: rule.name, match: rule.match.rawValue, pattern: rule.pattern, sequence: rule.sequence,
                              matches: matches, why: why)
        }
    }

    private static func compared(_ what: String, _ value: String?, _ pattern: String, _ matches: Bool) -> String {
        guard let value, !value.isEmpty else { return "the machine reported no \(what)" }
        return "\(what) \"\(value)\" \(matches ? "matches" : "does not match") \(pattern)"
    }

    /// A rule's variables as an administrator may see them: secret values (sealed, named like
    /// secrets, or listed as secret by the sequence) as the placeholder.
    static func masked(_ variables: [String: String], sequenceSecrets: Set<String>) -> [String: String] {
        var masked = SecretSealing.mask(variables)
        for (name, value) in variables where sequenceSecrets.contains(name) && !value.isEmpty {
            masked[name] = SecretSealing.placeholder
        }
        return masked
    }
}

extension ImprintServer {
    /// The rules as PUT /api/v1/admin/rules checks them, secrets sent back as the placeholder
    /// taking their stored values: what is stored, or an error at the rule's index and field.
    /// The admin API and the dashboard's rule forms both store through here.
    @discardableResult
    func replaceRulesChecked(_ sent: [Rule]) async throws -> [Rule] {
        var rules = sent
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
        return rules
    }

    /// The facts a test or plan is about: a known machine's (from its last check-in) or pasted ones.
    func testedMachine(id: String?, facts: Facts?) async throws -> (machine: Machine?, facts: Facts) {
        if let id, !id.isEmpty {
            guard let machine = try await storage.machine(id: id) else {
                throw APIError(.unprocessableContent, "there is no machine \(id)", field: "machine")
            }
            guard let facts = machine.facts else {
                throw APIError(.unprocessableContent, "machine \(id) was registered and has not checked in yet: the server has no facts of it; "
                               + "paste facts instead (imprint agent --facts-only)", field: "machine")
            }
            return (machine, facts)
        }
        guard let facts else { throw APIError(.unprocessableContent, "name a machine (its id) or give its facts", field: "machine") }
        return (nil, facts)
    }

    /// What the check-in would make of the machine with `rules` (the stored ones unless a draft).
    func ruleTest(machine: Machine?, facts: Facts, rules draft: [Rule]?) async throws -> RuleTest.Answer {
        let rules: [Rule]
        if let draft { rules = draft } else { rules = try await storage.rules() }
        let assignment = RuleAssignment(facts: facts, rules: rules)
        let state = machine?.state ?? assignment.newMachineState(unknownMachines: configuration.unknownMachines)
        var answer = RuleTest.Answer(machine: machine?.id, machineState: state.rawValue, draft: draft != nil,
                                     rules: RuleTest.evaluate(rules, facts: facts), outcome: "waiting", reason: "")
        if state == .rejected {
            answer.outcome = "rejected"
            answer.reason = "an administrator rejected this machine: it gets no deployment whatever the rules say"
            return answer
        }
        guard let chosen = assignment.rule(approved: state == .approved, unknownMachines: configuration.unknownMachines) else {
            answer.reason = state == .approved
                ? "no rule matches this machine and there is no rule named \"default\": it waits"
                : "no rule matches this machine, which waits for an administrator's approval (unknown machines are pending)"
                    + (assignment.fallback == nil ? "" : "; once approved it gets the rule named \"default\"")
            return answer
        }
        let rule = chosen.rule
        answer.chosen = chosen.index
        if assignment.matched != nil {
            answer.outcome = "matched"
            answer.reason = "rule \(chosen.index)\(rule.name.map { " (\($0))" } ?? "") is the first that matches: "
                + (answer.rules[chosen.index].why)
        } else {
            answer.outcome = "default"
            answer.reason = "no rule matches this machine; " + (state == .approved && machine != nil
                ? "it is approved, so it gets the rule named \"default\""
                : "unknown machines get the rule named \"default\" (--unknown-machines default)")
        }
        answer.sequence = rule.sequence
        let stored = try await storage.sequence(name: rule.sequence)
        answer.sequenceExists = stored != nil
        if stored == nil { answer.reason += "; the sequence \"\(rule.sequence)\" does not exist, so the machine would wait" }
        var variables = RuleTest.masked(rule.variables, sequenceSecrets: stored.map { SecretSealing.secretNames(ofSequence: $0.body) } ?? [])
        variables["ServerURL"] = publicURL
        variables["DeploymentID"] = "(made at the check-in)"
        answer.variables = variables
        if let machine {
            if let active = try await storage.activeDeployment(machineID: machine.id) {
                answer.note = "machine \(machine.id) has deployment \(active.id) of \"\(active.sequenceName)\" \(active.state.rawValue): "
                    + "its next check-in takes that one up, not a new one"
            } else if let done = try await finishedDeployment(machineID: machine.id) {
                answer.note = "machine \(machine.id) was deployed by \(done.id) of \"\(done.sequenceName)\": it gets a new deployment only when "
                    + "asked to deploy again"
            }
        }
        return answer
    }

    /// POST /api/v1/admin/rules/test: `{"machine": ID}` or `{"facts": {...}}`, and optionally
    /// `"rules": [...]`, a draft to test instead of the stored rules.
    func ruleTestAPI(_ request: Request) async throws -> Response {
        var request = request
        struct Body: Decodable { var machine: String?; var facts: Facts?; var rules: [Rule]? }
        let body = try decodeBody(Body.self, from: try await request.bodyData(limit: 1 << 20))
        let tested = try await testedMachine(id: body.machine, facts: body.facts)
        return JSON.response(try await ruleTest(machine: tested.machine, facts: tested.facts, rules: body.rules))
    }
}
