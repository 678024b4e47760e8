import Apply
import ArgumentParser
import Capture
import Digests
import Foundation
import WIM

// Commands that change an existing WIM (append, delete, info edits, update) or derive a new one
// from it (export, optimize), in wimlib-imagex's spirit. In-place changes write everything new
// after the old data and rewrite the header last (see `WIMWriter`), so an interruption leaves
// the WIM as it was; new files are written beside their destination and moved into place.

/// Resolves an image selector (a 1-based index, or a name: exact first, then ignoring case).
func imageIndex(_ selector: String, names: [String?], path: String) throws -> Int {
    if let n = Int(selector) {
        guard n >= 1, n <= names.count else { throw WIMEditError.noSuchImage(path: path, index: n, imageCount: names.count) }
        return n
    }
    if let i = names.firstIndex(where: { $0 == selector }) ?? names.firstIndex(where: { $0?.lowercased() == selector.lowercased() }) {
        return i + 1
    }
    throw WIMEditError.badCommand("\(path): no image is named \"\(selector)\" (the WIM has \(names.count) images)")
}

/// Finishes an in-place change or, on any failure, aborts it (the WIM stays as it was).
func finishOrAbort(_ writer: WIMWriter, _ body: () throws -> Void) throws {
    do {
        try body()
        try writer.finish()
    } catch {
        writer.abort()
        throw error
    }
}

func fileSize(_ path: String) -> UInt64 {
    var info = stat()
    return stat(path, &info) == 0 ? UInt64(info.st_size) : 0
}

/// `imprint wim append`
struct WimAppend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append",
        abstract: "Capture a directory as a new image at the end of an existing WIM (data the WIM holds already is not stored again).")

    @Argument(help: "The directory to capture.") var source: String
    @Argument(help: "The existing WIM file.") var wim: String
    @Argument(help: "The new image's name (unique in the WIM).") var name: String
    @Option(name: .customLong("description"), help: "The image's description.") var imageDescription: String?
    @Option(help: "Compression threads (default: every CPU).") var threads: Int?
    @Flag(help: "Make the new image the bootable one.") var boot = false
    @Flag(help: "Add an integrity table (one the WIM has is always recomputed).") var check = false
    @Flag(help: "Leave out files that cannot be read and list them, instead of stopping.") var continueOnError = false

    func run() throws {
        do {
            let directory = try DirectorySource(root: source)
            let writer = try WIMWriter(appendingTo: wim, threads: max(1, threads ?? availableProcessorCount()), integrity: check)
            if writer.imageNames.contains(where: { $0 == name }) { throw WIMEditError.nameInUse(path: wim, name: name) }
            directory.exclude(wim)
            var capturer = Capturer()
            capturer.threads = max(1, threads ?? availableProcessorCount())
            capturer.continueOnError = continueOnError
            Interruption.install()
            capturer.stopRequested = { applyStopSignal.load(ordering: .relaxed) }
            let before = fileSize(wim)
            var summary = CaptureSummary()
            try finishOrAbort(writer) {
                summary = try capturer.captureImage(directory, into: writer, info: WIMWriter.ImageInfo(name: name, description: imageDescription))
                if boot { try writer.setBootImage(writer.imageCount) }
            }
            print("Appended \(source) to \(wim) as image \(writer.imageCount) \"\(name)\": \(summary.directories) directories, \(summary.files) files, \(formatBytes(summary.bytesRead)) read, \(formatBytes(writer.uniqueBytes)) new data stored (\(formatBytes(writer.duplicateBytes)) already in the WIM or duplicate); the WIM grew by \(formatBytes(fileSize(wim) - min(before, fileSize(wim))))")
            printNotKept(summary.notKept, heading: "Not captured")
        } catch let stop as CaptureInterrupted {
            FileHandle.standardError.write(Data("imprint: append interrupted by \(Interruption.name(stop.signal)); \(wim) was left as it was\n".utf8))
            throw ExitCode(128 + stop.signal)
        } catch {
            throw fail(error)
        }
    }
}

/// `imprint wim delete`
struct WimDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete an image from a WIM (its data stays in the file until 'imprint wim optimize').")

    @Argument(help: "The WIM file.") var wim: String
    @Argument(help: "The image: its index or its name.") var image: String

    func run() throws {
        do {
            let writer = try WIMWriter(appendingTo: wim, threads: 1)
            let index = try imageIndex(image, names: writer.imageNames, path: wim)
            let name = writer.imageNames[index - 1] ?? ""
            try finishOrAbort(writer) { try writer.deleteImage(index) }
            print("Deleted image \(index) \"\(name)\" from \(wim); \(writer.imageCount) image\(writer.imageCount == 1 ? "" : "s") left (run 'imprint wim optimize' to reclaim its space)")
        } catch {
            throw fail(error)
        }
    }
}

