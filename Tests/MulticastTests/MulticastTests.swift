import Apply
import Digests
import Foundation
import Primitives
import Synchronization
import Testing
import TestSupport
import Transport
import WIM
@testable import Multicast
@testable import MulticastApply

/// The datagrams and the manifest as bytes.
@Suite struct MulticastFormatTests {
    @Test func announceAndHeartbeatRoundTrip() throws {
        let announce = MulticastDatagram.announce(.init(session: 0x1234, state: .idle, blockCount: 17, fileSize: 17 << 20))
        #expect(announce.encoded().withUnsafeBytes { MulticastDatagram.parse($0) } == announce)
        let beat = MulticastDatagram.heartbeat(.init(session: 9, receiver: 0xfeed, state: .receiving, blocksNeeded: 2, needed: [0b101, 0]))
        let parsed = try #require(beat.encoded().withUnsafeBytes { MulticastDatagram.parse($0) })
        #expect(parsed == beat)
        guard case let .heartbeat(h) = parsed else { Issue.record("not a heartbeat"); return }
        #expect(h.needs(0) && !h.needs(1) && h.needs(2) && !h.needs(9) && !h.needs(100))
    }

    @Test func strangersAndDamageAreIgnored() {
        var data = [UInt8](repeating: 0, count: 32 + 10)
        data.withUnsafeMutableBytes { MulticastDatagram.writeDataHeader($0, session: 5, block: 3, fragment: 1, fragments: 2, pass: 0, length: 10) }
        guard case let .data(d)? = data.withUnsafeBytes({ MulticastDatagram.parse($0) }) else { Issue.record("a good datagram did not parse"); return }
        #expect(d.block == 3 && d.fragment == 1 && d.payloadRange == 32..<42)
        // One byte short of its stated length, a fragment past the count, another magic, too short.
        #expect(Array(data.dropLast()).withUnsafeBytes { MulticastDatagram.parse($0) } == nil)
        var past = data
        past.withUnsafeMutableBytes { MulticastDatagram.writeDataHeader($0, session: 5, block: 3, fragment: 2, fragments: 2, pass: 0, length: 10) }
        #expect(past.withUnsafeBytes { MulticastDatagram.parse($0) } == nil)
        var stranger = data
        stranger[0] = UInt8(ascii: "X")
        #expect(stranger.withUnsafeBytes { MulticastDatagram.parse($0) } == nil)
        #expect([UInt8](repeating: 0, count: 5).withUnsafeBytes { MulticastDatagram.parse($0) } == nil)
    }

    @Test func manifestRoundTripAndItsErrorsSayWhere() throws {
        let scratch = ScratchDirectory()
        let file = scratch.sub("f.bin")
        let bytes = (0..<(3 << 20) + 5).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let manifest = try BlockManifest.make(path: file)
        #expect(manifest.blockSize == 1 << 20 && manifest.blockCount == 4 && manifest.length(of: 3) == 5)
        #expect(manifest.blockHashes[1] == Array(hexBytes(SHA256Hasher.hex(of: Array(bytes[(1 << 20)..<(2 << 20)])))))
        #expect(try BlockManifest(decoding: manifest.encoded(), name: "m") == manifest)
        var truncated = manifest.encoded()
        truncated.removeLast()
        #expect(throws: MulticastError.self) { try BlockManifest(decoding: truncated, name: "m") }
        var wrongCount = manifest.encoded()
        wrongCount[12] = 9
        do { _ = try BlockManifest(decoding: wrongCount, name: "http://x/m"); Issue.record("accepted a wrong block count") } catch {
            #expect("\(error)".contains("offset 16") && "\(error)".contains("http://x/m"))
        }
        // 8 GiB and more get bigger blocks, never more than a heartbeat can name.
        #expect(BlockManifest.defaultBlockSize(forFileSize: 20 << 30) == 3 << 20)
        #expect(MulticastDatagram.maximumBlocks / 8 + MulticastDatagram.headerSize <= MulticastDatagram.maximumSize)
    }

