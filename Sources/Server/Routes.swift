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
    }

    public var method: HTTPRequest.Method
    /// As OpenAPI writes it: `{name}` for a parameter.
    public var path: String
    /// As the router matches it, when it differs (a catch-all for the content tree).
    public var routerPath: String
    public var handler: Handler

    init(_ method: HTTPRequest.Method, _ path: String, router: String? = nil, _ handler: Handler) {
        self.method = method
        self.path = path
        self.routerPath = router ?? path
        self.handler = handler
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
        RouteSpec(.get, "/api/v1/admin/sequences", .adminListSequences),
        RouteSpec(.get, "/api/v1/admin/sequences/{name}", .adminGetSequence),
        RouteSpec(.put, "/api/v1/admin/sequences/{name}", .adminPutSequence),
        RouteSpec(.get, "/api/v1/admin/rules", .adminGetRules),
        RouteSpec(.put, "/api/v1/admin/rules", .adminPutRules),
        RouteSpec(.get, "/api/v1/admin/machines", .adminMachines),
        RouteSpec(.post, "/api/v1/admin/machines", .adminRegisterMachine),
        RouteSpec(.post, "/api/v1/admin/machines/{id}/approve", .adminApproveMachine),
        RouteSpec(.post, "/api/v1/admin/machines/{id}/redeploy", .adminRedeployMachine),
        RouteSpec(.get, "/api/v1/admin/deployments", .adminDeployments),
        RouteSpec(.get, "/api/v1/admin/deployments/{id}", .adminDeployment),
        RouteSpec(.get, "/api/v1/admin/deployments/{id}/events", .adminDeploymentEvents),
        RouteSpec(.post, "/api/v1/admin/deployments/{id}/reset-token", .adminResetDeploymentToken),
        RouteSpec(.get, "/api/v1/admin/library", .library(.overview)),
        RouteSpec(.post, "/api/v1/admin/library/uploads/{name}", .library(.uploadAnnounce)),
        RouteSpec(.put, "/api/v1/admin/library/uploads/{name}", .library(.uploadData)),
        RouteSpec(.post, "/api/v1/admin/library/wims", .library(.importWIM)),
        RouteSpec(.get, "/api/v1/admin/library/wims/{id}", .library(.wim)),
        RouteSpec(.delete, "/api/v1/admin/library/wims/{id}", .library(.deleteWIM)),
        RouteSpec(.post, "/api/v1/admin/library/images", .library(.extract)),
        RouteSpec(.get, "/api/v1/admin/library/images/{name}", .library(.image)),
        RouteSpec(.post, "/api/v1/admin/library/images/{name}/versions/{version}/service", .library(.service)),
        RouteSpec(.post, "/api/v1/admin/library/images/{name}/versions/{version}/retire", .library(.retire)),
        RouteSpec(.delete, "/api/v1/admin/library/images/{name}/versions/{version}", .library(.deleteVersion)),
        RouteSpec(.get, "/api/v1/admin/library/jobs", .library(.jobs)),
        RouteSpec(.get, "/api/v1/admin/library/jobs/{id}", .library(.job)),
        RouteSpec(.get, "/api/v1/admin/distribution-points", .distributionPoints(.list)),
        RouteSpec(.put, "/api/v1/admin/distribution-points/{name}", .distributionPoints(.put)),
        RouteSpec(.delete, "/api/v1/admin/distribution-points/{name}", .distributionPoints(.delete)),
        RouteSpec(.get, "/api/v1/distribution/manifest", .distributionPoints(.manifest)),
        RouteSpec(.put, "/api/v1/distribution/status", .distributionPoints(.status)),
        RouteSpec(.get, "/api/v1/admin/multicast/sessions", .multicast(.list)),
        RouteSpec(.post, "/api/v1/admin/multicast/sessions", .multicast(.create)),
        RouteSpec(.get, "/api/v1/admin/multicast/sessions/{id}", .multicast(.session)),
        RouteSpec(.post, "/api/v1/admin/multicast/sessions/{id}/cancel", .multicast(.cancel)),
        RouteSpec(.delete, "/api/v1/admin/multicast/sessions/{id}", .multicast(.delete)),
        RouteSpec(.get, "/api/v1/multicast/sessions/{id}/manifest", .multicast(.manifest)),
        RouteSpec(.get, "/metrics", .metrics),
        RouteSpec(.get, "/dashboard", .dashboard),
        RouteSpec(.get, "/dashboard/deployments/{id}", .dashboardDeployment),
        RouteSpec(.get, "/dashboard/live", .dashboardLive),
        RouteSpec(.post, "/dashboard/machines/{id}/approve", .dashboardApprove),
        RouteSpec(.post, "/dashboard/machines/{id}/redeploy", .dashboardRedeploy),
        RouteSpec(.post, "/dashboard/deployments/{id}/reset-token", .dashboardResetToken),
        RouteSpec(.post, "/dashboard/login", .dashboardLogin),
        RouteSpec(.post, "/dashboard/logout", .dashboardLogout),
        RouteSpec(.get, "/dashboard/app.js", .dashboardScript),
        RouteSpec(.get, "/dashboard/app.css", .dashboardStyle),
        RouteSpec(.get, "/dashboard/images", .dashboardImages),
        RouteSpec(.get, "/dashboard/images/{name}", .dashboardImage),
        RouteSpec(.get, "/dashboard/distribution-points", .dashboardDistributionPoints),
        RouteSpec(.get, "/dashboard/multicast", .dashboardMulticast),
        RouteSpec(.get, "/dashboard/multicast/sessions", .dashboardMulticastAPI(.list)),
        RouteSpec(.post, "/dashboard/multicast/sessions", .dashboardMulticastAPI(.create)),
        RouteSpec(.get, "/dashboard/multicast/sessions/{id}", .dashboardMulticastAPI(.session)),
        RouteSpec(.post, "/dashboard/multicast/sessions/{id}/cancel", .dashboardMulticastAPI(.cancel)),
        RouteSpec(.delete, "/dashboard/multicast/sessions/{id}", .dashboardMulticastAPI(.delete)),
        RouteSpec(.get, "/dashboard/library", .dashboardLibrary(.overview)),
        RouteSpec(.post, "/dashboard/library/uploads/{name}", .dashboardLibrary(.uploadAnnounce)),
        RouteSpec(.put, "/dashboard/library/uploads/{name}", .dashboardLibrary(.uploadData)),
        RouteSpec(.post, "/dashboard/library/wims", .dashboardLibrary(.importWIM)),
        RouteSpec(.get, "/dashboard/library/wims/{id}", .dashboardLibrary(.wim)),
        RouteSpec(.delete, "/dashboard/library/wims/{id}", .dashboardLibrary(.deleteWIM)),
        RouteSpec(.post, "/dashboard/library/images", .dashboardLibrary(.extract)),
        RouteSpec(.get, "/dashboard/library/images/{name}", .dashboardLibrary(.image)),
        RouteSpec(.post, "/dashboard/library/images/{name}/versions/{version}/service", .dashboardLibrary(.service)),
        RouteSpec(.post, "/dashboard/library/images/{name}/versions/{version}/retire", .dashboardLibrary(.retire)),
        RouteSpec(.delete, "/dashboard/library/images/{name}/versions/{version}", .dashboardLibrary(.deleteVersion)),
        RouteSpec(.get, "/dashboard/library/jobs", .dashboardLibrary(.jobs)),
        RouteSpec(.get, "/dashboard/library/jobs/{id}", .dashboardLibrary(.job)),
    ]
}
