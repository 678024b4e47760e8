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
    /// Other places that hold copies of files under some URL prefix (distribution points that
    /// mirror the server's content). `download`, `stream` and `HTTPRangeReader` use them;
    /// small fetches and posts never do (they want the server's own answer).
    public var mirrors: [ContentMirrors]
    /// Polled during transfers and between retries; returning true ends with `.cancelled`.
    public var isCancelled: @Sendable () -> Bool

    public init(connectTimeout: Double = 15, stallTimeout: Double = 30, retries: Int = 5,
                retryDelay: Double = 1, maxRetryDelay: Double = 30, caBundle: String? = nil,
                bearerToken: BearerToken? = nil, userAgent: String = "imprint/0.1", maxRedirects: Int = 5,
                mirrors: [ContentMirrors] = [], isCancelled: @escaping @Sendable () -> Bool = { false }) {
        self.connectTimeout = connectTimeout
        self.stallTimeout = stallTimeout
        self.retries = retries
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self.caBundle = caBundle
        self.bearerToken = bearerToken
        self.userAgent = userAgent
        self.maxRedirects = maxRedirects
        self.mirrors = mirrors
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
    /// Who sent the bytes of this run, in file order (bytes an earlier run left in the
    /// `.partial` file are not counted).
    public var sources: [ServedBytes] = []
    /// Sources that failed or were passed over on the way, the last reason of each.
    public var failures: [SourceFailure] = []
    /// The copies of the mirrors did not add up to the SHA-256 expected: the file was fetched
    /// again from the URL itself, and `sources` describes that second transfer.
    public var refetchedFromOrigin = false
    /// Whether mirrors held candidate copies of the URL (`TransferOptions.mirrors`).
    public var mirrored = false

    /// "served by A: 120.0 MiB; then B: 80.0 MiB (…)", or "" when the URL had no copies:
    /// nothing to add to a log line then.
    public var sourcesSummary: String {
        ServedBytes.summary(mirrored: mirrored, sources, failures, refetched: refetchedFromOrigin)
    }
}

public struct StreamResult: Sendable, Equatable {
    public var bytes: UInt64
    public var sha256: String
    public var resumes: Int
    /// Who delivered which bytes, in stream order.
    public var sources: [ServedBytes] = []
    public var failures: [SourceFailure] = []
    public var mirrored = false

    public var sourcesSummary: String { ServedBytes.summary(mirrored: mirrored, sources, failures, refetched: false) }
}

/// A URL prefix and the other places holding the same tree: a URL starting with `prefix` is
/// tried at each alternative + the rest of the URL, in order, and then at itself. Each
/// alternative should end with "/" as the prefix does (they are joined as strings).
public struct ContentMirrors: Sendable, Equatable {
    public var prefix: String
    public var alternatives: [String]

    public init(prefix: String, alternatives: [String]) {
        self.prefix = prefix
        self.alternatives = alternatives
    }
}

/// `bytes` of a file, in a row, sent by `url` (the mirror's own URL of the file).
public struct ServedBytes: Sendable, Equatable {
    public var url: String
    public var bytes: UInt64

    public init(url: String, bytes: UInt64) {
        self.url = url
        self.bytes = bytes
    }
}

/// Why a source did not (or not completely) serve a file.
public struct SourceFailure: Sendable, Equatable {
    public var url: String
    /// The error in the technician's words, without the URL.
    public var reason: String
    /// True when the source was not asked again for this file (it answered 404, holds a file
    /// of another size, cannot serve ranges); false for a failure worth another try.
    public var passedOver: Bool

    public init(url: String, reason: String, passedOver: Bool) {
        self.url = url
        self.reason = reason
        self.passedOver = passedOver
    }
}

public struct RemoteFile: Sendable, Equatable {
    public var size: UInt64?
    public var acceptsRanges: Bool
    public var etag: String?
    public var lastModified: String?
}
