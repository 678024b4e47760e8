import Apply
import ArgumentParser
import Digests
import Foundation
import Multicast
import MulticastApply
import Primitives
import Transport
import WIM

/// `imprint multicast`: a session's file sent to a group (the server does this itself; a
/// distribution point or a technician's laptop runs it by hand), and received into a directory,
/// a volume or a disk, with the lab's measurements.
struct MulticastCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multicast", abstract: "Send a file to many machines at once over IP multicast, or receive one.",
        subcommands: [MulticastManifestCommand.self, MulticastSendCommand.self, MulticastReceiveCommand.self])
}

/// `imprint multicast manifest FILE --output M`: the block manifest receivers check blocks against.
struct MulticastManifestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest", abstract: "Write a file's block manifest (each block's SHA-256) and print the manifest's SHA-256.")

    @Argument(help: "The file a session sends.") var file: String
    @Option(help: "Block size in bytes (default: 1 MiB, more for a file over 8 GiB).") var blockSize: Int?
    @Option(help: "Where the manifest goes (written beside it, then renamed).") var output: String

    func run() throws {
        do {
            let manifest = try BlockManifest.make(path: file, blockSize: blockSize)
            let bytes = manifest.encoded()
            try Data(bytes).write(to: URL(fileURLWithPath: output), options: .atomic)
            print(SHA256Hasher.hex(of: bytes))
        } catch { throw fail(error) }
    }
}

/// `imprint multicast send FILE`: a carousel of the file's blocks until told to stop.
struct MulticastSendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "send", abstract: "Send a file to a multicast group as a carousel of blocks.")

    @Argument(help: "The file to send.") var file: String
    @Option(help: "The block manifest (from `imprint multicast manifest`); made from the file when absent.") var manifest: String?
    @Option(help: "IPv4 multicast group.") var group: String
    @Option(help: "UDP port.") var port: Int
    @Option(help: "Rate cap: bits per second, with K, M or G (e.g. 100M).") var rate: String = "100M"
    @Option(help: "IPv4 address of the interface to send from.") var interfaceAddress: String?
    @Option(help: "Start when this many receivers are heard ...") var minReceivers: Int = 1
    @Option(help: "... or this many seconds after starting, whichever comes first.") var startAfter: Double?
    @Option(help: "Stop once this many receivers have reported everything received.") var exitWhenDone: Int?
    @Option(help: "Stop after this many seconds with nobody needing anything (once started).") var exitWhenIdle: Double?
    @Option(help: "Session id, 16 hex digits (default: random).") var session: String?
    @Option(help: "Write the status as JSON to this file once a second.") var statusFile: String?

    func run() throws {
        do {
            guard let bits = parseRate(rate) else { throw ValidationError("--rate \(rate): a number of bits per second with K, M or G") }
            let sessionID: UInt64
            if let session {
                guard let parsed = parseSessionID(session) else { throw ValidationError("--session \(session): 16 hex digits") }
                sessionID = parsed
            } else {
                sessionID = UInt64.random(in: 1...UInt64.max)
            }
            let blocks: BlockManifest
            if let manifest {
                blocks = try BlockManifest(decoding: Array(try Data(contentsOf: URL(fileURLWithPath: manifest))), name: manifest)
            } else {
                blocks = try BlockManifest.make(path: file)
            }
            var options = MulticastSenderOptions(group: group, port: port, rateBitsPerSecond: bits)
            options.interfaceAddress = interfaceAddress
            options.minReceivers = minReceivers
            options.startAt = startAfter.map { Date().addingTimeInterval($0) }
            let sender = try MulticastSender(path: file, manifest: blocks, session: sessionID, options: options)
            FileHandle.standardError.write(Data("imprint: session \(sessionIDText(sessionID)): \(file) (\(blocks.blockCount) blocks) to \(group):\(port) at \(rate)bit/s\n".utf8))
            Interruption.install()
            var idleSince: Double?
            try sender.run(shouldStop: { status in
                if applyStopSignal.load(ordering: .relaxed) != 0 { return true }
                if let exitWhenDone, status.finished.count >= exitWhenDone { return true }
                if let exitWhenIdle, status.state == .idle, status.passes > 0 || status.secondsSending > 0 {
                    let now = Date().timeIntervalSince1970
                    if idleSince == nil { idleSince = now }
                    if let since = idleSince, now - since >= exitWhenIdle { return true }
                } else {
                    idleSince = nil
                }
                return false
            }, report: { status in
                guard let statusFile else { return }
                let object: [String: Any] = [
                    "session": sessionIDText(sessionID), "state": status.state.rawValue, "passes": status.passes,
                    "bytesSent": status.bytesSent, "datagramsSent": status.datagramsSent, "secondsSending": status.secondsSending,
                    "finished": status.finished,
                    "receivers": status.receivers.map { ["receiver": $0.receiver, "address": $0.address, "state": $0.state, "blocksNeeded": $0.blocksNeeded] },
                ]
                if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                    try? data.write(to: URL(fileURLWithPath: statusFile), options: .atomic)
                }
            })
        } catch let error as ValidationError { throw error } catch { throw fail(error) }
    }
}

/// "100M" → 100,000,000.
func parseRate(_ text: String) -> Int? {
    let multipliers: [Character: Double] = ["K": 1e3, "k": 1e3, "M": 1e6, "m": 1e6, "G": 1e9, "g": 1e9]
    var number = text
    var multiplier = 1.0
    if let last = text.last, let m = multipliers[last] { multiplier = m; number = String(text.dropLast()) }
    guard let value = Double(number), value > 0 else { return nil }
    return Int(value * multiplier)
}

