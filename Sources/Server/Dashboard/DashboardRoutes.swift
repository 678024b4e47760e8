import Foundation
import Hummingbird
import NIOCore
import SequenceModel

/// The dashboard's pages, its live feed and the approval button. Everything it shows is read
/// from the database, and the live feed follows the events' change ids there, so any number of
/// server instances behind a load balancer show the same thing and the same updates.
extension ImprintServer {
    static let dashboardCookie = "imprint_admin"

    func dashboard(_ handler: RouteSpec.Handler, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let fromQuery = request.uri.queryParameters.get("token")
        guard let token = fromQuery ?? request.bearerToken ?? cookie(request, Self.dashboardCookie),
              Tokens.equal(Tokens.hash(token), Tokens.hash(configuration.adminToken)) else {
            return html(loginPage, status: .unauthorized)
        }
        var response: Response
        switch handler {
        case .dashboard:
            let change = try await storage.latestChangeID()
            response = html(DashboardPage.index(machines: try await dashboardMachines(), change: change))
        case .dashboardDeployment:
            let id = try request.requiredParameter("id", context)
            let change = try await storage.latestChangeID()
            guard let deployment = try await storage.deployment(id: id) else { throw APIError.notFound("deployment \(id)") }
            let machine = try await storage.machine(id: deployment.machineID)
            let events = try await storage.events(deploymentID: id, afterSequence: 0, limit: 100_000).map(\.event)
            response = html(DashboardPage.deployment(view(deployment, machine), steps: DashboardTimeline.steps(events),
                                                     log: DashboardTimeline.log(events), after: events.last?.sequence ?? 0, change: change))
        case .dashboardLive:
            // A browser reconnecting sends the last change id it saw (Last-Event-ID) and misses
            // nothing; `since` asks for the same explicitly.
            let lastEventID = request.headers.first(where: { $0.name.canonicalName == "last-event-id" })?.value
            let since = lastEventID.flatMap { Int($0) }
                ?? request.uri.queryParameters.get("since").flatMap { Int($0) }
            response = liveFeed(deployment: request.uri.queryParameters.get("deployment"),
                                after: request.uri.queryParameters.get("after").flatMap { Int($0) } ?? 0, since: since)
        case .dashboardRedeploy:
            let id = try request.requiredParameter("id", context)
            guard try await storage.requestRedeploy(machineID: id) else { throw APIError.notFound("machine \(id)") }
            response = Response(status: .seeOther, headers: [.location: "/dashboard"])
        case .dashboardApprove:
            let id = try request.requiredParameter("id", context)
            guard try await storage.setMachineState(id: id, state: .approved) else { throw APIError.notFound("machine \(id)") }
            response = Response(status: .seeOther, headers: [.location: "/dashboard"])
        case .bootScript, .bootScriptForMAC, .bootFile, .checkIn, .deploymentSequence, .deploymentEvents, .content, .metrics,
             .adminGetSequence, .adminPutSequence, .adminListSequences, .adminGetRules, .adminPutRules, .adminMachines,
             .adminApproveMachine, .adminRedeployMachine, .adminDeployments, .adminDeployment, .adminDeploymentEvents:
            // Not a dashboard route: `handle` never sends these here (listed so a new handler is placed on purpose).
            throw APIError.notFound("route")
        }
        if let fromQuery {
            // The token from a link becomes a cookie, so the page's own links and its live feed
            // work; SameSite=Strict keeps other sites from using it (the approve form posts).
            response.headers[.setCookie] = "\(Self.dashboardCookie)=\(fromQuery); Path=/dashboard; HttpOnly; SameSite=Strict"
        }
        return response
    }

