import Digests

/// Everything that can be wrong with a WIM file or its use, phrased for the technician who
/// reads it: what is wrong, in which file, and where (byte offset, image, path).
public enum WIMError: Error, CustomStringConvertible, Sendable {
    /// The file could not be opened, read or written.
    case io(path: String, operation: String, errno: Int32)
    /// The file does not start with a WIM magic number.
    case notAWIM(path: String)
    /// The file ends before a structure it announces.
    case truncated(path: String, what: String, offset: UInt64, needed: UInt64)
    /// A header field has a value no WIM writer produces.
    case invalidHeader(path: String, reason: String)
    /// A blob table entry is inconsistent (offset past the end, overlapping blobs, ...).
    case invalidBlobTable(path: String, entry: Int, offset: UInt64, reason: String)
    /// A resource (a compressed stream of chunks) is malformed.
    case invalidResource(path: String, offset: UInt64, reason: String)
    /// A compressed chunk did not decode.
    case corruptChunk(path: String, chunkOffset: UInt64, chunkIndex: Int, resourceOffset: UInt64, reason: String)
    /// Decoded data does not have the SHA-1 the blob table promises.
    case hashMismatch(path: String, blob: SHA1Digest, resourceOffset: UInt64, actual: SHA1Digest, usedBy: [String])
    /// The XML data could not be parsed.
    case invalidXML(path: String, reason: String)
    /// An image's metadata resource (security data and directory tree) is malformed.
    case invalidMetadata(path: String, image: Int, offset: UInt64, reason: String)
    /// A file in the image refers to a blob the WIM does not contain.
    case missingBlob(path: String, blob: SHA1Digest, usedBy: String)
    /// The requested image does not exist.
    case noSuchImage(path: String, selector: String, imageCount: Int)
    /// The requested path does not exist in the image.
    case noSuchPath(path: String, image: Int, requested: String)
    /// A valid WIM uses something this version does not handle.
    case unsupported(path: String, reason: String)
    /// A split WIM part is missing or does not belong with the others.
    case splitWIM(path: String, reason: String)
    /// A pipable WIM read from a stream is out of order or damaged.
    case pipable(offset: UInt64, reason: String)
    /// A remote source (HTTP Range reads) failed.
    case source(path: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .notAWIM(path):
            return "\(path): not a WIM file (no MSWIM or WLPWM magic at offset 0)"
        case let .truncated(path, what, offset, needed):
            return "\(path): truncated: the \(what) at offset \(offset) needs \(needed) bytes past the end of the file"
        case let .invalidHeader(path, reason):
            return "\(path): invalid WIM header: \(reason)"
        case let .invalidBlobTable(path, entry, offset, reason):
            return "\(path): invalid blob table entry \(entry) (file offset \(offset)): \(reason)"
        case let .invalidResource(path, offset, reason):
            return "\(path): invalid resource at offset \(offset): \(reason)"
        case let .corruptChunk(path, chunkOffset, chunkIndex, resourceOffset, reason):
            return "\(path): corrupt chunk \(chunkIndex) at offset \(chunkOffset) of the resource at offset \(resourceOffset): \(reason)"
        case let .hashMismatch(path, blob, offset, actual, usedBy):
            var text = "\(path): SHA-1 mismatch in blob \(blob) (resource at offset \(offset)): the data hashes to \(actual)"
            if !usedBy.isEmpty {
                let shown = usedBy.prefix(10).joined(separator: ", ")
                text += "; used by \(shown)" + (usedBy.count > 10 ? " and \(usedBy.count - 10) more" : "")
            }
            return text
        case let .invalidXML(path, reason):
            return "\(path): invalid XML data: \(reason)"
        case let .invalidMetadata(path, image, offset, reason):
            return "\(path): invalid metadata of image \(image) at byte \(offset) of its metadata resource: \(reason)"
        case let .missingBlob(path, blob, usedBy):
            return "\(path): \(usedBy) needs blob \(blob), which is not in the WIM (a missing split WIM part?)"
        case let .noSuchImage(path, selector, count):
            return "\(path): no image \"\(selector)\" (the WIM has \(count) image\(count == 1 ? "" : "s"); give an index 1...\(count) or a name)"
        case let .noSuchPath(path, image, requested):
            return "\(path): image \(image) has no path \"\(requested)\""
        case let .unsupported(path, reason):
            return "\(path): unsupported: \(reason)"
        case let .splitWIM(path, reason):
            return "\(path): split WIM: \(reason)"
        case let .pipable(offset, reason):
            return "pipable WIM stream, at byte \(offset): \(reason)"
        case let .source(path, reason):
            return "\(path): \(reason)"
        }
    }
}

#if canImport(Glibc)
import Failures
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension WIMError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .io: return .disk
        // A stream that broke is the transport's failure; the WIM itself may be fine.
        case .source: return .network
        case .notAWIM, .truncated, .invalidHeader, .invalidBlobTable, .invalidResource, .corruptChunk, .hashMismatch, .invalidXML,
             .invalidMetadata, .missingBlob, .noSuchImage, .noSuchPath, .unsupported, .splitWIM, .pipable:
            return .badInput
        }
    }
}
