import CImprintSystem
import Capture
import Digests
import Foundation
import InstalledWindows
import Registry
import WIM

/// What the library's jobs do to WIM files: read and check one, extract an image, service a
/// version. Synchronous (the jobs run them on their own thread); every file is written beside
/// its destination and renamed into place when whole, so a job killed midway leaves nothing
/// that looks finished.
public enum LibraryWork {
    /// A WIM read and checked whole: every image's metadata, every blob's SHA-1 (what
    /// `wimlib-imagex verify` checks), and the file's SHA-256.
    public struct Inspection: Sendable {
        public var images: [LibraryImageDetails]
        public var compression: String
        public var solid: Bool
        public var pipable: Bool
        public var size: UInt64
        public var sha256: String
    }

    /// Reports done/total bytes of the job's current pass, with what the pass is.
    public typealias Progress = @Sendable (_ what: String, _ done: UInt64, _ total: UInt64) -> Void

    /// `verifyBlobs: false` for a WIM the library wrote itself from checked sources (a version
    /// just made): its metadata is still read and its SHA-256 computed, its blobs not decoded.
    public static func inspect(_ path: String, parts: [String] = [], verifyBlobs: Bool = true,
                               progress: @escaping Progress = { _, _, _ in }) throws -> Inspection {
        let archive = try WIMArchive(path: path, referenceParts: parts)
        guard archive.imageCount > 0 else { throw LibraryError.badWIM(path: path, reason: "it holds no image") }
        if verifyBlobs {
            var verifier = Verifier(archive: archive)
            verifier.threads = max(1, availableProcessorCount())
            let total = archive.blobs.values.reduce(UInt64(0)) { $0 + $1.size }
            _ = try verifier.run { done in progress("checking every blob", done.bytesDone, total) }
        } else {
            for image in 1...archive.imageCount { _ = try archive.metadata(image: image) }
        }
        let size = try fileSize(path)
        let sha256 = try self.sha256(path) { progress("SHA-256 of the file", $0, size) }
        return Inspection(images: (1...archive.imageCount).map { details(of: archive, image: $0) },
                          compression: archive.header.compression.rawValue,
                          solid: archive.resources.contains { $0.isSolid }, pipable: archive.header.isPipable,
                          size: size, sha256: sha256)
    }

    /// One image's details from the WIM's XML.
    public static func details(of archive: WIMArchive, image: Int) -> LibraryImageDetails {
        let xml = archive.xmlImage(image)
        let windows = xml?.element.child("WINDOWS")
        let versionElement = windows?.child("VERSION")
        let number = { (name: String) in versionElement?.childText(name).flatMap { Int($0) } }
        var version: String?
        if let major = number("MAJOR"), let minor = number("MINOR"), let build = number("BUILD") {
            version = "\(major).\(minor).\(build)" + (number("SPBUILD").map { ".\($0)" } ?? "")
        }
        let architecture = windows?.childText("ARCH").flatMap { Int($0) }.map { code in
            WindowsDetails.architectureCodes.first { $0.value == code }?.key ?? "code \(code)"
        }
        let languages = windows?.child("LANGUAGES")
        return LibraryImageDetails(
            index: image, name: xml?.name, description: xml?.description, flags: xml?.flags,
            edition: windows?.childText("EDITIONID"), productName: windows?.childText("PRODUCTNAME"),
            installationType: windows?.childText("INSTALLATIONTYPE"), architecture: architecture,
            languages: languages?.children.filter { $0.name == "LANGUAGE" }.map(\.text) ?? [],
            defaultLanguage: languages?.childText("DEFAULT"), version: version, build: number("BUILD"),
            directoryCount: xml?.directoryCount, fileCount: xml?.fileCount, totalBytes: xml?.totalBytes)
    }

    /// How an extracted or serviced WIM is written.
    public struct Layout: Sendable, Equatable {
        /// Nil: as the source is (its compressed data copied as it is, no recompression).
        public var compress: CompressionChoice?
        public var solid: Bool = false
        public var pipable: Bool = false
        public init(compress: CompressionChoice? = nil, solid: Bool = false, pipable: Bool = false) {
            self.compress = compress
            self.solid = solid
            self.pipable = pipable
        }
    }

