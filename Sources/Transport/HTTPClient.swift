import CCurl
import Digests
import Foundation

/// All HTTP(S) of the agent: downloads that survive drops and reboots of the link, streams
/// fed to a decoder, small fetches and event posts. One curl easy handle per attempt.
public final class HTTPClient: Sendable {
    public let options: TransferOptions
    /// Free bytes of the folder holding a path; the tests substitute a small disk.
    let freeSpace: @Sendable (String) -> UInt64?

    public convenience init(options: TransferOptions = TransferOptions()) {
        self.init(options: options, freeSpace: HTTPClient.statvfsFreeSpace)
    }

    /// This client's curl handles and their open connections, reused request after request.
    private let handles = CurlHandles()

    init(options: TransferOptions, freeSpace: @escaping @Sendable (String) -> UInt64?) {
        self.options = options
        self.freeSpace = freeSpace
    }

    func perform(_ request: CurlRequest, begin: @escaping CurlTransfer.Begin, body: @escaping CurlTransfer.Body,
                 uploaded: ((UInt64) -> Void)? = nil) -> CurlResponse {
        performCurl(request, options: options, handles: handles, begin: begin, body: body, uploaded: uploaded)
    }

    static func statvfsFreeSpace(_ folder: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(folder, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    // MARK: Retries

    enum Attempt<T> {
        case done(T)
        /// Worth another try; `progressed` attempts do not use up a retry.
        case retry(TransportError, progressed: Bool)
        /// Start over at once (the remote file changed, the server ignored a range).
        case restart
    }

    func withRetries<T>(_ url: String, _ body: (_ attempt: Int) throws(TransportError) -> Attempt<T>) throws(TransportError) -> T {
        // One source: every retry is a round of its own, paused and counted as it always was.
        var sources = SourceList(url)
        return try withSources(&sources) { _, attempt throws(TransportError) -> SourceAttempt<T> in
            switch try body(attempt) {
            case let .done(value): return .done(value)
            case let .retry(error, progressed): return .retry(error, progressed: progressed)
            case .restart: return .restart
            }
        }
    }

    func pause(_ seconds: Double, url: String) throws(TransportError) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if options.isCancelled() { throw .cancelled(url: url) }
            Thread.sleep(forTimeInterval: min(0.05, max(0, deadline.timeIntervalSinceNow)))
        }
    }

    /// Turns an unsuccessful response into the error to report and whether to try again.
    /// Returns nil for a usable 2xx/3xx response.
    func failure(of response: CurlResponse, url: String, attempt: Int, offset: UInt64? = nil) throws(TransportError) -> TransportError? {
        if let failure = response.failure { throw failure }
        if response.cancelled || options.isCancelled() { throw .cancelled(url: url) }
        if response.status >= 400 {
            let error = TransportError.http(url: url, status: response.status, message: response.errorMessage)
            guard isRetryable(status: response.status) else { throw error }
            return error
        }
        guard response.code == CURLE_OK else {
            let at = offset.map { " at byte \($0)" } ?? ""
            if response.stalled {
                let reason = "no data arrived for \(options.stallTimeout) s\(at)"
                return .network(url: url, reason: reason, attempts: attempt)
            }
            let error = TransportError.network(url: url, reason: response.errorText + at, attempts: attempt)
            guard isRetryable(response.code) else { throw error }
            return error
        }
        return nil
    }

    // MARK: HEAD

    public func head(_ url: String) throws(TransportError) -> RemoteFile {
        try validateURL(url)
        return try withRetries(url) { attempt throws(TransportError) -> Attempt<RemoteFile> in
            let response = perform(CurlRequest(url: url, method: .head), begin: { _, _ in true }, body: { _ in })
            if let error = try failure(of: response, url: url, attempt: attempt) {
                return .retry(error, progressed: false)
            }
            let ranges = response.header("accept-ranges")?.lowercased().contains("bytes") ?? false
            return .done(RemoteFile(size: response.contentLength, acceptsRanges: ranges,
                                    etag: response.etag, lastModified: response.lastModified))
        }
    }

