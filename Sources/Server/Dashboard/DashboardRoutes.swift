import Foundation
import Hummingbird
import NIOCore
import SequenceModel

/// The dashboard's pages, its live feed and the approval button. Everything it shows is read
/// from the database, and the live feed follows the events' change ids there, so any number of
/// server instances behind a load balancer show the same thing and the same updates.
extension ImprintServer {
    /// Every dashboard answer, errors included, with the security headers (`DashboardSecurity`).
    func dashboard(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext, client: String) async throws -> Response {
        var response: Response
        do {
            response = try await dashboardResponse(handler, request, context, client: client)
        } catch {
            response = errorResponse(error, request)
        }
        DashboardSecurity.apply(to: &response)
        return response
    }

    private func dashboardResponse(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext,
                                   client: String) async throws -> Response {
        // What needs no login: the static script and style, and the login itself.
        if handler == .dashboardScript { return asset(DashboardPage.script, contentType: "text/javascript; charset=utf-8") }
        if handler == .dashboardStyle { return asset(DashboardPage.style, contentType: "text/css; charset=utf-8") }
        if handler == .dashboardLogin { return try await dashboardLogin(request, client: client) }
        guard let access = try await dashboardAccess(request) else {
            // The pages' script gets an error it can show, not a login page in place of JSON.
            if case .dashboardLibrary = handler {
                throw APIError(.unauthorized, "this dashboard session has ended (logged out or expired): reload the page and log in again")
            }
            if case .dashboardMulticastAPI = handler {
                throw APIError(.unauthorized, "this dashboard session has ended (logged out or expired): reload the page and log in again")
            }
            if handler == .dashboardContent(.uploadAnnounce) || handler == .dashboardContent(.uploadData) {
                throw APIError(.unauthorized, "this dashboard session has ended (logged out or expired): reload the page and log in again")
            }
            if handler == .dashboardSequences(.validate) {
                throw APIError(.unauthorized, "this dashboard session has ended (logged out or expired): reload the page and log in again")
            }
            // A token in the URL is not taken: it would stay in the browser's history, in proxy
            // and server logs and in Referer headers. The page says so instead of failing silently.
            let inURL = request.uri.queryParameters.get("token") != nil
            let next = request.method == .get && handler != .dashboardLive ? Self.safeNext(Self.pathWithoutToken(request)) : "/dashboard"
            return dashboardHTML(loginPage(next: next, notice: inURL
                ? "The admin token is not accepted in a URL (it would stay in history and logs): log in here."
                : nil), status: .unauthorized)
        }
        // Each route's role from the routes table: a viewer reads, an operator approves and
        // redeploys, an administrator changes the rest.
        let principal = access.principal
        if principal.role < RouteSpec.requiredRole(handler) {
            switch handler {
            case .dashboardLibrary, .dashboardMulticastAPI, .dashboardContent(.uploadAnnounce), .dashboardContent(.uploadData):
                // The pages' script shows the API's error as it came.
                throw APIError(.forbidden, Self.refusal(principal, handler))
            default:
                return dashboardRefusal(handler, principal, access: access)
            }
        }
        return try await Principal.$current.withValue(principal) {
            try await audited(handler, request, context) {
                try await self.dashboardAction(handler, request, context, access: access)
            }
        }
    }

