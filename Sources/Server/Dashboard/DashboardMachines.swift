import Foundation
import Hummingbird
import SequenceModel

/// The dashboard's Machines pages (issue 20): the inventory (`/dashboard/machines`: search and
/// filters as GET parameters, paged), a machine's page (`/dashboard/machines/{id}`: its facts,
/// its deployment history, approve, reject, deploy again, forget), and the forms that register
/// machines ahead of time, one or a CSV batch. Plain forms that work without JavaScript, checked
/// by the admin API's own functions (`Handlers/Machines.swift`), a form's error shown at its field.
/// `/dashboard` stays the landing page with its live progress.
public enum DashboardMachineRoute: Sendable, Hashable {
    case inventory, machine, register, importCSV, reject, forget
}

extension ImprintServer {
    func dashboardMachines(_ route: DashboardMachineRoute, _ request: Request, _ context: BasicRequestContext,
                           access: DashboardAccess) async throws -> Response {
        switch route {
        case .inventory:
            return try await inventoryPage(request, access: access, failure: nil)

        case .machine:
            let id = try request.requiredParameter("id", context)
            var notice: String?
            if let done = request.uri.queryParameters.get("done") { notice = DashboardMachinesPage.doneMessage(String(done)) }
            return try await machinePage(id: id, access: access, notice: notice, failure: nil)

        case .register:
            let form = try await dashboardForm(request)
            try requireCSRF(form, access)
            let values = DashboardMachinesPage.Failure.registerValues(form)
            do {
                let registration = try Self.machineRegistration(macs: DashboardMachinesPage.macList(values["macs"] ?? ""),
                                                                uuid: values["uuid"], serial: values["serial"],
                                                                manufacturer: values["manufacturer"], model: values["model"])
                let machine = try await registerMachine(registration)
                return Response(status: .seeOther, headers: [.location: "/dashboard/machines/\(machine.id)?done=registered"])
            } catch let error as APIError where error.status == .unprocessableContent || error.status == .conflict {
                // The page again, the form as it was sent, the error at its field (`macs[1]` is the MACs' box).
                let field = String((error.field ?? "macs").prefix { $0 != "[" })
                let failure = DashboardMachinesPage.Failure(form: .register, message: error.message, field: field, values: values)
                return try await inventoryPage(request, access: access, failure: failure, status: error.status)
            }

        case .importCSV:
            var request = request
            let body = try await request.bodyData(limit: MachineCSV.byteLimit + (64 << 10))
            let fields: [String: String]
            var fileText: String?
            if let multipart = try MultipartForm(contentType: request.headers[.contentType], body: body) {
                var values: [String: String] = [:]
                for part in multipart.parts where part.filename == nil { values[part.name] = String(decoding: part.data, as: UTF8.self) }
                fields = values
                if let file = multipart["file"], !file.data.isEmpty {
                    guard let text = String(data: file.data, encoding: .utf8) else {
                        try requireCSRF(sent: fields["csrf"], access, carrier: "the form", field: "csrf")
                        let failure = DashboardMachinesPage.Failure(form: .importCSV, message: "the file \(file.filename ?? "") is not UTF-8 text: save it as CSV UTF-8",
                                                                    field: "file", values: [:])
                        return try await inventoryPage(request, access: access, failure: failure, status: .unprocessableContent)
                    }
                    fileText = text
                }
            } else {
                let form = try FormFields(body)
                fields = ["csrf": form["csrf"] ?? "", "csv": form["csv"] ?? ""]
            }
            try requireCSRF(sent: fields["csrf"], access, carrier: "the form", field: "csrf")
            let pasted = fields["csv"] ?? ""
            guard let text = fileText ?? (pasted.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : pasted) else {
                let failure = DashboardMachinesPage.Failure(form: .importCSV, message: "choose a CSV file or paste its lines", field: "csv", values: [:])
                return try await inventoryPage(request, access: access, failure: failure, status: .unprocessableContent)
            }
            do {
                let machines = try await importMachines(csv: text, handler: .dashboardMachines(.importCSV))
                return Response(status: .seeOther, headers: [.location: "/dashboard/machines?done=imported&count=\(machines.count)#inventory"])
            } catch let error as APIError where error.status == .unprocessableContent || error.status == .conflict {
                // What was pasted comes back in the box (a file cannot be chosen again by the server).
                var failure = DashboardMachinesPage.Failure(form: .importCSV, message: error.message, field: fileText == nil ? "csv" : "file",
                                                            values: ["csv": String(pasted.prefix(MachineCSV.byteLimit))])
                failure.issues = error.issues ?? []
                return try await inventoryPage(request, access: access, failure: failure, status: error.status)
            }

        case .reject:
            let id = try request.requiredParameter("id", context)
            try requireCSRF(try await dashboardForm(request), access)
            _ = try await rejectMachine(id: id)
            return Response(status: .seeOther, headers: [.location: "/dashboard/machines/\(id)?done=rejected"])

        case .forget:
            let id = try request.requiredParameter("id", context)
            let form = try await dashboardForm(request)
            try requireCSRF(form, access)
            // The checkbox is `required` in the page; a browser that ignores it meets this.
            guard form["confirm"] == "yes" else {
                let failure = DashboardMachinesPage.Failure(form: .forget, message: "tick the box to confirm that the machine's deployment "
                                                                + "history goes with it", field: "confirm", values: [:])
                return try await machinePage(id: id, access: access, notice: nil, failure: failure, status: .unprocessableContent)
            }
            do {
                _ = try await forgetMachine(id: id)
            } catch let error as APIError where error.status == .conflict {
                let failure = DashboardMachinesPage.Failure(form: .forget, message: error.message, field: "confirm", values: [:])
                return try await machinePage(id: id, access: access, notice: nil, failure: failure, status: error.status)
            }
            return Response(status: .seeOther, headers: [.location: "/dashboard/machines?done=forgotten&machine=\(id)#inventory"])
        }
    }