    // MARK: Small bodies

    /// A whole small body (sequence, template, index) in memory, retried from zero.
    public func fetch(_ url: String, limit: Int = 16 << 20) throws(TransportError) -> Data {
        try validateURL(url)
        return try withRetries(url) { attempt throws(TransportError) -> Attempt<Data> in
            var data = Data()
            let response = perform(CurlRequest(url: url), begin: { _, response throws(TransportError) in
                if let length = response.contentLength, length > UInt64(limit) { throw .tooLarge(url: url, limit: limit) }
                return true
            }, body: { chunk throws(TransportError) in
                guard data.count + chunk.count <= limit else { throw .tooLarge(url: url, limit: limit) }
                data.append(contentsOf: chunk)
            })
            if let error = try failure(of: response, url: url, attempt: attempt, offset: UInt64(data.count)) {
                return .retry(error, progressed: false)
            }
            if let length = response.contentLength, UInt64(data.count) != length {
                return .retry(.truncated(url: url, received: UInt64(data.count), expected: length), progressed: false)
            }
            return .done(data)
        }
    }

    /// Posts JSON. A 4xx is returned, never retried (the request itself is wrong); network
    /// errors and 5xx are retried per `options`, so the call is bounded in time.
    public func post(_ url: String, json: Data, limit: Int = 1 << 20) throws(TransportError) -> (status: Int, body: Data) {
        try send(url, .post(json), limit: limit)
    }

    /// Puts JSON, answered as `post` is.
    public func put(_ url: String, json: Data, limit: Int = 1 << 20) throws(TransportError) -> (status: Int, body: Data) {
        try send(url, .put(json), limit: limit)
    }

    private func send(_ url: String, _ method: CurlRequest.Method, limit: Int) throws(TransportError) -> (status: Int, body: Data) {
        try validateURL(url)
        return try withRetries(url) { attempt throws(TransportError) -> Attempt<(status: Int, body: Data)> in
            var data = Data()
            var request = CurlRequest(url: url, method: method)
            request.headers = ["Content-Type: application/json", "Accept: application/json"]
            request.captureErrors = false
            let response = perform(request, begin: { _, _ in true }, body: { chunk throws(TransportError) in
                guard data.count + chunk.count <= limit else { throw .tooLarge(url: url, limit: limit) }
                data.append(contentsOf: chunk)
            })
            // A 4xx means the request itself is wrong: repeating it cannot help, the caller decides.
            if (400..<500).contains(response.status), response.failure == nil, !response.cancelled {
                return .done((response.status, data))
            }
            var judged = response
            judged.errorBody = data.prefix(300)
            if let error = try failure(of: judged, url: url, attempt: attempt) {
                return .retry(error, progressed: false)
            }
            return .done((response.status, data))
        }
    }

    // MARK: Uploads

    /// What one upload attempt got back: the status, the (small) body and the headers; the
    /// bytes of the file curl had taken when it ended, whatever the outcome.
    public struct UploadAnswer: Sendable {
        public var status: Int
        public var body: Data
        public var headers: [String: String]
        public var sent: UInt64
    }

