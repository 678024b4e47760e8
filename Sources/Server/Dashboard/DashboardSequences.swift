import Foundation
import Hummingbird
import SequenceModel

/// The dashboard's Sequences pages: the list (with the rules using each), a sequence's page
/// (its text with secrets as "(secret, set)", an editor for administrators that checks as it is
/// typed, its versions, the rules using it, a dry run against a machine), a version's page and
/// the plan's page. Saving and restoring go through `saveSequence`, the admin API's PUT; the
/// as-you-type check through `checkSequence`, the same checker (`imprint sequence validate`'s).
public enum DashboardSequenceRoute: Sendable, Hashable {
    case list, create, page, save, validate, plan, version, restore
}

extension ImprintServer {
    func dashboardSequences(_ route: DashboardSequenceRoute, _ request: Request, _ context: BasicRequestContext,
                            access: DashboardAccess) async throws -> Response {
        let canEdit = access.principal.role >= RouteSpec.requiredRole(.dashboardSequences(.save))
        switch route {
        case .list:
            return dashboardHTML(try await sequencesListPage(access: access, failure: nil))

        case .create:
            let form = try await largeDashboardForm(request)
            try requireCSRF(form, access)
            let name = (form["name"] ?? "").trimmingCharacters(in: .whitespaces)
            let text = form["body"] ?? ""
            do {
                guard try await storage.sequence(name: name) == nil else {
                    throw APIError(.conflict, "a sequence named \(name) exists already: edit it on its page", field: "name")
                }
                _ = try await saveSequence(name: name, text: text)
                AuditNote.current?.object(name)
            } catch let error as APIError where error.status == .unprocessableContent || error.status == .conflict {
                let failure = DashboardSequencesPage.Failure(message: error.message, field: error.field ?? "body", issues: error.issues ?? [],
                                                             name: name, body: text)
                return dashboardHTML(try await sequencesListPage(access: access, failure: failure), status: error.status)
            }
            return Response(status: .seeOther, headers: [.location: "/dashboard/sequences/\(DashboardRulesPage.pathComponent(name))?done=created"])

        case .page:
            let name = try request.requiredParameter("name", context)
            let notice = request.uri.queryParameters.get("done").flatMap { DashboardSequencesPage.doneMessage(String($0)) }
            return dashboardHTML(try await sequencePage(name: name, access: access, canEdit: canEdit, notice: notice, failure: nil))

        case .save:
            let name = try request.requiredParameter("name", context)
            let form = try await largeDashboardForm(request)
            try requireCSRF(form, access)
            let text = form["body"] ?? ""
            var version = 0
            do {
                // Saved meanwhile by someone else: their version would be lost without a look.
                if let base = form["base"].flatMap({ Int($0) }), let current = try await storage.sequenceVersions(name: name).first,
                   current.version != base {
                    throw APIError(.conflict, "version \(current.version) was saved since you opened version \(base)"
                                   + (current.savedBy.map { ", by \($0)" } ?? "") + ": your text is below; compare it with the current "
                                   + "version (in Versions) and save again", field: "base")
                }
                version = try await saveSequence(name: name, text: text).version
            } catch let error as APIError where error.status == .unprocessableContent || error.status == .conflict {
                let failure = DashboardSequencesPage.Failure(message: error.message, field: error.field ?? "body", issues: error.issues ?? [],
                                                             name: name, body: text)
                return dashboardHTML(try await sequencePage(name: name, access: access, canEdit: canEdit, notice: nil, failure: failure),
                                     status: error.status)
            }
            return Response(status: .seeOther,
                            headers: [.location: "/dashboard/sequences/\(DashboardRulesPage.pathComponent(name))?done=saved-\(version)"])

        case .validate:
            // The editor's script: the draft as the body, the session's CSRF token in a header.
            try requireCSRFHeader(request, access)
            let name = try request.requiredParameter("name", context)
            var request = request
            let data = try await request.bodyData(limit: 4 << 20)
            return JSON.response(try await checkSequence(name: name, text: String(decoding: data, as: UTF8.self)))

        case .plan:
            let name = try request.requiredParameter("name", context)
            let machineID = request.uri.queryParameters.get("machine").map { String($0) } ?? ""
            var plan: SequencePlanAnswer?
            var error: String?
            do {
                let tested = try await testedMachine(id: machineID, facts: nil)
                plan = try await planSequence(name: name, machine: tested.machine, facts: tested.facts)
            } catch let failure as APIError where failure.status == .unprocessableContent {
                error = failure.message
            }
            let machines = try await storage.machines().filter { $0.facts != nil }
            return dashboardHTML(DashboardSequencesPage.plan(name: name, plan: plan, error: error, machines: machines, selected: machineID,
                                                             csrf: access.csrfToken), status: error == nil ? .ok : .unprocessableContent)

        case .version:
            let name = try request.requiredParameter("name", context)
            let number = try Self.versionNumber(request, context)
            guard let version = try await storage.sequenceVersion(name: name, version: number) else {
                throw APIError.notFound("version \(number) of sequence \"\(name)\"")
            }
            return dashboardHTML(DashboardSequencesPage.version(version, canEdit: canEdit, csrf: access.csrfToken))

        case .restore:
            let name = try request.requiredParameter("name", context)
            try requireCSRF(try await dashboardForm(request), access)
            let number = try Self.versionNumber(request, context)
            let version: Int
            do { version = try await restoreSequence(name: name, version: number) } catch let error as APIError
                where error.status == .unprocessableContent || error.status == .conflict {
                let failure = DashboardSequencesPage.Failure(message: "version \(number) cannot be restored: \(error.message)",
                                                             field: error.field ?? "version", issues: error.issues ?? [], name: name, body: nil)
                return dashboardHTML(try await sequencePage(name: name, access: access, canEdit: canEdit, notice: nil, failure: failure),
                                     status: error.status)
            }
            return Response(status: .seeOther,
                            headers: [.location: "/dashboard/sequences/\(DashboardRulesPage.pathComponent(name))?done=restored-\(number)-\(version)"])
        }
    }