    @Test func repairsJoinHolesAcrossTheSmallestGaps() {
        //                 0     1      2     3     4      5     6     7      8     9
        let received = [true, false, true, true, false, true, true, true, false, false]
        #expect(MulticastReceiver.repairRanges(received, maximumRanges: 8) == [1..<2, 4..<5, 8..<10])
        #expect(MulticastReceiver.repairRanges(received, maximumRanges: 2) == [1..<5, 8..<10])
        #expect(MulticastReceiver.repairRanges(received, maximumRanges: 1) == [1..<10])
        #expect(MulticastReceiver.repairRanges([true, true], maximumRanges: 4).isEmpty)
    }

    func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }
}

/// Whole sessions over the loopback interface (multicast on 127.0.0.1 needs no route), with a
/// real HTTP server for repairs and the fallback, and WIMs made by wimlib-imagex.
@Suite(.serialized) struct MulticastSessionTests {
    /// A WIM of generated files (incompressible and text, a few MiB) and its manifest, served.
    struct Fixture: @unchecked Sendable {  // read-only after init
        let scratch: ScratchDirectory
        let wim: String
        let manifest: BlockManifest
        let http: TestHTTPServer
        let reference: String

        init(_ label: String = #function, compress: String = "LZX") throws {
            scratch = ScratchDirectory(label)
            let tree = scratch.sub("tree")
            try FileManager.default.createDirectory(atPath: tree + "/docs", withIntermediateDirectories: true)
            var seed: UInt64 = 0x9E3779B97F4A7C15
            for i in 0..<40 {
                var bytes = [UInt8](repeating: 0, count: 20_000 + i * 9_000)
                for j in bytes.indices { seed = seed &* 6364136223846793005 &+ 1442695040888963407; bytes[j] = UInt8(truncatingIfNeeded: seed >> 33) }
                try Data(bytes).write(to: URL(fileURLWithPath: tree + "/r\(i).bin"))
                try Data(String(repeating: "line \(i) of a text file\n", count: 2_000 + i * 50).utf8).write(to: URL(fileURLWithPath: tree + "/docs/t\(i).txt"))
            }
            let served = scratch.sub("served")
            try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
            wim = served + "/image.wim"
            try run(["wimlib-imagex", "capture", tree, wim, "Lab", "--compress=\(compress)", "--chunk-size=32768"])
            manifest = try BlockManifest.make(path: wim, blockSize: 256 << 10)
            try Data(manifest.encoded()).write(to: URL(fileURLWithPath: served + "/image.wim.manifest"))
            http = try TestHTTPServer(root: served)
            reference = scratch.sub("reference")
            try run(["wimlib-imagex", "apply", wim, "1", reference])
        }

        func descriptor(session: UInt64, group: String, port: Int, wait: Int = 5) -> MulticastSessionDescriptor {
            MulticastSessionDescriptor(session: sessionIDText(session), receiver: sessionIDText(UInt64.random(in: 1...UInt64.max)),
                                       group: group, port: port, source: http.url("/image.wim"), size: manifest.fileSize,
                                       manifest: http.url("/image.wim.manifest"),
                                       manifestSHA256: SHA256Hasher.hex(of: manifest.encoded()), waitSeconds: wait)
        }

