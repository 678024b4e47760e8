import Foundation
import Hummingbird
import SequenceModel

/// The dashboard's Rules page: the ordered list with each rule's variables (secrets as "set"),
/// forms to add, edit, move and delete a rule (administrators; plain forms that work without
/// script, stored through `replaceRulesChecked`, the admin API's own check, so a form's error is
/// the API's at its rule and field), and the tester: which rule a known machine (or pasted
/// facts) gets and why, through `RuleAssignment`, the check-in's own choice, optionally with
/// an unsaved draft of the rules.
public enum DashboardRuleRoute: Sendable, Hashable {
    case page, add, edit, move, delete, test
}

extension ImprintServer {
    func dashboardRules(_ route: DashboardRuleRoute, _ request: Request, _ context: BasicRequestContext,
                        access: DashboardAccess) async throws -> Response {
        switch route {
        case .page:
            let query = request.uri.queryParameters
            var state = DashboardRulesPage.State()
            if let done = query.get("done") { state.notice = DashboardRulesPage.doneMessage(String(done)) }
            if let machine = query.get("machine").map { String($0) }, !machine.isEmpty {
                state.testedMachine = machine
                state.test = try await dashboardRuleTest(machine: machine, facts: nil, draft: nil, state: &state)
            }
            return dashboardHTML(try await rulesPage(access: access, state: state))

        case .test:
            // Changes nothing, but posts (pasted facts and a draft are too large for a URL).
            let form = try await largeDashboardForm(request)
            try requireCSRF(form, access)
            var state = DashboardRulesPage.State()
            state.testedMachine = form["machine"] ?? ""
            state.pastedFacts = form["facts"] ?? ""
            state.draft = form["draft"] ?? ""
            state.useDraft = form["use-draft"] == "on"
            state.test = try await dashboardRuleTest(machine: state.testedMachine, facts: state.pastedFacts,
                                                     draft: state.useDraft ? state.draft : nil, state: &state)
            return dashboardHTML(try await rulesPage(access: access, state: state), status: state.testError == nil ? .ok : .unprocessableContent)

        case .add, .edit, .move, .delete:
            let form = try await largeDashboardForm(request)
            try requireCSRF(form, access)
            let stored = try await storage.rules()
            // A form from a page showing other rules than these (someone changed them since)
            // would act on the wrong rule: refused, the page shows the list as it is now.
            guard form["list"] == DashboardRulesPage.fingerprint(stored) else {
                var state = DashboardRulesPage.State()
                state.failure = .init(message: "The rules changed since this page was loaded (by someone else, or in another tab): "
                                      + "here they are as they are now; make your change again.", field: "list", index: nil, form: nil)
                return dashboardHTML(try await rulesPage(access: access, state: state), status: .conflict)
            }
            var rules = stored
            var formIndex: Int?
            var done: String
            do {
                switch route {
                case .add:
                    let rule = try DashboardRulesPage.rule(from: form)
                    // A secret cannot be kept from a rule that did not exist.
                    if let secret = rule.variables.first(where: { $0.value == SecretSealing.placeholder }) {
                        throw APIError(.unprocessableContent, "\(secret.key): give the value (a new rule has no stored value to keep)",
                                       field: "rules[\(stored.count)].variables.\(secret.key)", index: stored.count)
                    }
                    let position = Int(form["position"] ?? "").map { min(max(0, $0), stored.count) } ?? stored.count
                    formIndex = position
                    rules.insert(rule, at: position)
                    done = "added"
                case .edit:
                    let index = try Self.ruleIndex(request, context, count: stored.count)
                    formIndex = index
                    var rule = try DashboardRulesPage.rule(from: form)
                    // A secret left as the placeholder keeps this rule's stored value, whatever
                    // was changed beside it (the API matches by name or by match and pattern).
                    for (name, value) in rule.variables where value == SecretSealing.placeholder {
                        if let kept = stored[index].variables[name] { rule.variables[name] = kept }
                    }
                    rules[index] = rule
                    done = "edited"
                case .move:
                    let index = try Self.ruleIndex(request, context, count: stored.count)
                    let target: Int
                    switch form["to"] {
                    case "up": target = index - 1
                    case "down": target = index + 1
                    case "top": target = 0
                    case "bottom": target = stored.count - 1
                    default: throw APIError(.badRequest, "to is up, down, top or bottom", field: "to")
                    }
                    guard (0..<stored.count).contains(target) else {
                        throw APIError(.unprocessableContent, "rule \(index) cannot move \(form["to"] ?? ""): it is at that end", field: "to", index: index)
                    }
                    rules.insert(rules.remove(at: index), at: target)
                    done = "moved"
                case .delete:
                    let index = try Self.ruleIndex(request, context, count: stored.count)
                    rules.remove(at: index)
                    done = "deleted"
                case .page, .test:
                    throw APIError.notFound("route")
                }
                try await replaceRulesChecked(rules)
            } catch let error as APIError where error.status == .unprocessableContent {
                var state = DashboardRulesPage.State()
                let values = route == .add || route == .edit ? DashboardRulesPage.FormValues(form) : nil
                state.failure = .init(message: error.message, field: error.field ?? "", index: error.index ?? formIndex,
                                      form: values, editing: route == .edit ? formIndex : nil, adding: route == .add)
                return dashboardHTML(try await rulesPage(access: access, state: state), status: .unprocessableContent)
            }
            return Response(status: .seeOther, headers: [.location: "/dashboard/rules?done=\(done)"])
        }
    }