    /// What the dashboard does for a logged-in caller whose role allows it (recorded in the
    /// audit log by `audited` when it changes something).
    private func dashboardAction(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext,
                                 access: DashboardAccess) async throws -> Response {
        switch handler {
        case .dashboard:
            let page = try Self.pageNumber(request)
            let change = try await storage.latestChangeID()
            let listing = try await dashboardMachines(page: page)
            return dashboardHTML(DashboardPage.index(listing, change: change, csrf: access.csrfToken,
                                                     canOperate: access.principal.role >= .operator))
        case .dashboardDeployment:
            let id = try request.requiredParameter("id", context)
            let change = try await storage.latestChangeID()
            guard let deployment = try await storage.deployment(id: id) else { throw APIError.notFound("deployment \(id)") }
            let machine = try await storage.machine(id: deployment.machineID)
            let window = try await logWindow(deploymentID: id, request)
            let limits = configuration.limits
            let steps = try await storage.stepEvents(deploymentID: id, limit: 2 * limits.eventsPerPage)
            var shown = view(deployment, machine)
            shown.libraryVersions = try await storage.libraryVersions(deploymentID: id)
            if let state = try await storage.runState(deploymentID: id) {
                shown.runStateStep = Self.runStateStep(state, sequenceBody: deployment.sequenceBody)
                    .map { DashboardTimeline.clipped($0, to: limits.logLineCharacters) }
            }
            return dashboardHTML(DashboardPage.deployment(shown,
                                                          steps: DashboardTimeline.steps(steps, characters: limits.logLineCharacters),
                                                          log: DashboardTimeline.log(window.events, characters: limits.logLineCharacters),
                                                          window: window, change: change, csrf: access.csrfToken,
                                                          canOperate: access.principal.role >= .operator))
        case .dashboardLive:
            guard let slot = liveStreams.take(limit: configuration.limits.liveStreams) else {
                var error = APIError(.tooManyRequests, "\(configuration.limits.liveStreams) live streams are open on this server already: "
                                     + "close a dashboard tab or try again later")
                error.retryAfter = 10
                throw error
            }
            // A browser reconnecting sends the last change id it saw (Last-Event-ID) and misses
            // nothing; `since` asks for the same explicitly.
            let lastEventID = request.headers.first(where: { $0.name.canonicalName == "last-event-id" })?.value
            let since = lastEventID.flatMap { Int($0) }
                ?? request.uri.queryParameters.get("since").flatMap { Int($0) }
            return liveFeed(deployment: request.uri.queryParameters.get("deployment"),
                            after: request.uri.queryParameters.get("after").flatMap { Int($0) } ?? 0, since: since,
                            access: access, slot: slot)
        case .dashboardRedeploy:
            let form = try await dashboardForm(request)
            try requireCSRF(form, access)
            let id = try request.requiredParameter("id", context)
            guard try await storage.requestRedeploy(machineID: id) else { throw APIError.notFound("machine \(id)") }
            // Back to the page the form was on (a machine's page sends `next`).
            return Response(status: .seeOther, headers: [.location: Self.safeNext(form["next"])])
        case .dashboardResetToken:
            try requireCSRF(try await dashboardForm(request), access)
            let id = try request.requiredParameter("id", context)
            _ = try await resetDeploymentToken(id: id)
            return Response(status: .seeOther, headers: [.location: "/dashboard/deployments/\(id)"])
        case .dashboardApprove:
            let form = try await dashboardForm(request)
            try requireCSRF(form, access)
            let id = try request.requiredParameter("id", context)
            guard try await storage.setMachineState(id: id, state: .approved) else { throw APIError.notFound("machine \(id)") }
            return Response(status: .seeOther, headers: [.location: Self.safeNext(form["next"])])
        case .dashboardLogout:
            // CSRF-checked too: another site must not be able to log the administrator out.
            try requireCSRF(try await dashboardForm(request), access)
            if case let .session(session) = access { try await storage.deleteSession(idHash: session.idHash) }
            var response = Response(status: .seeOther, headers: [.location: "/dashboard"])
            response.headers[.setCookie] = sessionCookie(value: "", maxAge: 0, request: request)
            return response
        case .dashboardImages:
            return try await dashboardImagesPage(access: access)
        case .dashboardImage:
            return try await dashboardImagePage(request, context, access: access)
        case let .dashboardLibrary(route):
            return try await dashboardLibraryAPI(route, request, context, access: access)
        case .dashboardDistributionPoints:
            return try await dashboardDistributionPointsPage(access: access)
        case .dashboardMulticast:
            return try await dashboardMulticastPage(access: access)
        case let .dashboardMulticastAPI(route):
            return try await dashboardMulticastAPI(route, request, context, access: access)
        case let .dashboardUsers(route):
            return try await dashboardUsers(route, request, context, access: access)
        case let .dashboardMachines(route):
            return try await dashboardMachines(route, request, context, access: access)
        case let .dashboardDeployments(route):
            return try await dashboardDeployments(route, request, context, access: access)
        case let .dashboardContent(route):
            return try await dashboardContent(route, request, context, access: access)
        case let .dashboardRules(route):
            return try await dashboardRules(route, request, context, access: access)
        case let .dashboardSequences(route):
            return try await dashboardSequences(route, request, context, access: access)
        case .ruleTest, .sequences:
            // The admin API's, never sent here.
            throw APIError.notFound("route")
        case .deploymentReports, .contentAdmin:
            // The admin API's, never sent here.
            throw APIError.notFound("route")
        case .dashboardLogin, .dashboardScript, .dashboardStyle:
            // Answered above, before the login check.
            throw APIError.notFound("route")
        case .bootScript, .bootScriptForMAC, .bootFile, .checkIn, .deploymentSequence, .deploymentEvents, .deploymentState, .content, .metrics,
             .captureAnnounce, .captureData,
             .adminGetSequence, .adminPutSequence, .adminListSequences, .adminGetRules, .adminPutRules, .adminMachines,
             .adminApproveMachine, .adminRedeployMachine, .adminDeployments, .adminDeployment, .adminDeploymentEvents,
             .adminRegisterMachine, .adminResetDeploymentToken, .library, .distributionPoints, .multicast, .users, .machines:
            // Not a dashboard route: `handle` never sends these here (listed so a new handler is placed on purpose).
            throw APIError.notFound("route")
        }
    }