        /// Receives the session into a new directory and checks it equals wimlib-imagex's apply.
        func receive(_ descriptor: MulticastSessionDescriptor, into name: String) throws -> MulticastReceiveSummary {
            var options = MulticastReceiverOptions()
            options.interfaceAddress = "127.0.0.1"
            options.waitSeconds = Double(descriptor.waitSeconds ?? 5)
            let receiver = try MulticastReceiver(descriptor: descriptor, manifest: manifest, options: options)
            let source = HTTPBlockSource(reader: try HTTPRangeReader(url: descriptor.source, client: HTTPClient(options: TransferOptions())))
            let store = MulticastBlockStore(manifest: manifest, http: source)
            let archive = try WIMArchive(name: descriptor.source, source: store)
            let delivery = MulticastWIMDelivery(receiver: receiver, archive: archive, store: store, http: source)
            let target = try DirectoryTarget(root: scratch.sub(name))
            try Applier(archive: archive, delivery: delivery).apply(ApplyPlan(image: try archive.metadata(image: 1)), to: target)
            let diff = try run(["diff", "-r", reference, scratch.sub(name)], allowFailure: true)
            #expect(diff.status == 0, "\(name) differs from wimlib-imagex's apply: \(diff.output)")
            return try #require(delivery.summary)
        }
    }

    /// Runs a sender on its own thread until `stop` (or every `expected` receiver is done).
    final class SenderThread: @unchecked Sendable {
        let status = Mutex<MulticastSenderStatus?>(nil)
        let stopped = DispatchSemaphore(value: 0)
        let stop = Atomic<Bool>(false)
        init(_ sender: MulticastSender, expected: Int) {
            Thread { [self] in
                try? sender.run(shouldStop: { s in
                    self.status.withLock { $0 = s }
                    return self.stop.load(ordering: .relaxed) || s.finished.count >= expected
                }, report: { _ in })
                stopped.signal()
            }.start()
        }
        func end() {
            stop.store(true, ordering: .relaxed)
            waitStopped()
        }
        /// Waits for the sender to end; any number of times.
        func waitStopped() {
            stopped.wait()
            stopped.signal()
        }
    }

    /// Runs a blocking test body on a thread of its own: the sessions block for seconds
    /// (sockets, semaphores), and on the cooperative pool (two threads on two cores) they would
    /// hold up every async test of the run meanwhile.
    func onOwnThread(_ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    func sender(_ fixture: Fixture, file: String? = nil, session: UInt64, group: String, port: Int, rate: Int) throws -> MulticastSender {
        var options = MulticastSenderOptions(group: group, port: port, rateBitsPerSecond: rate)
        options.interfaceAddress = "127.0.0.1"
        return try MulticastSender(path: file ?? fixture.wim, manifest: fixture.manifest, session: session, options: options)
    }

    @Test func twoReceiversApplyWhatWimlibApplies() async throws { try await onOwnThread { try self.twoReceiversApplyWhatWimlibAppliesBody() } }

    func twoReceiversApplyWhatWimlibAppliesBody() throws {
        let fixture = try Fixture()
        let thread = SenderThread(try sender(fixture, session: 0x51, group: "239.255.78.1", port: 7811, rate: 400_000_000), expected: 2)
        defer { thread.end() }
        let results = Mutex<[MulticastReceiveSummary]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            if let s = try? fixture.receive(fixture.descriptor(session: 0x51, group: "239.255.78.1", port: 7811), into: "out\(i)") {
                results.withLock { $0.append(s) }
            }
        }
        let summaries = results.withLock { $0 }
        #expect(summaries.count == 2)
        for s in summaries {
            #expect(!s.fellBack && s.blocksByHTTP == 0 && s.corruptBlocks == 0 && s.bytesByMulticast > 0)
        }
        thread.waitStopped()
        #expect(thread.status.withLock { $0?.finished.count } == 2)
    }

    @Test func aLateJoinerCompletesFromTheNextPass() async throws { try await onOwnThread { try self.aLateJoinerCompletesFromTheNextPassBody() } }