    private func dashboardMachines() async throws -> [DashboardMachine] {
        let deployments = try await storage.deployments()
        var latest: [String: Deployment] = [:]
        for deployment in deployments where (latest[deployment.machineID]?.created ?? "") <= deployment.created {
            latest[deployment.machineID] = deployment
        }
        var result: [DashboardMachine] = []
        for machine in try await storage.machines() {
            var entry = DashboardMachine(id: machine.id, name: Self.name(machine), macs: machine.macs, serial: machine.serial,
                                         state: machine.state.rawValue, lastSeen: machine.lastSeen,
                                         deployment: latest[machine.id].map { view($0, machine) })
            if let last = latest[machine.id], last.state == .succeeded,
               let requested = try await storage.redeployRequested(machineID: machine.id), requested > last.created {
                entry.redeployRequested = true
            }
            result.append(entry)
        }
        return result
    }

    static func name(_ machine: Machine?) -> String {
        guard let machine else { return "unknown machine" }
        let parts = [machine.manufacturer, machine.model].compactMap { $0 }.filter { !$0.isEmpty }
        let base = parts.isEmpty ? (machine.macs.first ?? machine.id) : parts.joined(separator: " ")
        return base + (machine.serial.map { " (\($0))" } ?? "")
    }

    func view(_ deployment: Deployment, _ machine: Machine?) -> DashboardDeployment {
        DashboardDeployment(id: deployment.id, machine: Self.name(machine), sequence: deployment.sequenceName,
                            state: deployment.state.rawValue, percent: deployment.percent ?? (deployment.state == .succeeded ? 100 : 0),
                            currentStep: deployment.currentStep, message: deployment.message,
                            created: deployment.created, ended: deployment.ended)
    }

    /// Server-sent events: polls the database for events stored after the newest change id it
    /// has seen (by this instance or any other) and sends each changed deployment's summary,
    /// with new steps and log lines for the deployment a page follows.
    private func liveFeed(deployment followed: String?, after: Int, since: Int?) -> Response {
        let storage = self.storage
        let body = ResponseBody { [self] writer in
            var cursor: Int
            if let since { cursor = max(0, since) } else { cursor = try await storage.latestChangeID() }
            var followedAfter = after
            var quiet = 0
            try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
            while true {
                let changes = try await storage.changedDeployments(afterChange: cursor, limit: 100)
                for change in changes {
                    cursor = max(cursor, change.changeID)
                    guard let deployment = try await storage.deployment(id: change.deploymentID) else { continue }
                    var newEvents: [Event] = []
                    if change.deploymentID == followed {
                        newEvents = try await storage.events(deploymentID: change.deploymentID, afterSequence: followedAfter,
                                                             limit: 10_000).map(\.event)
                        followedAfter = newEvents.last?.sequence ?? followedAfter
                    }
                    let machine = try await storage.machine(id: deployment.machineID)
                    let update = DashboardTimeline.update(view(deployment, machine), newEvents: newEvents)
                    let data = (try? JSONSerialization.data(withJSONObject: update, options: [.sortedKeys])) ?? Data("{}".utf8)
                    try await writer.write(ByteBuffer(string: "id: \(change.changeID)\ndata: " + String(decoding: data, as: UTF8.self) + "\n\n"))
                }
                // A comment now and then finds a closed connection (the write fails) and keeps
                // proxies from timing the stream out.
                quiet = changes.isEmpty ? quiet + 1 : 0
                if quiet >= 50 {
                    quiet = 0
                    try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
                }
                try await Task.sleep(nanoseconds: 300_000_000)
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    private func cookie(_ request: Request, _ name: String) -> String? {
        guard let header = request.headers[.cookie] else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == name { return String(pair[1]) }
        }
        return nil
    }

    private func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        JSON.raw(Data(text.utf8), status: status, contentType: "text/html; charset=utf-8")
    }

    private var loginPage: String {
        DashboardPage.page(title: "Imprint", body: """
            <h1>Imprint deployments</h1>
            <form method="get" action="/dashboard"><label>Admin token <input type="password" name="token"></label>
            <button type="submit">Open the dashboard</button></form>
            """, live: false)
    }
}

