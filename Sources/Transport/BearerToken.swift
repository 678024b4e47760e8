import CCurl
import Foundation

/// Where a request goes, as a browser judges "same origin": scheme, host and port. Parsed by
/// libcurl's own URL parser, so the origin a token is checked against is the one curl connects to.
public struct Origin: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String
    /// Lower case; an IPv6 address keeps its brackets.
    public var host: String
    /// Always set: the scheme's default port when the URL names none.
    public var port: Int

    /// Nil when `url` is not an absolute http(s) URL with a host.
    public init?(url: String) {
        guard let handle = curl_url() else { return nil }
        defer { curl_url_cleanup(handle) }
        guard curl_url_set(handle, CURLUPART_URL, url, 0) == CURLUE_OK else { return nil }
        func part(_ which: CURLUPart, _ flags: UInt32 = 0) -> String? {
            var pointer: UnsafeMutablePointer<CChar>?
            guard curl_url_get(handle, which, &pointer, flags) == CURLUE_OK, let pointer else { return nil }
            defer { curl_free(pointer) }
            return String(cString: pointer)
        }
        guard let scheme = part(CURLUPART_SCHEME)?.lowercased(), scheme == "http" || scheme == "https",
              let host = part(CURLUPART_HOST)?.lowercased(), !host.isEmpty,
              let portText = part(CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT)), let port = Int(portText) else { return nil }
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    public var description: String { "\(scheme)://\(host):\(port)" }
}

/// A deployment's bearer token and the one origin it belongs to: the deployment server's. A
/// sequence may name mirrors, driver indexes and redirects anywhere; none of them ever sees it.
public struct BearerToken: Sendable, Equatable {
    public var value: String
    public var origin: Origin

    public init(value: String, origin: Origin) {
        self.value = value
        self.origin = origin
    }

    /// Nil when `serverURL` has no usable origin: then the token cannot be sent anywhere.
    public init?(_ value: String, for serverURL: String) {
        guard let origin = Origin(url: serverURL) else { return nil }
        self.init(value: value, origin: origin)
    }

    /// Whether a request to `url` may carry this token.
    public func belongs(to url: String) -> Bool { Origin(url: url) == origin }
}