    /// PUTs bytes `offset..<offset+length` of the open file `fd` to `url` with `headers`, in one
    /// attempt: a resumable upload protocol decides what follows a failure, so nothing is
    /// retried here. Any HTTP status is returned; a network failure, a stall or a read error of
    /// the file throws.
    public func putFile(_ url: String, fd: Int32, offset: UInt64, length: UInt64, headers: [String],
                        limit: Int = 1 << 20) throws(TransportError) -> UploadAnswer {
        try validateURL(url)
        var data = Data()
        var request = CurlRequest(url: url, method: .putFile(.init(fd: fd, offset: offset, length: length)))
        request.headers = headers + ["Content-Type: application/octet-stream", "Accept: application/json"]
        request.captureErrors = false
        var sent: UInt64 = 0
        let response = perform(request, begin: { _, _ in true }, body: { chunk throws(TransportError) in
            guard data.count + chunk.count <= limit else { throw .tooLarge(url: url, limit: limit) }
            data.append(contentsOf: chunk)
        }, uploaded: { sent = $0 })
        if let failure = response.failure { throw failure }
        if response.cancelled || options.isCancelled() { throw .cancelled(url: url) }
        if response.uploadError != 0 {
            throw .network(url: url, reason: "reading the file to send at byte \(offset + sent): \(String(cString: strerror(response.uploadError)))",
                           attempts: 1)
        }
        guard response.code == CURLE_OK || response.status >= 400 else {
            let reason = response.stalled ? "nothing moved for \(options.stallTimeout) s" : response.errorText
            throw .network(url: url, reason: reason + " after \(sent) bytes of the upload", attempts: 1)
        }
        return UploadAnswer(status: response.status, body: data, headers: response.headers, sent: sent)
    }

    // MARK: Downloads

