import Foundation
import Primitives
#if canImport(Glibc)
import Glibc
#endif

public struct MulticastSenderOptions: Sendable {
    public var group: String
    public var port: Int
    /// IPv4 address of the interface to send from; the route to the group when nil.
    public var interfaceAddress: String?
    public var ttl: Int = 1
    /// The cap on what the session puts on the wire (Ethernet, IP and UDP headers counted).
    public var rateBitsPerSecond: Int
    /// The session starts when this many receivers are heard ...
    public var minReceivers: Int = 1
    /// ... or at this time, whichever comes first.
    public var startAt: Date? = nil
    /// A receiver unheard this long is gone (a dead machine stalls nobody).
    public var receiverTimeout: Double = 3

    public init(group: String, port: Int, rateBitsPerSecond: Int) {
        self.group = group
        self.port = port
        self.rateBitsPerSecond = rateBitsPerSecond
    }
}

public struct MulticastReceiverStatus: Sendable {
    /// The receiver's id, 16 hex digits.
    public var receiver: String
    /// Where its heartbeats come from, "10.0.0.5:7700".
    public var address: String
    /// waiting, receiving, done or leaving.
    public var state: String
    public var blocksNeeded: Int
    public var lastHeard: Date
}

public struct MulticastSenderStatus: Sendable {
    public enum State: String, Sendable { case waiting, sending, idle, stopped }
    public var state: State
    /// Receivers heard within the receiver timeout.
    public var receivers: [MulticastReceiverStatus]
    /// Receivers that reported having everything, ever, in the order they did.
    public var finished: [String]
    /// Times the carousel went round the file.
    public var passes: Int
    public var bytesSent: UInt64
    public var datagramsSent: UInt64
    /// Seconds since the session started sending (0 while waiting).
    public var secondsSending: Double
}

/// Sends one file to a group as a carousel of blocks, only those some live receiver still
/// needs, at a capped rate; waits for its start condition and idles (announcing itself) when
/// nobody needs anything. Nobody is waited for: a slow receiver gets what it missed on a later
/// pass, a dead one is dropped when its heartbeats stop.
public final class MulticastSender: Sendable {
    public let path: String
    public let manifest: BlockManifest
    public let session: UInt64
    public let options: MulticastSenderOptions
    private let group: UDPAddress