    /// ConfigMgr's "extract a specific image index": image `index` of `source` alone in a new
    /// WIM at `destination` (written beside it, renamed when whole).
    public static func extract(from source: String, parts: [String] = [], index: Int, to destination: String, layout: Layout,
                               progress: @escaping Progress = { _, _, _ in }) throws {
        let archive = try WIMArchive(path: source, referenceParts: parts)
        guard (1...archive.imageCount).contains(index) else {
            throw WIMEditError.noSuchImage(path: source, index: index, imageCount: archive.imageCount)
        }
        let format = layout.compress?.format ?? archive.header.compression
        let sameFormat = format == archive.header.compression && archive.header.chunkSize != 0 && !layout.solid
        var options = WIMLayoutOptions(pipable: layout.pipable)
        if layout.solid { options.solid = .init(compression: format == .none ? .lzms : format, level: layout.compress?.level ?? .default) }
        let writer = try WIMWriter(destination: destination, compression: format, level: layout.compress?.level ?? .default,
                                   chunkSize: sameFormat ? Int(archive.header.chunkSize) : nil,
                                   threads: max(1, availableProcessorCount()), layout: options)
        let total = details(of: archive, image: index).totalBytes ?? 0
        do {
            try writer.exportImage(index, from: archive, recompress: layout.compress != nil || layout.solid) { progress("copying the image's data", $0, total) }
            try writer.setBootImage(1)
            try writer.finish()
        } catch {
            writer.abort()
            throw error
        }
    }

    /// What a servicing job changes in an image.
    public struct Servicing: Sendable, Equatable, Codable {
        /// Driver packages: a folder whose subfolders hold INF files (each becomes
        /// `\Drivers\<subfolder>` in the image, as the `injectDrivers` step places them), or
        /// a single package folder. Paths under the content folder.
        public var drivers: [String] = []
        /// Files or folders to add (or replace): a path under the content folder, and where it
        /// goes in the image.
        public var files: [FileAddition] = []
        /// Paths in the image to delete (folders with what they hold).
        public var delete: [String] = []

        public struct FileAddition: Sendable, Equatable, Codable {
            public var source: String
            public var destination: String
        }

        public init(drivers: [String] = [], files: [FileAddition] = [], delete: [String] = []) {
            self.drivers = drivers
            self.files = files
            self.delete = delete
        }
    }

    /// Where the drivers of a servicing go in the image, and the DevicePath entry for them.
    public static let driverFolder = "/Drivers"
    public static let driverDevicePath = "%SystemDrive%\\Drivers"