    /// Downloads to `path` through `path.partial`, resuming after drops and across runs, and
    /// renames into place only once the whole file is verified and on disk. With mirrors of
    /// the URL (`options.mirrors`) each copy is tried in order and a failure moves to the next
    /// one, which continues at the same byte.
    public func download(_ url: String, to path: String, expectedSHA256: String?,
                         progress: (TransferProgress) -> Void) throws(TransportError) -> DownloadResult {
        try validateURL(url)
        let expected = expectedSHA256?.lowercased()
        let partial = try PartialFile(path: path + ".partial")
        var done = false
        defer { if !done { partial.close() } }
        let hasher = SHA256Hasher()
        var version = partial.savedVersion()
        if let expected, let kept = version.sha256, kept != expected, partial.size > 0 {
            // Bytes kept for another file (the sequence names new content at the same path).
            try partial.reset(hasher)
            version = PartialFile.Version()
            partial.saveVersion(version)
        }
        try partial.hashExisting(into: hasher)
        let kept = partial.size
        var sources = options.sources(for: url)
        var resumes = 0
        var refetched = false
        let folder = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        var digest = ""

        try withoutActuallyEscaping(progress) { progress throws(TransportError) in
            var meter = ProgressMeter(report: progress)
            // The whole file's size: announced by a source in this run, or recorded with the bytes kept.
            var total: UInt64? = partial.size > 0 ? version.size : nil

            /// Grows the partial file to the whole file, continuing at its size at every source.
            func fill(_ sources: inout SourceList) throws(TransportError) {
                try withSources(&sources) { sources, attempt throws(TransportError) -> SourceAttempt<Void> in
                    let source = sources.url, isOrigin = sources.isOrigin
                    let start = partial.size
                    // Versions announced earlier: by the server that sent the bytes on disk (any
                    // run; partials made before mirrors existed came from the URL itself), and by
                    // this source in this run. ETags of different servers never compare.
                    let keptServer = Origin(url: version.source ?? sources.origin)
                    let keptVersion = keptServer == Origin(url: source) ? version.validator : nil
                    let announced = sources.validator
                    var restart = false, wasReset = false
                    var passOver: TransportError?
                    var accepted: Validator?
                    var request = CurlRequest(url: source)
                    if start > 0 { request.range = "\(start)-" }
                    let response = perform(request, begin: { status, response throws(TransportError) in
                        let current = Validator(response)
                        // Bytes on disk that this source's file cannot continue: the URL itself
                        // is the authority (they go, it starts over); a mirror is passed over.
                        func mismatch(_ error: TransportError) throws(TransportError) -> Bool {
                            if isOrigin {
                                try partial.reset(hasher)
                                wasReset = true
                                restart = true
                            } else {
                                passOver = error
                            }
                            return false
                        }
                        var size: UInt64?
                        if status == 206 {
                            let range = ContentRange(response.header("content-range"))
                            guard let range, range.start == start else {
                                return try mismatch(.unexpectedResponse(url: source, detail: "asked for bytes from \(start), it sent Content-Range \(response.header("content-range") ?? "none")"))
                            }
                            if current.differs(from: keptVersion) || current.differs(from: announced) {
                                let before = announced ?? keptVersion
                                return try mismatch(.remoteChanged(url: source, detail: "\(before.map { "\($0)" } ?? "the version") became \(current)"))
                            }
                            size = range.total ?? response.contentLength.map { $0 + start }
                        } else {
                            if start > 0 {
                                guard isOrigin else {
                                    passOver = .unexpectedResponse(url: source, detail: "it ignored the request for bytes from \(start) (HTTP \(status)), so it cannot continue the file")
                                    return false
                                }
                                // The URL itself sends the whole file again: that is what there is.
                                try partial.reset(hasher)
                                wasReset = true
                            }
                            size = response.contentLength
                        }
                        if partial.size > 0, let total, let size, size != total {
                            return try mismatch(.remoteChanged(url: source, detail: "its copy has \(size) bytes, the file being continued has \(total): another version"))
                        }
                        if status == 206 { resumes += 1 }
                        total = size ?? (partial.size > 0 ? total : nil)
                        version = PartialFile.Version(validator: current, source: source, size: total, sha256: expected)
                        partial.saveVersion(version)
                        accepted = current
                        if let total, total > partial.size, let available = self.freeSpace(folder), available < total - partial.size {
                            throw .noSpace(path: folder, needed: total - partial.size, available: available)
                        }
                        return true
                    }, body: { chunk throws(TransportError) in
                        try partial.append(chunk)
                        hasher.update(chunk)
                        meter.update(partial.size, total: total)
                    })
                    if let accepted { sources.remember(accepted) }
                    if wasReset { sources.forgetServed() }
                    sources.record(partial.size - (wasReset ? 0 : start))
                    if let passOver { return .passOver(passOver) }
                    if restart { return .restart }
                    // A partial that is already whole (the previous run died before renaming).
                    if response.status == 416, start > 0 {
                        let remoteTotal = ContentRange(response.header("content-range"))?.total
                        if remoteTotal == start, isOrigin || total == nil || total == start {
                            total = start
                            return .done(())
                        }
                        guard isOrigin else {
                            let have = total.map { "the file being continued has \($0)" } ?? "\(start) are already here"
                            return .passOver(.remoteChanged(url: source, detail: "its copy has \(remoteTotal.map(String.init) ?? "an unknown number of") bytes, \(have): another version"))
                        }
                        try partial.reset(hasher)
                        sources.forgetServed()
                        return .restart
                    }
                    let progressed = partial.size > start
                    if response.code == CURLE_PARTIAL_FILE, let total, response.failure == nil, !response.cancelled {
                        return .retry(.truncated(url: source, received: partial.size, expected: total), progressed: progressed)
                    }
                    if let outcome: SourceAttempt<Void> = try judge(response, sources, attempt: attempt, offset: partial.size, progressed: progressed) {
                        return outcome
                    }
                    if let total, partial.size != total {
                        return .retry(.truncated(url: source, received: partial.size, expected: total), progressed: progressed)
                    }
                    return .done(())
                }
            }

            try fill(&sources)
            digest = hasher.finish()
            if let expected, digest != expected, sources.hasCopies, kept > 0 || sources.served.contains(where: { $0.url != url }) {
                // A mirror's copy (or bytes an earlier run kept) did not add up to the file the
                // sequence names: the URL itself decides, once, from the first byte.
                try partial.reset(hasher)
                version = PartialFile.Version()
                partial.saveVersion(version)
                total = nil
                refetched = true
                sources.onlyOrigin()
                try fill(&sources)
                digest = hasher.finish()
            }
            meter.update(partial.size, total: total, force: true)
        }

        if let expected, digest != expected {
            partial.close()
            done = true
            unlink(partial.path)
            throw .checksumMismatch(url: url, expected: expected, actual: digest)
        }
        try partial.finish(renamingTo: path)
        done = true
        return DownloadResult(bytes: partial.size, sha256: digest, resumes: resumes, sources: sources.served,
                              failures: sources.failures, refetchedFromOrigin: refetched, mirrored: sources.hasCopies)
    }

