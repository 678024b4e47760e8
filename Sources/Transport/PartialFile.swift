import CCurl
import Digests
import Foundation

/// The `.partial` file a download grows in. Its remote version (ETag/Last-Modified, the source
/// that announced it, the size, the SHA-256 expected) rides in extended attributes so a later
/// run knows whether the bytes on disk may be continued.
final class PartialFile {
    let path: String
    private var descriptor: Int32
    private(set) var size: UInt64

    private static let etagAttribute = "user.imprint.etag"
    private static let modifiedAttribute = "user.imprint.last-modified"
    private static let sourceAttribute = "user.imprint.source"
    private static let sizeAttribute = "user.imprint.size"
    private static let sha256Attribute = "user.imprint.sha256"

    init(path: String) throws(TransportError) {
        self.path = path
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw .io(path: path, operation: "fstat", errno: code)
        }
        size = UInt64(info.st_size)
    }

    deinit { close() }

    func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// Feeds what an earlier attempt or run left, so the final hash covers the whole file.
    func hashExisting(into hasher: SHA256Hasher) throws(TransportError) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: UInt64 = 0
        while offset < size {
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw .io(path: path, operation: "read at byte \(offset)", errno: count < 0 ? errno : EIO)
            }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            offset += UInt64(count)
        }
    }

    func reset(_ hasher: SHA256Hasher) throws(TransportError) {
        guard ftruncate(descriptor, 0) == 0 else { throw .io(path: path, operation: "truncate", errno: errno) }
        size = 0
        hasher.reset()
    }

    func append(_ chunk: UnsafeRawBufferPointer) throws(TransportError) {
        var done = 0
        while done < chunk.count {
            let written = pwrite(descriptor, chunk.baseAddress?.advanced(by: done), chunk.count - done, off_t(size))
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw .io(path: path, operation: "write at byte \(size)", errno: written < 0 ? errno : EIO)
            }
            done += written
            size += UInt64(written)
        }
    }

    /// What an earlier attempt or run recorded about the bytes on disk.
    struct Version {
        /// The version the source that sent the last bytes announced.
        var validator: Validator?
        /// That source's URL (absent in partials of versions without mirrors: the URL itself).
        var source: String?
        /// The whole file's size as the sources announced it.
        var size: UInt64?
        /// The SHA-256 the caller expected of the whole file.
        var sha256: String?
    }

    func savedVersion() -> Version {
        let etag = attribute(Self.etagAttribute), modified = attribute(Self.modifiedAttribute)
        return Version(validator: etag == nil && modified == nil ? nil : Validator(etag: etag, lastModified: modified),
                       source: attribute(Self.sourceAttribute), size: attribute(Self.sizeAttribute).flatMap { UInt64($0) },
                       sha256: attribute(Self.sha256Attribute))
    }

    /// Best effort: a filesystem without user xattrs only loses the cross-run version check.
    func saveVersion(_ version: Version) {
        let values = [(Self.etagAttribute, version.validator?.etag), (Self.modifiedAttribute, version.validator?.lastModified),
                      (Self.sourceAttribute, version.source), (Self.sizeAttribute, version.size.map(String.init)),
                      (Self.sha256Attribute, version.sha256)]
        for (name, value) in values {
            if let value {
                _ = value.withCString { imprint_fsetxattr(descriptor, name, $0, strlen($0)) }
            } else {
                _ = imprint_fremovexattr(descriptor, name)
            }
        }
    }

    private func attribute(_ name: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { imprint_fgetxattr(descriptor, name, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// Durable before visible: the data reaches the disk, then the name appears, then the
    /// folder entry itself is flushed, so a power cut never leaves a short file at `target`.
    func finish(renamingTo target: String) throws(TransportError) {
        for name in [Self.etagAttribute, Self.modifiedAttribute, Self.sourceAttribute, Self.sizeAttribute, Self.sha256Attribute] {
            _ = imprint_fremovexattr(descriptor, name)
        }
        guard fsync(descriptor) == 0 else { throw .io(path: path, operation: "fsync", errno: errno) }
        close()
        guard rename(path, target) == 0 else { throw .io(path: target, operation: "rename from \(path)", errno: errno) }
        let folder = (target as NSString).deletingLastPathComponent
        let directory = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            Glibc.close(directory)
        }
    }
}
