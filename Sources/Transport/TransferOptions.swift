/// How patient and how authenticated a transfer is. Times are in seconds.
public struct TransferOptions: Sendable {
    public var connectTimeout: Double
    /// Abort an attempt that moves less than 1 byte/s for this long (a dead link without a RST).
    public var stallTimeout: Double
    /// Retries after the first attempt; an attempt that made progress does not use one up.
    public var retries: Int
    /// The first pause between attempts, doubled each time up to `maxRetryDelay`.
    public var retryDelay: Double
    public var maxRetryDelay: Double
    /// PEM bundle of trusted CAs; nil keeps the system's.
    public var caBundle: String?
    /// Sent as `Authorization: Bearer` only to requests (and redirect hops) on its own origin.
    public var bearerToken: BearerToken?
    public var userAgent: String
    public var maxRedirects: Int
    /// Polled during transfers and between retries; returning true ends with `.cancelled`.
    public var isCancelled: @Sendable () -> Bool

    public init(connectTimeout: Double = 15, stallTimeout: Double = 30, retries: Int = 5,
                retryDelay: Double = 1, maxRetryDelay: Double = 30, caBundle: String? = nil,
                bearerToken: BearerToken? = nil, userAgent: String = "imprint/0.1", maxRedirects: Int = 5,
                isCancelled: @escaping @Sendable () -> Bool = { false }) {
        self.connectTimeout = connectTimeout
        self.stallTimeout = stallTimeout
        self.retries = retries
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.caBundle = caBundle
        self.bearerToken = bearerToken
        self.userAgent = userAgent
        self.maxRedirects = maxRedirects
        self.isCancelled = isCancelled
    }
}

public struct TransferProgress: Sendable, Equatable {
    /// Bytes done, including any part resumed from an earlier attempt or run.
    public var bytes: UInt64
    public var total: UInt64?
    /// Smoothed over the last seconds so a display does not flicker.
    public var bytesPerSecond: Double
}

public struct DownloadResult: Sendable, Equatable {
    public var bytes: UInt64
    public var sha256: String
    /// How many times the transfer continued from a byte offset rather than from zero.
    public var resumes: Int
}

public struct StreamResult: Sendable, Equatable {
    public var bytes: UInt64
    public var sha256: String
    public var resumes: Int
}

public struct RemoteFile: Sendable, Equatable {
    public var size: UInt64?
    public var acceptsRanges: Bool
    public var etag: String?
    public var lastModified: String?
}