    // MARK: Streams

    /// Delivers the body to `sink` in order, each byte once, resuming after drops from the
    /// bytes already delivered, at the next mirror's copy when there are mirrors. The hash is
    /// checked at the end: the caller must still treat what it consumed as suspect when this
    /// throws `.checksumMismatch`.
    public func stream(_ url: String, expectedSHA256: String?, progress: (TransferProgress) -> Void,
                       sink: (UnsafeRawBufferPointer) throws -> Void) throws(TransportError) -> StreamResult {
        try validateURL(url)
        let hasher = SHA256Hasher()
        var delivered: UInt64 = 0
        var total: UInt64?
        var resumes = 0
        var sources = options.sources(for: url)

        try withoutActuallyEscaping(sink) { sink throws(TransportError) in
            try withoutActuallyEscaping(progress) { progress throws(TransportError) in
                var meter = ProgressMeter(report: progress)
                try withSources(&sources) { sources, attempt throws(TransportError) -> SourceAttempt<Void> in
                    let source = sources.url, isOrigin = sources.isOrigin
                    let start = delivered
                    let announced = sources.validator
                    var skip: UInt64 = 0
                    var passOver: TransportError?
                    var accepted: Validator?
                    var request = CurlRequest(url: source)
                    if start > 0 { request.range = "\(start)-" }
                    let response = perform(request, begin: { status, response throws(TransportError) in
                        let current = Validator(response)
                        // What was delivered cannot be taken back: a source whose file is not the
                        // one being delivered ends the stream at the URL itself (as it always
                        // did), and is passed over when it is a mirror.
                        func mismatch(_ error: TransportError) throws(TransportError) -> Bool {
                            guard !isOrigin else { throw error }
                            passOver = error
                            return false
                        }
                        if let announced, current.differs(from: announced) {
                            return try mismatch(.remoteChanged(url: source, detail: "after \(start) bytes were already delivered, \(announced) became \(current)"))
                        }
                        var size: UInt64?
                        if status == 206 {
                            guard let range = ContentRange(response.header("content-range")), range.start == start else {
                                return try mismatch(.unexpectedResponse(url: source, detail: "asked for bytes from \(start), the server sent Content-Range \(response.header("content-range") ?? "none")"))
                            }
                            size = range.total ?? response.contentLength.map { $0 + start }
                        } else {
                            if start > 0, !isOrigin {
                                // Another copy can continue at the byte reached; this one would
                                // send everything delivered so far again.
                                return try mismatch(.unexpectedResponse(url: source, detail: "it ignored the request for bytes from \(start) (HTTP \(status)), so it cannot continue the stream"))
                            }
                            // The URL itself ignored the range: the bytes already delivered come again.
                            skip = start
                            size = response.contentLength
                        }
                        if start > 0, let total, let size, size != total {
                            return try mismatch(.remoteChanged(url: source, detail: "its copy has \(size) bytes, the \(start) bytes already delivered are of a file of \(total): another version"))
                        }
                        if status == 206 { resumes += 1 }
                        total = size ?? (start > 0 ? total : nil)
                        accepted = current
                        return true
                    }, body: { chunk throws(TransportError) in
                        var piece = chunk
                        if skip > 0 {
                            let dropped = Int(min(UInt64(piece.count), skip))
                            skip -= UInt64(dropped)
                            piece = UnsafeRawBufferPointer(rebasing: piece[dropped...])
                            if piece.isEmpty { return }
                        }
                        do { try sink(piece) } catch let error as TransportError { throw error } catch {
                            throw .consumer(url: source, offset: delivered, message: "\(error)")
                        }
                        hasher.update(piece)
                        delivered += UInt64(piece.count)
                        meter.update(delivered, total: total)
                    })
                    if let accepted { sources.remember(accepted) }
                    sources.record(delivered - start)
                    if let passOver { return .passOver(passOver) }
                    let progressed = delivered > start
                    if response.code == CURLE_PARTIAL_FILE, let total, response.failure == nil, !response.cancelled {
                        return .retry(.truncated(url: source, received: delivered, expected: total), progressed: progressed)
                    }
                    if let outcome: SourceAttempt<Void> = try judge(response, sources, attempt: attempt, offset: delivered, progressed: progressed) {
                        return outcome
                    }
                    if let total, delivered != total {
                        return .retry(.truncated(url: source, received: delivered, expected: total), progressed: progressed)
                    }
                    return .done(())
                }
                meter.update(delivered, total: total, force: true)
            }
        }
        let digest = hasher.finish()
        if let expectedSHA256, digest != expectedSHA256.lowercased() {
            // Which copies sent the wrong bytes is what the technician has to fix.
            let senders = sources.hasCopies && !sources.served.isEmpty ? sources.served.map(\.url).joined(separator: " and ") : url
            throw .checksumMismatch(url: senders, expected: expectedSHA256.lowercased(), actual: digest)
        }
        return StreamResult(bytes: delivered, sha256: digest, resumes: resumes, sources: sources.served,
                            failures: sources.failures, mirrored: sources.hasCopies)
    }

