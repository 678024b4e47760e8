import Apply
import DiskModel
import Digests
import Failures
import Foundation
import SequenceModel
import Synchronization
import Transport
import WIM

/// applyImage: a WIM from a path or a URL, downloaded to a cache first or applied as it
/// streams (a pipable WIM straight from the socket, a regular one through Range reads), into
/// an NTFS volume through libntfs-3g.
enum ImageSteps {
    static func applyImage(_ parameters: ApplyImageStep, _ step: Step, _ context: RunContext) throws {
        if let library = parameters.library {
            throw StepFailure("the step names the \(library.description), which only imprint-server resolves (it hands the sequence "
                              + "out with the version's URL and SHA-256); this sequence did not come from a server", kind: .badInput)
        }
        let source = context.substitute(parameters.source)
        let selector = context.substitute(parameters.image)
        let expected = parameters.sha256.map(context.substitute)?.lowercased().nonEmpty
        try context.checkVerified(source, sha256: expected, step: step)
        let volume = try context.volume(parameters.target)
        guard isURL(source) else {
            if let expected { try checkLocalFile(source, expected: expected, step, context) }
            return try apply(try WIMArchive(path: source), selector, volume, step, context)
        }
        if let session = parameters.multicast,
           try MulticastSteps.applyWIM(session, source: source, selector: selector, expected: expected, volume, step, context) {
            return
        }
        switch parameters.mode {
        case .download:
            let cache = context.options.cacheDirectory ?? context.substitute(parameters.cacheDirectory)
            try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
            let file = cache + "/" + cacheName(for: source)
            if let expected, FileManager.default.fileExists(atPath: file), (try? sha256(of: file)) == expected {
                context.bus.log("\(file) is already in the cache with the expected SHA-256", step: step)
            } else {
                let meter = RateMeter()
                let result = try context.client.download(source, to: file, expectedSHA256: expected) { progress in
                    StepRunner.progress(context, step, "downloading", bytes: progress.bytes, total: progress.total,
                                        rate: meter.rate(progress.bytes))
                }
                context.bus.log("downloaded \(result.bytes) bytes to \(file) (SHA-256 \(result.sha256)"
                                + (result.resumes > 0 ? ", resumed \(result.resumes) times" : "") + ")"
                                + sourcesText(result.sourcesSummary), step: step)
            }
            try apply(try WIMArchive(path: file), selector, volume, step, context)
        case .stream:
            // The body itself says which kind of WIM it is: a pipable one is applied from this
            // very transfer; for a regular one the transfer stops after its first bytes and
            // the WIM is read through Range requests instead.
            if try streamPipable(source, expected: expected, selector, volume, step, context) { return }
            let reader = try HTTPRangeReader(url: source, client: context.client)
            if expected != nil {
                context.bus.log("a regular WIM applied through Range reads is not read whole, so its file SHA-256 "
                                + "is not checked; the SHA-1 of every blob applied is", step: step, level: "warning")
            }
            let wim = try WIMArchive(name: source, source: HTTPRangeSource(reader: reader))
            try apply(wim, selector, volume, step, context)
            context.bus.log("read \(reader.requestCount) ranges of \(source)" + sourcesText(reader.sourcesSummary), step: step)
        }
    }

    /// Which distribution points (and the server) sent a transfer's bytes, for its log line:
    /// "; served by …", or nothing when the URL had no mirrors.
    static func sourcesText(_ summary: String) -> String { summary.isEmpty ? "" : "; " + summary }

    static func isURL(_ text: String) -> Bool { text.hasPrefix("http://") || text.hasPrefix("https://") }

    /// A file name for the cache from the URL's last path component, made safe.
    static func cacheName(for url: String) -> String {
        let path = URL(string: url)?.path ?? url
        let last = (path as NSString).lastPathComponent
        let safe = last.filter { $0.isLetter || $0.isNumber || "._-".contains($0) }
        return safe.isEmpty || safe.hasPrefix(".") ? "image-" + SHA256Hasher.hex(of: Data(url.utf8)).prefix(16) + ".wim" : safe
    }

