import Failures
import Foundation
import Transport

/// A folder holding one or more INFs and everything they install; it is copied as a whole.
public struct DriverPackage: Sendable {
    /// A single safe path component (`Intel-NIC-I219`), used as `Drivers/<name>` in the image.
    public var name: String
    /// Absolute path of the package's folder.
    public var root: String
    public var infs: [INFFile]
    /// INFs in the folder that could not be read; like Windows, the rest of the package is still
    /// usable, and whoever runs the deployment sees why a driver was left out.
    public var problems: [INFError] = []

    public init(name: String, root: String, infs: [INFFile], problems: [INFError] = []) {
        self.name = name
        self.root = root
        self.infs = infs
        self.problems = problems
    }
}

public struct DriverSourceError: Error, CustomStringConvertible, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public struct PlannedFile: Sendable, Equatable {
    public var source: String
    /// Relative to the Windows volume's root: `Drivers/<package>/...`.
    public var destination: String
}

public struct DriverInstallPlan: Sendable {
    public var package: DriverPackage
    public var files: [PlannedFile]
    /// Files the INFs name that the package lacks; Windows would fail to stage such a driver.
    public var warnings: [String]

    public static func make(for package: DriverPackage, target: TargetOS) throws -> DriverInstallPlan {
        let relativeFiles = try DriverSource.regularFiles(under: package.root)
        let files = relativeFiles.map {
            PlannedFile(source: package.root + "/" + $0, destination: "Drivers/\(package.name)/\($0)")
        }
        // Windows file names are case-insensitive; packages made on Windows often differ in case.
        let present = Set(relativeFiles.map { $0.lowercased() })
        let rootLength = package.root.count + 1
        var warnings: [String] = []
        for inf in package.infs {
            let infFolder = (inf.path as NSString).deletingLastPathComponent
            let prefix = infFolder.count >= rootLength ? String(infFolder.dropFirst(rootLength)) + "/" : ""
            do {
                for file in try inf.requiredFiles(for: target) where !present.contains((prefix + file.relativePath).lowercased()) {
                    warnings.append("\(inf.path): \(file.relativePath) is named by the INF but missing from package \(package.name)")
                }
            } catch {
                warnings.append("\(error)")
            }
        }
        return DriverInstallPlan(package: package, files: files, warnings: warnings)
    }

    public static func make(for matches: [DriverMatch], target: TargetOS) throws -> [DriverInstallPlan] {
        var seen = Set<String>()
        return try matches.filter { seen.insert($0.package.name).inserted }.map { try make(for: $0.package, target: target) }
    }
}

