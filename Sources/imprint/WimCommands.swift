import ArgumentParser
import Digests
import Foundation
import WIM
import Apply
import Transport
import Capture
import NTFSCapture
import DiskModel
import SequenceRunner

struct SourceOptions: ParsableArguments {
    @Argument(help: "The WIM file (for a split WIM, its first part) or its http(s) URL (read through Range requests); for apply, \"-\" or a pipe reads a pipable WIM from the stream.")
    var file: String

    @Option(name: .customLong("ref"), help: "Another part of a split WIM (repeatable); found beside the first part when not given.")
    var referenceParts: [String] = []

    func open() throws -> WIMArchive {
        // A regular WIM on an HTTP server is read through Range requests, as the agent reads one.
        if file.hasPrefix("http://") || file.hasPrefix("https://") {
            let reader = try HTTPRangeReader(url: file, client: HTTPClient(options: TransferOptions()))
            return try WIMArchive(name: file, source: HTTPRangeSource(reader: reader))
        }
        return try WIMArchive(path: file, referenceParts: referenceParts)
    }

    /// Opens the WIM and reads the metadata of the image `selector` names.
    func openImage(_ selector: String) throws -> (WIMArchive, Int, ImageMetadata) {
        let wim = try open()
        let index = try wim.image(selector)
        return (wim, index, try wim.metadata(image: index))
    }

    /// A pipable WIM arriving on standard input or through a pipe (nil for a regular file).
    func openStream() throws -> PipableStream? {
        if file == "-" { return try PipableStream(descriptor: 0, name: "standard input") }
        var info = stat()
        guard stat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO || (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        let fd = Glibc.open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw WIMError.io(path: file, operation: "open", errno: errno) }
        return try PipableStream(descriptor: fd, name: file)
    }
}

struct ReadOptions: ParsableArguments {
    @Option(help: "Decompression threads (default: every CPU).")
    var threads: Int?

    @Option(help: "Progress display: auto (a bar on a terminal), bar, json (one object per line on stdout), none.")
    var progress: ProgressMode = .auto
}

/// `imprint wim info`
struct WimInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show the header and the images of a WIM file.")

    @OptionGroup var source: SourceOptions
    @Argument(help: "With --name, --description, --flags or --boot: the image to change (index or name).") var image: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var edit: ImageInfoEditOptions

    func run() throws {
        if edit.isEditing {
            do { try edit.run(wim: source.file, image: image) } catch { throw fail(error) }
            return
        }
        let wim: WIMArchive
        do { wim = try source.open() } catch { throw fail(error) }
        let h = wim.header
        let totalSize = wim.parts.reduce(UInt64(0)) { $0 + $1.size }
        let solid = wim.resources.contains { $0.isSolid }
        let solidFormats = Set(wim.resources.filter(\.isSolid).map(\.compression.description)).sorted()
        if json {
            let images = (0..<wim.imageCount).map { WIMInfoJSON.Image(index: $0 + 1, wim.xmlImage($0 + 1)) }
            try printJSON(WIMInfoJSON(
                path: wim.path, guid: h.guidString, version: h.version, imageCount: wim.imageCount,
                compression: h.compression.description, chunkSize: h.chunkSize, partNumber: h.partNumber, totalParts: h.totalParts,
                bootIndex: h.bootIndex, size: totalSize, flags: h.flags.names, pipable: h.isPipable, solidResources: solid,
                solidCompression: solidFormats, blobCount: wim.blobs.count, integrityTable: !h.integrityTable.isEmpty, images: images))
            return
        }
        print("WIM Information:")
        print("----------------")
        let rows: [(String, String)] = [
            ("Path", wim.path), ("GUID", "0x" + h.guidString), ("Version", String(h.version)),
            ("Image Count", String(wim.imageCount)), ("Compression", h.compression.description),
            ("Chunk Size", "\(h.chunkSize) bytes"), ("Part Number", "\(h.partNumber)/\(h.totalParts)"),
            ("Boot Index", String(h.bootIndex)), ("Size", "\(totalSize) bytes"),
            ("Solid resources", solid ? "yes (" + solidFormats.joined(separator: ", ") + ")" : "no"),
            ("Blobs", String(wim.blobs.count)), ("Integrity table", h.integrityTable.isEmpty ? "no" : "yes"),
            ("Flags", h.flags.names.isEmpty ? "none" : h.flags.names.joined(separator: " ")),
        ]
        for (k, v) in rows { print((k + ":").padding(toLength: 20, withPad: " ", startingAt: 0) + v) }
        print("")
        print("Available Images:")
        print("-----------------")
        for index in 1...max(wim.imageCount, 1) where wim.imageCount > 0 {
            print("Index:".padding(toLength: 28, withPad: " ", startingAt: 0) + String(index))
            if let x = wim.xmlImage(index) {
                for (k, v) in x.properties {
                    var value = v
                    if k.hasSuffix("TIME/HIGHPART") || k.hasSuffix("TIME/LOWPART") { continue }
                    if k == "TOTALBYTES" { value += " bytes" }
                    print((k + ":").padding(toLength: 28, withPad: " ", startingAt: 0) + value)
                }
                if let t = x.creationTime { print("Creation Time:".padding(toLength: 28, withPad: " ", startingAt: 0) + isoTime(t)) }
                if let t = x.lastModificationTime { print("Last Modification Time:".padding(toLength: 28, withPad: " ", startingAt: 0) + isoTime(t)) }
            }
            print("")
        }
    }
}