    /// The package folders of a driver set: the folder itself when it holds an INF file,
    /// otherwise each subfolder (at any depth) that does, named by its last component.
    public static func driverPackages(in folder: String) throws -> [(path: String, name: String)] {
        func holdsINF(_ path: String) -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).contains { $0.lowercased().hasSuffix(".inf") }
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LibraryError.badRequest(field: "drivers", reason: "\(folder): no such folder")
        }
        if holdsINF(folder) { return [(folder, (folder as NSString).lastPathComponent)] }
        var packages: [(String, String)] = []
        func walk(_ path: String, depth: Int) {
            guard depth < 8 else { return }
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() {
                let child = path + "/" + name
                var directory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: child, isDirectory: &directory), directory.boolValue else { continue }
                if holdsINF(child) { packages.append((child, name)) } else { walk(child, depth: depth + 1) }
            }
        }
        walk(folder, depth: 0)
        guard !packages.isEmpty else { throw LibraryError.badRequest(field: "drivers", reason: "\(folder): no folder in it holds an INF file") }
        return packages
    }

    /// The next version of an image: `source` (a single-image WIM) with `servicing` applied,
    /// written to `destination`. The source is copied beside the destination and changed as
    /// `imprint wim update` changes a WIM (new data after the old, header last), so the
    /// source is never touched. Returns one line per change.
    public static func service(_ source: String, with servicing: Servicing, resolve: (String) -> String, to destination: String,
                               progress: @escaping Progress = { _, _, _ in }) throws -> [String] {
        let temporary = destination + ".servicing"
        unlink(temporary)
        do {
            let size = try fileSize(source)
            try copyFile(source, to: temporary) { progress("copying the version", $0, size) }
            let writer = try WIMWriter(appendingTo: temporary, threads: max(1, availableProcessorCount()))
            var changes: [String] = []
            do {
                var commands: [UpdateCommand] = []
                let packages = try servicing.drivers.flatMap { try driverPackages(in: resolve($0)) }
                for package in packages {
                    commands.append(.add(source: package.path, destination: driverFolder + "/" + package.name))
                    changes.append("driver package \(package.name) → \\Drivers\\\(package.name)")
                }
                for file in servicing.files {
                    commands.append(.add(source: resolve(file.source), destination: file.destination))
                    changes.append("added \(file.source) → \(file.destination)")
                }
                for path in servicing.delete {
                    commands.append(.delete(path: path, force: false, recursive: true))
                    changes.append("deleted \(path)")
                }
                progress("changing the image", 0, 1)
                var tree = try writer.imageTree(1)
                try ImageUpdate.apply(commands, to: &tree, writer: writer, capturer: Capturer())
                if !packages.isEmpty, let change = try addDevicePath(to: &tree, writer: writer) {
                    changes.append("DevicePath: \(change.old ?? "(not set)") → \(change.new)")
                }
                try writer.replaceImage(1, with: tree.compacted())
                try writer.finish()
            } catch {
                writer.abort()
                throw error
            }
            guard rename(temporary, destination) == 0 else { throw WIMWriteError.io(path: destination, operation: "rename into place", errno: errno) }
            return changes
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Adds the drivers' folder to DevicePath in the image's own SOFTWARE hive (the hive's new
    /// bytes become a blob of the WIM): Plug and Play then finds them for devices it meets
    /// after setup, as it does after the `injectDrivers` step.
    static func addDevicePath(to tree: inout ImageTree, writer: WIMWriter) throws -> DriverSearchPath.Change? {
        guard let entry = tree.lookup("/" + DriverSearchPath.hivePath) else { return nil }
        let hash = tree.entries[entry].dataHash
        guard let base = writer.baseArchive, let blob = base.blobs[hash] else { return nil }
        let bytes = try readBlob(blob, from: base)
        let (edited, change) = try DriverSearchPath.edit(hive: bytes, file: "the image's \\" + DriverSearchPath.hivePath.replacingOccurrences(of: "/", with: "\\"),
                                                          adding: driverDevicePath)
        guard change.old != change.new else { return change }
        tree.entries[entry].dataHash = try writer.addBlob(edited, source: "the image's SOFTWARE hive")
        tree.entries[entry].lastWriteTime = WIMWriter.currentFiletime()
        return change
    }

    static func readBlob(_ blob: BlobDescriptor, from archive: WIMArchive) throws -> [UInt8] {
        final class Collect: BlobSink {
            var bytes: [UInt8] = []
            func beginBlob(_ blob: BlobDescriptor) throws { bytes.reserveCapacity(Int(blob.size)) }
            func blobData(_ data: UnsafeRawBufferPointer) throws { bytes += data }
            func endBlob(_ blob: BlobDescriptor) throws {}
        }
        let sink = Collect()
        var reader = BlobReader(archive: archive, threads: 1)
        reader.verifyHashes = true
        try reader.read([blob], into: sink)
        return sink.bytes
    }

    static func fileSize(_ path: String) throws -> UInt64 {
        var info = stat()
        guard stat(path, &info) == 0 else { throw WIMWriteError.io(path: path, operation: "stat", errno: errno) }
        return UInt64(info.st_size)
    }

    /// The file's SHA-256 (libcrypto, the CPU's SHA instructions).
    public static func sha256(_ path: String, progress: (UInt64) -> Void = { _ in }) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw WIMWriteError.io(path: path, operation: "open for reading", errno: errno) }
        defer { close(fd) }
        do { return try SHA256Hasher.hex(reading: fd, progress: progress) } catch {
            throw LibraryError.badWIM(path: path, reason: error.description)
        }
    }

    /// Copies a file: a reflink where the filesystem shares blocks (XFS, btrfs: instant, and the
    /// two versions then share what they have in common on disk), else in the kernel
    /// (copy_file_range).
    public static func copyFile(_ source: String, to destination: String, progress: (UInt64) -> Void = { _ in }) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw WIMWriteError.io(path: source, operation: "open for reading", errno: errno) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw WIMWriteError.io(path: destination, operation: "create", errno: errno) }
        defer { close(output) }
        if imprint_clone_file(input, output) == 0 {
            progress(try fileSize(source))
            return
        }
        var done: UInt64 = 0
        while true {
            let n = imprint_copy_file_range(input, output, 64 << 20)
            if n < 0 {
                if errno == EINTR { continue }
                throw WIMWriteError.io(path: destination, operation: "copy", errno: errno)
            }
            if n == 0 { break }
            done += UInt64(n)
            progress(done)
        }
    }
}

/// Why a library request or job cannot go on, in words an administrator acts on.
public enum LibraryError: Error, CustomStringConvertible, Sendable {
    case badWIM(path: String, reason: String)
    case badRequest(field: String, reason: String)

    public var description: String {
        switch self {
        case let .badWIM(path, reason): return "\(path) is not a WIM the library can take: \(reason)"
        case let .badRequest(_, reason): return reason
        }
    }
}