    func aLateJoinerCompletesFromTheNextPassBody() throws {
        let fixture = try Fixture()
        // About 4 s a pass: the second receiver joins half-way through the first.
        let rate = Int(fixture.manifest.fileSize * 8 / 4)
        let thread = SenderThread(try sender(fixture, session: 0x52, group: "239.255.78.2", port: 7812, rate: rate), expected: 2)
        defer { thread.end() }
        let late = Mutex<MulticastReceiveSummary?>(nil)
        let lateThread = Thread {
            Thread.sleep(forTimeInterval: 2)
            late.withLock { $0 = try? fixture.receive(fixture.descriptor(session: 0x52, group: "239.255.78.2", port: 7812), into: "late") }
        }
        lateThread.start()
        let first = try fixture.receive(fixture.descriptor(session: 0x52, group: "239.255.78.2", port: 7812), into: "first")
        #expect(first.blocksByHTTP == 0 && !first.fellBack)
        thread.waitStopped()
        let summary = try #require(late.withLock { $0 })
        #expect(summary.blocksByHTTP == 0 && !summary.fellBack)
        #expect(summary.passesSeen >= 2, "a late joiner gets the start of the file from the next pass")
    }

    @Test func blocksThatFailTheirSHA256NeverReachTheTargetAndComeByHTTP() async throws { try await onOwnThread { try self.blocksThatFailTheirSHA256NeverReachTheTargetAndComeByHTTPBody() } }