    public init(path: String, manifest: BlockManifest, session: UInt64, options: MulticastSenderOptions) throws(MulticastError) {
        guard IPv4.isMulticast(options.group), let group = UDPAddress(options.group, port: options.port), options.port > 0 else {
            throw .badSetting("\(options.group):\(options.port) is not an IPv4 multicast group and port (224.0.0.0 to 239.255.255.255)")
        }
        guard options.rateBitsPerSecond >= 100_000 else {
            throw .badSetting("a rate of \(options.rateBitsPerSecond) bits/s is too low for a session (100 kbit/s at least)")
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw .file(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
        guard UInt64(info.st_size) == manifest.fileSize else {
            throw .file(path: path, reason: "is \(info.st_size) bytes but its manifest says \(manifest.fileSize): the file changed after the manifest was made")
        }
        self.path = path
        self.manifest = manifest
        self.session = session
        self.options = options
        self.group = group
    }

    private struct Tracked {
        var address: UDPAddress
        var state: MulticastDatagram.Heartbeat.State
        var blocksNeeded: Int
        var needed: [UInt8]
        var lastHeard: Double
        var lastHeardDate: Date

        func needs(_ block: Int) -> Bool {
            let byte = block >> 3
            return byte < needed.count && needed[byte] & (1 << UInt8(block & 7)) != 0
        }
        var wantsData: Bool { (state == .waiting || state == .receiving) && blocksNeeded > 0 }
    }

    /// Sends until `shouldStop` says so (asked about every 20 ms while waiting or idle and after
    /// every block); `report` gets the status about once a second. Blocking: run it on a thread.
    public func run(shouldStop: (MulticastSenderStatus) -> Bool, report: (MulticastSenderStatus) -> Void) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MulticastError.file(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let socket = try MulticastSocket.sender(interface: options.interfaceAddress, ttl: options.ttl)

        var receivers: [UInt64: Tracked] = [:]
        var finished: [String] = []
        var state = MulticastSenderStatus.State.waiting
        var passes = 0, cursor = 0
        var bytesSent: UInt64 = 0, datagramsSent: UInt64 = 0
        var sendingSince: Double?
        let begun = monotonicSeconds()
        let startAt = options.startAt.map { begun + $0.timeIntervalSinceNow }
        var lastAnnounce = -1.0, lastReport = -1.0

        let bytesPerSecond = Double(options.rateBitsPerSecond) / 8
        let burst = max(64 * 1024.0, bytesPerSecond / 100)
        var tokens = 0.0, refilled = monotonicSeconds()
        let wireOverhead = 14 + 20 + 8   // Ethernet, IP, UDP

        var block = [UInt8](repeating: 0, count: manifest.blockSize)
        var datagram = [UInt8](repeating: 0, count: MulticastDatagram.maximumSize)
        var incoming = [UInt8](repeating: 0, count: MulticastDatagram.maximumSize + 64)

        func status() -> MulticastSenderStatus {
            MulticastSenderStatus(
                state: state,
                receivers: receivers.sorted { $0.key < $1.key }.map { id, r in
                    MulticastReceiverStatus(receiver: sessionIDText(id), address: r.address.description, state: "\(r.state)",
                                            blocksNeeded: r.blocksNeeded, lastHeard: r.lastHeardDate)
                },
                finished: finished, passes: passes, bytesSent: bytesSent, datagramsSent: datagramsSent,
                secondsSending: sendingSince.map { monotonicSeconds() - $0 } ?? 0)
        }

        /// Takes every queued heartbeat; waits up to `milliseconds` for the first.
        func listen(_ milliseconds: Int32) throws {
            var wait = milliseconds
            while let (count, from) = try incoming.withUnsafeMutableBytes({ try socket.receive(into: $0, timeoutMilliseconds: wait) }) {
                wait = 0
                guard case let .heartbeat(beat)? = incoming.withUnsafeBytes({ MulticastDatagram.parse(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }),
                      beat.session == session else { continue }
                let now = monotonicSeconds()
                if beat.state == .done && receivers[beat.receiver]?.state != .done && !finished.contains(sessionIDText(beat.receiver)) {
                    finished.append(sessionIDText(beat.receiver))
                }
                if beat.state == .leaving {
                    receivers[beat.receiver] = nil
                } else {
                    receivers[beat.receiver] = Tracked(address: from, state: beat.state, blocksNeeded: beat.blocksNeeded,
                                                       needed: beat.needed, lastHeard: now, lastHeardDate: Date())
                }
            }
            let now = monotonicSeconds()
            receivers = receivers.filter { now - $0.value.lastHeard <= options.receiverTimeout }
        }

        func announce(_ announced: MulticastDatagram.Announce.State) throws {
            let now = monotonicSeconds()
            guard now - lastAnnounce >= 0.25 else { return }
            lastAnnounce = now
            let bytes = MulticastDatagram.announce(.init(session: session, state: announced, blockCount: manifest.blockCount,
                                                         fileSize: manifest.fileSize)).encoded()
            try bytes.withUnsafeBytes { try socket.send($0, to: group) }
        }

        func pace(_ cost: Int) {
            while true {
                let now = monotonicSeconds()
                tokens = min(burst, tokens + (now - refilled) * bytesPerSecond)
                refilled = now
                if tokens >= Double(cost) { tokens -= Double(cost); return }
                let wait = (Double(cost) - tokens) / bytesPerSecond
                usleep(UInt32(max(50, min(20_000, wait * 1e6))))
            }
        }

        while true {
            try listen(0)
            let now = monotonicSeconds()
            if now - lastReport >= 1 { lastReport = now; report(status()) }
            if shouldStop(status()) { break }
            if state == .waiting {
                let heard = receivers.values.filter { $0.state != .leaving }.count
                if heard >= max(1, options.minReceivers) || (startAt.map { now >= $0 } ?? false) {
                    state = .sending
                    sendingSince = now
                } else {
                    try announce(.waiting)
                    try listen(20)
                    continue
                }
            }
            let needy = receivers.values.filter(\.wantsData)
            guard !needy.isEmpty else {
                state = .idle
                try announce(.idle)
                try listen(20)
                continue
            }
            state = .sending
            // The next block someone needs, from where the carousel is.
            var chosen: Int?
            for step in 0..<manifest.blockCount {
                let candidate = (cursor + step) % manifest.blockCount
                if needy.contains(where: { $0.needs(candidate) }) { chosen = candidate; break }
            }
            guard let index = chosen else {
                // Heartbeats claim needs but name no block (a receiver's bitmap lags): wait.
                try listen(20)
                continue
            }
            if index < cursor { passes += 1 }
            let range = manifest.range(of: index)
            let length = range.count
            try block.withUnsafeMutableBytes { raw in
                try readFully(fd, UnsafeMutableRawBufferPointer(rebasing: raw[0..<length]), at: range.lowerBound, path: path)
            }
            let fragments = manifest.fragments(of: index)
            for fragment in 0..<fragments {
                let start = fragment * MulticastDatagram.fragmentSize
                let size = min(MulticastDatagram.fragmentSize, length - start)
                pace(size + MulticastDatagram.headerSize + wireOverhead)
                try datagram.withUnsafeMutableBytes { out in
                    MulticastDatagram.writeDataHeader(out, session: session, block: index, fragment: fragment, fragments: fragments,
                                                      pass: passes, length: size)
                    block.withUnsafeBytes { source in
                        out.baseAddress!.advanced(by: MulticastDatagram.headerSize).copyMemory(from: source.baseAddress!.advanced(by: start), byteCount: size)
                    }
                    try socket.send(UnsafeRawBufferPointer(rebasing: out[0..<(MulticastDatagram.headerSize + size)]), to: group)
                }
                bytesSent += UInt64(size)
                datagramsSent += 1
                if fragment & 63 == 63 { try listen(0) }
            }
            cursor = index + 1
            if cursor == manifest.blockCount { cursor = 0; passes += 1 }
        }
        state = .stopped
        report(status())
    }
}
