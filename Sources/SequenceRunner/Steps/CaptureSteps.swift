import Apply
import Capture
import NTFSCapture
import Digests
import DiskModel
import Foundation
import InstalledWindows
import Registry
import SequenceModel
import Transport
import WIM

/// captureImage: the reference machine's Windows volume, read through libntfs-3g without
/// mounting it, into a new WIM, then uploaded to the deployment server (resumable, its SHA-256
/// verified there) or left at a path (a USB stick). The volume is only read.
enum CaptureSteps {
    static func captureImage(_ parameters: CaptureImageStep, _ step: Step, _ context: RunContext) throws {
        let volume = try context.volume(parameters.volume)
        let (windows, hiveWarning, replayed) = try windowsDetails(of: volume)
        if let replayed { context.bus.log(replayed, step: step) }
        if let hiveWarning { context.bus.log(hiveWarning, step: step, level: "warning") }
        let state = windows.imageState
        if windows.generalized != true {
            let described = state.map { "its image state is \($0)" } ?? "it has no image state (\(WindowsDetails.setupStateKey) ImageState)"
            if parameters.allowNotGeneralized {
                context.bus.log("Windows on \(volume.device) is not generalized (\(described)): captured as it is, as the step allows; "
                                + "deployed to other machines it would clash with this one (same SID, same name)", step: step, level: "warning")
            } else {
                throw StepFailure("Windows on \(volume.device) was not generalized by sysprep (\(described)): an image of it would give "
                                  + "every machine this one's identity. Run sysprep /generalize /oobe /shutdown in Windows first, or set "
                                  + "\"allowNotGeneralized\": true for a backup image. Nothing was captured.", kind: .refused)
            }
        } else {
            context.bus.log("Windows on \(volume.device) is generalized (\(state ?? "")): capturing", step: step)
        }
        guard let compression = CompressionChoice(parsing: context.substitute(parameters.compress)) else {
            throw StepFailure("compress \(parameters.compress.debugDescription): none, xpress, lzx or lzms, optionally :LEVEL", kind: .badInput)
        }
        let config = try exclusionFile(parameters.config.map(context.substitute), context)

        // Where the WIM is written: beside its destination path, or in the work folder for an upload.
        let upload = parameters.upload.map(context.substitute)
        let destination = parameters.path.map(context.substitute)
        let folder = destination.map { ($0 as NSString).deletingLastPathComponent } ?? context.substitute(parameters.workDirectory)
        try FileManager.default.createDirectory(atPath: folder.isEmpty ? "." : folder, withIntermediateDirectories: true)
        let fileName = upload ?? ((destination ?? "capture.wim") as NSString).lastPathComponent
        let working = (folder as NSString).appendingPathComponent(".capturing-" + fileName)
        // A capture cut off earlier (a power cut) left at most this name behind.
        unlink(working)

        let writer = try WIMWriter(destination: working, compression: compression.format, level: compression.level)
        let source = try NTFSSource(device: volume.device)
        var exclusions = config ?? source.config
        // The run's own state (kept on this volume between steps) is never part of an image.
        if let runState = PathGlob("\\" + RunState.folder) { exclusions.exclusions.append(runState) }
        source.config = exclusions
        var capturer = Capturer()
        capturer.stopRequested = {
            let signal = applyStopSignal.load(ordering: .relaxed)
            return signal != 0 ? signal : context.applyStop.requested
        }
        let meter = RateMeter()
        var info = WIMWriter.ImageInfo(name: context.substitute(parameters.imageName),
                                       description: parameters.imageDescription.map(context.substitute))
        info.flags = parameters.flags.map(context.substitute)
        let summary: CaptureSummary
        do {
            summary = try capturer.capture(source, to: writer, info: info) { progress in
                switch progress {
                case let .scan(entries):
                    if entries % 5000 == 0 { context.bus.log("listing the volume: \(entries) entries", step: step) }
                case let .data(done, total):
                    StepRunner.progress(context, step, "capturing", bytes: done, total: total, rate: meter.rate(done))
                case .metadata:
                    context.bus.log("writing the image's metadata", step: step)
                }
            }
        } catch let stop as CaptureInterrupted {
            throw StepFailure("the capture was stopped (signal \(stop.signal)); its unfinished WIM was removed", kind: .interrupted)
        }
        context.bus.log("captured \(summary.directories) folders and \(summary.files) files (\(ByteSize.format(summary.bytesRead)) read, "
                        + "\(ByteSize.format(summary.duplicateBytes)) of it duplicates) into a \(ByteSize.format(summary.wimSize)) WIM (\(compression))",
                        step: step)
        for (reason, paths) in summary.notKept.sorted(by: { $0.key < $1.key }) {
            context.bus.log("not captured (\(paths.count)): \(reason): " + paths.prefix(5).joined(separator: ", ")
                            + (paths.count > 5 ? ", ..." : ""), step: step, level: "warning")
        }

        let sha256 = try fileSHA256(working)
        context.variables.set("CapturedImageSHA256", sha256)
        if let destination {
            guard rename(working, destination) == 0 else {
                let code = errno
                unlink(working)
                throw StepFailure("\(destination): could not put the captured WIM in place: \(String(cString: strerror(code)))", kind: .disk)
            }
            context.variables.set("CapturedImage", destination)
            context.bus.log("the image is \(destination) (SHA-256 \(sha256))", step: step)
            return
        }
        defer { unlink(working) }
        guard let upload, let server = context.options.recording?.server, let deployment = context.options.recording?.deploymentID else {
            throw StepFailure("uploading a capture needs the deployment server (the agent's run); give \"path\" to keep it on this machine",
                              kind: .badInput)
        }
        let url = server + "/api/v1/deployments/\(deployment)/captures/\(upload)"
        let size = UInt64((try? FileManager.default.attributesOfItem(atPath: working)[.size] as? UInt64) ?? 0)
        let sent = RateMeter()
        let outcome = try ResumableUpload(client: context.client, url: url).send(file: working, size: size, sha256: sha256) { held in
            StepRunner.progress(context, step, "uploading", bytes: held, total: size, rate: sent.rate(held))
        }
        context.variables.set("CapturedImage", outcome.path)
        context.bus.log("uploaded to the server's captures as \(outcome.path): \(ByteSize.format(size)), SHA-256 \(sha256) verified by the server"
                        + (outcome.resumes > 0 ? " (went on \(outcome.resumes) times after a drop)" : ""), step: step)
    }

