import CImprintSystem
import DiskModel
import Disks
import Digests
import Failures
import Foundation
import SequenceModel
import Transport

/// writeImage: a sector image (`.img`, or `.img.xz` decoded by liblzma as it arrives) streamed
/// onto the selected disk or a volume, its SHA-256 checked; never held whole, never cached.
enum RawImageSteps {
    static func writeImage(_ parameters: WriteImageStep, _ step: Step, _ context: RunContext) throws {
        let source = context.substitute(parameters.source)
        let expected = parameters.sha256.map(context.substitute)?.lowercased().nonEmpty
        try context.checkVerified(source, sha256: expected, step: step)
        let output = try ImageOutput(target: context.substitute(parameters.target), context)
        if let session = parameters.multicast, ImageSteps.isURL(source) {
            do {
                if try MulticastSteps.writeRaw(session, source: source, expected: expected, output: output,
                                               xzMemoryLimit: context.options.extraction.xzMemoryLimit, step, context) {
                    context.bus.log("wrote \(output.written) bytes to \(output.path)", step: step)
                    return
                }
            } catch {
                output.spoil()
                throw error
            }
        }
        let decoder = source.lowercased().hasSuffix(".xz") ? try XZDecoder(memoryLimit: context.options.extraction.xzMemoryLimit) : nil
        let deliver: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            if let decoder { try decoder.decode(bytes) { try output.write($0) } } else { try output.write(bytes) }
        }
        let meter = RateMeter()
        let report: (UInt64, UInt64?) -> Void = { done, total in
            StepRunner.progress(context, step, decoder == nil ? "writing" : "decompressing and writing", bytes: done, total: total,
                                rate: meter.rate(done))
        }
        do {
            if ImageSteps.isURL(source) {
                let result = try context.client.stream(source, expectedSHA256: expected, progress: { report($0.bytes, $0.total) },
                                                       sink: deliver)
                context.bus.log("received \(result.bytes) bytes (SHA-256 \(result.sha256))" + ImageSteps.sourcesText(result.sourcesSummary),
                                step: step)
            } else {
                try readLocal(source, expected: expected, deliver: deliver, progress: report)
            }
            try decoder?.finish { try output.write($0) }
            try output.finish()
        } catch {
            // A damaged or wrong image must not boot: the start of what was written goes.
            output.spoil()
            throw error
        }
        context.bus.log("wrote \(output.written) bytes to \(output.path)", step: step)
    }

    private static func readLocal(_ path: String, expected: String?, deliver: (UnsafeRawBufferPointer) throws -> Void,
                                  progress: (UInt64, UInt64?) -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw StepFailure("\(path): cannot open the image", kind: .disk) }
        defer { try? handle.close() }
        let total = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? nil
        let hasher = SHA256Hasher()
        var done: UInt64 = 0
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
            hasher.update(chunk)
            try chunk.withUnsafeBytes { try deliver($0) }
            done += UInt64(chunk.count)
            progress(done, total)
        }
        let actual = hasher.finish()
        if let expected, actual != expected {
            throw StepFailure("\(path): SHA-256 is \(actual), the sequence expects \(expected): the image is wrong or damaged", kind: .badInput)
        }
    }
}

/// Where a raw image goes: the selected disk (checked again as the plan chose it, opened
/// exclusively) or a volume's device; writes are sequential and bounded by its size.
final class ImageOutput {
    let path: String
    private let descriptor: Int32
    private let capacity: UInt64
    private let isWholeDisk: Bool
    private var disk: WritableDisk?
    private(set) var written: UInt64 = 0

    init(target: String, _ context: RunContext) throws {
        if target == "disk" {
            guard let selected = context.selectedDisk, let rules = context.diskRules else {
                throw StepFailure("no disk was selected (a selectDisk step must come first)", kind: .badInput)
            }
            var allowed = rules
            allowed.wipe = true
            guard rules.wipe || !selected.holdsData else {
                throw StepFailure("\(selected.path) holds data and the selectDisk rules do not say \"wipe\": true", kind: .refused)
            }
            let writable = try WritableDisk(identity: DiskIdentity(selected), rules: allowed, environment: context.options.environment)
            disk = writable
            path = selected.path
            capacity = selected.size
            isWholeDisk = true
            descriptor = -1
        } else {
            let volume = try context.volume(target)
            let fd = open(volume.device, O_WRONLY | O_EXCL | O_CLOEXEC)
            guard fd >= 0 else { throw StepFailure("\(volume.device): cannot open for writing: \(String(cString: strerror(errno)))", kind: .disk) }
            path = volume.device
            capacity = volume.size
            isWholeDisk = false
            descriptor = fd
        }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty else { return }
        guard written + UInt64(bytes.count) <= capacity else {
            throw StepFailure("the image is larger than \(path) (\(ByteSize.format(capacity))): stopped at \(ByteSize.format(written))", kind: .badInput)
        }
        if let disk {
            try disk.write([DiskWrite(offset: written, bytes: Array(bytes))])
        } else {
            var done = 0
            while done < bytes.count, let base = bytes.baseAddress {
                let count = pwrite(descriptor, base + done, bytes.count - done, off_t(written) + off_t(done))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw StepFailure("\(path): write at \(written + UInt64(done)) failed: \(String(cString: strerror(errno)))", kind: .disk) }
                done += count
            }
        }
        written += UInt64(bytes.count)
    }

    /// Writes `bytes` at `offset` (a multicast session's blocks come in any order).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard !bytes.isEmpty else { return }
        guard offset + UInt64(bytes.count) <= capacity else {
            throw StepFailure("the image is larger than \(path) (\(ByteSize.format(capacity))): a block ends at \(ByteSize.format(offset + UInt64(bytes.count)))", kind: .badInput)
        }
        if let disk {
            try disk.write([DiskWrite(offset: offset, bytes: Array(bytes))])
        } else {
            var done = 0
            while done < bytes.count, let base = bytes.baseAddress {
                let count = pwrite(descriptor, base + done, bytes.count - done, off_t(offset) + off_t(done))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw StepFailure("\(path): write at \(offset + UInt64(done)) failed: \(String(cString: strerror(errno)))", kind: .disk) }
                done += count
            }
        }
        written = max(written, offset + UInt64(bytes.count))
    }

    /// Reads back what was written (the SHA-256 of an image whose blocks came out of order).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        if let disk { try disk.flush() }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StepFailure("\(path): cannot open to read back: \(String(cString: strerror(errno)))", kind: .disk) }
        defer { close(fd) }
        var done = 0
        while done < buffer.count, let base = buffer.baseAddress {
            let count = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw StepFailure("\(path): read back at \(offset + UInt64(done)) failed", kind: .disk) }
            done += count
        }
    }

    func finish() throws {
        if let disk {
            try disk.flush()
        } else if fsync(descriptor) != 0 {
            throw StepFailure("\(path): fsync failed: \(String(cString: strerror(errno)))", kind: .disk)
        }
    }

    /// Zeroes the first MiB written, so a half-written or unverified image is never booted.
    func spoil() {
        let length = min(written, 1 << 20)
        guard length > 0 else { return }
        if let disk { try? disk.zero(offset: 0, length: length); try? disk.flush() } else {
            let zeros = [UInt8](repeating: 0, count: Int(length))
            _ = zeros.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            fsync(descriptor)
        }
    }
}
