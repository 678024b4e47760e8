import Hummingbird

/// Every route the server answers, in one table: registration walks it, and a test compares it
/// with the OpenAPI document, so neither can gain a route the other lacks.
public struct RouteSpec: Sendable, Hashable {
    public enum Handler: Sendable, Hashable {
        /// The generic script and a machine's own, for each boot loader (iPXE, GRUB).
        case bootScript(BootLoader), bootScriptForMAC(BootLoader)
        case bootFile
        case checkIn, deploymentSequence, deploymentEvents, deploymentState
        case captureAnnounce, captureData
        case content
        case adminGetSequence, adminPutSequence, adminListSequences, adminGetRules, adminPutRules, adminMachines, adminApproveMachine
        case adminRedeployMachine, adminRegisterMachine, adminResetDeploymentToken
        case adminDeployments, adminDeployment, adminDeploymentEvents
        case metrics
        case dashboard, dashboardDeployment, dashboardLive, dashboardApprove, dashboardRedeploy, dashboardResetToken
        case dashboardLogin, dashboardLogout, dashboardScript, dashboardStyle
        /// The dashboard's Images page and a library image's page (HTML), and the library's admin
        /// API again under /dashboard/library for their script: the session cookie and a CSRF
        /// header instead of the admin token, the same handlers behind them.
        case dashboardImages, dashboardImage
        case dashboardLibrary(LibraryRoute)
        /// The image library's admin API.
        case library(LibraryRoute)
        /// Distribution points: the administrator's list, create/update and delete, and each
        /// point's manifest and status (with the point's own token); their dashboard page.
        case distributionPoints(DistributionPointRoute)
        case dashboardDistributionPoints
        /// Multicast sessions: the administrator's list, create, one session, cancel and delete,
        /// and a session's block manifest for the agents; the dashboard's Multicast page, and
        /// the same API under /dashboard/multicast for its script (session cookie and CSRF header).
        case multicast(MulticastRoute)
        case dashboardMulticast
        case dashboardMulticastAPI(MulticastRoute)
        /// Named users, their API tokens and the audit log (issue 20); their dashboard pages
        /// (forms posting to /dashboard/users..., the Audit page).
        case users(UserRoute)
        case dashboardUsers(DashboardUserRoute)
        /// One machine with its history, rejecting, forgetting, a CSV batch of registrations
        /// (issue 20); the dashboard's Machines pages (inventory, a machine's page, their forms).
        case machines(MachineRoute)
        case dashboardMachines(DashboardMachineRoute)
        /// Deployments and content (issue 20): the summary and a deployment's log as a file, and
        /// the content folder's files (list with SHA-256s, resumable upload, delete) in the admin
        /// API; the dashboard's Deployments pages and Content page (with its upload and delete).
        case deploymentReports(DeploymentReportRoute)
        case contentAdmin(ContentRoute)
        case dashboardDeployments(DashboardDeploymentRoute)
        case dashboardContent(DashboardContentRoute)
        /// Rules and task sequences (issue 20): which rule a machine gets and why (the check-in's
        /// own choice), a sequence's versions (list, one, restore), its check as typed, and the
        /// dry-run plan against a machine's facts; the dashboard's Rules and Sequences pages.
        case ruleTest
        case sequences(SequenceRoute)
        case dashboardRules(DashboardRuleRoute)
        case dashboardSequences(DashboardSequenceRoute)
    }

    public var method: HTTPRequest.Method
    /// As OpenAPI writes it: `{name}` for a parameter.
    public var path: String
    /// As the router matches it, when it differs (a catch-all for the content tree).
    public var routerPath: String
    public var handler: Handler
    /// The least role a user (or an API token's user) needs for it; nil for what is not the
    /// administrator's: agents', boot files, content, the points' own routes, the login page.
    /// A test holds every /api/v1/admin and /dashboard route to having one.
    public var role: Role?

    init(_ method: HTTPRequest.Method, _ path: String, router: String? = nil, _ handler: Handler, role: Role? = nil) {
        self.method = method
        self.path = path
        self.routerPath = router ?? path
        self.handler = handler
        self.role = role
    }

