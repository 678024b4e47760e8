import Foundation
import Hummingbird
import NIOCore
import SequenceModel

/// Deployments beyond one machine's latest (issue 20): the list filtered by state, time,
/// sequence and machine, a summary of counts and durations, and a deployment's whole log as a
/// text file. The admin API's routes; the dashboard's pages (`DashboardDeploymentsPage`) read
/// the same queries.
public enum DeploymentReportRoute: Sendable, Hashable {
    /// GET /api/v1/admin/deployments/summary
    case summary
    /// GET /api/v1/admin/deployments/{id}/log
    case log
}

/// `?state=&window=&since=&until=&sequence=&machine=&model=&page=&limit=`, checked: a bad value
/// is a 400 naming its parameter and what it may be.
struct DeploymentQuery: Sendable, Equatable {
    /// As given (the page's form shows them again).
    var state: String?
    var window: String?
    var since: String?
    var until: String?
    var filter = DeploymentFilter()
    var page = 1
    var limit: Int

    /// What `state=` takes: `running` is every deployment not ended (assigned or running).
    static let states: [String: [Deployment.State]] = [
        "running": [.assigned, .running], "assigned": [.assigned], "failed": [.failed], "succeeded": [.succeeded],
        "ended": [.succeeded, .failed],
    ]
    /// What `window=` takes, in days back from now (`today`: since midnight UTC).
    static let windows = ["today", "24h", "7d", "30d", "90d"]

    /// `defaultWindow`: the summary always covers a bounded time (`30d` unless asked otherwise).
    init(_ request: Request, defaultLimit: Int, maxLimit: Int, defaultWindow: String? = nil, now: Date = Date()) throws(APIError) {
        let query = request.uri.queryParameters
        func value(_ name: String) -> String? {
            query.get(name).map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : String($0) }
        }
        limit = defaultLimit
        if let state = value("state") {
            guard let states = Self.states[state] else {
                throw APIError(.badRequest, "state is one of " + Self.states.keys.sorted().joined(separator: ", "), field: "state")
            }
            self.state = state
            filter.states = states
        }
        window = value("window") ?? (value("since") == nil ? defaultWindow : nil)
        if let window, window != "all" {
            guard let since = Self.start(of: window, now: now) else {
                throw APIError(.badRequest, "window is one of " + (Self.windows + ["all"]).joined(separator: ", "), field: "window")
            }
            filter.since = since
        }
        if let text = value("since") {
            since = text
            filter.since = try Self.time(text, field: "since")
        }
        if let text = value("until") {
            until = text
            filter.until = try Self.time(text, field: "until")
        }
        for (name, keyPath) in [("sequence", \DeploymentFilter.sequence), ("machine", \.machineID), ("model", \.model)] {
            guard let text = value(name) else { continue }
            guard text.count <= 200 else { throw APIError(.badRequest, "\(name) is at most 200 characters", field: name) }
            filter[keyPath: keyPath] = text
        }
        if let text = value("page") {
            guard let number = Int(text), (1...1_000_000).contains(number) else {
                throw APIError(.badRequest, "page is a number from 1", field: "page")
            }
            page = number
        }
        if let text = value("limit") {
            guard let number = Int(text), (1...maxLimit).contains(number) else {
                throw APIError(.badRequest, "limit is between 1 and \(maxLimit)", field: "limit")
            }
            limit = number
        }
    }

    /// Where a window starts: `today` at midnight UTC, `24h`/`7d`/`30d`/`90d` that long ago.
    static func start(of window: String, now: Date) -> String? {
        switch window {
        case "today":
            return String(StoredTime.format.format(now).prefix(10)) + "T00:00:00.000Z"
        case "24h": return StoredTime.format.format(now.addingTimeInterval(-86_400))
        case "7d", "30d", "90d":
            guard let days = Int(window.dropLast()) else { return nil }
            return StoredTime.format.format(now.addingTimeInterval(-Double(days) * 86_400))
        default: return nil
        }
    }

    /// A day (`2026-03-01`, its first millisecond UTC) or a time, as stored times are written.
    static func time(_ text: String, field: String) throws(APIError) -> String {
        let full = text.count == 10 ? text + "T00:00:00.000Z" : text
        guard let date = StoredTime.parse(full) ?? (try? Date.ISO8601FormatStyle().parse(full)) else {
            throw APIError(.badRequest, "\(field) is a time as 2026-03-01T08:00:00Z, or a day as 2026-03-01", field: field)
        }
        return StoredTime.format.format(date)
    }

    /// The query again, for links to other pages of the same list (`page` left out).
    var parameters: [(String, String)] {
        [("state", state), ("window", window), ("since", since), ("until", until), ("sequence", filter.sequence),
         ("machine", filter.machineID), ("model", filter.model)].compactMap { name, value in value.map { (name, $0) } }
    }

    static func encoded(_ parameters: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return parameters.map { name, value in "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }
            .joined(separator: "&")
    }
}

