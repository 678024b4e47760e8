import CCurl
import Foundation
import Synchronization

/// curl_global_init is not thread-safe; a static let runs exactly once under swift_once.
enum CurlGlobal {
    static let ready: Bool = curl_global_init(3 /* CURL_GLOBAL_ALL */) == CURLE_OK
}

struct CurlRequest {
    /// PUT sends its body as a POST does, under the PUT verb; `putFile` streams a region of
    /// an open file as the body (an upload), read as curl asks for it.
    enum Method { case get, head, post(Data), put(Data), putFile(FileRegion) }

    /// Bytes `offset..<offset+length` of the open file `fd`.
    struct FileRegion {
        var fd: Int32
        var offset: UInt64
        var length: UInt64
    }
    var url: String
    var method: Method = .get
    /// CURLOPT_RANGE syntax: "N-" or "A-B".
    var range: String?
    var headers: [String] = []
    /// When true, 4xx/5xx bodies go to `errorBody` (first 300 bytes) instead of the handlers.
    var captureErrors = true
}

struct CurlResponse {
    var code: CURLcode = CURLE_OK
    var errorText = ""
    var status = 0
    var headers: [String: String] = [:]
    var errorBody = Data()
    /// Thrown by a handler; ends the attempt and is final.
    var failure: TransportError?
    /// A handler asked to stop without an error (the caller knows why).
    var stopped = false
    var cancelled = false
    /// No byte arrived for `stallTimeout` seconds.
    var stalled = false
    /// A 3xx with a Location: `performCurl` follows it itself, so its body goes nowhere.
    var redirected = false
    /// An upload's file could not be read (errno).
    var uploadError: Int32 = 0

    var errorMessage: String {
        let text = String(decoding: errorBody.prefix(300), as: UTF8.self)
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
            .map { $0.isNewline ? " " : $0 }.reduce(into: "") { $0.append($1) }
    }

    func header(_ name: String) -> String? { headers[name] }
    var contentLength: UInt64? { headers["content-length"].flatMap { UInt64($0) } }
    var etag: String? { headers["etag"] }
    var lastModified: String? { headers["last-modified"] }
}

/// Parses `bytes A-B/T` or `bytes */T`.
struct ContentRange: Equatable {
    var start: UInt64?
    var end: UInt64?
    var total: UInt64?

    init?(_ value: String?) {
        guard let value, value.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = value.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "/", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        total = UInt64(parts[1])
        if parts[0] == "*" { return }
        let bounds = parts[0].split(separator: "-", maxSplits: 1)
        guard bounds.count == 2, let a = UInt64(bounds[0]), let b = UInt64(bounds[1]), a <= b else { return nil }
        start = a
        end = b
    }
}

/// The state one transfer's C callbacks reach through their context pointer.
final class CurlTransfer {
    typealias Begin = (_ status: Int, _ response: CurlResponse) throws(TransportError) -> Bool
    typealias Body = (UnsafeRawBufferPointer) throws(TransportError) -> Void

    let handle: UnsafeMutableRawPointer
    let captureErrors: Bool
    let begin: Begin
    let body: Body
    let isCancelled: @Sendable () -> Bool
    let stallNanoseconds: UInt64
    var response = CurlResponse()
    var began = false
    /// The file region an upload sends, and how much of it curl has taken.
    var upload: CurlRequest.FileRegion?
    var uploaded: UInt64 = 0
    var uploadError: Int32 = 0
    private var lastBytes: curl_off_t = -1
    private var lastMovement = DispatchTime.now().uptimeNanoseconds

    init(handle: UnsafeMutableRawPointer, captureErrors: Bool, stallTimeout: Double,
         isCancelled: @escaping @Sendable () -> Bool, begin: @escaping Begin, body: @escaping Body) {
        self.handle = handle
        self.stallNanoseconds = UInt64(max(0.1, stallTimeout) * 1e9)
        self.captureErrors = captureErrors
        self.isCancelled = isCancelled
        self.begin = begin
        self.body = body
    }

    /// Called once the final response's headers are known: at the first body byte, or after
    /// the transfer when there was no body.
    func start() -> Bool {
        began = true
        var status = 0
        _ = imprint_curl_get_long(handle, CURLINFO_RESPONSE_CODE, &status)
        response.status = status
        if redirectStatuses.contains(status) && response.headers["location"] != nil {
            response.redirected = true
            return true
        }
        if captureErrors && status >= 400 { return true }
        do {
            if try !begin(status, response) {
                response.stopped = true
                return false
            }
        } catch {
            response.failure = error
            return false
        }
        return true
    }