/// `imprint wim dir`
struct WimDir: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dir", abstract: "List every path of an image with its size, attributes and streams.")

    @OptionGroup var source: SourceOptions
    @Argument(help: "The image: a 1-based index or a name.") var image: String
    @Flag(help: "Print JSON (an array with one object per path).") var json = false

    func run() throws {
        do {
            let (wim, _, meta) = try source.openImage(image)
            func size(_ h: SHA1Digest) -> UInt64 { h.isZero ? 0 : (wim.blobs[h]?.size ?? 0) }
            // Tree order, depth first, as wimlib lists.
            var order: [Int] = []
            var stack = [0]
            while let i = stack.popLast() {
                order.append(i)
                if meta.entries[i].isDirectory { stack.append(contentsOf: meta.children(of: i).reversed()) }
            }
            if json {
                try printJSON(order.map { i -> WIMDirJSON in
                    let e = meta.entries[i]
                    return WIMDirJSON(
                        path: meta.path(of: i), size: size(e.dataHash), attributes: e.attributes.rawValue,
                        attributeNames: e.attributes.names, isDirectory: e.isDirectory, creationTime: isoTime(e.creationTime),
                        lastWriteTime: isoTime(e.lastWriteTime), lastAccessTime: isoTime(e.lastAccessTime), securityId: e.securityID,
                        sha1: e.dataHash.isZero ? nil : e.dataHash.description, shortName: e.shortName.isEmpty ? nil : e.shortName,
                        hardLinkGroup: e.hardLinkGroup == 0 ? nil : e.hardLinkGroup,
                        reparseTag: e.isReparsePoint ? String(format: "0x%08X", e.reparseTag) : nil,
                        reparseSize: e.isReparsePoint ? size(e.reparseHash) : nil,
                        streams: e.namedStreams.isEmpty ? nil : e.namedStreams.map { .init(name: $0.name, size: size($0.hash), sha1: $0.hash.description) })
                })
                return
            }
            for i in order {
                let e = meta.entries[i]
                var line = meta.path(of: i)
                if !json {
                    let kind = e.isReparsePoint ? "link" : e.isDirectory ? "dir " : "file"
                    line = "\(kind) \(String(size(e.dataHash)).leftPadded(12)) 0x\(String(e.attributes.rawValue, radix: 16).leftPadded(5, "0"))  " + line
                    for s in e.namedStreams { line += "  [:\(s.name) \(size(s.hash))]" }
                }
                print(line)
            }
        } catch let error as WIMError {
            throw fail(error)
        }
    }
}

/// `imprint wim verify`
struct WimVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Decompress every blob and check its SHA-1 (and the integrity table with --check).")

    @OptionGroup var source: SourceOptions
    @OptionGroup var read: ReadOptions
    @Flag(help: "Also check the integrity table, when the WIM has one.") var check = false

    func run() throws {
        let reporter = ProgressReporter(read.progress)
        do {
            let wim = try source.open()
            if check {
                let result = try IntegrityTable.verify(wim) { done, total in reporter.report("integrity", done: done, total: total) }
                reporter.finishLine()
                if let result { print("Integrity table: \(result) chunks OK") } else { print("Integrity table: none in this WIM") }
            }
            var verifier = Verifier(archive: wim)
            verifier.threads = read.threads ?? availableProcessorCount()
            let result = try verifier.run { p in reporter.report("verify", done: p.bytesDone, total: p.bytesTotal) }
            reporter.finishLine()
            reporter.event(["type": "result", "status": "ok", "blobs": result.blobs, "bytes": result.bytes])
            if reporter.mode != .json {
                print("OK: \(result.images) image metadata resource\(result.images == 1 ? "" : "s") and \(result.blobs) blobs (\(formatBytes(result.bytes))) decompressed and matched their SHA-1")
            }
        } catch {
            reporter.finishLine()
            reporter.event(["type": "result", "status": "failed", "error": "\(error)"])
            throw fail(error)
        }
    }
}

