import Foundation
import Hummingbird

/// The dashboard's Deployments pages (issue 20): every deployment, newest first, filtered by
/// state, time, sequence, model and machine, a page at a time, its rows following the live feed;
/// the summary of counts and durations per day, per sequence and per step and model, as charts
/// drawn on the server (SVG: no script, and nothing the CSP refuses) with the same numbers as
/// tables; and a deployment's log as a file.
public enum DashboardDeploymentRoute: Sendable, Hashable {
    case list, summary, log
}

extension ImprintServer {
    /// Deployments per page of the list.
    static let deploymentsPerPage = 50

    func dashboardDeployments(_ route: DashboardDeploymentRoute, _ request: Request, _ context: BasicRequestContext,
                              access: DashboardAccess) async throws -> Response {
        switch route {
        case .list:
            let query = try DeploymentQuery(request, defaultLimit: Self.deploymentsPerPage, maxLimit: Self.deploymentsPerPage)
            // Read before the rows: the live feed goes on from there, missing nothing.
            let change = try await storage.latestChangeID()
            let (items, total) = try await storage.deploymentList(query.filter, offset: (query.page - 1) * query.limit, limit: query.limit)
            let choices = try await storage.deploymentFilterChoices(limit: 500)
            return dashboardHTML(DashboardDeploymentsPage.list(items, total: total, query: query, choices: choices,
                                                               characters: configuration.limits.logLineCharacters, change: change,
                                                               csrf: access.csrfToken))
        case .summary:
            let query = try DeploymentQuery(request, defaultLimit: 1, maxLimit: 1, defaultWindow: "30d")
            let statistics = try await storage.deploymentStatistics(query.filter, stepRows: Self.summaryStepRows)
            let choices = try await storage.deploymentFilterChoices(limit: 500)
            return dashboardHTML(DashboardDeploymentsPage.summary(statistics, query: query, choices: choices, csrf: access.csrfToken))
        case .log:
            return try await deploymentLog(id: try request.requiredParameter("id", context))
        }
    }
}