    /// The inventory, one page of what the filters keep. A filter the page cannot take (typed
    /// by hand in the URL) is said at its field, with no machine listed.
    private func inventoryPage(_ request: Request, access: DashboardAccess, failure: DashboardMachinesPage.Failure?,
                               status: HTTPResponse.Status = .ok) async throws -> Response {
        var status = status
        var failure = failure
        let query: DashboardMachinesPage.Query
        do { query = try DashboardMachinesPage.Query(request) } catch {
            query = DashboardMachinesPage.Query()
            failure = DashboardMachinesPage.Failure(form: .filter, message: error.message, field: error.field ?? "q", values: [:])
            status = .badRequest
        }
        let perPage = configuration.limits.machinesPerPage
        var machines: [Machine] = [], total = 0
        if failure?.form != .filter {
            (machines, total) = try await storage.machineInventory(query.filter, offset: (query.page - 1) * perPage, limit: perPage)
        }
        let latest = try await storage.latestDeployments(machineIDs: machines.map(\.id))
        let options = DashboardMachinesPage.Options(models: try await storage.machineModels(limit: 500),
                                                    sequences: try await storage.sequences().map(\.name))
        var notice: String?
        let parameters = request.uri.queryParameters
        if failure == nil, let done = parameters.get("done") {
            notice = DashboardMachinesPage.doneMessage(String(done), count: parameters.get("count").flatMap { Int(String($0)) },
                                                       machine: parameters.get("machine").map { String($0) })
        }
        let page = DashboardMachinesPage.inventory(machines, latest: latest, total: total, query: query, perPage: perPage, options: options,
                                                   notice: notice, failure: failure, role: access.principal.role, csrf: access.csrfToken)
        return dashboardHTML(page, status: status)
    }

    private func machinePage(id: String, access: DashboardAccess, notice: String?, failure: DashboardMachinesPage.Failure?,
                             status: HTTPResponse.Status = .ok) async throws -> Response {
        guard let machine = try await storage.machine(id: id) else { throw APIError.notFound("machine \(id)") }
        let deployments = try await storage.machineDeployments(machineID: id, limit: Self.machineHistoryLimit)
        let redeploy = try await storage.redeployRequested(machineID: id)
        let page = DashboardMachinesPage.machine(machine, name: Self.name(machine), deployments: deployments, redeployRequested: redeploy,
                                                 now: Date(), notice: notice, failure: failure, role: access.principal.role, csrf: access.csrfToken)
        return dashboardHTML(page, status: status)
    }
}