/// `imprint multicast receive`: one session into a directory or NTFS volume (a WIM) or onto a
/// file or device (a raw image), by multicast, repairing and falling back by HTTP.
struct MulticastReceiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "receive", abstract: "Receive a multicast session and apply or write it as it arrives.")

    @Option(help: "IPv4 multicast group.") var group: String
    @Option(help: "UDP port.") var port: Int
    @Option(help: "Session id, 16 hex digits.") var session: String
    @Option(help: "HTTP URL of the same file (repairs, fallback).") var source: String
    @Option(help: "URL of the block manifest.") var manifest: String
    @Option(help: "The manifest's SHA-256.") var manifestSHA256: String
    @Option(help: "Apply a WIM's image to this directory or NTFS volume.") var apply: String?
    @Option(help: "The image to apply: index or name.") var image: String = "1"
    @Option(help: "Write a raw image (.img, or .img.xz when the source ends in .xz) to this file or device.") var write: String?
    @Option(help: "The SHA-256 the whole raw image must have.") var sha256: String?
    @Option(help: "This receiver's id, 16 hex digits (default: random).") var receiver: String?
    @Option(help: "IPv4 address of the interface to join the group on.") var interfaceAddress: String?
    @Option(help: "Seconds to wait for the sender before fetching by HTTP.") var waitSeconds: Int = 5
    @Option(help: "Write what the receive did as JSON to this file.") var statsFile: String?
    @OptionGroup var read: ReadOptions

    func run() throws {
        do {
            guard (apply == nil) != (write == nil) else { throw ValidationError("give --apply DIR (a WIM) or --write FILE (a raw image)") }
            let descriptor = MulticastSessionDescriptor(
                session: session, receiver: receiver ?? sessionIDText(UInt64.random(in: 1...UInt64.max)), group: group, port: port,
                source: source, size: 0, manifest: manifest, manifestSHA256: manifestSHA256, waitSeconds: waitSeconds)
            let client = HTTPClient(options: TransferOptions())
            var described = descriptor
            let blocks = try fetchManifest(descriptor, client: client)
            described.size = blocks.fileSize
            var options = MulticastReceiverOptions()
            options.interfaceAddress = interfaceAddress
            options.waitSeconds = Double(waitSeconds)
            let receiver = try MulticastReceiver(descriptor: described, manifest: blocks, options: options)
            let http = HTTPBlockSource(reader: try HTTPRangeReader(url: source, client: client))
            let events: @Sendable (MulticastReceiverEvent) -> Void = { event in
                switch event {
                case let .heard(address): FileHandle.standardError.write(Data("imprint: heard the sender at \(address)\n".utf8))
                case let .fellBack(reason): FileHandle.standardError.write(Data("imprint: falling back to HTTP: \(reason)\n".utf8))
                case .progress: break
                }
            }
            let started = Date()
            let summary: MulticastReceiveSummary?
            if let apply {
                let store = MulticastBlockStore(manifest: blocks, http: http)
                let archive = try WIMArchive(name: source, source: store)
                let index = try archive.image(image)
                let plan = ApplyPlan(image: try archive.metadata(image: index))
                let delivery = MulticastWIMDelivery(receiver: receiver, archive: archive, store: store, http: http, events: events)
                delivery.interrupt = { try checkApplyStop() }
                try runApply(Applier(archive: archive, delivery: delivery), plan: plan, destination: apply, read: read)
                summary = delivery.summary
            } else if let write {
                summary = try receiveRaw(receiver, http: http, to: write, events: events)
            } else {
                summary = nil
            }
            if let statsFile, var summary {
                summary.seconds = Date().timeIntervalSince(started)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                try encoder.encode(summary).write(to: URL(fileURLWithPath: statsFile), options: .atomic)
            }
            if let summary {
                FileHandle.standardError.write(Data(("imprint: \(summary.blocksByMulticast) blocks by multicast, \(summary.blocksByHTTP) by HTTP, "
                    + "\(summary.repairs) repaired, \(formatBytes(summary.bytesByHTTP)) by HTTP"
                    + (summary.fellBack ? " (fell back: \(summary.fallbackReason ?? ""))" : "") + "\n").utf8))
            }
        } catch let error as ValidationError { throw error } catch let code as ExitCode { throw code } catch { throw fail(error) }
    }

    private func receiveRaw(_ receiver: MulticastReceiver, http: HTTPBlockSource, to path: String,
                            events: @escaping @Sendable (MulticastReceiverEvent) -> Void) throws -> MulticastReceiveSummary {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MulticastError.file(path: path, reason: "cannot open for writing: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let image = try MulticastRawImage(
            compressed: source.lowercased().hasSuffix(".xz"), expectedSHA256: sha256?.lowercased(),
            writeAt: { offset, bytes in try pwriteAll(fd, bytes, at: offset, path: path) },
            readBack: { offset, buffer in try readFully(fd, buffer, at: offset, path: path) })
        let summary = try receiver.run(into: image, http: http, events: events)
        guard fsync(fd) == 0 else { throw MulticastError.file(path: path, reason: "fsync failed: \(String(cString: strerror(errno)))") }
        return summary
    }
}

func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws {
    var done = 0
    while done < bytes.count, let base = bytes.baseAddress {
        let n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw MulticastError.file(path: path, reason: "write at \(offset + UInt64(done)) failed: \(String(cString: strerror(errno)))") }
        done += n
    }
}