    /// The script and style every page loads (the CSP allows no inline ones).
    private func asset(_ text: String, contentType: String) -> Response {
        var response = JSON.raw(Data(text.utf8), contentType: contentType)
        response.headers[.cacheControl] = "no-cache"
        return response
    }

    /// The request's path and query without `token=`, where a login goes back to.
    static func pathWithoutToken(_ request: Request) -> String {
        let query = (request.uri.query ?? "").split(separator: "&").filter { !$0.hasPrefix("token=") }.joined(separator: "&")
        return request.uri.path + (query.isEmpty ? "" : "?" + query)
    }

    /// `?page=N`, from 1.
    static func pageNumber(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters.get("page") else { return 1 }
        guard let page = Int(text), page >= 1, page <= 1_000_000 else {
            throw APIError(.badRequest, "page must be a number from 1", field: "page")
        }
        return page
    }

    /// One page of the machine list (and the first page of those waiting for approval), with
    /// only these machines' deployments read.
    private func dashboardMachines(page: Int) async throws -> DashboardListing {
        let perPage = configuration.limits.machinesPerPage
        let (approved, total) = try await storage.machines(state: .approved, offset: (page - 1) * perPage, limit: perPage)
        let (pending, pendingTotal) = try await storage.machines(state: .pending, offset: 0, limit: perPage)
        let ids = (pending + approved).map(\.id)
        let latest = try await storage.latestDeployments(machineIDs: ids)
        let redeploys = try await storage.redeployRequests(machineIDs: ids)
        let machines = (pending + approved).map { machine -> DashboardMachine in
            var entry = DashboardMachine(id: machine.id, name: Self.name(machine), macs: machine.macs, serial: machine.serial,
                                         state: machine.state.rawValue, lastSeen: machine.lastSeen,
                                         deployment: latest[machine.id].map { view($0, machine) })
            if let last = latest[machine.id], last.state == .succeeded, let requested = redeploys[machine.id], requested > last.created {
                entry.redeployRequested = true
            }
            entry.conflicts = machine.conflicts.map(\.description)
            return entry
        }
        return DashboardListing(machines: machines, failures: try await storage.latestFailureCounts(), page: page,
                                pages: max(1, (total + perPage - 1) / perPage), pendingTotal: pendingTotal)
    }

    /// The events a deployment page shows: the newest page by default, `?before=N` the page of
    /// events before N, `?after=N` the page after N.
    private func logWindow(deploymentID: String, _ request: Request) async throws -> DashboardLogWindow {
        let perPage = configuration.limits.eventsPerPage
        func number(_ name: String) throws -> Int? {
            guard let text = request.uri.queryParameters.get(name) else { return nil }
            guard let value = Int(text), value >= 0 else { throw APIError(.badRequest, "\(name) must be an event number (0 or more)", field: name) }
            return value
        }
        if let after = try number("after") {
            var events = try await storage.events(deploymentID: deploymentID, afterSequence: after, limit: perPage + 1).map(\.event)
            let newer = events.count > perPage
            if newer { events.removeLast() }
            return DashboardLogWindow(events: events, older: after > 0 ? (events.first?.sequence ?? after + 1) : nil,
                                      newer: newer ? events.last?.sequence : nil)
        }
        let before = try number("before")
        var events = try await storage.events(deploymentID: deploymentID, beforeSequence: before ?? Int.max, limit: perPage + 1).map(\.event)
        let older = events.count > perPage
        if older { events.removeFirst() }
        return DashboardLogWindow(events: events, older: older ? events.first?.sequence : nil,
                                  newer: before != nil ? (events.last?.sequence ?? 0) : nil)
    }

    static func name(_ machine: Machine?) -> String {
        guard let machine else { return "unknown machine" }
        let parts = [machine.manufacturer, machine.model].compactMap { $0 }.filter { !$0.isEmpty }
        let base = parts.isEmpty ? (machine.macs.first ?? machine.id) : parts.joined(separator: " ")
        // Manufacturer, model and serial are what the machine said: a page shows a line of it.
        return DashboardTimeline.clipped(base + (machine.serial.map { " (\($0))" } ?? ""), to: 300)
    }