    private func sequencesListPage(access: DashboardAccess, failure: DashboardSequencesPage.Failure?) async throws -> String {
        let sequences = try await storage.sequences()
        var rows: [DashboardSequencesPage.Row] = []
        let uses = try await rulesBySequence()
        for sequence in sequences {
            let current = try await storage.sequenceVersions(name: sequence.name).first
            let parsed = SequenceParser.parse(Data(SecretSealing.maskSequence(sequence.body).utf8), origin: sequence.name).0
            rows.append(.init(name: sequence.name, version: current?.version ?? 1, updated: sequence.updated, by: current?.savedBy,
                              title: parsed?.name, steps: parsed?.allSteps.count, rules: uses[sequence.name] ?? []))
        }
        return DashboardSequencesPage.list(rows, canEdit: access.principal.role >= RouteSpec.requiredRole(.dashboardSequences(.create)),
                                           failure: failure, csrf: access.csrfToken)
    }

    private func sequencePage(name: String, access: DashboardAccess, canEdit: Bool, notice: String?,
                              failure: DashboardSequencesPage.Failure?) async throws -> String {
        let versions = try await storage.sequenceVersions(name: name)
        guard let current = versions.first else { throw APIError.notFound("sequence \"\(name)\"") }
        let masked = SecretSealing.maskSequence(current.body)
        // What the editor opens with: the failed save's text, or the stored one (secrets masked).
        let shown = failure?.body ?? masked
        let check = try await checkSequence(name: name, text: failure?.body ?? masked)
        let machines = try await storage.machines().filter { $0.facts != nil }
        return DashboardSequencesPage.sequence(name: name, current: current, text: shown, check: check, versions: versions,
                                               rules: try await rulesBySequence()[name] ?? [], machines: machines, canEdit: canEdit,
                                               notice: notice, failure: failure, csrf: access.csrfToken)
    }
}