/// The Deployments pages' HTML, pure: everything a machine or an agent sent is escaped.
enum DashboardDeploymentsPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    static let stateChoices: [(String, String)] = [("", "any state"), ("running", "running (not ended)"), ("failed", "failed"),
                                                   ("succeeded", "succeeded"), ("ended", "ended"), ("assigned", "assigned, not started")]
    static let windowChoices: [(String, String)] = [("all", "any time"), ("today", "today (UTC)"), ("24h", "the last 24 hours"),
                                                    ("7d", "the last 7 days"), ("30d", "the last 30 days"), ("90d", "the last 90 days")]

    static func options(_ choices: [(String, String)], selected: String?) -> String {
        choices.map { value, label in
            "<option value=\"\(escape(value))\"\((selected ?? "") == value ? " selected" : "")>\(escape(label))</option>"
        }.joined()
    }

    /// The filter form, on the list and the summary alike (GET: a filtered list is a link).
    static func filterForm(action: String, query: DeploymentQuery, choices: (sequences: [String], models: [String]), states: Bool) -> String {
        var html = "<form method=\"get\" action=\"\(action)\" id=\"deployment-filter\" class=\"filters\" role=\"search\" aria-label=\"Filter deployments\">"
        if states {
            html += "<label>State <select name=\"state\">\(options(stateChoices, selected: query.state))</select></label>"
        }
        let windows = states ? windowChoices : windowChoices.filter { $0.0 != "all" }
        html += "<label>When <select name=\"window\">\(options(windows, selected: query.window ?? (states ? "all" : "30d")))</select></label>"
        html += "<label>Sequence <select name=\"sequence\">\(options([("", "any sequence")] + choices.sequences.map { ($0, $0) }, selected: query.filter.sequence))</select></label>"
        html += "<label>Model <select name=\"model\">\(options([("", "any model")] + choices.models.map { ($0, $0) }, selected: query.filter.model))</select></label>"
        html += "<label>Machine id <input type=\"text\" name=\"machine\" size=\"20\" value=\"\(escape(query.filter.machineID ?? ""))\"></label>"
        html += "<button type=\"submit\">Show</button> <a href=\"\(action)\">Clear</a></form>"
        return html
    }

    static func subnav(current: String) -> String {
        let links = [("/dashboard/deployments", "All deployments"), ("/dashboard/deployments?state=running", "Running"),
                     ("/dashboard/deployments?state=failed&window=today", "Failed today"), ("/dashboard/deployments/summary", "Summary")]
        return "<nav class=\"sub\" aria-label=\"Deployments\">" + links.map { href, label in
            "<a href=\"\(escape(href))\"\(href == current ? " aria-current=\"page\"" : "")>\(escape(label))</a>"
        }.joined() + "</nav>"
    }

    /// 2 h 05 min, 3 min 12 s, 41 s.
    static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite else { return "" }
        let whole = Int(seconds.rounded())
        if whole >= 3600 { return "\(whole / 3600) h \(String(format: "%02d", whole % 3600 / 60)) min" }
        if whole >= 60 { return "\(whole / 60) min \(String(format: "%02d", whole % 60)) s" }
        return seconds < 10 ? String(format: "%.1f s", seconds) : "\(whole) s"
    }

    /// `2026-03-01 08:15:02`, UTC (a stored time without its T, fraction and Z).
    static func time(_ stored: String) -> String {
        stored.count >= 19 ? String(stored.prefix(19)).replacingOccurrences(of: "T", with: " ") : stored
    }

    static func percent(_ rate: Double?) -> String { rate.map { String(format: "%.0f%%", $0 * 100) } ?? "" }

    static func machineName(_ item: DeploymentListItem) -> String {
        let parts = [item.manufacturer, item.model].compactMap { $0 }.filter { !$0.isEmpty }
        let base = parts.isEmpty ? (item.macs.first ?? item.machineId) : parts.joined(separator: " ")
        return DashboardTimeline.clipped(base + (item.serial.map { " (\($0))" } ?? ""), to: 300)
    }

    static func list(_ items: [DeploymentListItem], total: Int, query: DeploymentQuery, choices: (sequences: [String], models: [String]),
                     characters: Int, change: Int, csrf: String) -> String {
        let current = query.state == "running" && query.window == nil ? "/dashboard/deployments?state=running"
            : query.state == "failed" && query.window == "today" ? "/dashboard/deployments?state=failed&window=today"
            : query.parameters.isEmpty ? "/dashboard/deployments" : ""
        var body = "<h1>Deployments</h1>" + subnav(current: current)
        body += filterForm(action: "/dashboard/deployments", query: query, choices: choices, states: true)
        let pages = max(1, (total + query.limit - 1) / query.limit)
        // The first page learns from the live feed that deployments it does not list have started
        // or changed, and offers to reload (rows it lists follow the feed themselves).
        body += "<section id=\"deployments\" aria-live=\"polite\"\(query.page == 1 ? " data-first=\"true\"" : "")>"
            + "<p id=\"new-deployments\" class=\"notice\" hidden>Deployments not listed here have started or changed since this page "
            + "was loaded: <a href=\"\">reload the list</a>.</p>"
        body += "<p class=\"count\" id=\"deployment-count\">\(total) deployment\(total == 1 ? "" : "s")"
            + (query.parameters.isEmpty ? "" : total == 1 ? " matches" : " match") + (pages > 1 ? ", page \(query.page) of \(pages)" : "") + "</p>"
        if items.isEmpty {
            body += "<p class=\"empty\">No deployment" + (query.parameters.isEmpty ? " yet." : " matches these filters.") + "</p>"
        } else {
            body += "<table id=\"deployment-list\"><caption class=\"hint\">Newest first; progress, step and state follow the machines live.</caption>"
                + "<tr><th scope=\"col\">Started (UTC)</th><th scope=\"col\">Machine</th><th scope=\"col\">Sequence</th><th scope=\"col\">Progress</th>"
                + "<th scope=\"col\">Step</th><th scope=\"col\">State</th><th scope=\"col\">Duration</th></tr>"
            for item in items {
                let id = escape(item.id)
                let view = DashboardDeployment(id: item.id, machine: machineName(item), sequence: item.sequence, state: item.state,
                                               percent: item.percent ?? (item.state == "succeeded" ? 100 : 0),
                                               currentStep: item.currentStep.map { DashboardTimeline.clipped($0, to: characters) },
                                               message: item.message.map { DashboardTimeline.clipped($0, to: characters) },
                                               failure: item.failure, created: item.created, ended: item.ended)
                // The state in data-state, not as a class: `.failed` would make the whole row bold red.
                body += "<tr class=\"deployment\" data-deployment=\"\(id)\" data-state=\"\(escape(item.state))\">"
                    + "<td class=\"when\"><a href=\"/dashboard/deployments/\(id)\">\(escape(time(item.started ?? item.created)))</a></td>"
                    + "<td>\(escape(view.machine))<div class=\"hint\"><a href=\"\(escape("/dashboard/deployments?" + DeploymentQuery.encoded([("machine", item.machineId)])))\">its deployments</a></div></td>"
                    + "<td>\(escape(item.sequence))</td><td>\(DashboardPage.progress(view))</td>"
                    + "<td class=\"step\" data-deployment=\"\(id)\">\(escape(view.currentStep ?? ""))</td>"
                    + "<td class=\"state \(escape(item.state))\" data-deployment=\"\(id)\">\(escape(item.state))"
                    + (item.state == "failed" ? "<div class=\"failure\">" + (item.failure.map {
                        "<span class=\"failure-kind\" data-kind=\"\(escape($0))\">\(escape(DashboardPage.failureLabel($0)))</span>: "
                    } ?? "") + "\(escape(view.message ?? ""))</div>" : "") + "</td>"
                    + "<td class=\"duration\">\(duration(item.seconds))</td></tr>"
            }
            body += "</table>"
        }
        let base = "/dashboard/deployments?" + DeploymentQuery.encoded(query.parameters) + (query.parameters.isEmpty ? "" : "&")
        body += DashboardPage.pageNav(id: "deployment-pages", page: query.page, pages: pages) { base + "page=\($0)" }
        body += "</section>"
        return DashboardPage.page(title: "Imprint: deployments", body: body, change: change, csrf: csrf)
    }

    // MARK: - Summary

    static func summary(_ statistics: DeploymentStatistics, query: DeploymentQuery, choices: (sequences: [String], models: [String]),
                        csrf: String) -> String {
        var body = "<h1>Deployment summary</h1>" + subnav(current: "/dashboard/deployments/summary")
        body += filterForm(action: "/dashboard/deployments/summary", query: query, choices: choices, states: false)
        let total = statistics.days.reduce(0) { $0 + $1.total }
        let succeeded = statistics.days.reduce(0) { $0 + $1.succeeded }, failed = statistics.days.reduce(0) { $0 + $1.failed }
        let ended = succeeded + failed
        body += "<p id=\"totals\" class=\"totals\"><span>\(total) deployments</span> <span class=\"ok-total\">\(succeeded) succeeded</span> "
            + "<span class=\"failed-total\">\(failed) failed</span> <span>\(total - ended) not ended</span>"
            + (ended > 0 ? " <span id=\"success-rate\">success rate \(percent(Double(succeeded) / Double(ended)))</span>" : "")
            + (query.filter.since.map { " <span class=\"hint\">since \(escape(time($0))) UTC</span>" } ?? "") + "</p>"
        guard total > 0 else {
            body += "<p class=\"empty\">No deployment in this window.</p>"
            return DashboardPage.page(title: "Imprint: deployment summary", body: body, csrf: csrf, feed: false)
        }
        body += "<section id=\"per-day\"><h2>Per day (UTC)</h2>" + dayChart(statistics.days) + countsTable(statistics.days, id: "day-table", key: "Day") + "</section>"
        body += "<section id=\"per-sequence\"><h2>Per sequence</h2>" + rateChart(statistics.sequences)
            + countsTable(statistics.sequences, id: "sequence-table", key: "Sequence") + "</section>"
        body += "<section id=\"per-step\"><h2>Mean time per step, by model</h2><p class=\"hint\">Each step of each sequence on each machine model: "
            + "how often it ran and failed, and how long it took. A step that fails on one model and not on others is marked.</p>"
        let bySequence = Dictionary(grouping: statistics.steps, by: \.sequence)
        for sequence in bySequence.keys.sorted() {
            body += stepTable(sequence: sequence, bySequence[sequence] ?? [])
        }
        if statistics.stepsTruncated { body += "<p class=\"more\">More steps matched than are shown: narrow the window or choose a sequence.</p>" }
        body += "</section>"
        return DashboardPage.page(title: "Imprint: deployment summary", body: body, csrf: csrf, feed: false)
    }

    static func countsTable(_ rows: [DeploymentStatistics.Counts], id: String, key: String) -> String {
        var html = "<table id=\"\(id)\" class=\"numbers\"><tr><th scope=\"col\">\(key)</th><th scope=\"col\">Deployments</th><th scope=\"col\">Succeeded</th>"
            + "<th scope=\"col\">Failed</th><th scope=\"col\">Not ended</th><th scope=\"col\">Success rate</th><th scope=\"col\">Mean duration</th></tr>"
        for row in rows {
            html += "<tr data-key=\"\(escape(row.key))\"><th scope=\"row\">\(escape(row.key))</th><td class=\"total\">\(row.total)</td>"
                + "<td class=\"succeeded-count\">\(row.succeeded)</td><td class=\"failed-count\">\(row.failed)</td><td>\(row.active)</td>"
                + "<td class=\"rate\">\(percent(row.successRate))</td><td class=\"mean\">\(duration(row.meanSeconds))</td></tr>"
        }
        return html + "</table>"
    }

    /// Succeeded (green), failed (red) and not ended (grey) stacked per day: an image with a
    /// title for screen readers, which find the numbers in the table below it.
    static func dayChart(_ days: [DeploymentStatistics.Counts]) -> String {
        let height = 160.0, barWidth = 28.0, gap = 10.0, top = 10.0, bottom = 40.0
        let most = Double(max(1, days.map(\.total).max() ?? 1))
        let width = max(200, Double(days.count) * (barWidth + gap) + gap)
        var svg = "<svg class=\"chart\" id=\"day-chart\" viewBox=\"0 0 \(Int(width)) \(Int(height + top + bottom))\" width=\"\(Int(width))\" "
            + "height=\"\(Int(height + top + bottom))\" role=\"img\" aria-labelledby=\"day-chart-title\"><title id=\"day-chart-title\">"
            + "Deployments per day: succeeded, failed and not ended (numbers in the table below)</title>"
        for (index, day) in days.enumerated() {
            let x = gap + Double(index) * (barWidth + gap)
            var y = top + height
            for (count, kind) in [(day.succeeded, "ok"), (day.failed, "bad"), (day.active, "other")] where count > 0 {
                let h = Double(count) / most * height
                y -= h
                svg += "<rect class=\"\(kind)\" x=\"\(format(x))\" y=\"\(format(y))\" width=\"\(format(barWidth))\" height=\"\(format(h))\">"
                    + "<title>\(escape(day.key)): \(count) \(kind == "ok" ? "succeeded" : kind == "bad" ? "failed" : "not ended")</title></rect>"
            }
            svg += "<text class=\"label\" x=\"\(format(x + barWidth / 2))\" y=\"\(format(top + height + 14))\" text-anchor=\"middle\">\(escape(String(day.key.suffix(5))))</text>"
                + "<text class=\"value\" x=\"\(format(x + barWidth / 2))\" y=\"\(format(top + height + 30))\" text-anchor=\"middle\">\(day.total)</text>"
        }
        return svg + "</svg>" + legend
    }

    static let legend = "<p class=\"legend\"><span class=\"swatch ok\"></span>succeeded <span class=\"swatch bad\"></span>failed "
        + "<span class=\"swatch other\"></span>not ended</p>"

    /// Each sequence's success rate as a horizontal bar, failed share in red.
    static func rateChart(_ rows: [DeploymentStatistics.Counts]) -> String {
        let labelWidth = 220.0, barSpan = 400.0, rowHeight = 24.0
        let height = Double(rows.count) * rowHeight + 8
        var svg = "<svg class=\"chart\" id=\"sequence-chart\" viewBox=\"0 0 \(Int(labelWidth + barSpan + 80)) \(Int(height))\" width=\"\(Int(labelWidth + barSpan + 80))\" "
            + "height=\"\(Int(height))\" role=\"img\" aria-labelledby=\"sequence-chart-title\"><title id=\"sequence-chart-title\">"
            + "Success rate per sequence, of the deployments that ended (numbers in the table below)</title>"
        for (index, row) in rows.enumerated() {
            let y = 4 + Double(index) * rowHeight
            svg += "<text class=\"label\" x=\"\(format(labelWidth - 6))\" y=\"\(format(y + 16))\" text-anchor=\"end\">\(escape(String(row.key.prefix(30))))</text>"
            let ended = row.succeeded + row.failed
            if ended > 0 {
                let ok = Double(row.succeeded) / Double(ended) * barSpan
                svg += "<rect class=\"ok\" x=\"\(format(labelWidth))\" y=\"\(format(y + 3))\" width=\"\(format(ok))\" height=\"18\"><title>\(escape(row.key)): \(row.succeeded) succeeded</title></rect>"
                    + "<rect class=\"bad\" x=\"\(format(labelWidth + ok))\" y=\"\(format(y + 3))\" width=\"\(format(barSpan - ok))\" height=\"18\"><title>\(escape(row.key)): \(row.failed) failed</title></rect>"
            } else {
                svg += "<rect class=\"other\" x=\"\(format(labelWidth))\" y=\"\(format(y + 3))\" width=\"\(format(barSpan))\" height=\"18\"><title>\(escape(row.key)): none ended</title></rect>"
            }
            svg += "<text class=\"value\" x=\"\(format(labelWidth + barSpan + 6))\" y=\"\(format(y + 16))\">\(ended > 0 ? percent(row.successRate) : "–")</text>"
        }
        return svg + "</svg>"
    }

    /// A step stands out when it fails on this model at least half the time, or fails here
    /// while the same step never failed on another model.
    static func standsOut(_ step: DeploymentStatistics.Step, among steps: [DeploymentStatistics.Step]) -> Bool {
        guard step.failures > 0 else { return false }
        if step.runs > 0, Double(step.failures) / Double(step.runs) >= 0.5 { return true }
        let others = steps.filter { $0.step == step.step && $0.model != step.model }
        return !others.isEmpty && others.allSatisfy { $0.failures == 0 }
    }

    static func stepTable(sequence: String, _ steps: [DeploymentStatistics.Step]) -> String {
        let longest = max(0.001, steps.compactMap(\.meanSeconds).max() ?? 0.001)
        var html = "<h3>\(escape(sequence))</h3><table class=\"numbers steps\" data-sequence=\"\(escape(sequence))\">"
            + "<tr><th scope=\"col\">Step</th><th scope=\"col\">Model</th><th scope=\"col\">Ran</th><th scope=\"col\">Failed</th>"
            + "<th scope=\"col\">Mean time</th><th scope=\"col\">Longest</th></tr>"
        for step in steps {
            let out = standsOut(step, among: steps)
            let width = (step.meanSeconds ?? 0) / longest * 200
            html += "<tr class=\"step-stat\(out ? " outlier" : "")\" data-step=\"\(escape(step.step))\" data-model=\"\(escape(step.model))\">"
                + "<th scope=\"row\">\(escape(step.step)) \(escape(step.name))</th><td>\(escape(step.model.isEmpty ? "unknown model" : step.model))</td>"
                + "<td class=\"runs\">\(step.runs)</td><td class=\"failures\">\(step.failures)"
                + (out ? " <strong class=\"stands-out\">fails on this model</strong>" : "") + "</td>"
                + "<td class=\"mean\"><svg class=\"chart inline\" width=\"204\" height=\"14\" viewBox=\"0 0 204 14\" aria-hidden=\"true\">"
                + "<rect class=\"\(out ? "bad" : "ok")\" x=\"0\" y=\"2\" width=\"\(format(max(1, width)))\" height=\"10\"></rect></svg> \(duration(step.meanSeconds))</td>"
                + "<td>\(duration(step.maxSeconds))</td></tr>"
        }
        return html + "</table>"
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    /// Appended to `/dashboard/app.css`.
    static let style = """
        nav.sub { margin: 0 0 1em; } nav.sub a { margin-right: 1em; } nav.sub a[aria-current=page] { font-weight: bold; text-decoration: none; color: #222; }
        form.filters { display: flex; flex-wrap: wrap; gap: 0.6em 1.2em; align-items: end; margin-bottom: 1em; }
        form.filters label { display: flex; flex-direction: column; font-size: 0.9em; }
        .totals span { margin-right: 1.2em; } svg.chart { display: block; max-width: 100%; height: auto; margin: 0.5em 0; }
        svg.chart.inline { display: inline-block; vertical-align: middle; margin: 0; }
        svg.chart .ok, .swatch.ok { fill: #2e7d32; background: #2e7d32; } svg.chart .bad, .swatch.bad { fill: #c0392b; background: #c0392b; }
        svg.chart .other, .swatch.other { fill: #8e9eb5; background: #8e9eb5; } svg.chart text { font-size: 11px; fill: #333; }
        .swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 0.8em; vertical-align: middle; }
        table.numbers td, table.numbers th { font-variant-numeric: tabular-nums; } tr.outlier { background: #fdecea; }
        .stands-out, .failed-total { color: #a61b0f; font-weight: bold; } .ok-total { color: #1b6e2e; font-weight: bold; } tr.deployment[data-state=failed] { background: #fdecea; }
        a:focus, button:focus, select:focus, input:focus { outline: 2px solid #1a5fb4; outline-offset: 1px; }
        """
}