    /// `{index}` of a rule's form: a position in the stored list.
    static func ruleIndex(_ request: Request, _ context: BasicRequestContext, count: Int) throws -> Int {
        let text = try request.requiredParameter("index", context)
        guard let index = Int(text), (0..<count).contains(index) else {
            throw APIError.notFound("rule \(text) (there are \(count) rules, numbered from 0)")
        }
        return index
    }

    /// A form that may carry a sequence or a draft of the rules (the other forms are small).
    func largeDashboardForm(_ request: Request) async throws -> FormFields {
        var request = request
        return try FormFields(try await request.bodyData(limit: 5 << 20))
    }

    /// The tester from the page's form: a machine's id, or pasted facts, and maybe a draft.
    private func dashboardRuleTest(machine: String?, facts: String?, draft: String?,
                                   state: inout DashboardRulesPage.State) async throws -> RuleTest.Answer? {
        do {
            var pasted: Facts?
            if machine?.isEmpty ?? true, let facts, !facts.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                // What `imprint agent --facts-only` prints, or a check-in's body ({"facts": ...}).
                struct Wrapped: Decodable { var facts: Facts }
                let data = Data(facts.utf8)
                do { pasted = try JSONDecoder().decode(Facts.self, from: data) } catch {
                    do { pasted = try JSONDecoder().decode(Wrapped.self, from: data).facts } catch {
                        throw APIError(.unprocessableContent, "the facts are not a machine's facts as `imprint agent --facts-only` prints them: \(error)",
                                       field: "facts")
                    }
                }
            }
            var rules: [Rule]?
            if let draft {
                struct Draft: Decodable { var rules: [Rule] }
                do { rules = try JSONDecoder().decode(Draft.self, from: Data(draft.utf8)).rules } catch {
                    throw APIError(.unprocessableContent, "the draft is not {\"rules\": [...]} as GET /api/v1/admin/rules gives it: \(error)",
                                   field: "draft")
                }
            }
            let tested = try await testedMachine(id: machine, facts: pasted)
            return try await ruleTest(machine: tested.machine, facts: tested.facts, rules: rules)
        } catch let error as APIError where error.status == .unprocessableContent {
            state.testError = (error.message, error.field ?? "machine")
            return nil
        }
    }

    private func rulesPage(access: DashboardAccess, state: DashboardRulesPage.State) async throws -> String {
        let rules = try await storage.rules()
        var secrets: [String: Set<String>] = [:]
        let sequences = try await storage.sequences()
        for sequence in sequences { secrets[sequence.name] = SecretSealing.secretNames(ofSequence: sequence.body) }
        // The tester offers the machines that have checked in (their facts are what rules match).
        let machines = try await storage.machines().filter { $0.facts != nil }
        return DashboardRulesPage.index(rules, sequenceSecrets: secrets, sequences: sequences.map(\.name), machines: machines,
                                        state: state, canEdit: access.principal.role >= RouteSpec.requiredRole(.dashboardRules(.edit)),
                                        csrf: access.csrfToken)
    }
}

