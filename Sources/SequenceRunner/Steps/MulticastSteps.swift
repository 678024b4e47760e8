import Apply
import Foundation
import Multicast
import MulticastApply
import Primitives
import SequenceModel
import Transport
import WIM

/// applyImage and writeImage from the multicast session the server put the machine in: the
/// file's blocks from the group as the carousel brings them, checked against the manifest
/// (whose SHA-256 came with the sequence), applied or written as they arrive; what the group
/// does not deliver comes by HTTP Range from the step's source, and the events say so.
enum MulticastSteps {
    /// Joins the session. Nil, with a warning, when it cannot even start (the manifest is not
    /// there, the group cannot be joined): the step then goes by HTTP as without a session.
    static func prepare(_ fields: MulticastSessionDescriptor, source: String, _ step: Step,
                        _ context: RunContext) -> (MulticastReceiver, HTTPBlockSource)? {
        // As the step carries it: ids in either case, URLs with the sequence's variables.
        var descriptor = fields
        descriptor.session = fields.session.lowercased()
        descriptor.receiver = fields.receiver.lowercased()
        descriptor.source = context.substitute(fields.source)
        descriptor.manifest = context.substitute(fields.manifest)
        descriptor.manifestSHA256 = fields.manifestSHA256.lowercased()
        // The session sends the file the step named when the server handed the sequence out
        // (its variables as they were then); a variable set since may name another file.
        guard descriptor.source == source else {
            context.bus.log("multicast session \(fields.session) sends \(descriptor.source), but this step's source is now \(source): "
                            + "fetching it by HTTP instead", step: step, level: "warning")
            return nil
        }
        do {
            let manifest = try fetchManifest(descriptor, client: context.client)
            var options = MulticastReceiverOptions()
            if let wait = fields.waitSeconds { options.waitSeconds = Double(wait) }
            let receiver = try MulticastReceiver(descriptor: descriptor, manifest: manifest, options: options)
            let http = HTTPBlockSource(reader: try HTTPRangeReader(url: descriptor.source, client: context.client))
            context.bus.log("joining multicast session \(descriptor.session) on \(descriptor.group):\(descriptor.port) for \(source) "
                            + "(\(manifest.blockCount) blocks of \(manifest.blockSize / 1024) KiB)", step: step)
            return (receiver, http)
        } catch {
            context.bus.log("multicast session \(fields.session) cannot be joined (\(error)): fetching \(source) by HTTP instead",
                            step: step, level: "warning")
            return nil
        }
    }

    /// Events of the receiver as the step's log lines.
    static func events(_ step: Step, _ context: RunContext) -> @Sendable (MulticastReceiverEvent) -> Void {
        let bus = context.bus
        return { event in
            switch event {
            case let .heard(address): bus.log("multicast: the sender at \(address) is heard", step: step)
            case let .fellBack(reason): bus.log("multicast: \(reason): the rest comes by HTTP from the step's source", step: step, level: "warning")
            case .progress: break
            }
        }
    }

    static func summaryText(_ summary: MulticastReceiveSummary) -> String {
        "multicast: \(summary.blocksByMulticast) blocks from the group, \(summary.blocksByHTTP) by HTTP, \(summary.repairs) completed by HTTP "
            + "(\(summary.bytesByMulticast) bytes by multicast, \(summary.bytesByHTTP) by HTTP, \(summary.passesSeen) passes seen, "
            + "\(summary.corruptBlocks) blocks failed their SHA-256 and were not used)"
            + (summary.fellBack ? "; fell back to HTTP: \(summary.fallbackReason ?? "")" : "")
    }

    /// A WIM's image applied from the session. False when the session could not be joined.
    static func applyWIM(_ fields: MulticastSessionDescriptor, source: String, selector: String, expected: String?, _ volume: Volume,
                         _ step: Step, _ context: RunContext) throws -> Bool {
        guard let (receiver, http) = prepare(fields, source: source, step, context) else { return false }
        let store = MulticastBlockStore(manifest: receiver.manifest, http: http)
        let archive = try WIMArchive(name: source, source: store)
        let index = try archive.image(selector)
        let plan = ApplyPlan(image: try archive.metadata(image: index))
        if expected != nil {
            context.bus.log("the WIM comes in blocks, each checked against the session's manifest (itself checked by its SHA-256), "
                            + "and every blob by its SHA-1; the whole file's SHA-256 is not computed", step: step)
        }
        let delivery = MulticastWIMDelivery(receiver: receiver, archive: archive, store: store, http: http, events: events(step, context))
        // A signal or the step's timeout stops it while it waits for blocks, not only between blobs.
        let stop = context.applyStop
        delivery.interrupt = { try checkApplyStop(stop) }
        try ImageSteps.run(Applier(archive: archive, delivery: delivery), plan, volume, step, context)
        if let summary = delivery.summary { context.bus.log(summaryText(summary), step: step) }
        return true
    }

    /// A raw image written from the session. False when the session could not be joined.
    static func writeRaw(_ fields: MulticastSessionDescriptor, source: String, expected: String?, output: ImageOutput,
                         xzMemoryLimit: UInt64, _ step: Step, _ context: RunContext) throws -> Bool {
        guard let (receiver, http) = prepare(fields, source: source, step, context) else { return false }
        let image = try MulticastRawImage(
            compressed: source.lowercased().hasSuffix(".xz"), expectedSHA256: expected, xzMemoryLimit: xzMemoryLimit,
            writeAt: { offset, bytes in try output.write(bytes, at: offset) },
            readBack: { offset, buffer in try output.read(into: buffer, at: offset) })
        let meter = RateMeter()
        let bus = context.bus
        let log = events(step, context)
        let blockSize = UInt64(receiver.manifest.blockSize)
        let stop = context.applyStop
        let summary = try receiver.run(into: image, http: http, interrupt: { try checkApplyStop(stop) }) { event in
            log(event)
            if case let .progress(done, wanted, _, _) = event {
                let bytes = UInt64(done) * blockSize
                StepRunner.progress(context, step, "receiving and writing", bytes: bytes, total: UInt64(wanted) * blockSize, rate: meter.rate(bytes))
            }
        }
        _ = bus
        try output.finish()
        context.bus.log(summaryText(summary), step: step)
        return true
    }
}