/// The Machines pages' HTML, pure: every value a machine or an administrator sent is escaped.
enum DashboardMachinesPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    /// The inventory's GET parameters, checked: `q`, `model`, `firmware`, `state`, `seen`, `sequence`, `page`.
    struct Query: Sendable, Equatable {
        var filter = MachineFilter()
        var page = 1

        init() {}

        init(_ request: Request) throws(APIError) {
            let query = try FormFields(query: request)
            func value(_ name: String) throws(APIError) -> String? {
                guard let text = query[name].map({ $0.trimmingCharacters(in: .whitespaces) }), !text.isEmpty else { return nil }
                guard text.count <= 200, !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                    throw APIError(.badRequest, "\(name) is at most 200 characters, no control characters", field: name)
                }
                return text
            }
            filter.text = try value("q")
            filter.model = try value("model")
            filter.sequence = try value("sequence")
            if let text = try value("firmware") {
                guard let firmware = MachineFilter.Firmware(rawValue: text) else {
                    throw APIError(.badRequest, "firmware is uefi or bios", field: "firmware")
                }
                filter.firmware = firmware
            }
            if let text = try value("state") {
                guard let state = Machine.State(rawValue: text) else {
                    throw APIError(.badRequest, "state is one of " + Machine.State.allCases.map(\.rawValue).joined(separator: ", "), field: "state")
                }
                filter.state = state
            }
            if let text = try value("seen") {
                guard let seen = MachineFilter.Seen(rawValue: text) else {
                    throw APIError(.badRequest, "seen is one of " + MachineFilter.Seen.allCases.map(\.rawValue).joined(separator: ", "), field: "seen")
                }
                filter.seen = seen
            }
            if let text = try value("page") {
                guard let number = Int(text), (1...1_000_000).contains(number) else {
                    throw APIError(.badRequest, "page is a number from 1", field: "page")
                }
                page = number
            }
        }

        /// This query on another page, as a link's `href` (escaped for an attribute by the caller).
        func link(page: Int) -> String {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let pairs: [(String, String?)] = [("q", filter.text), ("model", filter.model), ("firmware", filter.firmware?.rawValue),
                                              ("state", filter.state?.rawValue), ("seen", filter.seen?.rawValue),
                                              ("sequence", filter.sequence), ("page", page > 1 ? String(page) : nil)]
            let parts = pairs.compactMap { name, value in value.map { "\(name)=" + ($0.addingPercentEncoding(withAllowedCharacters: allowed) ?? "") } }
            return "/dashboard/machines" + (parts.isEmpty ? "" : "?" + parts.joined(separator: "&"))
        }
    }

    /// What the filters' lists offer.
    struct Options: Sendable {
        var models: [String]
        var sequences: [String]
    }

    /// A form sent back with an error: which form, where it failed, and what it held.
    struct Failure: Sendable, Equatable {
        enum Form: Sendable, Equatable { case filter, register, importCSV, forget }
        var form: Form
        var message: String
        var field: String
        var values: [String: String]
        /// A CSV import's errors, by line and column.
        var issues: [APIError.IssueBody] = []

        static func == (a: Failure, b: Failure) -> Bool {
            a.form == b.form && a.message == b.message && a.field == b.field && a.values == b.values && a.issues.map(\.path) == b.issues.map(\.path)
        }

        /// The register form's fields, trimmed.
        static func registerValues(_ form: FormFields) -> [String: String] {
            var values: [String: String] = [:]
            for name in ["macs", "uuid", "serial", "manufacturer", "model"] {
                if let value = form[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty { values[name] = value }
            }
            return values
        }
    }

    /// The MACs' box: separated by spaces, commas, semicolons or line breaks.
    static func macList(_ text: String) -> [String] {
        text.split(whereSeparator: { $0.isWhitespace || $0 == "," || $0 == ";" }).map(String.init)
    }

    static func doneMessage(_ done: String, count: Int? = nil, machine: String? = nil) -> String? {
        switch done {
        case "registered": return "Machine registered, approved: its first check-in is known."
        case "approved": return "Machine approved: its next check-in gets a deployment as the rules say."
        case "rejected": return "Machine rejected: its check-ins are told so and get no deployment until it is approved."
        case "redeploy": return "The machine deploys again at its next network boot."
        case "imported": return count.map { "\($0) machine(s) registered from the CSV." } ?? "Machines registered from the CSV."
        case "forgotten": return "Machine " + (machine.map { "\($0) " } ?? "") + "forgotten, with its deployments."
        default: return nil
        }
    }

    static let stateDescriptions: [(Machine.State, String)] = [
        (.pending, "waits for an administrator's approval"),
        (.approved, "gets what the rules give it"),
        (.rejected, "refused: told so at check-in, no deployment"),
    ]

    static let seenLabels: [(MachineFilter.Seen, String)] = [
        (.day, "in the last day"), (.week, "in the last 7 days"), (.month, "in the last 30 days"),
        (.older, "not in the last 30 days"), (.never, "never (registered only)"),
    ]

    static func options(_ values: [(value: String, label: String)], selected: String?, any: String) -> String {
        "<option value=\"\">\(escape(any))</option>" + values.map { value, label in
            "<option value=\"\(escape(value))\"\(selected == value ? " selected" : "")>\(escape(label))</option>"
        }.joined()
    }

    /// `aria-invalid` and the error's id on the field that failed.
    static func invalid(_ failure: Failure?, _ form: Failure.Form, _ field: String, errorID: String) -> String {
        guard let failure, failure.form == form, failure.field == field else { return "" }
        return " aria-invalid=\"true\" aria-describedby=\"\(errorID)\""
    }

    static func errorMessage(_ failure: Failure?, _ form: Failure.Form, id: String) -> String {
        guard let failure, failure.form == form else { return "" }
        return "<p id=\"\(id)\" class=\"form-message error\" role=\"alert\" data-field=\"\(escape(failure.field))\">\(escape(failure.message))</p>"
    }

    static func stateBadge(_ state: Machine.State) -> String {
        "<span class=\"machine-state \(state.rawValue)\">\(state.rawValue)</span>"
    }

    // MARK: - The inventory

    static func inventory(_ machines: [Machine], latest: [String: Deployment], total: Int, query: Query, perPage: Int, options: Options,
                          notice: String?, failure: Failure?, role: Role, csrf: String) -> String {
        let filter = query.filter
        var body = "<div class=\"machines-page\"><h1>Machines</h1>"
        body += "<p class=\"hint\">Every machine that checked in or was registered. <a href=\"/dashboard\">Live deployments</a></p>"
        if let notice { body += "<p id=\"notice\" class=\"form-message ok\" role=\"status\">\(escape(notice))</p>" }
        // Filters: a GET form, so a filtered list is a link to keep or share.
        let error = "filter-error"
        body += "<form method=\"get\" action=\"/dashboard/machines\" id=\"machine-filter\" class=\"library-form filters\" role=\"search\">"
            + "<label>Search <input type=\"search\" name=\"q\" maxlength=\"200\" value=\"\(escape(filter.text ?? ""))\" "
            + "placeholder=\"MAC, serial, UUID, model, id\"\(invalid(failure, .filter, "q", errorID: error))></label>"
            + "<label>Model <select name=\"model\"\(invalid(failure, .filter, "model", errorID: error))>"
            + self.options(Array(Set(options.models + [filter.model].compactMap { $0 })).sorted().map { ($0, $0) }, selected: filter.model, any: "any model")
            + "</select></label>"
            + "<label>Firmware <select name=\"firmware\"\(invalid(failure, .filter, "firmware", errorID: error))>"
            + self.options([("uefi", "UEFI"), ("bios", "BIOS")], selected: filter.firmware?.rawValue, any: "any firmware") + "</select></label>"
            + "<label>State <select name=\"state\"\(invalid(failure, .filter, "state", errorID: error))>"
            + self.options(Machine.State.allCases.map { ($0.rawValue, $0.rawValue) }, selected: filter.state?.rawValue, any: "any state")
            + "</select></label>"
            + "<label>Last seen <select name=\"seen\"\(invalid(failure, .filter, "seen", errorID: error))>"
            + self.options(seenLabels.map { ($0.0.rawValue, $0.1) }, selected: filter.seen?.rawValue, any: "any time") + "</select></label>"
            + "<label>Sequence <select name=\"sequence\"\(invalid(failure, .filter, "sequence", errorID: error))>"
            + self.options(Array(Set(options.sequences + [filter.sequence].compactMap { $0 })).sorted().map { ($0, $0) },
                           selected: filter.sequence, any: "any sequence (newest deployment)")
            + "</select></label>"
            + "<button type=\"submit\">Filter</button> <a href=\"/dashboard/machines\">Clear filters</a>"
            + errorMessage(failure, .filter, id: error) + "</form>"

        body += "<section id=\"inventory\" aria-labelledby=\"inventory-title\"><h2 id=\"inventory-title\">"
            + "\(total) machine\(total == 1 ? "" : "s")" + (filter == MachineFilter() ? "" : " match") + "</h2>"
        if machines.isEmpty {
            body += "<p class=\"empty\">" + (filter == MachineFilter() && total == 0 ? "No machine yet: machines appear at their first check-in, or register them below."
                                                                                      : "No machine on this page matches.") + "</p>"
        } else {
            body += "<table id=\"machine-table\"><caption class=\"hint\">Most recently seen first</caption><tr><th scope=\"col\">Machine</th>"
                + "<th scope=\"col\">MAC</th><th scope=\"col\">Serial</th><th scope=\"col\">Model</th><th scope=\"col\">Firmware</th>"
                + "<th scope=\"col\">State</th><th scope=\"col\">Last seen</th><th scope=\"col\">Newest deployment</th></tr>"
            for machine in machines {
                let id = escape(machine.id)
                body += "<tr class=\"inventory-machine\" data-machine=\"\(id)\" data-state=\"\(machine.state.rawValue)\">"
                    + "<th scope=\"row\"><a href=\"/dashboard/machines/\(id)\">\(escape(ImprintServer.name(machine)))</a></th>"
                    + "<td>\(escape(machine.macs.first ?? ""))\(machine.macs.count > 1 ? " <span class=\"hint\">+\(machine.macs.count - 1)</span>" : "")</td>"
                    + "<td>\(escape(machine.serial ?? ""))</td><td>\(escape(machine.model ?? ""))</td>"
                    + "<td>\(escape(machine.facts?.firmware ?? ""))</td><td>\(stateBadge(machine.state))</td>"
                    + "<td>\(machine.lastSeen.isEmpty ? "<span class=\"hint\">never</span>" : escape(machine.lastSeen))</td><td>"
                if let deployment = latest[machine.id] {
                    body += "<a href=\"/dashboard/deployments/\(escape(deployment.id))\">\(escape(deployment.sequenceName))</a> "
                        + "<span class=\"state \(deployment.state.rawValue)\">\(deployment.state.rawValue)</span>"
                } else {
                    body += "<span class=\"hint\">none</span>"
                }
                body += "</td></tr>"
            }
            body += "</table>"
        }
        let pages = max(1, (total + perPage - 1) / perPage)
        body += DashboardPage.pageNav(id: "inventory-pages", label: "Pages of machines", page: query.page, pages: pages) { query.link(page: $0) }
        body += "</section>"

        if role >= .operator {
            body += registerForm(failure: failure?.form == .register ? failure : nil, csrf: csrf)
            body += importForm(failure: failure?.form == .importCSV ? failure : nil, csrf: csrf)
        }
        body += "</div>"
        return DashboardPage.page(title: "Imprint: machines", body: body, csrf: csrf, feed: false)
    }

    static func registerForm(failure: Failure?, csrf: String) -> String {
        let values = failure?.values ?? [:]
        let error = "register-error"
        func field(_ label: String, _ name: String, hint: String, maxLength: Int) -> String {
            "<label>\(label) <input type=\"text\" name=\"\(name)\" maxlength=\"\(maxLength)\" value=\"\(escape(values[name] ?? ""))\" "
                + "placeholder=\"\(escape(hint))\"\(invalid(failure, .register, name, errorID: error))></label>"
        }
        return "<section id=\"register\" aria-labelledby=\"register-title\"><h2 id=\"register-title\">Register a machine</h2>"
            + "<p class=\"hint\">Before it boots, by any of its MAC addresses, its UUID or its serial number: it is approved, and with "
            + "--require-registration only registered machines may check in.</p>"
            + "<form method=\"post\" action=\"/dashboard/machines\" id=\"machine-register-form\" class=\"library-form\">\(DashboardPage.csrfField(csrf))"
            + field("MAC addresses", "macs", hint: "52:54:00:12:34:56 52:54:00:12:34:57", maxLength: 700)
            + field("UUID", "uuid", hint: "4c4c4544-0031-3510-8052-b4c04f4a4d32", maxLength: 40)
            + field("Serial number", "serial", hint: "5CG1234XYZ", maxLength: 64)
            + field("Manufacturer", "manufacturer", hint: "HP", maxLength: 200)
            + field("Model", "model", hint: "EliteBook 840 G8", maxLength: 200)
            + "<button type=\"submit\">Register</button>" + errorMessage(failure, .register, id: error) + "</form></section>"
    }

    static func importForm(failure: Failure?, csrf: String) -> String {
        let error = "import-error"
        var html = "<section id=\"import\" aria-labelledby=\"import-title\"><h2 id=\"import-title\">Import machines from CSV</h2>"
            + "<p class=\"hint\" id=\"import-format\">The first line names the columns: <code>mac</code>, <code>uuid</code>, <code>serial</code>, "
            + "<code>manufacturer</code>, <code>model</code> (any order, at least one of the first three); then a machine per line. Several MACs in one "
            + "cell are separated by spaces. Every line is checked; if any has an error, nothing is imported.</p>"
            + "<form method=\"post\" action=\"/dashboard/machines/import\" enctype=\"multipart/form-data\" id=\"machine-import-form\" class=\"library-form\">"
            + DashboardPage.csrfField(csrf)
            + "<label>CSV file <input type=\"file\" name=\"file\" accept=\".csv,text/csv,text/plain\" aria-describedby=\"import-format\""
            + invalid(failure, .importCSV, "file", errorID: error) + "></label>"
            + "<label>or paste its lines <textarea name=\"csv\" rows=\"6\" cols=\"60\" spellcheck=\"false\" aria-describedby=\"import-format\""
            + invalid(failure, .importCSV, "csv", errorID: error) + ">\(escape(failure?.values["csv"] ?? ""))</textarea></label>"
            + "<button type=\"submit\">Import</button>" + errorMessage(failure, .importCSV, id: error)
        if let failure, !failure.issues.isEmpty {
            html += "<ul id=\"import-errors\" class=\"import-errors\" aria-label=\"Errors in the CSV\">" + failure.issues.map { issue in
                "<li data-place=\"\(escape(issue.path))\"><strong>\(escape(issue.path))</strong>: \(escape(issue.message))</li>"
            }.joined() + "</ul>"
        }
        return html + "</form></section>"
    }

    // MARK: - A machine's page

    static func machine(_ machine: Machine, name: String, deployments: [Deployment], redeployRequested: String?, now: Date,
                        notice: String?, failure: Failure?, role: Role, csrf: String) -> String {
        let id = escape(machine.id)
        var body = "<div class=\"machines-page\"><p><a href=\"/dashboard/machines\">All machines</a></p>"
        body += "<h1>\(escape(name)) \(stateBadge(machine.state))</h1>"
        if let notice { body += "<p id=\"notice\" class=\"form-message ok\" role=\"status\">\(escape(notice))</p>" }
        body += DashboardPage.conflictNotes(machine.conflicts.map(\.description))

        // Only the buttons the caller's role can use: none for a viewer.
        if role >= .operator {
            let next = "/dashboard/machines/\(id)"
            func button(_ action: String, _ label: String, done: String, path: String? = nil) -> String {
                "<form method=\"post\" action=\"\(path ?? "/dashboard/machines/\(id)/\(action)")\" class=\"machine-action \(action)\">"
                    + DashboardPage.csrfField(csrf) + "<input type=\"hidden\" name=\"next\" value=\"\(next)?done=\(done)\">"
                    + "<button type=\"submit\">\(label)</button></form>"
            }
            body += "<section id=\"actions\" aria-labelledby=\"actions-title\"><h2 id=\"actions-title\">Actions</h2><div class=\"action-row\">"
            if machine.state != .approved { body += button("approve", "Approve", done: "approved") }
            if machine.state != .rejected { body += button("reject", "Reject", done: "rejected") }
            let newest = deployments.first
            if machine.state != .rejected {
                if let requested = redeployRequested, let newest, requested > newest.created {
                    body += "<p class=\"redeploy requested\">Deploys again at its next network boot (asked \(escape(requested))).</p>"
                } else if newest?.state == .succeeded {
                    body += button("redeploy", "Deploy again", done: "redeploy")
                }
            }
            body += "</div>"
            if role >= .administrator {
                let error = "forget-error"
                let failed = failure?.form == .forget ? failure : nil
                body += "<form method=\"post\" action=\"/dashboard/machines/\(id)/forget\" class=\"machine-action forget\" id=\"forget-form\">"
                    + DashboardPage.csrfField(csrf)
                    + "<label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required\(invalid(failed, .forget, "confirm", errorID: error))> "
                    + "Forget this machine and its \(deployments.count)\(deployments.count >= ImprintServer.machineHistoryLimit ? " or more" : "") "
                    + "deployment\(deployments.count == 1 ? "" : "s") (their logs too); "
                    + "its next check-in makes it a new machine</label> <button type=\"submit\" class=\"danger\">Forget</button>"
                    + errorMessage(failed, .forget, id: error) + "</form>"
            }
            body += "</section>"
        }

        body += "<section id=\"identity\" aria-labelledby=\"identity-title\"><h2 id=\"identity-title\">Identity</h2><dl class=\"facts\">"
        func item(_ term: String, _ value: String?, raw: Bool = false) -> String {
            guard let value, !value.isEmpty else { return "" }
            return "<dt>\(term)</dt><dd>\(raw ? value : escape(value))</dd>"
        }
        body += item("Id", machine.id) + item("State", stateBadge(machine.state) + " <span class=\"hint\">"
                                                  + escape(stateDescriptions.first { $0.0 == machine.state }?.1 ?? "") + "</span>", raw: true)
        body += item("MAC addresses", machine.macs.joined(separator: ", ")) + item("UUID", machine.uuid) + item("Serial number", machine.serial)
            + item("Manufacturer", machine.manufacturer) + item("Model", machine.model)
        body += item("First seen", machine.firstSeen.isEmpty ? "never checked in" : machine.firstSeen + (machine.firstAddress.map { " from \($0)" } ?? ""))
            + item("Last seen", machine.lastSeen) + item("Registered", machine.registered) + item("Rejected", machine.rejected)
        body += "</dl></section>"

        body += "<section id=\"facts\" aria-labelledby=\"facts-title\"><h2 id=\"facts-title\">Facts</h2>"
        if let facts = machine.facts {
            body += "<p class=\"hint\">What the machine said at its last check-in.</p><dl class=\"facts\">"
                + item("Firmware", facts.firmware.uppercased()) + item("Architecture", facts.architecture)
                + item("Memory", memory(facts.memoryMiB))
                + item("CPUs", "\(facts.cpuCount)" + (facts.cpuModel.map { " × \($0)" } ?? ""))
                + item("Default gateways", facts.defaultGateways?.joined(separator: ", "))
                + item("Windows found", windowsSummary(facts)) + "</dl>"
            body += "<h3 id=\"nics-title\">Network interfaces</h3>"
            if facts.macAddresses.isEmpty {
                body += "<p class=\"empty\">none reported</p>"
            } else {
                body += "<ul id=\"nics\" aria-labelledby=\"nics-title\">" + facts.macAddresses.map { mac in
                    "<li class=\"nic\">\(escape(mac))</li>"
                }.joined() + "</ul>"
            }
            body += "<h3 id=\"disks-title\">Disks</h3>"
            if facts.disks.isEmpty {
                body += "<p class=\"empty\">none reported</p>"
            } else {
                body += "<table id=\"disks\" aria-labelledby=\"disks-title\"><tr><th scope=\"col\">Disk</th><th scope=\"col\">Size</th>"
                    + "<th scope=\"col\">Model</th><th scope=\"col\">Serial</th><th scope=\"col\">Transport</th><th scope=\"col\">Removable</th>"
                    + "<th scope=\"col\">Windows</th></tr>"
                for disk in facts.disks {
                    body += "<tr class=\"disk\" data-windows=\"\(disk.hasWindows)\"><th scope=\"row\">\(escape(disk.path))</th>"
                        + "<td>\(bytes(disk.size))</td><td>\(escape(disk.model ?? ""))</td><td>\(escape(disk.serial ?? ""))</td>"
                        + "<td>\(escape(disk.transport))</td><td>\(disk.removable ? "yes" : "no")</td>"
                        + "<td>\(disk.hasWindows ? "<strong>Windows found</strong>" : "no")</td></tr>"
                }
                body += "</table>"
            }
        } else {
            body += "<p class=\"empty\">No facts yet: the machine has not checked in.</p>"
        }
        body += "</section>"

        body += "<section id=\"history\" aria-labelledby=\"history-title\"><h2 id=\"history-title\">Deployments</h2>"
        if deployments.isEmpty {
            body += "<p class=\"empty\">No deployment yet.</p>"
        } else {
            body += "<table id=\"history-table\"><caption class=\"hint\">Newest first</caption><tr><th scope=\"col\">Created</th><th scope=\"col\">Sequence</th>"
                + "<th scope=\"col\">Result</th><th scope=\"col\">Duration</th><th scope=\"col\">Ended</th></tr>"
            for deployment in deployments {
                body += "<tr class=\"history-row\" data-state=\"\(deployment.state.rawValue)\" data-deployment=\"\(escape(deployment.id))\">"
                    + "<td>\(escape(deployment.created))</td>"
                    + "<td><a href=\"/dashboard/deployments/\(escape(deployment.id))\">\(escape(deployment.sequenceName))</a></td>"
                    + "<td class=\"result\"><span class=\"state \(deployment.state.rawValue)\">\(deployment.state.rawValue)</span>"
                    + (deployment.failure.map { " <span class=\"failure-kind\">\(escape(DashboardPage.failureLabel($0.rawValue)))</span>" } ?? "")
                    + (deployment.state == .failed ? (deployment.message.map { "<div class=\"failure\">\(escape(DashboardTimeline.clipped($0, to: 300)))</div>" } ?? "") : "")
                    + (deployment.resumes > 0 ? "<div class=\"resumed\">resumed \(deployment.resumes)×</div>" : "") + "</td>"
                    + "<td class=\"duration\">\(escape(duration(deployment, now: now)))</td>"
                    + "<td>\(escape(deployment.ended ?? ""))</td></tr>"
            }
            body += "</table>"
        }
        body += "</section></div>"
        return DashboardPage.page(title: "Imprint: \(name)", body: body, csrf: csrf, feed: false)
    }

    static func windowsSummary(_ facts: Facts) -> String {
        let disks = facts.disks.filter(\.hasWindows).map(\.path)
        return disks.isEmpty ? "none" : "on " + disks.joined(separator: ", ")
    }

    static func memory(_ mebibytes: UInt64) -> String {
        mebibytes >= 1024 ? String(format: "%.1f GiB", Double(mebibytes) / 1024) : "\(mebibytes) MiB"
    }

    /// As disk makers count: 512 GB.
    static func bytes(_ size: UInt64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB", "PB"]
        var value = Double(size), unit = 0
        while value >= 1000, unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(size) B" : String(format: value < 10 ? "%.1f" : "%.0f", value) + " " + units[unit]
    }

    /// From its start (or creation) to its end; an active one's time so far.
    static func duration(_ deployment: Deployment, now: Date) -> String {
        guard let begun = StoredTime.parse(deployment.started ?? deployment.created) else { return "" }
        let end = deployment.ended.flatMap(StoredTime.parse) ?? (deployment.isActive ? now : nil)
        guard let end else { return "" }
        let seconds = max(0, Int(end.timeIntervalSince(begun).rounded()))
        let text = seconds >= 3600 ? "\(seconds / 3600) h \(seconds % 3600 / 60) min"
            : seconds >= 60 ? "\(seconds / 60) min \(seconds % 60) s" : "\(seconds) s"
        return deployment.isActive ? text + " so far" : text
    }

    static let style = """
        .machines-page .filters { display: flex; flex-wrap: wrap; gap: 0.5em 1em; align-items: end; margin-bottom: 1em; }
        .machines-page label { display: inline-block; margin: 0.2em 0; }
        .machines-page #machine-register-form label, .machines-page #machine-import-form label { display: block; }
        .machines-page a:focus-visible, .machines-page button:focus-visible, .machines-page input:focus-visible,
        .machines-page select:focus-visible, .machines-page textarea:focus-visible { outline: 3px solid #1a5fb4; outline-offset: 2px; }
        .machine-state { padding: 0.1em 0.5em; border-radius: 3px; font-size: 0.85em; font-weight: bold; border: 1px solid currentColor; }
        .machine-state.pending { color: #7a4a00; background: #fff4e0; } .machine-state.approved { color: #1d6b2f; background: #e8f5eb; }
        .machine-state.rejected { color: #a11d1d; background: #fdecea; }
        .machines-page .action-row { display: flex; gap: 0.6em; flex-wrap: wrap; align-items: center; }
        .machines-page form.machine-action { display: inline-block; margin: 0.3em 0; }
        .machines-page button.danger { color: #fff; background: #a11d1d; border: 1px solid #7d1515; padding: 0.2em 0.8em; }
        .machines-page dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
        .machines-page dl.facts dt { font-weight: bold; } .machines-page dl.facts dd { margin: 0; }
        .machines-page .hint { color: #555; } .machines-page .empty { color: #555; }
        .machines-page .form-message.error { color: #a11d1d; font-weight: bold; } .machines-page .form-message.ok { color: #1d6b2f; }
        .machines-page ul.import-errors { color: #a11d1d; }
        .machines-page .succeeded { color: #1d6b2f; } .machines-page .failed, .machines-page .failure { color: #a11d1d; }
        .machines-page tr.history-row[data-state=failed] { background: #fdecea; }
        """
}