    static func sha256(of path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw StepFailure("\(path): cannot open", kind: .disk) }
        defer { try? handle.close() }
        let hasher = SHA256Hasher()
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty { hasher.update(chunk) }
        return hasher.finish()
    }

    private static func checkLocalFile(_ path: String, expected: String, _ step: Step, _ context: RunContext) throws {
        let actual = try sha256(of: path)
        guard actual == expected else {
            throw StepFailure("\(path): SHA-256 is \(actual), the sequence expects \(expected): wrong or damaged file, nothing applied", kind: .badInput)
        }
        context.bus.log("\(path): SHA-256 matches", step: step)
    }

    /// A pipable WIM from the socket: the transfer feeds a pipe the WIM stream reader reads,
    /// so nothing is stored; the whole file's SHA-256 is checked as it passes. Returns false,
    /// having read only the first bytes, when the file is a regular WIM.
    private static func streamPipable(_ url: String, expected: String?, _ selector: String, _ volume: Volume,
                                      _ step: Step, _ context: RunContext) throws -> Bool {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw StepFailure("cannot make a pipe: \(String(cString: strerror(errno)))") }
        let transfer = StreamTransfer()
        let writer = ends[1]
        let meter = RateMeter()
        let thread = Thread {
            // The body's first bytes, until they say which kind of WIM it is.
            var head: [UInt8] = []
            do {
                transfer.result = try context.client.stream(url, expectedSHA256: expected, progress: { progress in
                    StepRunner.progress(context, step, "streaming", bytes: progress.bytes, total: progress.total,
                                        rate: meter.rate(progress.bytes))
                }, sink: { bytes in
                    var rest = bytes
                    if transfer.pipable == nil {
                        let needed = StreamTransfer.magic.count - head.count
                        head += rest.prefix(needed)
                        rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(min(needed, rest.count)))
                        guard head.count == StreamTransfer.magic.count else { return }
                        guard head == StreamTransfer.magic else {
                            transfer.decide(false)
                            throw StreamTransfer.NotPipable()
                        }
                        transfer.decide(true)
                        try head.withUnsafeBytes { try writeAll(writer, $0) }
                    }
                    try writeAll(writer, rest)
                })
            } catch {
                // Stopping at a regular WIM's first bytes is the plan, not a failure (the
                // transfer reports the sink's refusal as its own error).
                if transfer.pipable != false { transfer.error = error }
            }
            close(writer)
            transfer.decide(false)
            transfer.finished.signal()
        }
        thread.start()
        transfer.decided.wait()
        guard transfer.pipable == true else {
            close(ends[0])
            transfer.finished.wait()
            // Failed before the first bytes (404, unreachable): that is the answer.
            if let error = transfer.error { throw error }
            return false
        }
        var applyError: Error?
        do {
            let stream = try PipableStream(descriptor: ends[0], name: url)
            let index = try stream.image(selector)
            let metadata = try stream.readMetadata(image: index)
            try run(Applier(stream: stream), ApplyPlan(image: metadata), volume, step, context)
        } catch {
            applyError = error
        }
        close(ends[0])
        transfer.finished.wait()
        // The transfer's error says why the stream broke (dropped for good, hash mismatch).
        if let error = transfer.error { throw error }
        if let applyError { throw applyError }
        if let result = transfer.result {
            context.bus.log("streamed \(result.bytes) bytes (SHA-256 \(result.sha256)"
                            + (result.resumes > 0 ? ", resumed \(result.resumes) times" : "") + ")"
                            + sourcesText(result.sourcesSummary), step: step)
        }
        return true
    }

    private static func apply(_ wim: WIMArchive, _ selector: String, _ volume: Volume, _ step: Step, _ context: RunContext) throws {
        let index = try wim.image(selector)
        let metadata = try wim.metadata(image: index)
        try run(Applier(archive: wim), ApplyPlan(image: metadata), volume, step, context)
    }

    static func run(_ applier: Applier, _ plan: ApplyPlan, _ volume: Volume, _ step: Step, _ context: RunContext) throws {
        var applier = applier
        applier.stop = context.applyStop
        let target = try NTFSTarget(device: volume.device)
        if let notice = target.mountNotice { context.bus.log(notice, step: step, level: "warning") }
        let meter = RateMeter()
        let started = Date()
        let summary: ApplySummary
        do {
            summary = try applier.apply(plan, to: target) { progress in
                switch progress {
                case let .structure(done, total):
                    context.bus.emit(Event(kind: .progress, step: step.number, name: step.name, type: step.type,
                                           percent: total > 0 ? Double(done) * 100 / Double(total) : 100,
                                           message: "creating files (\(done) of \(total))"))
                case let .data(read):
                    StepRunner.progress(context, step, "writing data", bytes: read.bytesDone, total: read.bytesTotal,
                                        rate: meter.rate(read.bytesDone))
                case .metadata:
                    break
                }
            }
        } catch {
            try? target.close()
            throw error
        }
        try target.close()
        context.bus.log(String(format: "applied %d directories, %d files, %d hard links, %d symlinks, %llu bytes in %.1f s",
                               summary.directories, summary.files, summary.hardLinks, summary.symlinks,
                               summary.bytesWritten, Date().timeIntervalSince(started)), step: step)
        if summary.filesKeptWhole > 0 {
            context.bus.log("kept \(summary.filesKeptWhole) files an earlier run had already written whole (their data equals the image's; "
                            + "\(summary.bytesKeptWhole) bytes not written again)", step: step)
        }
        for (reason, paths) in summary.notKept.sorted(by: { $0.key < $1.key }) {
            context.bus.log("not kept (\(paths.count)): \(reason)", step: step, level: "warning")
        }
    }
}

