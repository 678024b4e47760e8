#if canImport(Glibc)
import Glibc
#endif
import Failures
import Primitives

/// What a capture leaves out or stores uncompressed: DISM's WimScript.ini format, which
/// wimlib-imagex reads too (wimcapture(1), "CONFIGURATION FILE"):
///
/// - INI sections, each followed by one path glob a line: `[ExclusionList]` (left out; a
///   folder with everything in it), `[ExclusionException]` (kept even when an exclusion matches
///   it or a folder above it; a folder with everything in it), `[CompressionExclusionList]`
///   (stored uncompressed). `[PrepopulateList]` (WIMBoot only) is read and ignored.
/// - Lines starting with `;` or `#` are comments; a glob may be quoted with `"` or `'`.
/// - A glob starting with `\` or `/` is a path from the root of the captured tree (a drive
///   letter before it, `C:\...`, is dropped); any other glob matches a name (or the last
///   components of a path) at any depth. `*` is any run of characters within one component,
///   `?` one character; names compare ignoring case, as Windows does.
/// - The file is UTF-8, or UTF-16LE with a byte-order mark (as DISM's own WimScript.ini is).
///
/// Without a file, an NTFS capture uses the list wimlib-imagex uses by default (wimcapture(1)):
/// `\$ntfs.log`, `\hiberfil.sys`, `\pagefile.sys`, `\swapfile.sys`,
/// `\System Volume Information`, `\RECYCLER`, `\$RECYCLE.BIN`, `\$Recycle.Bin`, `\Windows\CSC`.
public struct CaptureConfig: Sendable {
    public var exclusions: [PathGlob] = []
    public var exceptions: [PathGlob] = []
    public var compressionExclusions: [PathGlob] = []

    public init() {}

    /// wimlib-imagex's default exclusion list (wimcapture(1), the --config option).
    public static let windowsDefault: CaptureConfig = {
        var config = CaptureConfig()
        config.exclusions = ["\\$ntfs.log", "\\hiberfil.sys", "\\pagefile.sys", "\\swapfile.sys", "\\System Volume Information",
                             "\\RECYCLER", "\\$RECYCLE.BIN", "\\$Recycle.Bin", "\\Windows\\CSC"].compactMap { PathGlob($0) }
        return config
    }()

    /// Reads a configuration file; errors name the file and line.
    public init(contentsOf path: String) throws {
        guard let file = fopen(path, "rb") else { throw CaptureConfigError.unreadable(file: path, errno: errno) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n > 0 { bytes += buffer[0..<n] }
            if n < buffer.count {
                if ferror(file) != 0 { throw CaptureConfigError.unreadable(file: path, errno: errno) }
                break
            }
            if bytes.count > 16 << 20 { throw CaptureConfigError.syntax(file: path, line: 0, problem: "larger than 16 MiB; not a capture configuration") }
        }
        try self.init(bytes: bytes, file: path)
    }

