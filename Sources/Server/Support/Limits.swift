/// How much one client may make the server store, hold open or render. Each limit answers with
/// a status and a message that names it (413, 429), except events past a deployment's limit:
/// see `EventLimits`.
public struct ServerLimits: Sendable, Equatable {
    /// Events in one POST (an agent sends at most 200): 413 past it.
    public var eventsPerBatch = 1_000
    /// What one deployment's token may store.
    public var events = EventLimits()
    /// Concurrent `/dashboard/live` streams on this instance (each polls the database): 429 past it.
    public var liveStreams = 100
    /// Machines per page of the dashboard's list, and pending machines shown at once.
    public var machinesPerPage = 100
    /// Events per page of a deployment's log on the dashboard.
    public var eventsPerPage = 1_000
    /// Characters of one log line a dashboard page shows (the admin API has the whole event).
    public var logLineCharacters = 4_000
    /// Seconds a dashboard login lasts.
    public var sessionLifetime = 12 * 3600
    /// Failed dashboard logins one address may make within `failedLoginWindow` seconds before
    /// it waits (429): guessing the admin token stays out of reach.
    public var failedLogins = 10
    public var failedLoginWindow = 60
    /// The largest image a `captureImage` step, or an administrator into the library, may upload (bytes).
    public var captureBytes: UInt64 = 1 << 40

    public init() {}
}

/// What one deployment may store. Events past either limit are acknowledged but not stored, and
/// counted as refused in the answer: the agent resends whatever is not acknowledged, in order,
/// so an error status would stop its result (which is always stored) from ever arriving.
public struct EventLimits: Sendable, Equatable {
    /// Events numbered above this are not stored. Each number is stored once, so this bounds the
    /// count without counting rows.
    public var perDeployment = 50_000
    /// Bytes of stored event bodies (JSON) per deployment.
    public var bytesPerDeployment = 64 << 20

    public init(perDeployment: Int = 50_000, bytesPerDeployment: Int = 64 << 20) {
        self.perDeployment = perDeployment
        self.bytesPerDeployment = bytesPerDeployment
    }
}