/// Shared by `apply` and `extract`.
func runApply(_ applier: Applier, plan: ApplyPlan, destination: String, read: ReadOptions, cleanup: RefreshCleanup? = nil) throws {
    let reporter = ProgressReporter(read.progress)
    if cleanup != nil && !NTFSTarget.isVolume(destination) { throw RefreshCleanupError.needsNTFSVolume(destination) }
    // From here on SIGTERM/SIGINT stop the apply at a safe point instead of killing it.
    Interruption.install()
    // A block device, or a file holding an NTFS file system, is written as an NTFS volume
    // through libntfs-3g; anything else is a directory.
    let target: ApplyTarget = NTFSTarget.isVolume(destination)
        ? try NTFSTarget(device: destination) : try DirectoryTarget(root: destination)
    if let notice = (target as? NTFSTarget)?.mountNotice {
        FileHandle.standardError.write(Data("imprint: note: \(notice)\n".utf8))
    }
    if let cleanup, let volume = target as? NTFSTarget { try runCleanup(cleanup, on: volume, reporter: reporter) }
    var applier = applier
    applier.threads = read.threads ?? availableProcessorCount()
    let started = Date()
    let summary: ApplySummary
    do {
        summary = try applier.apply(plan, to: target, progress: reporter.applyCallback())
    } catch {
        reporter.finishLine()
        // Unmount now rather than when the target is released, so the message can say so.
        var unmountFailure: Error?
        if let volume = target as? NTFSTarget {
            do { try volume.close() } catch { unmountFailure = error }
        }
        guard let stop = error as? ApplyInterrupted else { throw error }
        let name = Interruption.name(stop.signal)
        let state = target is NTFSTarget
            ? unmountFailure.map { "unmounting the volume failed (\($0))" } ?? "the volume was unmounted cleanly"
            : "stopped between files"
        reporter.event(["type": "result", "status": "interrupted", "signal": name])
        FileHandle.standardError.write(Data("imprint: interrupted by \(name): \(state); run the same apply again to finish\n".utf8))
        throw ExitCode(128 + stop.signal)
    }
    reporter.finishLine()
    let seconds = Date().timeIntervalSince(started)
    var notKept: [String: Any] = [:]
    for (reason, paths) in summary.notKept { notKept[reason] = ["count": paths.count, "examples": Array(paths.prefix(5))] }
    reporter.event(["type": "result", "status": "ok", "directories": summary.directories, "files": summary.files,
                    "hardLinks": summary.hardLinks, "symlinks": summary.symlinks, "bytesWritten": summary.bytesWritten,
                    "filesKeptWhole": summary.filesKeptWhole, "bytesKeptWhole": summary.bytesKeptWhole,
                    "seconds": (seconds * 1000).rounded() / 1000, "notKept": notKept])
    if reporter.mode != .json {
        print("Applied to \(destination): \(summary.directories) directories, \(summary.files) files, \(summary.hardLinks) hard links, \(summary.symlinks) symlinks, \(formatBytes(summary.bytesWritten)) in \(String(format: "%.1f", seconds)) s")
        if summary.filesKeptWhole > 0 {
            print("Kept \(summary.filesKeptWhole) files already whole on the volume (data equal to the image's; \(formatBytes(summary.bytesKeptWhole)) not written again)")
        }
        if summary.xattrsWritten > 0 { print("Windows metadata kept in \(summary.xattrsWritten) user.wim.* extended attributes") }
        printNotKept(summary.notKept, heading: "Not kept")
    }
}

/// What an apply or a capture left out, by reason, with the first five paths of each.
func printNotKept(_ notKept: [String: [String]], heading: String) {
    for (reason, paths) in notKept.sorted(by: { $0.key < $1.key }) {
        print("\(heading) (\(paths.count)): \(reason)")
        for p in paths.prefix(5) { print("    \(p)") }
        if paths.count > 5 { print("    ... and \(paths.count - 5) more") }
    }
}