    // MARK: Ranges

    /// The size of a file to be read by ranges, from the first source that can serve ranges of
    /// it; that source's version is remembered in `sources`.
    func rangeableSize(_ sources: inout SourceList) throws(TransportError) -> UInt64 {
        try withSources(&sources) { sources, attempt throws(TransportError) -> SourceAttempt<UInt64> in
            let source = sources.url
            let response = perform(CurlRequest(url: source, method: .head), begin: { _, _ in true }, body: { _ in })
            if let outcome: SourceAttempt<UInt64> = try judge(response, sources, attempt: attempt, offset: nil, progressed: false) {
                return outcome
            }
            let ranges = response.header("accept-ranges")?.lowercased().contains("bytes") ?? false
            guard ranges, let size = response.contentLength else {
                let error = TransportError.unexpectedResponse(url: source, detail: "the server cannot serve byte ranges (it must send a size and \"Accept-Ranges: bytes\"); download the file instead")
                if sources.isOrigin { throw error }
                return .passOver(error)
            }
            sources.remember(Validator(response))
            return .done(size)
        }
    }

    /// Exactly the bytes `start...end` of a file of `size` bytes, each source's copy still the
    /// version it announced first; a failure continues at the next source from the byte reached.
    /// `storage`: an array no longer needed whose memory the bytes may reuse (a block the
    /// caller's cache let go), sparing a fresh allocation's page faults on every request.
    func fetchRange(_ sources: inout SourceList, start: UInt64, end: UInt64, size: UInt64, reusing storage: inout [UInt8],
                    counted: () -> Void) throws(TransportError) -> [UInt8] {
        let length = Int(end - start + 1)
        // Moved, not copied: the array stays the only owner of its memory, which is then
        // filled again instead of a new block being allocated (and faulted in, page by page).
        var bytes: [UInt8] = []
        swap(&bytes, &storage)
        bytes.removeAll(keepingCapacity: true)
        bytes.reserveCapacity(length)
        return try withSources(&sources) { sources, attempt throws(TransportError) -> SourceAttempt<[UInt8]> in
            let source = sources.url, isOrigin = sources.isOrigin
            let before = bytes.count
            let from = start + UInt64(before)
            let announced = sources.validator
            var passOver: TransportError?
            var accepted: Validator?
            var request = CurlRequest(url: source)
            request.range = "\(from)-\(end)"
            counted()
            let response = perform(request, begin: { status, response throws(TransportError) in
                let current = Validator(response)
                // Bytes already read (a WIM's tables) belong to the version read so far: a
                // source with another one ends the reads at the URL itself, and is passed over
                // when it is a mirror.
                func mismatch(_ error: TransportError) throws(TransportError) -> Bool {
                    guard !isOrigin else { throw error }
                    passOver = error
                    return false
                }
                if let announced, current.differs(from: announced) {
                    return try mismatch(.remoteChanged(url: source, detail: "\(announced) became \(current)"))
                }
                guard status == 206, let range = ContentRange(response.header("content-range")), range.start == from else {
                    return try mismatch(.unexpectedResponse(url: source, detail: "asked for bytes \(from)-\(end), the server answered HTTP \(status) with Content-Range \(response.header("content-range") ?? "none"); it cannot serve ranges"))
                }
                if let total = range.total, total != size {
                    return try mismatch(.remoteChanged(url: source, detail: "its copy has \(total) bytes, the file being read has \(size): another version"))
                }
                accepted = current
                return true
            }, body: { chunk throws(TransportError) in
                guard bytes.count + chunk.count <= length else {
                    throw .unexpectedResponse(url: source, detail: "asked for \(length) bytes at \(start), the server sent more")
                }
                bytes.append(contentsOf: chunk)
            })
            if let accepted { sources.remember(accepted) }
            sources.record(UInt64(bytes.count - before))
            if let passOver { return .passOver(passOver) }
            let progressed = bytes.count > before
            if let outcome: SourceAttempt<[UInt8]> = try judge(response, sources, attempt: attempt, offset: start + UInt64(bytes.count), progressed: progressed) {
                return outcome
            }
            guard bytes.count == length else {
                return .retry(.truncated(url: source, received: start + UInt64(bytes.count), expected: end + 1), progressed: progressed)
            }
            return .done(bytes)
        }
    }
}