/// HTTP Range reads as a WIM source: the agent's apply and `imprint wim … http://…`.
public final class HTTPRangeSource: RandomAccessSource {
    public let reader: HTTPRangeReader
    public init(reader: HTTPRangeReader) { self.reader = reader }
    public var size: UInt64 { reader.size }
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try reader.read(into: buffer, at: offset)
    }
    public func readStandalone(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try reader.readStandalone(into: buffer, at: offset)
    }
}

/// What the transfer thread of a streamed apply tells the applying thread.
final class StreamTransfer: Sendable {
    static let magic = Array("WLPWM\0\0\0".utf8)
    struct NotPipable: Error {}
    private struct State {
        var error: (any Error)?
        var result: StreamResult?
        var pipable: Bool?
    }
    private let state = Mutex(State())
    let decided = DispatchSemaphore(value: 0)
    let finished = DispatchSemaphore(value: 0)

    var error: (any Error)? {
        get { state.withLock { $0.error } }
        set { state.withLock { $0.error = newValue } }
    }
    var result: StreamResult? {
        get { state.withLock { $0.result } }
        set { state.withLock { $0.result = newValue } }
    }
    /// Whether the body is a pipable WIM, once its first bytes said so (or the transfer ended).
    var pipable: Bool? { state.withLock { $0.pipable } }

    /// The first answer counts; `decided` is signalled once.
    func decide(_ value: Bool) {
        let first = state.withLock { state -> Bool in
            guard state.pipable == nil else { return false }
            state.pipable = value
            return true
        }
        if first { decided.signal() }
    }
}

/// Writes all of `bytes` to a pipe; a reader that went away is an error, not a SIGPIPE.
func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws {
    var done = 0
    while done < bytes.count, let base = bytes.baseAddress {
        let written = write(descriptor, base + done, bytes.count - done)
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { throw StepFailure("the WIM reader stopped reading the stream") }
        done += written
    }
}