    func view(_ deployment: Deployment, _ machine: Machine?) -> DashboardDeployment {
        var view = DashboardDeployment(id: deployment.id, machine: Self.name(machine), sequence: deployment.sequenceName,
                            state: deployment.state.rawValue, percent: deployment.percent ?? (deployment.state == .succeeded ? 100 : 0),
                            currentStep: deployment.currentStep.map { DashboardTimeline.clipped($0, to: configuration.limits.logLineCharacters) },
                            message: deployment.message.map { DashboardTimeline.clipped($0, to: configuration.limits.logLineCharacters) },
                            failure: deployment.failure?.rawValue, created: deployment.created, ended: deployment.ended)
        view.isActive = deployment.isActive
        view.tokenReset = deployment.tokenReset
        view.machineConflicts = machine?.conflicts.map(\.description) ?? []
        view.resumes = deployment.resumes
        return view
    }

    /// Where a run state says its run is: the step begun and not ended (the one a power cut
    /// interrupted, if one did), else the last step ended. Nil when it names no step of the
    /// deployment's sequence.
    static func runStateStep(_ state: RunState, sequenceBody: String) -> String? {
        guard let sequence = SequenceParser.parse(Data(sequenceBody.utf8), origin: "sequence").0 else { return nil }
        let saved = "revision \(state.revision)" + (state.updated.isEmpty ? "" : ", saved \(state.updated)")
        if state.ended { return "the run ended (\(saved))" }
        if let step = state.interruptedStep(in: sequence) { return "at step \(step.number) \"\(step.name)\" (begun, not ended; \(saved))" }
        if let step = sequence.allSteps.last(where: { state.steps[$0.number] == .ended }) {
            return "after step \(step.number) \"\(step.name)\" (ended; \(saved))"
        }
        return nil
    }

    /// Server-sent events: polls the database for events stored after the newest change id it
    /// has seen (by this instance or any other) and sends each changed deployment's summary,
    /// with new steps and log lines for the deployment a page follows. `slot` (one of the
    /// instance's live streams) is released when the response is.
    private func liveFeed(deployment followed: String?, after: Int, since: Int?, access: DashboardAccess,
                          slot: LiveStreamSlots.Slot) -> Response {
        let storage = self.storage
        let limits = configuration.limits
        let body = ResponseBody { [self] writer in
            defer { withExtendedLifetime(slot) {} }
            var cursor: Int
            if let since { cursor = max(0, since) } else { cursor = try await storage.latestChangeID() }
            var followedAfter = after
            var quiet = 0
            var sessionChecked = ContinuousClock.now
            try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
            while true {
                let changes = try await storage.changedDeployments(afterChange: cursor, limit: 100)
                for change in changes {
                    cursor = max(cursor, change.changeID)
                    guard let deployment = try await storage.deployment(id: change.deploymentID) else { continue }
                    var newEvents: [Event] = []
                    if change.deploymentID == followed {
                        newEvents = try await storage.events(deploymentID: change.deploymentID, afterSequence: followedAfter,
                                                             limit: limits.eventsPerPage).map(\.event)
                        followedAfter = newEvents.last?.sequence ?? followedAfter
                    }
                    let machine = try await storage.machine(id: deployment.machineID)
                    let update = DashboardTimeline.update(view(deployment, machine), newEvents: newEvents, characters: limits.logLineCharacters)
                    // JSON escapes every line break, so an agent's text cannot end the `data:` line.
                    let data = (try? JSONSerialization.data(withJSONObject: update, options: [.sortedKeys])) ?? Data("{}".utf8)
                    try await writer.write(ByteBuffer(string: "id: \(change.changeID)\ndata: " + String(decoding: data, as: UTF8.self) + "\n\n"))
                }
                // A comment every few quiet seconds finds a closed connection (the write fails),
                // which gives its place among the live streams back, and keeps proxies from
                // timing the stream out.
                quiet = changes.isEmpty ? quiet + 1 : 0
                if quiet >= 16 {
                    quiet = 0
                    try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
                }
                // A session that logged out or expired ends its streams (looked up now and then,
                // not at every poll); the browser's reconnection then meets the login.
                if case let .session(session) = access, ContinuousClock.now - sessionChecked > .seconds(30) {
                    guard try await storage.session(idHash: session.idHash) != nil else { return }
                    sessionChecked = .now
                }
                try await Task.sleep(nanoseconds: 300_000_000)
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