/// The editing half of `imprint wim info WIM IMAGE --name ...`: without any of these options
/// info only shows.
struct ImageInfoEditOptions: ParsableArguments {
    @Option(name: .customLong("name"), help: "A new name for IMAGE.") var newName: String?
    @Option(name: .customLong("description"), help: "A new description for IMAGE (empty: none).") var newDescription: String?
    @Option(name: .customLong("flags"), help: "New FLAGS for IMAGE (e.g. Professional; empty: none).") var newFlags: String?
    @Flag(help: "Make IMAGE the bootable image (sets the header's boot index).") var boot = false

    var isEditing: Bool { newName != nil || newDescription != nil || newFlags != nil || boot }

    func run(wim: String, image: String?) throws {
        guard let image else { throw WIMEditError.badCommand("info: name the image to change (its index or name) before --name, --description, --flags or --boot") }
        let writer = try WIMWriter(appendingTo: wim, threads: 1)
        let index = try imageIndex(image, names: writer.imageNames, path: wim)
        if let newName, !newName.isEmpty, writer.imageNames.enumerated().contains(where: { $0.offset != index - 1 && $0.element == newName }) {
            writer.abort()
            throw WIMEditError.nameInUse(path: wim, name: newName)
        }
        if newName == "" {
            writer.abort()
            throw WIMEditError.badCommand("info: an image name cannot be empty")
        }
        try finishOrAbort(writer) {
            try writer.setImageProperties(index, name: newName, description: newDescription, flags: newFlags)
            if boot { try writer.setBootImage(index) }
        }
        var changes: [String] = []
        if let newName { changes.append("name \"\(newName)\"") }
        if let newDescription { changes.append("description \"\(newDescription)\"") }
        if let newFlags { changes.append("flags \"\(newFlags)\"") }
        if boot { changes.append("bootable") }
        print("Image \(index) of \(wim): \(changes.joined(separator: ", "))")
    }
}

/// `imprint wim update`
struct WimUpdate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Change the files of an image: add, delete and rename commands, one a line, from --command-file or standard input.",
        discussion: """
            add SOURCE DESTINATION    a local file or folder becomes DESTINATION in the image (a folder onto a folder merges)
            delete [--force] [--recursive] PATH
            rename OLD NEW
            Example: add drivers /Drivers; add SetupComplete.cmd /Windows/Setup/Scripts/SetupComplete.cmd
            """)

    @Argument(help: "The WIM file.") var wim: String
    @Argument(help: "The image: its index or its name.") var image: String
    @Option(help: "A file of commands (default: standard input).") var commandFile: String?
    @Option(help: "Compression threads (default: every CPU).") var threads: Int?

    func run() throws {
        do {
            let text: String
            if let commandFile {
                guard let data = FileManager.default.contents(atPath: commandFile), let s = String(data: data, encoding: .utf8) else {
                    throw WIMEditError.badCommand("\(commandFile): cannot read the command file")
                }
                text = s
            } else {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            }
            let commands = try UpdateCommand.parse(text)
            let threadCount = max(1, threads ?? availableProcessorCount())
            let writer = try WIMWriter(appendingTo: wim, threads: threadCount)
            let index = try imageIndex(image, names: writer.imageNames, path: wim)
            var capturer = Capturer()
            capturer.threads = threadCount
            Interruption.install()
            capturer.stopRequested = { applyStopSignal.load(ordering: .relaxed) }
            try finishOrAbort(writer) {
                var tree = try writer.imageTree(index)
                try ImageUpdate.apply(commands, to: &tree, writer: writer, capturer: capturer, excluding: wim)
                try writer.replaceImage(index, with: tree.compacted())
            }
            print("Updated image \(index) of \(wim): \(commands.count) command\(commands.count == 1 ? "" : "s"), \(formatBytes(writer.uniqueBytes)) new data stored")
        } catch let stop as CaptureInterrupted {
            FileHandle.standardError.write(Data("imprint: update interrupted by \(Interruption.name(stop.signal)); \(wim) was left as it was\n".utf8))
            throw ExitCode(128 + stop.signal)
        } catch {
            throw fail(error)
        }
    }
}