/// The Rules page's HTML, pure: every name, pattern and value is escaped.
enum DashboardRulesPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    /// What a page shows besides the list: a notice, a failed form, the tester's answer.
    struct State {
        var notice: String?
        var failure: Failure?
        var testedMachine = ""
        var pastedFacts = ""
        var draft = ""
        var useDraft = false
        var test: RuleTest.Answer?
        var testError: (message: String, field: String)?
    }

    /// A rule form sent back with an error, as it was filled in.
    struct Failure {
        var message: String
        var field: String
        var index: Int?
        var form: FormValues?
        /// The rule whose edit form failed; `adding`: the add form.
        var editing: Int?
        var adding = false

        /// The form's input the error is about: `rules[2].pattern` → pattern.
        var input: String {
            let tail = field.split(separator: "]", maxSplits: 1).last.map { $0.hasPrefix(".") ? String($0.dropFirst()) : String($0) } ?? field
            if tail.hasPrefix("variables") { return "variables" }
            if tail.hasPrefix("multicast.") { return String(tail.dropFirst("multicast.".count)) }
            return tail
        }
    }

    struct FormValues {
        var name, match, pattern, sequence, variables: String
        var multicast: Bool
        var minMachines, waitSeconds, rateMbps: String

        init(_ form: FormFields) {
            name = form["name"] ?? ""; match = form["match"] ?? "mac"; pattern = form["pattern"] ?? ""; sequence = form["sequence"] ?? ""
            variables = form["variables"] ?? ""; multicast = form["multicast"] == "on"
            minMachines = form["minMachines"] ?? ""; waitSeconds = form["waitSeconds"] ?? ""; rateMbps = form["rateMbps"] ?? ""
        }

        /// A stored rule as its edit form shows it: secrets as the placeholder.
        init(_ rule: Rule, secrets: Set<String>) {
            name = rule.name ?? ""; match = rule.match.rawValue; pattern = rule.pattern; sequence = rule.sequence
            variables = RuleTest.masked(rule.variables, sequenceSecrets: secrets).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
            multicast = rule.multicast != nil
            minMachines = rule.multicast?.minMachines.map(String.init) ?? ""
            waitSeconds = rule.multicast?.waitSeconds.map(String.init) ?? ""
            rateMbps = rule.multicast?.rateMbps.map { String($0) } ?? ""
        }
    }

    /// A rule from a form (the checks that need the other rules and the sequences are the API's).
    static func rule(from form: FormFields) throws(APIError) -> Rule {
        guard let match = Rule.Field(rawValue: form["match"] ?? "") else {
            throw APIError(.unprocessableContent, "match is one of " + Rule.Field.allCases.map(\.rawValue).joined(separator: ", "), field: "match")
        }
        let name = (form["name"] ?? "").trimmingCharacters(in: .whitespaces)
        var variables: [String: String] = [:]
        for (number, line) in (form["variables"] ?? "").split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            guard let equals = text.firstIndex(of: "=") else {
                throw APIError(.unprocessableContent, "variables, line \(number + 1): write NAME=value", field: "variables")
            }
            let key = text[..<equals].trimmingCharacters(in: .whitespaces)
            guard variables[key] == nil else {
                throw APIError(.unprocessableContent, "variables, line \(number + 1): \(key) is given twice", field: "variables")
            }
            variables[key] = String(text[text.index(after: equals)...])
        }
        var multicast: RuleMulticast?
        if form["multicast"] == "on" {
            func number<T: LosslessStringConvertible>(_ field: String) throws(APIError) -> T? {
                let text = (form[field] ?? "").trimmingCharacters(in: .whitespaces)
                if text.isEmpty { return nil }
                guard let value = T(text) else { throw APIError(.unprocessableContent, "\(field) is a number", field: field) }
                return value
            }
            multicast = RuleMulticast(minMachines: try number("minMachines"), waitSeconds: try number("waitSeconds"), rateMbps: try number("rateMbps"))
        }
        return Rule(name: name.isEmpty ? nil : name, match: match, pattern: (form["pattern"] ?? "").trimmingCharacters(in: .whitespaces),
                    sequence: form["sequence"] ?? "", variables: variables, multicast: multicast)
    }

    /// What the forms carry of the list they were made from: the stored rules' JSON, hashed.
    static func fingerprint(_ rules: [Rule]) -> String {
        Tokens.hash((try? StoredJSON.text(rules)) ?? "")
    }

    static func doneMessage(_ done: String) -> String? {
        switch done {
        case "added": return "Rule added."
        case "edited": return "Rule saved."
        case "moved": return "Rule moved."
        case "deleted": return "Rule deleted."
        default: return nil
        }
    }

    static func ruleLabel(_ index: Int, _ rule: Rule) -> String {
        "rule \(index)" + (rule.name.map { " (\($0))" } ?? "")
    }

    static func index(_ rules: [Rule], sequenceSecrets: [String: Set<String>], sequences: [String], machines: [Machine],
                      state: State, canEdit: Bool, csrf: String) -> String {
        let csrfField = DashboardPage.csrfField(csrf)
        let list = "<input type=\"hidden\" name=\"list\" value=\"\(fingerprint(rules))\">"
        var body = "<h1>Rules</h1><p class=\"hint\">A machine gets the sequence of the first rule whose pattern matches it (patterns take * and ?, "
            + "in any case). The rule named <code>default</code> is never matched in order: an approved machine no rule matches gets it. "
            + "Secret variables show as \"set\", never their value.</p>"
        if let notice = state.notice { body += "<p id=\"notice\" class=\"form-message ok\" role=\"status\">\(escape(notice))</p>" }
        let failure = state.failure
        if let failure, failure.editing == nil, !failure.adding {
            body += "<p id=\"rules-error\" class=\"form-message error\" role=\"alert\" data-field=\"\(escape(failure.field))\""
                + (failure.index.map { " data-index=\"\($0)\"" } ?? "") + ">\(escape(failure.message))</p>"
        }
        body += "<section id=\"rules\"><h2>The rules, in order</h2>"
        if rules.isEmpty {
            body += "<p class=\"empty\">No rule yet: every machine waits for one." + (canEdit ? " Add the first below." : "") + "</p>"
        } else {
            body += "<table id=\"rule-list\"><caption class=\"hint\">Checked from the top; the first that matches wins.</caption>"
                + "<tr><th scope=\"col\">#</th><th scope=\"col\">Name</th><th scope=\"col\">Match</th><th scope=\"col\">Pattern</th>"
                + "<th scope=\"col\">Sequence</th><th scope=\"col\">Variables</th><th scope=\"col\">Multicast</th>"
                + (canEdit ? "<th scope=\"col\">Change</th>" : "") + "</tr>"
            for (index, rule) in rules.enumerated() {
                let secrets = sequenceSecrets[rule.sequence] ?? []
                let label = escape(ruleLabel(index, rule))
                let tested = state.test?.chosen == index && state.test?.draft == false
                body += "<tr class=\"rule\(tested ? " chosen" : "")\" id=\"rule-\(index)\" data-index=\"\(index)\" data-name=\"\(escape(rule.name ?? ""))\">"
                    + "<td>\(index)</td><th scope=\"row\">\(escape(rule.name ?? "")) </th><td>\(rule.match.rawValue)</td><td><code>\(escape(rule.pattern))</code></td>"
                    + "<td><a href=\"/dashboard/sequences/\(escape(pathComponent(rule.sequence)))\">\(escape(rule.sequence))</a>"
                    + (sequences.contains(rule.sequence) ? "" : " <span class=\"failure\">(missing)</span>") + "</td>"
                    + "<td>\(variableList(rule.variables, secrets: secrets))</td>"
                    + "<td>\(rule.multicast.map(multicastText) ?? "")</td>"
                if canEdit {
                    body += "<td class=\"actions\">"
                    for (to, text) in [("up", "Move up"), ("down", "Move down")] where (to == "up" ? index > 0 : index < rules.count - 1) {
                        body += "<form method=\"post\" action=\"/dashboard/rules/\(index)/move\">\(csrfField)\(list)"
                            + "<button type=\"submit\" name=\"to\" value=\"\(to)\" aria-label=\"\(text): \(label)\">\(text)</button></form>"
                    }
                    body += "<form method=\"post\" action=\"/dashboard/rules/\(index)/delete\">\(csrfField)\(list)"
                        + "<button type=\"submit\" aria-label=\"Delete \(label)\">Delete</button></form>"
                    let editing = failure?.editing == index ? failure : nil
                    body += "<details class=\"edit-rule\"\(editing == nil ? "" : " open")><summary>Edit \(label)</summary>"
                        + ruleForm(action: "/dashboard/rules/\(index)", id: "edit-rule-\(index)",
                                   values: editing?.form ?? FormValues(rule, secrets: secrets), sequences: sequences, failure: editing,
                                   hidden: csrfField + list, button: "Save \(label)")
                        + "</details></td>"
                }
                body += "</tr>"
            }
            body += "</table>"
        }
        body += "</section>"
        if canEdit {
            let adding = failure?.adding == true ? failure : nil
            let positions = "<label>Where <select name=\"position\"><option value=\"\(rules.count)\">at the end</option>"
                + rules.indices.map { "<option value=\"\($0)\">before \(escape(ruleLabel($0, rules[$0])))</option>" }.joined() + "</select></label>"
            body += "<section id=\"add-rule\"><h2>Add a rule</h2>"
                + ruleForm(action: "/dashboard/rules", id: "add-rule-form",
                           values: adding?.form ?? FormValues(Rule(match: .mac, pattern: "", sequence: sequences.first ?? ""), secrets: []),
                           sequences: sequences, failure: adding, hidden: csrfField + list + positions, button: "Add rule")
                + "</section>"
        }
        body += tester(rules, machines: machines, state: state, csrf: csrf)
        return DashboardPage.page(title: "Imprint: rules", body: body, csrf: csrf, feed: false)
    }

    static func pathComponent(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }

    static func variableList(_ variables: [String: String], secrets: Set<String>) -> String {
        guard !variables.isEmpty else { return "<span class=\"empty\">none</span>" }
        let masked = RuleTest.masked(variables, sequenceSecrets: secrets)
        return "<ul class=\"variables\">" + masked.sorted { $0.key < $1.key }.map { name, value in
            let secret = value == SecretSealing.placeholder
            return "<li data-variable=\"\(escape(name))\"\(secret ? " class=\"secret\"" : "")><code>\(escape(name))</code> = "
                + (secret ? "<span class=\"secret-set\">set</span>" : "<code>\(escape(value))</code>") + "</li>"
        }.joined() + "</ul>"
    }

    static func multicastText(_ multicast: RuleMulticast) -> String {
        "at least \(multicast.machines) machine(s), waits \(multicast.wait) s, \(String(format: "%g", multicast.rateBitsPerSecond / 1_000_000)) Mbit/s"
    }

    /// The add and edit forms: every input labelled, the failing one marked and described.
    static func ruleForm(action: String, id: String, values: FormValues, sequences: [String], failure: Failure?, hidden: String, button: String) -> String {
        let errorID = "\(id)-error"
        func invalid(_ input: String) -> String {
            failure?.input == input ? " aria-invalid=\"true\" aria-describedby=\"\(errorID)\"" : ""
        }
        let matchOptions = Rule.Field.allCases.map { field in
            "<option value=\"\(field.rawValue)\"\(values.match == field.rawValue ? " selected" : "")>\(field.rawValue)</option>"
        }.joined()
        var sequenceNames = sequences
        if !values.sequence.isEmpty, !sequenceNames.contains(values.sequence) { sequenceNames.append(values.sequence) }
        let sequenceOptions = sequenceNames.map { name in
            "<option value=\"\(escape(name))\"\(values.sequence == name ? " selected" : "")>\(escape(name))</option>"
        }.joined()
        return "<form method=\"post\" action=\"\(action)\" id=\"\(id)\" class=\"library-form rule-form\">\(hidden)"
            + "<label>Name (optional; <code>default</code> for the fallback rule) <input type=\"text\" name=\"name\" maxlength=\"200\" value=\"\(escape(values.name))\"\(invalid("name"))></label>"
            + "<label>Match <select name=\"match\"\(invalid("match"))>\(matchOptions)</select></label>"
            + "<label>Pattern <input type=\"text\" name=\"pattern\" value=\"\(escape(values.pattern))\" placeholder=\"52:54:00:* or Latitude*\"\(invalid("pattern"))></label>"
            + "<label>Sequence <select name=\"sequence\"\(invalid("sequence"))>\(sequenceOptions)</select></label>"
            + "<label>Variables, one NAME=value a line (a secret left as (secret, set) keeps its value) "
            + "<textarea name=\"variables\" rows=\"3\"\(invalid("variables"))>\(escape(values.variables))</textarea></label>"
            + "<fieldset><legend>Multicast</legend><label><input type=\"checkbox\" name=\"multicast\"\(values.multicast ? " checked" : "")> "
            + "machines of this rule deploying the same file share a session</label>"
            + "<label>At least this many machines <input type=\"text\" inputmode=\"numeric\" name=\"minMachines\" value=\"\(escape(values.minMachines))\" placeholder=\"\(RuleMulticast.defaultMinMachines)\"\(invalid("minMachines"))></label>"
            + "<label>Or start after (seconds) <input type=\"text\" inputmode=\"numeric\" name=\"waitSeconds\" value=\"\(escape(values.waitSeconds))\" placeholder=\"\(RuleMulticast.defaultWaitSeconds)\"\(invalid("waitSeconds"))></label>"
            + "<label>Rate (Mbit/s) <input type=\"text\" inputmode=\"decimal\" name=\"rateMbps\" value=\"\(escape(values.rateMbps))\" placeholder=\"\(Int(RuleMulticast.defaultRateMbps))\"\(invalid("rateMbps"))></label></fieldset>"
            + "<button type=\"submit\">\(escape(button))</button>"
            + (failure.map { "<p id=\"\(errorID)\" class=\"form-message error rule-error\" role=\"alert\" data-field=\"\(escape($0.field))\">\(escape($0.message))</p>" } ?? "")
            + "</form>"
    }

    /// "Which rule would this machine get?"
    static func tester(_ rules: [Rule], machines: [Machine], state: State, csrf: String) -> String {
        var body = "<section id=\"tester\"><h2>Which rule would this machine get?</h2>"
            + "<p class=\"hint\">The check-in's own choice, on a machine's facts from its last check-in or on facts you paste "
            + "(<code>imprint agent --facts-only</code>), with the rules as stored or a draft of them.</p>"
            + "<form method=\"post\" action=\"/dashboard/rules/test\" id=\"rule-test-form\" class=\"library-form\">\(DashboardPage.csrfField(csrf))"
        let invalid: (String) -> String = { field in
            state.testError?.field == field ? " aria-invalid=\"true\" aria-describedby=\"rule-test-error\"" : ""
        }
        body += "<label>Machine <select name=\"machine\"\(invalid("machine"))><option value=\"\">(the facts below)</option>"
            + machines.map { machine in
                "<option value=\"\(escape(machine.id))\"\(state.testedMachine == machine.id ? " selected" : "")>"
                    + "\(escape(ImprintServer.name(machine))) — \(escape(machine.macs.first ?? machine.id)) (\(machine.state.rawValue))</option>"
            }.joined() + "</select></label>"
        body += "<label>Or its facts (JSON) <textarea name=\"facts\" rows=\"4\"\(invalid("facts"))>\(escape(state.pastedFacts))</textarea></label>"
        let draft = state.draft.isEmpty ? draftText(rules) : state.draft
        body += "<details\(state.useDraft ? " open" : "")><summary>Test a draft of the rules (not saved)</summary>"
            + "<label><input type=\"checkbox\" name=\"use-draft\"\(state.useDraft ? " checked" : "")> test with this draft instead of the stored rules</label>"
            + "<label>Draft ({\"rules\": [...]}, as GET /api/v1/admin/rules gives it) <textarea name=\"draft\" rows=\"8\"\(invalid("draft"))>\(escape(draft))</textarea></label></details>"
        body += "<button type=\"submit\">Test</button></form>"
        if let error = state.testError {
            body += "<p id=\"rule-test-error\" class=\"form-message error\" role=\"alert\" data-field=\"\(escape(error.field))\">\(escape(error.message))</p>"
        }
        if let test = state.test { body += result(test) }
        return body + "</section>"
    }

    static func draftText(_ rules: [Rule]) -> String {
        struct Rules: Encodable { var rules: [Rule] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(Rules(rules: rules.map(ImprintServer.masked)))) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func result(_ test: RuleTest.Answer) -> String {
        var body = "<div id=\"rule-test\" role=\"status\" data-outcome=\"\(test.outcome)\"" + (test.chosen.map { " data-rule=\"\($0)\"" } ?? "")
            + " data-sequence=\"\(escape(test.sequence ?? ""))\">"
        body += "<h3>" + (test.machine.map { "Machine \(escape($0))" } ?? "The pasted facts") + " (\(escape(test.machineState)))"
            + (test.draft ? " against the draft" : "") + "</h3>"
        body += "<p class=\"outcome\">" + (test.sequence.map { "Gets <strong>\(escape($0))</strong>: " } ?? "Gets no sequence: ") + "\(escape(test.reason)).</p>"
        if let note = test.note { body += "<p class=\"notice\">\(escape(note)).</p>" }
        if let variables = test.variables {
            body += "<h4>Variables the deployment would carry</h4>" + variableList(variables, secrets: [])
        }
        body += "<table class=\"evaluations\"><caption>Each rule against this machine</caption><tr><th scope=\"col\">#</th><th scope=\"col\">Rule</th>"
            + "<th scope=\"col\">Sequence</th><th scope=\"col\">Matches</th><th scope=\"col\">Why</th></tr>"
        for rule in test.rules {
            let chosen = test.chosen == rule.index
            body += "<tr class=\"evaluation\(chosen ? " chosen" : "")\" data-index=\"\(rule.index)\" data-matches=\"\(rule.matches)\">"
                + "<td>\(rule.index)</td><td>\(escape(rule.name ?? "")) <code>\(rule.match) \(escape(rule.pattern))</code></td>"
                + "<td>\(escape(rule.sequence))</td><td>\(rule.matches ? "yes" : "no")\(chosen ? " (chosen)" : "")</td><td>\(escape(rule.why))</td></tr>"
        }
        return body + "</table></div>"
    }

    static let style = """
        #rule-list form, #rule-list details { display: inline-block; margin: 0.1em 0.2em 0.1em 0; } #rule-list details[open] { display: block; }
        tr.chosen { background: #e3f0fc; } ul.variables { margin: 0; padding-left: 1.2em; } .secret-set { font-style: italic; color: #555; }
        .rule-form fieldset { border: 1px solid #ccc; margin: 0.4em 0; } [aria-invalid="true"] { outline: 2px solid #c0392b; }
        #rule-test { border: 1px solid #ccc; padding: 0.6em 1em; margin-top: 1em; } table.evaluations caption { text-align: left; font-weight: bold; }
        textarea.sequence-editor { width: 100%; min-height: 24em; font-family: monospace; font-size: 0.9em; }
        #sequence-issues li.error { color: #c0392b; } #sequence-issues li.warning { color: #a66300; } #sequence-check.valid { color: #2e9e44; }
        #sequence-check.invalid { color: #c0392b; font-weight: bold; } pre.sequence-body { background: #f6f6f6; padding: 1em; overflow: auto; max-height: 40em; }
        tr.plan-step.skipped { color: #666; } tr.plan-step.fails { background: #fdecea; } tr.plan-step.destructive td.verdict { color: #c0392b; font-weight: bold; }
        ul.plan-details { margin: 0; padding-left: 1.2em; font-size: 0.9em; } a:focus, button:focus, summary:focus { outline: 2px solid #2a7ae2; }
        """
}