    /// What the volume's SOFTWARE hive says (its image state), read as `findWindows` and
    /// `imprint disk list` read it; a volume without the hive holds no Windows to capture.
    /// A hive Windows had not finished writing has its .LOG1/.LOG2 replayed first (sysprep's
    /// last change may be there); `warning` says when they could not be, and `replayed` which
    /// logs were.
    static func windowsDetails(of volume: Volume) throws -> (details: WindowsDetails, warning: String?, replayed: String?) {
        let files = try openVolumeFiles(volume.device)
        defer { try? files.close() }
        let path = "Windows/System32/config/SOFTWARE"
        guard let bytes = try files.read(path) else {
            throw StepFailure("\(volume.device) holds no Windows (no \(path))", kind: .refused)
        }
        let hive = try Hive(bytes: bytes, file: volume.device + ": " + path, path: path, readingLogsWith: { try files.read($0) })
        var details = WindowsDetails()
        try details.readSoftware(hive)
        return (details, hive.logReplayError.map { "\($0) (its image state is read from the file as it is)" },
                hive.replayed.map { "\(volume.device): \(path) was not cleanly written; replayed its logs \($0.summary)" })
    }

    /// The step's exclusion file (a path or URL); nil: DISM's defaults.
    static func exclusionFile(_ location: String?, _ context: RunContext) throws -> CaptureConfig? {
        guard let location, !location.isEmpty else { return nil }
        if ImageSteps.isURL(location) {
            let data = try context.client.fetch(location, limit: 1 << 20)
            return try CaptureConfig(bytes: [UInt8](data), file: location)
        }
        return try CaptureConfig(contentsOf: location)
    }

    static func fileSHA256(_ path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw StepFailure("\(path): cannot read the captured WIM back", kind: .disk) }
        defer { try? handle.close() }
        let hasher = SHA256Hasher()
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty { hasher.update(chunk) }
        return hasher.finish()
    }
}