    /// curl's own low-speed check averages over a 5 s window, so a burst followed by silence
    /// goes unnoticed that long; this one measures the silence itself.
    func progress(received: curl_off_t) -> Bool {
        if isCancelled() {
            response.cancelled = true
            return false
        }
        let now = DispatchTime.now().uptimeNanoseconds
        if received != lastBytes {
            lastBytes = received
            lastMovement = now
        } else if now &- lastMovement > stallNanoseconds {
            response.stalled = true
            return false
        }
        return true
    }

    func receive(_ chunk: UnsafeRawBufferPointer) -> Bool {
        if !began && !start() { return false }
        if response.redirected { return true }
        if captureErrors && response.status >= 400 {
            response.errorBody.append(contentsOf: chunk.prefix(300 - min(300, response.errorBody.count)))
            // The rest of an error page is of no use; stopping early saves the transfer.
            return response.errorBody.count < 300
        }
        do { try body(chunk) } catch {
            response.failure = error
            return false
        }
        return true
    }

    /// Fills curl's buffer with the next bytes of the upload; 0 at the end, abort on a read error.
    func readUpload(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let region = upload else { return 0 }
        let want = Int(min(UInt64(buffer.count), region.length - uploaded))
        guard want > 0 else { return 0 }
        while true {
            let n = pread(region.fd, buffer.baseAddress, want, off_t(region.offset + uploaded))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                uploadError = n < 0 ? errno : EIO
                return Int(CURL_READFUNC_ABORT)
            }
            uploaded += UInt64(n)
            return n
        }
    }

    /// Ready for the next hop of a redirect: a new response, and the stall clock restarted.
    func resetForNextHop() {
        response = CurlResponse()
        began = false
        lastBytes = -1
        lastMovement = DispatchTime.now().uptimeNanoseconds
    }

    func header(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        // Each response (redirects, 100 Continue) starts with a status line; keep the last's.
        if trimmed.hasPrefix("HTTP/") {
            response.headers = [:]
            return
        }
        guard let colon = trimmed.firstIndex(of: ":") else { return }
        let name = trimmed[..<colon].lowercased()
        let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        response.headers[name] = value
    }
}

private func curlWrite(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
                       _ context: UnsafeMutableRawPointer?) -> Int {
    guard let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    return transfer.receive(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
}

private func curlRead(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
                      _ context: UnsafeMutableRawPointer?) -> Int {
    guard let context, let data else { return Int(CURL_READFUNC_ABORT) }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    return transfer.readUpload(into: UnsafeMutableRawBufferPointer(start: data, count: size * count))
}

private func curlHeader(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
                        _ context: UnsafeMutableRawPointer?) -> Int {
    guard let context, let data else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    transfer.header(String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self))
    return length
}

private func curlProgress(_ context: UnsafeMutableRawPointer?, _ dltotal: curl_off_t, _ dlnow: curl_off_t,
                          _ ultotal: curl_off_t, _ ulnow: curl_off_t) -> Int32 {
    guard let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    return transfer.progress(received: dlnow + ulnow) ? 0 : 1
}

/// The statuses whose Location `performCurl` follows.
let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

/// Easy handles kept between requests, so that the requests of one client to a server share
/// its open connections (HTTP keep-alive; over https one TLS handshake, not one a request): a
/// WIM read in place asks for one 4 MiB block at a time, and each block used to open a new
/// connection. A handle serves one request at a time; `curl_easy_reset` on its way back clears
/// its options, among them the pointers into the finished request, and keeps its connections.
final class CurlHandles: Sendable {
    /// A `CURL *`: curl lets a handle move between threads as long as one uses it at a time,
    /// which `take`/`giveBack` ensure.
    struct Handle: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }
    /// Idle handles kept; a handle beyond them is closed with its connections. A read-ahead, a
    /// download and the events of one agent use a few at once.
    static let keptIdle = 4
    private let idle = Mutex<[Handle]>([])

    /// An idle handle, or a new one; nil when libcurl cannot start.
    func take() -> Handle? {
        if let handle = idle.withLock({ $0.popLast() }) { return handle }
        guard CurlGlobal.ready, let pointer = curl_easy_init() else { return nil }
        return Handle(pointer: pointer)
    }

    func giveBack(_ handle: Handle) {
        curl_easy_reset(handle.pointer)
        let closing = idle.withLock { idle -> Handle? in
            guard idle.count < Self.keptIdle else { return handle }
            idle.append(handle)
            return nil
        }
        if let closing { curl_easy_cleanup(closing.pointer) }
    }

    deinit {
        for handle in idle.withLock({ $0 }) { curl_easy_cleanup(handle.pointer) }
    }
}