    public init(bytes: [UInt8], file: String) throws {
        let text: String
        if bytes.starts(with: [0xFF, 0xFE]) {
            guard (bytes.count - 2) % 2 == 0 else { throw CaptureConfigError.syntax(file: file, line: 0, problem: "UTF-16LE text of an odd byte count") }
            let units = stride(from: 2, to: bytes.count, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
            guard let decoded = String(validating: units, as: UTF16.self) else {
                throw CaptureConfigError.syntax(file: file, line: 0, problem: "not valid UTF-16LE text")
            }
            text = decoded
        } else {
            let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
            guard let decoded = String(validating: body, as: UTF8.self) else {
                throw CaptureConfigError.syntax(file: file, line: 0, problem: "not UTF-8 (nor UTF-16LE with a byte-order mark)")
            }
            text = decoded
        }
        try self.init(text: text, file: file)
    }

    public init(text: String, file: String) throws {
        enum Section { case exclusions, exceptions, compressionExclusions, ignored }
        var section: Section?
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let lineNumber = index + 1
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix(";") || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else {
                    throw CaptureConfigError.syntax(file: file, line: lineNumber, problem: "section header \(line) has no closing ]")
                }
                switch line.dropFirst().dropLast().trimmingWhitespace().lowercased() {
                case "exclusionlist": section = .exclusions
                case "exclusionexception": section = .exceptions
                case "compressionexclusionlist": section = .compressionExclusions
                case "prepopulatelist": section = .ignored
                default:
                    throw CaptureConfigError.syntax(file: file, line: lineNumber, problem: "unknown section \(line) (known: [ExclusionList], [ExclusionException], [CompressionExclusionList], [PrepopulateList])")
                }
                continue
            }
            guard let current = section else {
                throw CaptureConfigError.syntax(file: file, line: lineNumber, problem: "\(line) comes before any [section]")
            }
            var pattern = line
            if pattern.count >= 2, let first = pattern.first, first == "\"" || first == "'", pattern.last == first {
                pattern = String(pattern.dropFirst().dropLast())
            }
            guard let glob = PathGlob(pattern) else {
                throw CaptureConfigError.syntax(file: file, line: lineNumber, problem: "\(line) names no file or folder")
            }
            switch current {
            case .exclusions: exclusions.append(glob)
            case .exceptions: exceptions.append(glob)
            case .compressionExclusions: compressionExclusions.append(glob)
            case .ignored: break
            }
        }
    }

    /// Where the walk stands for a folder's children: whether an exclusion or an exception
    /// matched it or a folder above it.
    public struct Scope: Sendable, Equatable {
        var excluded = false
        var excepted = false
        public init() {}
    }

    public enum Decision: Sendable, Equatable {
        /// Captured; its children (for a folder) are judged in the scope given.
        case include(Scope)
        /// Left out, with everything below it.
        case exclude
    }

    /// Judges the entry at `components` (from the root; the last is its name) found in a folder
    /// judged with `scope`.
    public func decide(_ components: [String], isDirectory: Bool, in scope: Scope) -> Decision {
        if exclusions.isEmpty && exceptions.isEmpty { return .include(scope) }
        let upper = components.map { $0.uppercased() }
        var next = scope
        if !next.excepted, exceptions.contains(where: { $0.matches(upper) }) { next.excepted = true }
        if next.excepted { return .include(next) }
        if !next.excluded, exclusions.contains(where: { $0.matches(upper) }) { next.excluded = true }
        if !next.excluded { return .include(next) }
        // Excluded, but an exception naming a path below it keeps the folder (only that path
        // is kept inside), as wimlib does for absolute exceptions.
        if isDirectory, exceptions.contains(where: { $0.couldMatchBelow(upper) }) { return .include(next) }
        return .exclude
    }

    /// Whether the file's data is stored uncompressed.
    public func storesUncompressed(_ components: [String]) -> Bool {
        guard !compressionExclusions.isEmpty else { return false }
        let upper = components.map { $0.uppercased() }
        return compressionExclusions.contains { $0.matches(upper) }
    }
}

/// One glob of a capture configuration, its components uppercased (names compare ignoring
/// case); see `CaptureConfig`.
public struct PathGlob: Sendable, CustomStringConvertible {
    public let text: String
    public let isAbsolute: Bool
    let components: [Glob]

    /// nil when the glob names nothing (empty, or a drive letter alone).
    public init?(_ pattern: String) {
        var body = Substring(pattern)
        // A drive letter is dropped: the captured tree is the root.
        if body.count >= 2, let first = body.first, first.isLetter, body.dropFirst().first == ":" { body = body.dropFirst(2) }
        isAbsolute = body.first == "\\" || body.first == "/"
        let parts = body.split(whereSeparator: { $0 == "\\" || $0 == "/" }).map { String($0).uppercased() }
        guard !parts.isEmpty else { return nil }
        text = pattern
        // Already uppercased, so the glob compares exactly; uppercased names are given to it.
        components = parts.map { Glob($0, .caseSensitive) }
    }

    public var description: String { text }

    /// `path`: uppercased components from the root.
    func matches(_ path: [String]) -> Bool {
        if isAbsolute {
            guard path.count == components.count else { return false }
            return zip(components, path).allSatisfy { $0.matches($1) }
        }
        guard path.count >= components.count else { return false }
        return zip(components, path.suffix(components.count)).allSatisfy { $0.matches($1) }
    }

    /// Whether an absolute glob could match something below the folder at `path`.
    func couldMatchBelow(_ path: [String]) -> Bool {
        guard isAbsolute, components.count > path.count else { return false }
        return zip(components, path).allSatisfy { $0.matches($1) }
    }
}

public enum CaptureConfigError: Error, CustomStringConvertible, ClassifiedError {
    case unreadable(file: String, errno: Int32)
    case syntax(file: String, line: Int, problem: String)

    public var description: String {
        switch self {
        case let .unreadable(file, code): return "\(file): cannot read the capture configuration: \(String(cString: strerror(code)))"
        case let .syntax(file, line, problem):
            return line > 0 ? "\(file), line \(line): \(problem)" : "\(file): \(problem)"
        }
    }

    public var failureKind: FailureKind { .badInput }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