public enum DriverSource {
    /// Every folder under `root` holding an INF becomes a package; names come from the path
    /// relative to `root` so two vendors' `x64` folders do not collide.
    public static func local(_ root: String) throws -> [DriverPackage] {
        let rootPath = URL(fileURLWithPath: root).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootPath, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DriverSourceError("driver source \(rootPath) is not a folder")
        }
        var byFolder: [String: [String]] = [:]
        for file in try regularFiles(under: rootPath) where file.lowercased().hasSuffix(".inf") {
            let folder = (file as NSString).deletingLastPathComponent
            byFolder[folder, default: []].append(rootPath + "/" + file)
        }
        var usedNames = Set<String>()
        var packages: [DriverPackage] = []
        for folder in byFolder.keys.sorted() {
            var name = sanitize(folder.isEmpty ? (rootPath as NSString).lastPathComponent : folder)
            if usedNames.contains(name.lowercased()) {
                var n = 2
                while usedNames.contains("\(name)-\(n)".lowercased()) { n += 1 }
                name = "\(name)-\(n)"
            }
            usedNames.insert(name.lowercased())
            var infs: [INFFile] = []
            var problems: [INFError] = []
            for path in (byFolder[folder] ?? []).sorted() {
                do {
                    infs.append(try INFFile(path: path))
                } catch let error as INFError {
                    problems.append(error)
                }
            }
            packages.append(DriverPackage(name: name, root: folder.isEmpty ? rootPath : rootPath + "/" + folder,
                                          infs: infs, problems: problems))
        }
        return packages
    }

    /// Extracts a `.tar.xz` bundle into `scratch` (refusing anything that could escape it), then
    /// reads it as a local folder.
    public static func bundle(_ path: String, scratch: String, limits: ExtractionLimits = ExtractionLimits()) throws -> [DriverPackage] {
        try extractTarXZ(path, into: scratch, limits: limits)
        return try local(scratch)
    }

    /// Extracts beside `destination` and renames the result into place (`destination` may
    /// exist if it is empty), so a bundle that fails half way, is hostile or expands past
    /// `limits` leaves nothing behind.
    public static func extractTarXZ(_ path: String, into destination: String, limits: ExtractionLimits = ExtractionLimits()) throws {
        guard let input = FileHandle(forReadingAtPath: path) else { throw DriverSourceError("cannot open bundle \(path)") }
        defer { try? input.close() }
        let manager = FileManager.default
        let parent = (destination as NSString).deletingLastPathComponent
        try manager.createDirectory(atPath: parent.isEmpty ? "." : parent, withIntermediateDirectories: true)
        let partial = destination + ".partial-" + UUID().uuidString.prefix(8)
        try manager.createDirectory(atPath: partial, withIntermediateDirectories: false)
        var kept = false
        defer { if !kept { try? manager.removeItem(atPath: partial) } }
        let limit = try limits.maximum(into: partial)
        let decoder = try XZDecoder(memoryLimit: limits.xzMemoryLimit)
        var tar = TarExtractor(destination: partial, bundle: path)
        defer { tar.closeCurrent() }
        // The decoded tar stream (headers and padding included) is counted before it is written,
        // so the cap holds however well the bundle compresses.
        let feed: (UnsafeRawBufferPointer) throws -> Void = { piece in
            if decoder.decodedBytes > limit.bytes { throw ExtractionError.tooLarge(archive: path, limit: limit.bytes, why: limit.why) }
            try tar.feed(piece)
        }
        while true {
            let chunk = input.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            try chunk.withUnsafeBytes { raw in try decoder.decode(raw, sink: feed) }
        }
        try decoder.finish(sink: feed)
        try tar.finish()
        tar.closeCurrent()
        if rename(partial, destination) != 0 {
            throw DriverSourceError("\(path): the extracted bundle could not be moved to \(destination): \(String(cString: strerror(errno)))")
        }
        kept = true
    }

    /// `Intel/NIC I219` → `Intel-NIC-I219`: one component, nothing a shell or Windows objects to.
    public static func sanitize(_ name: String) -> String {
        var result = ""
        for scalar in name.unicodeScalars {
            let ok = scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "." || scalar == "_" || scalar == "-")
            if ok { result.unicodeScalars.append(scalar) } else if !result.hasSuffix("-") { result += "-" }
        }
        while result.hasPrefix("-") || result.hasPrefix(".") { result.removeFirst() }
        while result.hasSuffix("-") || result.hasSuffix(".") { result.removeLast() }
        return result.isEmpty ? "package" : result
    }

    /// Regular files under `root`, relative, sorted; symlinks are skipped so a package cannot
    /// pull in files from outside itself.
    static func regularFiles(under root: String) throws -> [String] {
        var result: [String] = []
        var pending = [""]
        let manager = FileManager.default
        while let relative = pending.popLast() {
            let dir = relative.isEmpty ? root : root + "/" + relative
            for name in try manager.contentsOfDirectory(atPath: dir) {
                let child = relative.isEmpty ? name : relative + "/" + name
                let attributes = try manager.attributesOfItem(atPath: root + "/" + child)
                switch attributes[.type] as? FileAttributeType {
                case .typeDirectory?: pending.append(child)
                case .typeRegular?: result.append(child)
                default: continue
                }
            }
        }
        return result.sorted()
    }
}

/// How far a bundle may expand, and how much memory its xz stream may take. The boot
/// environment extracts into a tmpfs, which is RAM: a small bundle that expands without end, or
/// asks liblzma for gigabytes, would starve the agent in the middle of a deployment.
public struct ExtractionLimits: Sendable, Equatable {
    /// The most bytes a bundle may expand to; nil means what the destination's filesystem has
    /// free, less `reserve`.
    public var maxBytes: UInt64?
    /// Left free on the destination's filesystem when `maxBytes` is nil.
    public var reserve: UInt64
    public var xzMemoryLimit: UInt64

    public init(maxBytes: UInt64? = nil, reserve: UInt64 = 64 << 20, xzMemoryLimit: UInt64 = XZDecoder.defaultMemoryLimit) {
        self.maxBytes = maxBytes
        self.reserve = reserve
        self.xzMemoryLimit = xzMemoryLimit
    }

    /// The cap for extracting into `directory`, and where it comes from (for the message).
    func maximum(into directory: String) throws -> (bytes: UInt64, why: String) {
        if let maxBytes { return (maxBytes, "the configured limit") }
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else {
            throw DriverSourceError("\(directory): cannot read the free space of its filesystem: \(String(cString: strerror(errno)))")
        }
        let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
        return (free > reserve ? free - reserve : 0, "the free space of \(directory)'s filesystem, less \(reserve >> 20) MiB kept free")
    }
}

/// A bundle larger, once extracted, than `ExtractionLimits` allows.
public enum ExtractionError: Error, CustomStringConvertible, Sendable, Equatable {
    case tooLarge(archive: String, limit: UInt64, why: String)

    public var description: String {
        switch self {
        case let .tooLarge(archive, limit, why):
            return "\(archive) expands to more than \(limit) bytes (\(limit >> 20) MiB, \(why)); "
                + "nothing of it was kept. Split the bundle, or use a driver index so only matching packages are downloaded"
        }
    }
}

extension ExtractionError: ClassifiedError {
    public var failureKind: FailureKind { .refused }
}

extension DriverSourceError: ClassifiedError {
    public var failureKind: FailureKind { .badInput }
}