    func blocksThatFailTheirSHA256NeverReachTheTargetAndComeByHTTPBody() throws {
        let fixture = try Fixture()
        // The sender sends a copy with bytes changed in its second block: the manifest is the good file's.
        let bad = fixture.scratch.sub("bad.wim")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: fixture.wim))
        let spot = fixture.manifest.blockSize + 1000
        bytes[spot] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: bad))
        let thread = SenderThread(try sender(fixture, file: bad, session: 0x53, group: "239.255.78.3", port: 7813, rate: 400_000_000), expected: 1)
        defer { thread.end() }
        let summary = try fixture.receive(fixture.descriptor(session: 0x53, group: "239.255.78.3", port: 7813), into: "out")
        #expect(summary.corruptBlocks >= 1 && summary.repairs >= 1 && summary.bytesByHTTP >= UInt64(fixture.manifest.blockSize))
    }

    @Test func withNothingOnTheGroupItFallsBackToHTTP() async throws { try await onOwnThread { try self.withNothingOnTheGroupItFallsBackToHTTPBody() } }

    func withNothingOnTheGroupItFallsBackToHTTPBody() throws {
        let fixture = try Fixture()
        let summary = try fixture.receive(fixture.descriptor(session: 0x54, group: "239.255.78.4", port: 7814, wait: 1), into: "out")
        #expect(summary.fellBack && summary.blocksByMulticast == 0 && summary.blocksByHTTP > 0)
        #expect(summary.fallbackReason?.contains("within 1 s") == true)
    }

    @Test func anInterruptStopsAReceiverStillWaitingForItsSession() async throws { try await onOwnThread { try self.interruptBody() } }

    func interruptBody() throws {
        let fixture = try Fixture()
        var options = MulticastReceiverOptions()
        options.interfaceAddress = "127.0.0.1"
        options.waitSeconds = 60
        let descriptor = fixture.descriptor(session: 0x56, group: "239.255.78.6", port: 7816, wait: 60)
        let receiver = try MulticastReceiver(descriptor: descriptor, manifest: fixture.manifest, options: options)
        let source = HTTPBlockSource(reader: try HTTPRangeReader(url: descriptor.source, client: HTTPClient(options: TransferOptions())))
        let store = MulticastBlockStore(manifest: fixture.manifest, http: source)
        let archive = try WIMArchive(name: descriptor.source, source: store)
        let delivery = MulticastWIMDelivery(receiver: receiver, archive: archive, store: store, http: source)
        // Nothing is on the group and the fallback is a minute away: the stop must not wait for it.
        let stop = ApplyStop()
        delivery.interrupt = { try checkApplyStop(stop) }
        let started = Date()
        Thread { Thread.sleep(forTimeInterval: 1); stop.request(SIGALRM) }.start()
        #expect(throws: ApplyInterrupted.self) {
            try Applier(archive: archive, delivery: delivery).apply(ApplyPlan(image: try archive.metadata(image: 1)),
                                                                   to: try DirectoryTarget(root: fixture.scratch.sub("out")))
        }
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func aRawXZImageArrivingOutOfOrderIsDecodedInOrderAndChecked() async throws { try await onOwnThread { try self.aRawXZImageArrivingOutOfOrderIsDecodedInOrderAndCheckedBody() } }

    func aRawXZImageArrivingOutOfOrderIsDecodedInOrderAndCheckedBody() throws {
        let scratch = ScratchDirectory()
        let served = scratch.sub("served")
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        let raw = scratch.sub("disk.img")
        var bytes = [UInt8](repeating: 0, count: 3 << 20)
        var seed: UInt64 = 7
        for j in stride(from: 0, to: bytes.count, by: 3) { seed = seed &* 6364136223846793005 &+ 1; bytes[j] = UInt8(truncatingIfNeeded: seed >> 40) }
        let original = Data(bytes)
        try original.write(to: URL(fileURLWithPath: raw))
        try run(["sh", "-c", "xz -0 -c '\(raw)' > '\(served)/disk.img.xz'"])
        let file = served + "/disk.img.xz"
        let manifest = try BlockManifest.make(path: file, blockSize: 64 << 10)
        try Data(manifest.encoded()).write(to: URL(fileURLWithPath: served + "/m"))
        let http = try TestHTTPServer(root: served)
        let sourceURL = http.url("/disk.img.xz"), manifestURL = http.url("/m"), folder = scratch.path
        let compressedSHA = SHA256Hasher.hex(of: try Data(contentsOf: URL(fileURLWithPath: file)))
        var options = MulticastSenderOptions(group: "239.255.78.5", port: 7815, rateBitsPerSecond: Int(manifest.fileSize * 8 / 3))
        options.interfaceAddress = "127.0.0.1"
        let thread = SenderThread(try MulticastSender(path: file, manifest: manifest, session: 0x55, options: options), expected: 2)
        defer { thread.end() }
        @Sendable func receive(_ name: String, expected: String) throws {
            let descriptor = MulticastSessionDescriptor(session: sessionIDText(0x55), receiver: sessionIDText(UInt64.random(in: 1...UInt64.max)),
                                                        group: "239.255.78.5", port: 7815, source: sourceURL, size: manifest.fileSize,
                                                        manifest: manifestURL, manifestSHA256: SHA256Hasher.hex(of: manifest.encoded()))
            var receiverOptions = MulticastReceiverOptions()
            receiverOptions.interfaceAddress = "127.0.0.1"
            let receiver = try MulticastReceiver(descriptor: descriptor, manifest: manifest, options: receiverOptions)
            let out = folder + "/" + name
            let fd = open(out, O_RDWR | O_CREAT, 0o644)
            defer { close(fd) }
            let image = try MulticastRawImage(compressed: true, expectedSHA256: expected, writeAt: { offset, b in
                _ = pwrite(fd, b.baseAddress, b.count, off_t(offset))
            }, readBack: nil)
            let source = HTTPBlockSource(reader: try HTTPRangeReader(url: descriptor.source, client: HTTPClient(options: TransferOptions())))
            _ = try receiver.run(into: image, http: source)
            #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == original)
        }
        let lateError = Mutex<String?>(nil)
        let late = Thread {
            Thread.sleep(forTimeInterval: 1.5)
            do { try receive("late.img", expected: String(repeating: "0", count: 64)) } catch { lateError.withLock { $0 = "\(error)" } }
        }
        late.start()
        try receive("first.img", expected: compressedSHA)
        for _ in 0..<200 where lateError.withLock({ $0 }) == nil { Thread.sleep(forTimeInterval: 0.1) }
        // The late one joined half-way: it decoded in order anyway, and a wrong SHA-256 is refused.
        #expect(lateError.withLock { $0 }?.contains("the sequence expects 0000") == true)
    }
}