/// `imprint wim export`
struct WimExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Copy one image (or all) of a WIM into a new WIM, or append it to an existing one; compressed data is copied as it is when the formats match.")

    @Argument(help: "The WIM to export from (for a split WIM, its first part).") var source: String
    @Argument(help: "The image: its index, its name, or all.") var image: String
    @Argument(help: "The WIM to write: a new file, or an existing WIM the images are appended to.") var destination: String
    @Option(help: "For a new WIM: none, xpress, lzx or lzms[:LEVEL] (default: the source's).") var compress: CompressionChoice?
    @Option(help: "For a new WIM: chunk size in bytes (default: the source's when the format is the same).") var chunkSize: Int?
    @Option(name: .customLong("ref"), help: "Another part of a split source WIM (repeatable).") var referenceParts: [String] = []
    @Flag(help: "Make the exported image the bootable one (with all: the source's bootable image).") var boot = false
    @Flag(help: "Decompress and compress all data anew even when it could be copied as it is.") var recompress = false
    @Option(help: "Compression threads (default: every CPU).") var threads: Int?
    @OptionGroup var layout: LayoutOptions

    func run() throws {
        do {
            let archive = try WIMArchive(path: source, referenceParts: referenceParts)
            let layoutOptions = try layout.options()
            let numbers: [Int] = image.lowercased() == "all" ? Array(1...max(1, archive.imageCount)).filter { $0 <= archive.imageCount } : [try archive.image(image)]
            let threadCount = max(1, threads ?? availableProcessorCount())
            var info = stat()
            let writer: WIMWriter
            if lstat(destination, &info) == 0 {
                if layoutOptions.solid != nil || layoutOptions.pipable {
                    throw WIMEditError.badCommand("\(destination) exists; --solid and --pipable apply to a new WIM only")
                }
                writer = try WIMWriter(appendingTo: destination, threads: threadCount, integrity: layoutOptions.integrity)
                if let compress, compress.format != writer.compression {
                    writer.abort()
                    throw WIMEditError.badCommand("\(destination) exists and is \(writer.compression)-compressed; --compress \(compress) applies to a new WIM only")
                }
            } else {
                let format = compress?.format ?? archive.header.compression
                let sameFormat = format == archive.header.compression && archive.header.chunkSize != 0
                writer = try WIMWriter(destination: destination, compression: format, level: compress?.level ?? .default,
                                       chunkSize: chunkSize ?? (sameFormat ? Int(archive.header.chunkSize) : nil),
                                       threads: threadCount, layout: layoutOptions)
            }
            let started = Date()
            var asStored: UInt64 = 0, recompressed: UInt64 = 0
            try finishOrAbort(writer) {
                for number in numbers {
                    let name = archive.xmlImage(number)?.name
                    if let name, writer.imageNames.contains(where: { $0 == name }) { throw WIMEditError.nameInUse(path: destination, name: name) }
                    let copied = try writer.exportImage(number, from: archive, recompress: recompress)
                    asStored += copied.asStored
                    recompressed += copied.recompressed
                    if boot && (numbers.count == 1 || Int(archive.header.bootIndex) == number) { try writer.setBootImage(writer.imageCount) }
                }
            }
            let seconds = Date().timeIntervalSince(started)
            print("Exported \(numbers.count) image\(numbers.count == 1 ? "" : "s") of \(source) to \(destination) (\(writer.compression)): \(formatBytes(asStored)) of data copied as stored, \(formatBytes(recompressed)) recompressed, in \(String(format: "%.1f", seconds)) s")
        } catch {
            throw fail(error)
        }
    }
}

/// `imprint wim optimize`
struct WimOptimize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "optimize",
        abstract: "Rewrite a WIM without the data no image uses (after delete or update): written beside it, then renamed over it.")

    @Argument(help: "The WIM file.") var wim: String
    @Flag(help: "Decompress and compress all data anew.") var recompress = false
    @Option(help: "Another compression: none, xpress, lzx or lzms[:LEVEL] (implies recompressing what differs).") var compress: CompressionChoice?
    @Option(help: "Chunk size in bytes for the rewritten WIM.") var chunkSize: Int?
    @Option(help: "Compression threads (default: every CPU).") var threads: Int?
    @Flag(help: "Add an integrity table (one the WIM has is always kept).") var check = false

    func run() throws {
        do {
            let archive = try WIMArchive(path: wim)
            guard archive.header.totalParts == 1 else { throw WIMEditError.unsupported(path: wim, reason: "it is part of a split WIM") }
            let format = compress?.format ?? archive.header.compression
            let sameFormat = format == archive.header.compression && archive.header.chunkSize != 0
            let writer = try WIMWriter(destination: wim, compression: format, level: compress?.level ?? .default,
                                       chunkSize: chunkSize ?? (sameFormat ? Int(archive.header.chunkSize) : nil),
                                       threads: max(1, threads ?? availableProcessorCount()),
                                       layout: WIMLayoutOptions(integrity: check || !archive.header.integrityTable.isEmpty), replacingDestination: true)
            writer.guid = archive.header.guid
            let before = fileSize(wim)
            try finishOrAbort(writer) {
                for number in 1...max(1, archive.imageCount) where number <= archive.imageCount {
                    try writer.exportImage(number, from: archive, recompress: recompress)
                }
                if archive.header.bootIndex >= 1, Int(archive.header.bootIndex) <= archive.imageCount {
                    try writer.setBootImage(Int(archive.header.bootIndex))
                }
            }
            let after = fileSize(wim)
            print("Optimized \(wim): \(formatBytes(before)) → \(formatBytes(after))\(recompress ? " (recompressed)" : "")")
            if !archive.header.integrityTable.isEmpty {
                print("Note: the integrity table was not rewritten (this version cannot compute one yet).")
            }
        } catch {
            throw fail(error)
        }
    }
}