/// `imprint wim apply`
struct WimApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply an image to a directory or an NTFS volume (files already there that the image lacks are kept).")

    @OptionGroup var source: SourceOptions
    @Argument(help: "The image: a 1-based index or a name.") var image: String
    @Argument(help: "The target: a directory (created if missing), or an NTFS volume (a block device or a file with an NTFS file system).") var target: String
    @OptionGroup var read: ReadOptions
    @Option(help: "Refresh, NTFS volumes only: before applying, move (into Windows.old) or delete the old installation's top-level folders. Users is never touched.")
    var cleanup: CleanupMode?
    @Option(name: .customLong("cleanup-folder"), help: "A top-level folder for --cleanup (repeatable; default: Windows, Program Files, Program Files (x86), ProgramData).")
    var cleanupFolders: [String] = []

    func run() throws {
        do {
            if cleanup == nil && !cleanupFolders.isEmpty { throw ValidationError("--cleanup-folder needs --cleanup move or --cleanup delete") }
            let refresh = try cleanup.map { try RefreshCleanup(mode: $0, folders: cleanupFolders.isEmpty ? RefreshCleanup.defaultFolders : cleanupFolders) }
            if let stream = try source.openStream() {
                // A pipable WIM from a pipe: metadata first, then blobs as they come.
                let index = try stream.image(image)
                let meta = try stream.readMetadata(image: index)
                try runApply(Applier(stream: stream), plan: ApplyPlan(image: meta), destination: target, read: read, cleanup: refresh)
                return
            }
            let (wim, _, meta) = try source.openImage(image)
            try runApply(Applier(archive: wim), plan: ApplyPlan(image: meta), destination: target, read: read, cleanup: refresh)
        } catch let exit as ExitCode {
            throw exit // interrupted: already reported
        } catch {
            throw fail(error)
        }
    }
}

extension CleanupMode: ExpressibleByArgument {}

/// The refresh clean-up, on the volume `runApply` just opened, before anything is written;
/// prints what it did.
func runCleanup(_ cleanup: RefreshCleanup, on volume: NTFSTarget, reporter: ProgressReporter) throws {
    let report = try volume.cleanUp(cleanup)
    var event: [String: Any] = ["type": "cleanup", "mode": report.mode.rawValue, "folders": report.done,
                                "missing": report.missing, "notFolders": report.notFolders]
    if let destination = report.destination { event["destination"] = destination }
    if report.mode == .delete { event["deletedFiles"] = report.deletedFiles; event["deletedDirectories"] = report.deletedDirectories }
    switch report.resumed {
    case .alreadyDone?: event["resumed"] = "alreadyDone"
    case .continued?: event["resumed"] = "continued"
    case nil: break
    }
    reporter.event(event)
    guard reporter.mode != .json else { return }
    print(report.description.replacingOccurrences(of: "clean-up:", with: "Clean-up:"))
}

/// `imprint wim extract`
struct WimExtract: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Extract files or directories of an image into a directory.")

    @OptionGroup var source: SourceOptions
    @Argument(help: "The image: a 1-based index or a name.") var image: String
    @Argument(help: "Paths inside the image (\"/Windows/System32/config\", backslashes work too).") var paths: [String]
    @Option(name: .customLong("dest"), help: "Where to put them (default: the current directory).") var destination = "."
    @OptionGroup var read: ReadOptions

    func run() throws {
        do {
            let (wim, index, meta) = try source.openImage(image)
            var roots: [Int] = []
            for p in paths {
                guard let entry = meta.lookup(p) else { throw WIMError.noSuchPath(path: wim.path, image: index, requested: p) }
                roots.append(entry)
            }
            try runApply(Applier(archive: wim), plan: ApplyPlan(image: meta, roots: roots), destination: destination, read: read)
        } catch let exit as ExitCode {
            throw exit // interrupted: already reported
        } catch {
            throw fail(error)
        }
    }
}

extension CompressionChoice: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
    public static var defaultValueDescription: String { "xpress" }
}