/// The Sequences pages' HTML, pure: every name, text and message is escaped.
enum DashboardSequencesPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }
    static func link(_ name: String) -> String { "/dashboard/sequences/" + escape(DashboardRulesPage.pathComponent(name)) }

    struct Row {
        var name: String
        var version: Int
        var updated: String
        var by: String?
        /// The sequence's own `name`, and its steps, when it parses.
        var title: String?
        var steps: Int?
        var rules: [(index: Int, name: String?)]
    }

    struct Failure {
        var message: String
        var field: String
        var issues: [APIError.IssueBody]
        var name: String
        var body: String?
    }

    static func doneMessage(_ done: String) -> String? {
        let parts = done.split(separator: "-")
        switch parts.first {
        case "created": return "Sequence created (version 1)."
        case "saved" where parts.count == 2: return "Saved as version \(parts[1]); the one before it is kept in Versions."
        case "restored" where parts.count == 3: return "Version \(parts[1]) restored as version \(parts[2])."
        default: return nil
        }
    }

    static func rulesText(_ rules: [(index: Int, name: String?)]) -> String {
        guard !rules.isEmpty else { return "<span class=\"empty\">no rule</span>" }
        return rules.map { "<a href=\"/dashboard/rules#rule-\($0.index)\" class=\"rule-use\" data-index=\"\($0.index)\">rule \($0.index)"
            + ($0.name.map { " (\(escape($0)))" } ?? "") + "</a>" }.joined(separator: ", ")
    }

    static func list(_ rows: [Row], canEdit: Bool, failure: Failure?, csrf: String) -> String {
        var body = "<h1>Task sequences</h1><p class=\"hint\">What machines run, chosen by the rules. Each save keeps the version it replaces.</p>"
        body += "<section id=\"sequences\">"
        if rows.isEmpty {
            body += "<p class=\"empty\">No sequence yet.</p>"
        } else {
            body += "<table id=\"sequence-list\"><tr><th scope=\"col\">Sequence</th><th scope=\"col\">Version</th><th scope=\"col\">Saved</th>"
                + "<th scope=\"col\">Steps</th><th scope=\"col\">Used by</th></tr>"
            for row in rows {
                body += "<tr class=\"sequence\" data-name=\"\(escape(row.name))\"><th scope=\"row\"><a href=\"\(link(row.name))\">\(escape(row.name))</a>"
                    + (row.title.map { "<div class=\"hint\">\(escape($0))</div>" } ?? "<div class=\"failure\">does not parse</div>") + "</th>"
                    + "<td>\(row.version)</td><td class=\"when\">\(escape(row.updated))" + (row.by.map { " by \(escape($0))" } ?? "") + "</td>"
                    + "<td>\(row.steps.map(String.init) ?? "")</td><td>\(rulesText(row.rules))</td></tr>"
            }
            body += "</table>"
        }
        body += "</section>"
        if canEdit {
            let invalid: (String) -> String = { field in
                failure.map { $0.field == field || (field == "body" && $0.field.hasPrefix("$")) } == true
                    ? " aria-invalid=\"true\" aria-describedby=\"new-sequence-error\"" : ""
            }
            let skeleton = failure?.body ?? "{\n  \"name\": \"New sequence\",\n  \"steps\": [\n    {\"type\": \"reboot\", \"name\": \"Restart\"}\n  ]\n}\n"
            body += "<section id=\"new-sequence\"><h2>New sequence</h2><form method=\"post\" action=\"/dashboard/sequences\" id=\"new-sequence-form\" "
                + "class=\"library-form\">\(DashboardPage.csrfField(csrf))"
                + "<label>Name (letters, digits, -, _ and .) <input type=\"text\" name=\"name\" required maxlength=\"200\" pattern=\"[A-Za-z0-9._\\-]+\" "
                + "value=\"\(escape(failure?.name ?? ""))\"\(invalid("name"))></label>"
                + "<label>Sequence (JSON) <textarea name=\"body\" class=\"sequence-editor\" rows=\"12\"\(invalid("body"))>\(escape(skeleton))</textarea></label>"
                + "<button type=\"submit\">Create sequence</button>"
                + (failure.map { "<p id=\"new-sequence-error\" class=\"form-message error\" role=\"alert\" data-field=\"\(escape($0.field))\">\(escape($0.message))</p>"
                    + issueList($0.issues, id: "new-sequence-issues") } ?? "")
                + "</form></section>"
        }
        return DashboardPage.page(title: "Imprint: sequences", body: body, csrf: csrf, feed: false)
    }

    /// Issues as a list, each at its JSON path (the script fills the same list as you type).
    static func issueList(_ issues: [APIError.IssueBody], id: String) -> String {
        "<ul id=\"\(id)\" class=\"issues\">" + issues.map { issue in
            "<li class=\"issue \(escape(issue.severity))\" data-path=\"\(escape(issue.path))\"><code class=\"path\">\(escape(issue.path))</code>: "
                + "\(escape(issue.severity)): \(escape(issue.message))" + (issue.hint.map { " <span class=\"hint\">(\(escape($0)))</span>" } ?? "") + "</li>"
        }.joined() + "</ul>"
    }

    static func checkSummary(_ check: SequenceCheck) -> String {
        let errors = check.errors.count, warnings = check.issues.count - errors
        if errors > 0 { return "\(errors) error(s)" + (warnings > 0 ? ", \(warnings) warning(s)" : "") }
        return "valid: \"\(check.name ?? "")\", \(check.steps ?? 0) step(s)" + (warnings > 0 ? ", \(warnings) warning(s)" : "")
    }

    static func machineOptions(_ machines: [Machine], selected: String) -> String {
        machines.map { machine in
            "<option value=\"\(escape(machine.id))\"\(selected == machine.id ? " selected" : "")>\(escape(ImprintServer.name(machine)))"
                + " — \(escape(machine.macs.first ?? machine.id))</option>"
        }.joined()
    }

    static func sequence(name: String, current: SequenceVersion, text: String, check: SequenceCheck, versions: [SequenceVersion],
                         rules: [(index: Int, name: String?)], machines: [Machine], canEdit: Bool, notice: String?, failure: Failure?,
                         csrf: String) -> String {
        var body = "<p><a href=\"/dashboard/sequences\">All sequences</a></p><h1>Sequence \(escape(name))</h1>"
        body += "<p class=\"summary\">Version \(current.version), saved \(escape(current.saved))" + (current.savedBy.map { " by \(escape($0))" } ?? "")
            + ". Used by \(rulesText(rules)).</p>"
        if let notice { body += "<p id=\"notice\" class=\"form-message ok\" role=\"status\">\(escape(notice))</p>" }
        if let failure {
            body += "<p id=\"sequence-error\" class=\"form-message error\" role=\"alert\" data-field=\"\(escape(failure.field))\">\(escape(failure.message))</p>"
        }
        let status = "<p id=\"sequence-check\" class=\"\(check.errors.isEmpty ? "valid" : "invalid")\" role=\"status\" aria-live=\"polite\">"
            + "\(escape(checkSummary(check)))</p>"
        body += "<section id=\"sequence\" data-name=\"\(escape(name))\">"
        if canEdit {
            body += "<h2>Edit</h2><form method=\"post\" action=\"\(link(name))\" id=\"sequence-form\" class=\"library-form\" "
                + "data-validate=\"\(link(name))/validate\">\(DashboardPage.csrfField(csrf))"
                + "<input type=\"hidden\" name=\"base\" value=\"\(current.version)\">"
                + "<label for=\"sequence-body\">The sequence (JSON; a secret left as (secret, set) keeps its value). It is checked as you type.</label>"
                + "<textarea id=\"sequence-body\" name=\"body\" class=\"sequence-editor\" spellcheck=\"false\" aria-describedby=\"sequence-check\""
                + (check.errors.isEmpty ? "" : " aria-invalid=\"true\"") + ">\(escape(text))</textarea>"
                + status + issueList(check.issues, id: "sequence-issues")
                + "<button type=\"submit\">Save as version \(current.version + 1)</button></form>"
        } else {
            body += "<h2>The sequence</h2><pre class=\"sequence-body\" id=\"sequence-text\">\(escape(text))</pre>" + status + issueList(check.issues, id: "sequence-issues")
        }
        body += "</section>"
        body += "<section id=\"plan\"><h2>Dry run</h2><p class=\"hint\">What a machine's agent would do with this sequence: the steps that "
            + "would run or be skipped by their conditions, the disk chosen and what would be wiped.</p>"
        if machines.isEmpty {
            body += "<p class=\"empty\">No machine has checked in yet: the API plans pasted facts (POST /api/v1/admin/sequences/NAME/plan).</p>"
        } else {
            body += "<form method=\"get\" action=\"\(link(name))/plan\" id=\"plan-form\" class=\"library-form\"><label>Machine "
                + "<select name=\"machine\">\(machineOptions(machines, selected: ""))</select></label> <button type=\"submit\">Plan</button></form>"
        }
        body += "</section>"
        body += "<section id=\"versions\"><h2>Versions</h2><table id=\"version-list\"><tr><th scope=\"col\">Version</th><th scope=\"col\">Saved</th>"
            + "<th scope=\"col\">Replaced</th><th scope=\"col\"></th></tr>"
        for version in versions {
            body += "<tr class=\"version\(version.isCurrent ? " current" : "")\" data-version=\"\(version.version)\">"
                + "<td><a href=\"\(link(name))/versions/\(version.version)\">version \(version.version)</a>\(version.isCurrent ? " (current)" : "")</td>"
                + "<td class=\"when\">\(escape(version.saved))" + (version.savedBy.map { " by \(escape($0))" } ?? "") + "</td>"
                + "<td class=\"when\">" + (version.replaced.map { escape($0) + (version.replacedBy.map { " by \(escape($0))" } ?? "") } ?? "") + "</td><td>"
                + (canEdit && !version.isCurrent ? restoreForm(name: name, version: version.version, csrf: csrf) : "") + "</td></tr>"
        }
        body += "</table></section>"
        return DashboardPage.page(title: "Imprint: sequence \(name)", body: body, csrf: csrf, feed: false)
    }

    static func restoreForm(name: String, version: Int, csrf: String) -> String {
        "<form method=\"post\" action=\"\(link(name))/versions/\(version)/restore\" class=\"restore\">\(DashboardPage.csrfField(csrf))"
            + "<button type=\"submit\">Restore version \(version)</button></form>"
    }

    static func version(_ version: SequenceVersion, canEdit: Bool, csrf: String) -> String {
        var body = "<p><a href=\"\(link(version.name))\">Sequence \(escape(version.name))</a></p>"
            + "<h1>\(escape(version.name)), version \(version.version)\(version.isCurrent ? " (current)" : "")</h1>"
            + "<p class=\"summary\">Saved \(escape(version.saved))" + (version.savedBy.map { " by \(escape($0))" } ?? "")
            + (version.replaced.map { "; replaced \(escape($0))" + (version.replacedBy.map { " by \(escape($0))" } ?? "") } ?? "") + ".</p>"
        if canEdit && !version.isCurrent { body += restoreForm(name: version.name, version: version.version, csrf: csrf) }
        body += "<pre class=\"sequence-body\" id=\"version-text\">\(escape(SecretSealing.maskSequence(version.body)))</pre>"
        return DashboardPage.page(title: "Imprint: \(version.name) version \(version.version)", body: body, csrf: csrf, feed: false)
    }

    static func plan(name: String, plan: SequencePlanAnswer?, error: String?, machines: [Machine], selected: String, csrf: String) -> String {
        var body = "<p><a href=\"\(link(name))\">Sequence \(escape(name))</a></p><h1>Dry run of \(escape(name))</h1>"
        body += "<form method=\"get\" action=\"\(link(name))/plan\" id=\"plan-form\" class=\"library-form\"><label>Machine "
            + "<select name=\"machine\">\(machineOptions(machines, selected: selected))</select></label> <button type=\"submit\">Plan</button></form>"
        if let error { body += "<p id=\"plan-error\" class=\"form-message error\" role=\"alert\">\(escape(error))</p>" }
        guard let plan else { return DashboardPage.page(title: "Imprint: plan of \(name)", body: body, csrf: csrf, feed: false) }
        body += "<section id=\"plan-result\" data-fails=\"\(plan.fails)\"><p class=\"summary\">Version \(plan.version.map(String.init) ?? "?") on "
            + "\(escape(plan.factsFrom)), \(escape(plan.ruleNote)).</p>"
        body += "<h2>What would be wiped</h2>"
        body += plan.wipes.isEmpty ? "<p id=\"plan-wipes\" class=\"empty\">Nothing: no step that would run writes a disk.</p>"
            : "<ul id=\"plan-wipes\">" + plan.wipes.map { "<li>\(escape($0))</li>" }.joined() + "</ul>"
        body += "<h2>Steps</h2><table id=\"plan-steps\"><tr><th scope=\"col\">#</th><th scope=\"col\">Step</th><th scope=\"col\">Type</th>"
            + "<th scope=\"col\">Would</th><th scope=\"col\">Details</th></tr>"
        for line in plan.steps {
            let verdict = line.verdict == "runs" && line.destructive ? "runs (writes the disk)" : line.verdict
            body += "<tr class=\"plan-step \(escape(line.verdict))\(line.destructive ? " destructive" : "")\" data-step=\"\(escape(line.step))\" "
                + "data-verdict=\"\(escape(line.verdict))\"><td>\(escape(line.step))</td><td>\(escape(line.name))</td><td>\(escape(line.type))</td>"
                + "<td class=\"verdict\">\(escape(verdict))</td><td><ul class=\"plan-details\">"
                + line.details.map { "<li>\(escape($0))</li>" }.joined() + "</ul></td></tr>"
        }
        body += "</table><h2>Disks</h2><p class=\"hint\">\(escape(plan.disksNote))</p>"
        body += plan.disks.isEmpty ? "<p class=\"empty\">The machine reported no disk.</p>"
            : "<ul id=\"plan-disks\">" + plan.disks.map { disk in
                "<li><code>\(escape(disk.path))</code> \(escape(ByteCountFormatter.string(fromByteCount: Int64(clamping: disk.size), countStyle: .binary)))"
                    + " \(escape(disk.transport))" + (disk.model.map { " \(escape($0))" } ?? "") + (disk.removable ? ", removable" : "")
                    + (disk.hasWindows ? ", Windows on it" : "") + "</li>"
            }.joined() + "</ul>"
        body += "</section>"
        return DashboardPage.page(title: "Imprint: plan of \(name)", body: body, csrf: csrf, feed: false)
    }

    /// Appended to `/dashboard/app.js`: on a sequence's page, the editor's text is checked as it
    /// is typed (POST .../validate with the session's CSRF token in a header, a moment after the
    /// last key) and the issues replace the list, each at its JSON path, as text only.
    static let script = #"""