    public static let all: [RouteSpec] = [
        RouteSpec(.get, "/boot.ipxe", .bootScript(.ipxe)),
        RouteSpec(.get, "/boot/{mac}.ipxe", .bootScriptForMAC(.ipxe)),
        // GRUB over UEFI HTTP Boot asks with HEAD before GET; /grub/grub.cfg is what Debian's
        // signed network GRUB reads first ($prefix/grub.cfg): the generic GRUB script.
        RouteSpec(.get, "/boot.grub", .bootScript(.grub)),
        RouteSpec(.head, "/boot.grub", .bootScript(.grub)),
        RouteSpec(.get, "/boot/{mac}.grub", .bootScriptForMAC(.grub)),
        RouteSpec(.head, "/boot/{mac}.grub", .bootScriptForMAC(.grub)),
        RouteSpec(.get, "/grub/grub.cfg", .bootScript(.grub)),
        RouteSpec(.head, "/grub/grub.cfg", .bootScript(.grub)),
        RouteSpec(.get, "/boot/files/{name}", .bootFile),
        RouteSpec(.head, "/boot/files/{name}", .bootFile),
        RouteSpec(.post, "/api/v1/agents/checkin", .checkIn),
        RouteSpec(.get, "/api/v1/deployments/{id}/sequence", .deploymentSequence),
        RouteSpec(.post, "/api/v1/deployments/{id}/events", .deploymentEvents),
        RouteSpec(.put, "/api/v1/deployments/{id}/state", .deploymentState),
        RouteSpec(.post, "/api/v1/deployments/{id}/captures/{name}", .captureAnnounce),
        RouteSpec(.put, "/api/v1/deployments/{id}/captures/{name}", .captureData),
        RouteSpec(.get, "/content/{path}", router: "/content/**", .content),
        RouteSpec(.head, "/content/{path}", router: "/content/**", .content),
        RouteSpec(.get, "/api/v1/admin/sequences", .adminListSequences, role: .viewer),
        RouteSpec(.get, "/api/v1/admin/sequences/{name}", .adminGetSequence, role: .viewer),
        RouteSpec(.put, "/api/v1/admin/sequences/{name}", .adminPutSequence, role: .administrator),
        RouteSpec(.get, "/api/v1/admin/rules", .adminGetRules, role: .viewer),
        RouteSpec(.put, "/api/v1/admin/rules", .adminPutRules, role: .administrator),
        RouteSpec(.get, "/api/v1/admin/machines", .adminMachines, role: .viewer),
        RouteSpec(.post, "/api/v1/admin/machines", .adminRegisterMachine, role: .operator),
        RouteSpec(.post, "/api/v1/admin/machines/{id}/approve", .adminApproveMachine, role: .operator),
        RouteSpec(.post, "/api/v1/admin/machines/{id}/redeploy", .adminRedeployMachine, role: .operator),
        RouteSpec(.get, "/api/v1/admin/deployments", .adminDeployments, role: .viewer),
        RouteSpec(.get, "/api/v1/admin/deployments/{id}", .adminDeployment, role: .viewer),
        RouteSpec(.get, "/api/v1/admin/deployments/{id}/events", .adminDeploymentEvents, role: .viewer),
        RouteSpec(.post, "/api/v1/admin/deployments/{id}/reset-token", .adminResetDeploymentToken, role: .operator),
        RouteSpec(.get, "/api/v1/admin/library", .library(.overview), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/library/uploads/{name}", .library(.uploadAnnounce), role: .administrator),
        RouteSpec(.put, "/api/v1/admin/library/uploads/{name}", .library(.uploadData), role: .administrator),
        RouteSpec(.post, "/api/v1/admin/library/wims", .library(.importWIM), role: .administrator),
        RouteSpec(.get, "/api/v1/admin/library/wims/{id}", .library(.wim), role: .viewer),
        RouteSpec(.delete, "/api/v1/admin/library/wims/{id}", .library(.deleteWIM), role: .administrator),
        RouteSpec(.post, "/api/v1/admin/library/images", .library(.extract), role: .administrator),
        RouteSpec(.get, "/api/v1/admin/library/images/{name}", .library(.image), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/library/images/{name}/versions/{version}/service", .library(.service), role: .administrator),
        RouteSpec(.post, "/api/v1/admin/library/images/{name}/versions/{version}/retire", .library(.retire), role: .administrator),
        RouteSpec(.delete, "/api/v1/admin/library/images/{name}/versions/{version}", .library(.deleteVersion), role: .administrator),
        RouteSpec(.get, "/api/v1/admin/library/jobs", .library(.jobs), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/library/jobs/{id}", .library(.job), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/distribution-points", .distributionPoints(.list), role: .viewer),
        RouteSpec(.put, "/api/v1/admin/distribution-points/{name}", .distributionPoints(.put), role: .administrator),
        RouteSpec(.delete, "/api/v1/admin/distribution-points/{name}", .distributionPoints(.delete), role: .administrator),
        RouteSpec(.get, "/api/v1/distribution/manifest", .distributionPoints(.manifest)),
        RouteSpec(.put, "/api/v1/distribution/status", .distributionPoints(.status)),
        RouteSpec(.get, "/api/v1/admin/multicast/sessions", .multicast(.list), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/multicast/sessions", .multicast(.create), role: .administrator),
        RouteSpec(.get, "/api/v1/admin/multicast/sessions/{id}", .multicast(.session), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/multicast/sessions/{id}/cancel", .multicast(.cancel), role: .administrator),
        RouteSpec(.delete, "/api/v1/admin/multicast/sessions/{id}", .multicast(.delete), role: .administrator),
        RouteSpec(.get, "/api/v1/multicast/sessions/{id}/manifest", .multicast(.manifest)),
        RouteSpec(.get, "/api/v1/admin/users", .users(.list), role: .administrator),
        RouteSpec(.post, "/api/v1/admin/users", .users(.create), role: .administrator),
        RouteSpec(.get, "/api/v1/admin/users/{name}", .users(.user), role: .administrator),
        RouteSpec(.put, "/api/v1/admin/users/{name}", .users(.update), role: .administrator),
        RouteSpec(.delete, "/api/v1/admin/users/{name}", .users(.delete), role: .administrator),
        // A user's own tokens, whatever the role (an administrator's: anyone's).
        RouteSpec(.get, "/api/v1/admin/tokens", .users(.tokens), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/tokens", .users(.createToken), role: .viewer),
        RouteSpec(.delete, "/api/v1/admin/tokens/{id}", .users(.revokeToken), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/me", .users(.me), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/audit", .users(.audit), role: .viewer),
        RouteSpec(.get, "/metrics", .metrics),
        RouteSpec(.get, "/dashboard", .dashboard, role: .viewer),
        RouteSpec(.get, "/dashboard/deployments/{id}", .dashboardDeployment, role: .viewer),
        RouteSpec(.get, "/dashboard/live", .dashboardLive, role: .viewer),
        RouteSpec(.post, "/dashboard/machines/{id}/approve", .dashboardApprove, role: .operator),
        RouteSpec(.post, "/dashboard/machines/{id}/redeploy", .dashboardRedeploy, role: .operator),
        RouteSpec(.post, "/dashboard/deployments/{id}/reset-token", .dashboardResetToken, role: .operator),
        RouteSpec(.post, "/dashboard/login", .dashboardLogin),
        RouteSpec(.post, "/dashboard/logout", .dashboardLogout, role: .viewer),
        RouteSpec(.get, "/dashboard/app.js", .dashboardScript),
        RouteSpec(.get, "/dashboard/app.css", .dashboardStyle),
        RouteSpec(.get, "/dashboard/images", .dashboardImages, role: .viewer),
        RouteSpec(.get, "/dashboard/images/{name}", .dashboardImage, role: .viewer),
        RouteSpec(.get, "/dashboard/distribution-points", .dashboardDistributionPoints, role: .viewer),
        RouteSpec(.get, "/dashboard/multicast", .dashboardMulticast, role: .viewer),
        RouteSpec(.get, "/dashboard/multicast/sessions", .dashboardMulticastAPI(.list), role: .viewer),
        RouteSpec(.post, "/dashboard/multicast/sessions", .dashboardMulticastAPI(.create), role: .administrator),
        RouteSpec(.get, "/dashboard/multicast/sessions/{id}", .dashboardMulticastAPI(.session), role: .viewer),
        RouteSpec(.post, "/dashboard/multicast/sessions/{id}/cancel", .dashboardMulticastAPI(.cancel), role: .administrator),
        RouteSpec(.delete, "/dashboard/multicast/sessions/{id}", .dashboardMulticastAPI(.delete), role: .administrator),
        RouteSpec(.get, "/dashboard/users", .dashboardUsers(.page), role: .administrator),
        RouteSpec(.post, "/dashboard/users", .dashboardUsers(.add), role: .administrator),
        RouteSpec(.post, "/dashboard/users/{name}/role", .dashboardUsers(.role), role: .administrator),
        RouteSpec(.post, "/dashboard/users/{name}/password", .dashboardUsers(.password), role: .administrator),
        RouteSpec(.post, "/dashboard/users/{name}/revoke-tokens", .dashboardUsers(.revokeTokens), role: .administrator),
        RouteSpec(.post, "/dashboard/users/{name}/delete", .dashboardUsers(.delete), role: .administrator),
        RouteSpec(.get, "/dashboard/audit", .dashboardUsers(.audit), role: .viewer),
        RouteSpec(.get, "/dashboard/library", .dashboardLibrary(.overview), role: .viewer),
        RouteSpec(.post, "/dashboard/library/uploads/{name}", .dashboardLibrary(.uploadAnnounce), role: .administrator),
        RouteSpec(.put, "/dashboard/library/uploads/{name}", .dashboardLibrary(.uploadData), role: .administrator),
        RouteSpec(.post, "/dashboard/library/wims", .dashboardLibrary(.importWIM), role: .administrator),
        RouteSpec(.get, "/dashboard/library/wims/{id}", .dashboardLibrary(.wim), role: .viewer),
        RouteSpec(.delete, "/dashboard/library/wims/{id}", .dashboardLibrary(.deleteWIM), role: .administrator),
        RouteSpec(.post, "/dashboard/library/images", .dashboardLibrary(.extract), role: .administrator),
        RouteSpec(.get, "/dashboard/library/images/{name}", .dashboardLibrary(.image), role: .viewer),
        RouteSpec(.post, "/dashboard/library/images/{name}/versions/{version}/service", .dashboardLibrary(.service), role: .administrator),
        RouteSpec(.post, "/dashboard/library/images/{name}/versions/{version}/retire", .dashboardLibrary(.retire), role: .administrator),
        RouteSpec(.delete, "/dashboard/library/images/{name}/versions/{version}", .dashboardLibrary(.deleteVersion), role: .administrator),
        RouteSpec(.get, "/dashboard/library/jobs", .dashboardLibrary(.jobs), role: .viewer),
        RouteSpec(.get, "/dashboard/library/jobs/{id}", .dashboardLibrary(.job), role: .viewer),
        // Machines (issue 20). Forgetting is an administrator's: it deletes the machine's
        // deployment history (events, logs), which nothing gives back.
        RouteSpec(.get, "/api/v1/admin/machines/{id}", .machines(.machine), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/machines/{id}/reject", .machines(.reject), role: .operator),
        RouteSpec(.delete, "/api/v1/admin/machines/{id}", .machines(.forget), role: .administrator),
        RouteSpec(.post, "/api/v1/admin/machines/import", .machines(.importCSV), role: .operator),
        RouteSpec(.get, "/dashboard/machines", .dashboardMachines(.inventory), role: .viewer),
        RouteSpec(.post, "/dashboard/machines", .dashboardMachines(.register), role: .operator),
        RouteSpec(.post, "/dashboard/machines/import", .dashboardMachines(.importCSV), role: .operator),
        RouteSpec(.get, "/dashboard/machines/{id}", .dashboardMachines(.machine), role: .viewer),
        RouteSpec(.post, "/dashboard/machines/{id}/reject", .dashboardMachines(.reject), role: .operator),
        RouteSpec(.post, "/dashboard/machines/{id}/forget", .dashboardMachines(.forget), role: .administrator),
        // Deployments and content (issue 20). GET /api/v1/admin/deployments takes the list's
        // filters (state, window, since, until, sequence, machine, model, page, limit).
        RouteSpec(.get, "/api/v1/admin/deployments/summary", .deploymentReports(.summary), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/deployments/{id}/log", .deploymentReports(.log), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/content", .contentAdmin(.list), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/content/uploads/{path}", router: "/api/v1/admin/content/uploads/**", .contentAdmin(.uploadAnnounce), role: .administrator),
        RouteSpec(.put, "/api/v1/admin/content/uploads/{path}", router: "/api/v1/admin/content/uploads/**", .contentAdmin(.uploadData), role: .administrator),
        RouteSpec(.delete, "/api/v1/admin/content/files/{path}", router: "/api/v1/admin/content/files/**", .contentAdmin(.delete), role: .administrator),
        RouteSpec(.get, "/dashboard/deployments", .dashboardDeployments(.list), role: .viewer),
        RouteSpec(.get, "/dashboard/deployments/summary", .dashboardDeployments(.summary), role: .viewer),
        RouteSpec(.get, "/dashboard/deployments/{id}/log", .dashboardDeployments(.log), role: .viewer),
        RouteSpec(.get, "/dashboard/content", .dashboardContent(.page), role: .viewer),
        RouteSpec(.post, "/dashboard/content/uploads/{path}", router: "/dashboard/content/uploads/**", .dashboardContent(.uploadAnnounce), role: .administrator),
        RouteSpec(.put, "/dashboard/content/uploads/{path}", router: "/dashboard/content/uploads/**", .dashboardContent(.uploadData), role: .administrator),
        RouteSpec(.post, "/dashboard/content/delete/{path}", router: "/dashboard/content/delete/**", .dashboardContent(.delete), role: .administrator),
        // Rules and task sequences (issue 20). The tester, the check and the plan change nothing:
        // a viewer's, though they are POSTs (they take a draft or pasted facts as their body).
        RouteSpec(.post, "/api/v1/admin/rules/test", .ruleTest, role: .viewer),
        RouteSpec(.get, "/api/v1/admin/sequences/{name}/versions", .sequences(.versions), role: .viewer),
        RouteSpec(.get, "/api/v1/admin/sequences/{name}/versions/{version}", .sequences(.version), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/sequences/{name}/versions/{version}/restore", .sequences(.restore), role: .administrator),
        RouteSpec(.post, "/api/v1/admin/sequences/{name}/validate", .sequences(.validate), role: .viewer),
        RouteSpec(.post, "/api/v1/admin/sequences/{name}/plan", .sequences(.plan), role: .viewer),
        RouteSpec(.get, "/dashboard/rules", .dashboardRules(.page), role: .viewer),
        RouteSpec(.post, "/dashboard/rules", .dashboardRules(.add), role: .administrator),
        RouteSpec(.post, "/dashboard/rules/test", .dashboardRules(.test), role: .viewer),
        RouteSpec(.post, "/dashboard/rules/{index}", .dashboardRules(.edit), role: .administrator),
        RouteSpec(.post, "/dashboard/rules/{index}/move", .dashboardRules(.move), role: .administrator),
        RouteSpec(.post, "/dashboard/rules/{index}/delete", .dashboardRules(.delete), role: .administrator),
        RouteSpec(.get, "/dashboard/sequences", .dashboardSequences(.list), role: .viewer),
        RouteSpec(.post, "/dashboard/sequences", .dashboardSequences(.create), role: .administrator),
        RouteSpec(.get, "/dashboard/sequences/{name}", .dashboardSequences(.page), role: .viewer),
        RouteSpec(.post, "/dashboard/sequences/{name}", .dashboardSequences(.save), role: .administrator),
        RouteSpec(.post, "/dashboard/sequences/{name}/validate", .dashboardSequences(.validate), role: .viewer),
        RouteSpec(.get, "/dashboard/sequences/{name}/plan", .dashboardSequences(.plan), role: .viewer),
        RouteSpec(.get, "/dashboard/sequences/{name}/versions/{version}", .dashboardSequences(.version), role: .viewer),
        RouteSpec(.post, "/dashboard/sequences/{name}/versions/{version}/restore", .dashboardSequences(.restore), role: .administrator),
    ]
}