/// `imprint wim capture`
struct WimCapture: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture a directory or an NTFS volume into a new WIM file (one image).",
        discussion: """
            SOURCE is a directory (the Windows metadata an apply kept in user.wim.* extended \
            attributes is read back) or an unmounted NTFS volume: a block device, or a file \
            starting with an NTFS boot sector, or with --offset/--size a partition inside a disk \
            image. An NTFS volume is read through libntfs-3g, keeping what wimlib's NTFS capture \
            keeps (named streams, security descriptors, short names, reparse points, object IDs, \
            hard links); EFS-encrypted files are listed as not captured. --config FILE takes a \
            DISM WimScript.ini ([ExclusionList], [ExclusionException], [CompressionExclusionList]); \
            without it an NTFS volume leaves out wimlib's default list (\\pagefile.sys, \
            \\hiberfil.sys, \\swapfile.sys, \\$ntfs.log, \\System Volume Information, \\RECYCLER, \
            \\$Recycle.Bin, \\Windows\\CSC).
            """)

    @Argument(help: "The directory or NTFS volume (device or image file) to capture.") var source: String
    @Argument(help: "The WIM file to write; it must not exist yet.") var wim: String
    @Argument(help: "The image's name.") var name: String
    @Option(name: .customLong("description"), help: "The image's description.") var imageDescription: String?
    @Option(help: "Compression: none, xpress, lzx or lzms, with an optional level 1-100 after a colon (lzx:70; default 50).")
    var compress = CompressionChoice(.xpress)
    @Option(help: "Chunk size in bytes, a power of two from 32768 (default: 32768, 131072 for LZMS).") var chunkSize: Int?
    @Option(help: "Compression threads (default: every CPU).") var threads: Int?
    @Option(help: "Progress display: auto (a bar on a terminal), bar, json (one object per line on stdout), none.")
    var progress: ProgressMode = .auto
    @Option(help: "A capture configuration (DISM's WimScript.ini format): what to exclude or store uncompressed.") var config: String?
    @Option(help: "The image's FLAGS (its edition, e.g. Professional); by default the EditionID of a Windows image.") var flags: String?
    @Option(help: "The image's DISPLAYNAME; by default the ProductName of a Windows image.") var displayName: String?
    @Option(help: "The image's DISPLAYDESCRIPTION; by default the ProductName of a Windows image.") var displayDescription: String?
    @Option(help: "For an NTFS volume inside a disk image: the byte offset of its partition.") var offset: UInt64?
    @Option(help: "For an NTFS volume inside a disk image: the partition's size in bytes (default: to the end).") var size: UInt64?

    /// A block device, or a regular file with an NTFS boot sector (at --offset).
    private func isNTFSVolume() -> Bool {
        var info = stat()
        guard stat(source, &info) == 0 else { return false }
        let type = info.st_mode & S_IFMT
        return type == S_IFBLK || (type == S_IFREG && NTFSSource.looksLikeNTFS(source, offset: offset ?? 0))
    }
    @OptionGroup var layout: LayoutOptions
    @Flag(help: "Leave out files that cannot be read (gone since the listing, I/O errors) and list them, instead of stopping.")
    var continueOnError = false
    @Flag(help: "Mark the image bootable (the header's boot index: a WinPE boot.wim).") var boot = false

    func run() throws {
        do {
            let reporter = ProgressReporter(progress)
            let threadCount = max(1, threads ?? availableProcessorCount())
            let configuration = try config.map { try CaptureConfig(contentsOf: $0) }
            let captureSource: CaptureSource
            var directory: DirectorySource?
            if isNTFSVolume() {
                let volume = try NTFSSource(device: source, offset: offset ?? 0, size: size)
                if let configuration { volume.config = configuration }
                captureSource = volume
            } else {
                guard offset == nil, size == nil else {
                    throw NTFSCaptureError.notNTFS(device: source, offset: offset ?? 0)
                }
                let folder = try DirectorySource(root: source)
                if let configuration { folder.config = configuration }
                directory = folder
                captureSource = folder
            }
            let writer = try WIMWriter(destination: wim, compression: compress.format, level: compress.level, chunkSize: chunkSize, threads: threadCount,
                                       layout: try layout.options())
            // A WIM written inside the folder it captures does not capture itself.
            directory?.exclude(writer.temporaryPath)
            var info = WIMWriter.ImageInfo(name: name, description: imageDescription)
            (info.flags, info.displayName, info.displayDescription) = (flags, displayName, displayDescription)
            var capturer = Capturer()
            capturer.threads = threadCount
            capturer.continueOnError = continueOnError
            // SIGTERM/SIGINT stop the capture between pieces of data, so the temporary file goes.
            Interruption.install()
            capturer.stopRequested = { applyStopSignal.load(ordering: .relaxed) }
            let started = Date()
            let summary: CaptureSummary
            do {
                summary = try capturer.capture(captureSource, to: writer, info: info, boot: boot) { p in
                    switch p {
                    case let .scan(entries): reporter.report("scanning", done: UInt64(entries), total: 0, unit: "entries")
                    case let .data(done, total): reporter.report("data", done: done, total: total)
                    case .metadata: reporter.report("metadata", done: 1, total: 1, unit: "steps", force: true)
                    }
                }
            } catch let stop as CaptureInterrupted {
                reporter.finishLine()
                reporter.event(["type": "result", "status": "interrupted", "signal": Interruption.name(stop.signal)])
                FileHandle.standardError.write(Data("imprint: capture interrupted by \(Interruption.name(stop.signal)); \(wim) was not written\n".utf8))
                throw ExitCode(128 + stop.signal)
            } catch {
                reporter.finishLine()
                throw error
            }
            reporter.finishLine()
            let seconds = Date().timeIntervalSince(started)
            var notKept: [String: Any] = [:]
            for (reason, paths) in summary.notKept { notKept[reason] = ["count": paths.count, "examples": Array(paths.prefix(5))] }
            reporter.event(["type": "result", "status": "ok", "wim": wim, "directories": summary.directories, "files": summary.files,
                            "hardLinks": summary.hardLinks, "symlinks": summary.symlinks, "bytesRead": summary.bytesRead,
                            "duplicateBytes": summary.duplicateBytes, "blobs": summary.blobs, "wimSize": summary.wimSize,
                            "seconds": (seconds * 1000).rounded() / 1000, "notKept": notKept])
            if reporter.mode != .json {
                print("Captured \(source) into \(wim) (\(compress)): \(summary.directories) directories, \(summary.files) files, \(summary.hardLinks) hard links, \(summary.symlinks) symlinks, \(formatBytes(summary.bytesRead)) read (\(formatBytes(summary.duplicateBytes)) duplicate), \(summary.blobs) blobs, WIM \(formatBytes(summary.wimSize)) in \(String(format: "%.1f", seconds)) s")
                printNotKept(summary.notKept, heading: "Not captured")
            }
        } catch let exit as ExitCode {
            throw exit // interrupted: already reported
        } catch {
            throw fail(error)
        }
    }
}