(function () {
  'use strict';
  const form = document.getElementById('sequence-form');
  if (form === null) return;
  const editor = document.getElementById('sequence-body');
  const status = document.getElementById('sequence-check');
  const list = document.getElementById('sequence-issues');
  const csrf = form.querySelector('input[name=csrf]');
  let timer = null;
  let asked = 0;
  function show(check) {
    list.textContent = '';
    (check.issues || []).forEach(function (issue) {
      const item = document.createElement('li');
      item.className = 'issue ' + issue.severity;
      item.dataset.path = issue.path;
      const path = document.createElement('code');
      path.className = 'path';
      path.textContent = issue.path;
      item.appendChild(path);
      item.appendChild(document.createTextNode(': ' + issue.severity + ': ' + issue.message + (issue.hint ? ' (' + issue.hint + ')' : '')));
      list.appendChild(item);
    });
    const errors = (check.issues || []).filter(function (issue) { return issue.severity === 'error'; }).length;
    const warnings = (check.issues || []).length - errors;
    status.className = errors > 0 ? 'invalid' : 'valid';
    status.textContent = errors > 0 ? errors + ' error(s)' + (warnings > 0 ? ', ' + warnings + ' warning(s)' : '')
      : 'valid: "' + (check.name || '') + '", ' + (check.steps || 0) + ' step(s)' + (warnings > 0 ? ', ' + warnings + ' warning(s)' : '');
    if (errors > 0) editor.setAttribute('aria-invalid', 'true'); else editor.removeAttribute('aria-invalid');
  }
  function check() {
    const number = ++asked;
    const headers = { 'Content-Type': 'application/json' };
    if (csrf !== null) headers['X-CSRF-Token'] = csrf.value;
    fetch(form.dataset.validate, { method: 'POST', headers: headers, body: editor.value, credentials: 'same-origin' })
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (number !== asked) return;  // a newer check is on its way
        if (answer.error) { status.className = 'invalid'; status.textContent = answer.error; return; }
        show(answer);
      })
      .catch(function () { if (number === asked) status.textContent = 'the check did not answer: the save checks it again'; });
  }
  editor.addEventListener('input', function () {
    status.textContent = 'checking…';
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  form.dataset.ready = 'true';
})();
"""#
}