/// What identifies one version of a remote file.
struct Validator: Equatable, CustomStringConvertible {
    var etag: String?
    var lastModified: String?

    init(etag: String?, lastModified: String?) {
        self.etag = etag
        self.lastModified = lastModified
    }

    init(_ response: CurlResponse) { self.init(etag: response.etag, lastModified: response.lastModified) }

    /// Only evidence counts: a missing header on either side proves nothing.
    func differs(from other: Validator?) -> Bool {
        guard let other else { return false }
        if let a = etag, let b = other.etag { return a != b }
        if let a = lastModified, let b = other.lastModified { return a != b }
        return false
    }

    var description: String {
        [etag.map { "ETag \($0)" }, lastModified.map { "Last-Modified \($0)" }].compactMap { $0 }.joined(separator: ", ")
    }
}

/// Throttled progress with a smoothed rate.
struct ProgressMeter {
    let report: (TransferProgress) -> Void
    private var lastTime = DispatchTime.now().uptimeNanoseconds
    private var lastBytes: UInt64?
    private var rate: Double = 0

    init(report: @escaping (TransferProgress) -> Void) { self.report = report }

    mutating func update(_ bytes: UInt64, total: UInt64?, force: Bool = false) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let previous = lastBytes else {
            lastBytes = bytes
            lastTime = now
            if force { report(TransferProgress(bytes: bytes, total: total, bytesPerSecond: 0)) }
            return
        }
        let elapsed = Double(now &- lastTime) / 1e9
        guard force || elapsed >= 0.2 else { return }
        if elapsed > 0, bytes >= previous {
            let instant = Double(bytes - previous) / elapsed
            rate = rate == 0 ? instant : rate * 0.7 + instant * 0.3
        }
        lastBytes = bytes
        lastTime = now
        report(TransferProgress(bytes: bytes, total: total, bytesPerSecond: rate))
    }
}