extension ImprintServer {
    /// At most this many rows of steps per model in a summary (each a sequence's step on one model).
    static let summaryStepRows = 2_000

    /// GET /api/v1/admin/deployments: newest first, filtered, one page (100 by default) with
    /// the total, so a script reads them all page by page instead of in one huge answer.
    func deploymentListResponse(_ request: Request) async throws -> Response {
        let query = try DeploymentQuery(request, defaultLimit: 100, maxLimit: 1_000)
        let (items, total) = try await storage.deploymentList(query.filter, offset: (query.page - 1) * query.limit, limit: query.limit)
        struct Page: Encodable {
            var deployments: [DeploymentListItem]
            var total: Int
            var page: Int
            var pages: Int
        }
        return JSON.response(Page(deployments: items, total: total, page: query.page, pages: max(1, (total + query.limit - 1) / query.limit)))
    }

    func deploymentReports(_ route: DeploymentReportRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        switch route {
        case .summary:
            let query = try DeploymentQuery(request, defaultLimit: 1, maxLimit: 1, defaultWindow: "30d")
            struct Summary: Encodable {
                var since: String?
                var until: String?
                var statistics: DeploymentStatistics
            }
            return JSON.response(Summary(since: query.filter.since, until: query.filter.until,
                                         statistics: try await storage.deploymentStatistics(query.filter, stepRows: Self.summaryStepRows)))
        case .log:
            return try await deploymentLog(id: try request.requiredParameter("id", context))
        }
    }

    /// A deployment's log whole, as a text file: one line per event (progress events left out:
    /// thousands of percentages would bury what happened; `/events` has them), its full date and
    /// time, read from the database a page at a time while it is sent.
    func deploymentLog(id: String) async throws -> Response {
        guard let deployment = try await storage.deployment(id: id) else { throw APIError.notFound("deployment \(id)") }
        let machine = try await storage.machine(id: deployment.machineID)
        let storage = self.storage
        let header = "# Imprint deployment \(deployment.id): sequence \(deployment.sequenceName) on \(Self.name(machine))\n"
            + "# state \(deployment.state.rawValue)" + (deployment.failure.map { ", failure \($0.rawValue)" } ?? "")
            + ", created \(deployment.created)" + (deployment.ended.map { ", ended \($0)" } ?? "") + "\n"
            + (deployment.message.map { "# \(Self.oneLine($0))\n" } ?? "")
        let body = ResponseBody { writer in
            try await writer.write(ByteBuffer(string: header))
            var after = 0
            while true {
                let events = try await storage.events(deploymentID: id, afterSequence: after, limit: 1_000)
                guard let last = events.last else { break }
                after = last.event.sequence
                var text = ""
                for stored in events where stored.event.kind != .progress {
                    text += stored.event.time.prefix(10) + " " + Self.oneLine(stored.event.logLine) + "\n"
                }
                try await writer.write(ByteBuffer(string: text))
                if events.count < 1_000 { break }
            }
            try await writer.finish(nil)
        }
        let file = "imprint-\(deployment.id.filter { $0.isLetter || $0.isNumber || $0 == "-" }.prefix(64)).log"
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        headers[.contentDisposition] = "attachment; filename=\"\(file)\""
        return Response(status: .ok, headers: headers, body: body)
    }

    /// An agent's text on one line of a log file: its line breaks cannot start a line that
    /// looks like another event.
    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .replacingOccurrences(of: "\n", with: " ⏎ ")
    }
}