/// Runs one HTTP request on a handle of `handles` (its open connections reused). `begin` sees
/// the status and headers before any body byte and may stop (false) or fail; `body` receives
/// the body in order.
func performCurl(_ request: CurlRequest, options: TransferOptions, handles: CurlHandles,
                 begin: @escaping CurlTransfer.Begin, body: @escaping CurlTransfer.Body,
                 uploaded: ((UInt64) -> Void)? = nil) -> CurlResponse {
    guard let taken = handles.take() else {
        var response = CurlResponse()
        response.code = CURLE_FAILED_INIT
        response.errorText = "libcurl could not be initialised"
        return response
    }
    defer { handles.giveBack(taken) }
    let handle = taken.pointer
    let transfer = CurlTransfer(handle: handle, captureErrors: request.captureErrors,
                                stallTimeout: options.stallTimeout, isCancelled: options.isCancelled, begin: begin, body: body)
    let context = Unmanaged.passUnretained(transfer).toOpaque()
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    defer { errorBuffer.deallocate() }

    // Redirects are followed here, not by curl, so that every hop decides for itself whether
    // the bearer token goes with it: only a hop on the token's own origin carries it. (curl ≥
    // 7.83 would also drop a custom Authorization header on another host or port, but that is
    // its policy, not ours to depend on unseen; UNRESTRICTED_AUTH stays off all the same.)
    _ = imprint_curl_set_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
    _ = imprint_curl_set_long(handle, CURLOPT_FOLLOWLOCATION, 0)
    _ = imprint_curl_set_long(handle, CURLOPT_UNRESTRICTED_AUTH, 0)
    _ = imprint_curl_set_long(handle, CURLOPT_NOSIGNAL, 1)
    // Received bytes come in pieces of this size (16 KiB by default): an image's megabytes
    // then cost a few hundred calls each, not thousands (system calls and copies on cores
    // that are decoding what arrives).
    _ = imprint_curl_set_long(handle, CURLOPT_BUFFERSIZE, 256 << 10)
    _ = imprint_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(max(0.001, options.connectTimeout) * 1000))
    _ = imprint_curl_set_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1)
    _ = imprint_curl_set_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, Int(options.stallTimeout.rounded(.up))))
    _ = imprint_curl_set_string(handle, CURLOPT_USERAGENT, options.userAgent)
    if let bundle = options.caBundle { _ = imprint_curl_set_string(handle, CURLOPT_CAINFO, bundle) }
    _ = imprint_curl_set_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
    if let range = request.range { _ = imprint_curl_set_string(handle, CURLOPT_RANGE, range) }
    _ = imprint_curl_set_write(handle, curlWrite, context)
    _ = imprint_curl_set_header_callback(handle, curlHeader, context)
    _ = imprint_curl_set_progress(handle, curlProgress, context)

    var url = request.url
    var method = request.method
    var hops = 0
    while true {
        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        var headers = request.headers
        if let token = options.bearerToken, token.belongs(to: url) { headers.append("Authorization: Bearer \(token.value)") }
        // curl would otherwise send "Expect: 100-continue" for larger POSTs and wait a second.
        headers.append("Expect:")
        for line in headers { headerList = curl_slist_append(headerList, line) }
        _ = imprint_curl_set_list(handle, CURLOPT_HTTPHEADER, headerList)
        _ = imprint_curl_set_string(handle, CURLOPT_URL, url)
        switch method {
        case .get: _ = imprint_curl_set_long(handle, CURLOPT_HTTPGET, 1)
        case .head: _ = imprint_curl_set_long(handle, CURLOPT_NOBODY, 1)
        case let .post(data), let .put(data):
            _ = imprint_curl_set_long(handle, CURLOPT_POST, 1)
            if case .put = method { _ = imprint_curl_set_string(handle, CURLOPT_CUSTOMREQUEST, "PUT") }
            _ = imprint_curl_set_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(data.count))
            // COPYPOSTFIELDS copies, so the bytes need not outlive this call.
            data.withUnsafeBytes { bytes in
                let pointer = UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(errorBuffer))
                _ = imprint_curl_set_pointer(handle, CURLOPT_COPYPOSTFIELDS, pointer)
            }
        case let .putFile(region):
            transfer.upload = region
            transfer.uploaded = 0
            _ = imprint_curl_set_long(handle, CURLOPT_UPLOAD, 1)
            _ = imprint_curl_set_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(region.length))
            _ = imprint_curl_set_read(handle, curlRead, context)
        }

        let code = withExtendedLifetime(transfer) { curl_easy_perform(handle) }
        transfer.response.code = code
        if transfer.upload != nil {
            uploaded?(transfer.uploaded)
            transfer.response.uploadError = transfer.uploadError
        }
        if code == CURLE_OK && !transfer.began { _ = transfer.start() }
        guard code == CURLE_OK, transfer.response.redirected else { break }
        var next: UnsafeMutablePointer<CChar>?
        _ = imprint_curl_get_string(handle, CURLINFO_REDIRECT_URL, &next)
        guard let next else {
            transfer.response.code = CURLE_UNSUPPORTED_PROTOCOL
            transfer.response.errorText = "the server redirected to \((transfer.response.headers["location"] ?? "").debugDescription), which is not a usable URL"
            return transfer.response
        }
        let location = String(cString: next)
        hops += 1
        if hops > options.maxRedirects {
            transfer.response.code = CURLE_TOO_MANY_REDIRECTS
            transfer.response.errorText = "more than \(options.maxRedirects) redirects (the last to \(location))"
            return transfer.response
        }
        guard Origin(url: location) != nil else {
            transfer.response.code = CURLE_UNSUPPORTED_PROTOCOL
            transfer.response.errorText = "the server redirected to \(location), which is not an http or https URL"
            return transfer.response
        }
        // As browsers and curl do: 303 always, and 301/302 after a POST, continue with a GET.
        let status = transfer.response.status
        if case .putFile = method {
            // An upload's body cannot be sent twice from here: the caller asks the server again.
            transfer.response.code = CURLE_UNSUPPORTED_PROTOCOL
            transfer.response.errorText = "the server redirected an upload to \(location); uploads are not redirected"
            return transfer.response
        }
        if case .post = method, status == 301 || status == 302 || status == 303 { method = .get }
        if case .put = method, status == 303 { method = .get }
        url = location
        transfer.resetForNextHop()
    }
    let code = transfer.response.code
    if code != CURLE_OK {
        let detail = String(cString: errorBuffer)
        let summary = String(cString: curl_easy_strerror(code))
        transfer.response.errorText = detail.isEmpty || detail == summary ? summary : "\(summary): \(detail)"
        if transfer.response.status == 0 {
            var status = 0
            _ = imprint_curl_get_long(handle, CURLINFO_RESPONSE_CODE, &status)
            transfer.response.status = status
        }
    }
    return transfer.response
}

/// Failures worth another attempt: the network or the server, never the request or TLS trust.
func isRetryable(_ code: CURLcode) -> Bool {
    let permanent: [CURLcode] = [
        CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_TOO_MANY_REDIRECTS,
        CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM,
        CURLE_ABORTED_BY_CALLBACK, CURLE_WRITE_ERROR, CURLE_BAD_FUNCTION_ARGUMENT,
        CURLE_FAILED_INIT, CURLE_OUT_OF_MEMORY, CURLE_BAD_CONTENT_ENCODING,
    ]
    return !permanent.contains(code)
}

func isRetryable(status: Int) -> Bool { status >= 500 || status == 408 || status == 429 }

/// Only http and https, with nothing curl or a server could read two ways.
func validateURL(_ url: String) throws(TransportError) {
    let lower = url.lowercased()
    guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), url.count > 8 else {
        throw .invalidURL(url)
    }
    for scalar in url.unicodeScalars where scalar.value <= 0x20 || scalar.value == 0x7f {
        throw .invalidURL(url)
    }
}