/// `imprint wim info --json`: the header and every image's XML properties.
struct WIMInfoJSON: Encodable {
    struct Image: Encodable {
        var index: Int
        var name, description, displayName, displayDescription, flags: String?
        var directoryCount, fileCount, totalBytes, hardLinkBytes: UInt64?
        var creationTime, lastModificationTime: String?
        var properties: [String: String]?

        init(index: Int, _ xml: WIMXMLInfo.Image?) {
            self.index = index
            guard let xml else { return }
            (name, description, displayName, displayDescription, flags) = (xml.name, xml.description, xml.displayName, xml.displayDescription, xml.flags)
            (directoryCount, fileCount, totalBytes, hardLinkBytes) = (xml.directoryCount, xml.fileCount, xml.totalBytes, xml.hardLinkBytes)
            creationTime = xml.creationTime.map(isoTime)
            lastModificationTime = xml.lastModificationTime.map(isoTime)
            properties = Dictionary(xml.properties, uniquingKeysWith: { first, _ in first })
        }
    }

    var path, guid: String
    var version: UInt32
    var imageCount: Int
    var compression: String
    var chunkSize: UInt32
    var partNumber, totalParts: UInt16
    var bootIndex: UInt32
    var size: UInt64
    var flags: [String]
    var pipable, solidResources: Bool
    var solidCompression: [String]
    var blobCount: Int
    var integrityTable: Bool
    var images: [Image]
}

/// One path of `imprint wim dir --json`.
struct WIMDirJSON: Encodable {
    struct Stream: Encodable { var name: String; var size: UInt64; var sha1: String }

    var path: String
    var size: UInt64
    var attributes: UInt32
    var attributeNames: [String]
    var isDirectory: Bool
    var creationTime, lastWriteTime, lastAccessTime: String
    var securityId: Int32
    var sha1, shortName: String?
    var hardLinkGroup: UInt64?
    var reparseTag: String?
    var reparseSize: UInt64?
    var streams: [Stream]?
}

/// FILETIME → ISO 8601 UTC with 100 ns precision.
func isoTime(_ filetime: UInt64) -> String {
    let ticks = Int64(bitPattern: filetime) - 116_444_736_000_000_000
    var seconds = ticks / 10_000_000
    var fraction = ticks % 10_000_000
    if fraction < 0 { fraction += 10_000_000; seconds -= 1 }
    var t = time_t(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%07dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                  Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(fraction))
}

extension String {
    func leftPadded(_ width: Int, _ pad: Character = " ") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
