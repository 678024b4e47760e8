import Foundation
#if canImport(Glibc)
import Glibc
#endif
import WIM

// Offline servicing of an image's files (wimlib-imagex update's commands): `imprint wim update`
// and the server's servicing jobs run the same commands through `ImageUpdate.apply`.

/// A single file as a capture source (update's `add` of a file).
public final class SingleFileSource: CaptureSource {
    public let path: String
    public var summary = CaptureSummary()

    public init(path: String) { self.path = path }

    public func scan(progress: (Int) -> Void) throws -> [CaptureItem] {
        var info = stat()
        guard stat(path, &info) == 0 else { throw WIMWriteError.io(path: path, operation: "stat", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw WIMEditError.badCommand("add \(path): not a regular file or folder") }
        var root = CaptureItem(path: "", name: "", attributes: .directory)
        root.children = [1]
        var file = CaptureItem(path: path, name: "", attributes: .normal)
        file.dataSize = UInt64(info.st_size)
        let modified = WIMWriter.filetime(seconds: Int64(info.st_mtim.tv_sec), nanoseconds: Int64(info.st_mtim.tv_nsec))
        let accessed = WIMWriter.filetime(seconds: Int64(info.st_atim.tv_sec), nanoseconds: Int64(info.st_atim.tv_nsec))
        (file.creationTime, file.lastWriteTime, file.lastAccessTime) = (modified, modified, accessed)
        summary.files = 1
        return [root, file]
    }

    public func readData(of item: CaptureItem, stream: String?, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WIMWriteError.io(path: path, operation: "open for reading", errno: errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw WIMWriteError.io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { return }
            try buffer.withUnsafeBytes { try consume(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }
}

/// One line of an update command file.
public enum UpdateCommand: Equatable, Sendable {
    case add(source: String, destination: String)
    case delete(path: String, force: Bool, recursive: Bool)
    case rename(old: String, new: String)

    /// Splits a line into words: spaces separate, double or single quotes group.
    public static func words(_ line: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var quote: Character?
        var inWord = false
        for c in line {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
                inWord = true
            } else if c == " " || c == "\t" {
                if inWord { words.append(current); current = ""; inWord = false }
            } else {
                current.append(c)
                inWord = true
            }
        }
        if quote != nil { throw WIMEditError.badCommand("update: unterminated quote in \"\(line)\"") }
        if inWord { words.append(current) }
        return words
    }

    /// Parses a command file: one command a line; blank lines and lines starting with # skipped.
    public static func parse(_ text: String) throws -> [UpdateCommand] {
        var commands: [UpdateCommand] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = try words(line)
            func bad(_ why: String) -> WIMEditError { .badCommand("update command \(number + 1) \"\(line)\": \(why)") }
            let options = words.dropFirst().filter { $0.hasPrefix("--") }
            let arguments = words.dropFirst().filter { !$0.hasPrefix("--") }
            switch words[0].lowercased() {
            case "add":
                guard options.isEmpty else { throw bad("add takes no options here") }
                guard arguments.count == 2 else { throw bad("add needs SOURCE and DESTINATION") }
                commands.append(.add(source: arguments[0], destination: arguments[1]))
            case "delete":
                guard arguments.count == 1 else { throw bad("delete needs one PATH") }
                for option in options where option != "--force" && option != "--recursive" { throw bad("unknown option \(option)") }
                commands.append(.delete(path: arguments[0], force: options.contains("--force"), recursive: options.contains("--recursive")))
            case "rename":
                guard options.isEmpty, arguments.count == 2 else { throw bad("rename needs OLD and NEW") }
                commands.append(.rename(old: arguments[0], new: arguments[1]))
            default:
                throw bad("unknown command \(words[0]) (add, delete or rename)")
            }
        }
        return commands
    }
}


/// Runs update commands on an image's tree; new data goes into `writer` (blobs it already holds
/// are not stored again). The caller replaces or adds the image and finishes the writer.
public enum ImageUpdate {
    public static func apply(_ commands: [UpdateCommand], to tree: inout ImageTree, writer: WIMWriter, capturer: Capturer,
                             excluding excluded: String? = nil) throws {
        for command in commands {
            switch command {
            case let .add(source, destination):
                var info = stat()
                guard stat(source, &info) == 0 else { throw WIMWriteError.io(path: source, operation: "add: stat", errno: errno) }
                let captureSource: CaptureSource
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    let directory = try DirectorySource(root: source)
                    if let excluded { directory.exclude(excluded) }
                    captureSource = directory
                } else {
                    captureSource = SingleFileSource(path: source)
                }
                var added = try capturer.storeTree(captureSource, into: writer).tree
                if captureSource is SingleFileSource {
                    // The file itself, not a folder holding it.
                    added = ImageTree(entries: [added.entries[1]], securityDescriptors: added.securityDescriptors)
                }
                try tree.graft(added, at: destination)
            case let .delete(path, force, recursive):
                try tree.delete(path, recursive: recursive, force: force)
            case let .rename(old, new):
                try tree.rename(old, to: new)
            }
        }
    }
}
