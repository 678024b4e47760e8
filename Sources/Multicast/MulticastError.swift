import Failures

/// Why a multicast session could not be sent or received, in words a technician can act on.
public enum MulticastError: Error, CustomStringConvertible, Sendable {
    /// The block manifest is not what it should be (`name` is its URL or file).
    case badManifest(name: String, reason: String)
    /// A file, address or option given to a sender or receiver is unusable.
    case badSetting(String)
    /// A socket call failed.
    case socket(operation: String, errno: Int32)
    /// Reading the session's file failed.
    case file(path: String, reason: String)
    /// A block fetched by HTTP did not match the manifest.
    case corruptBlock(block: Int, source: String)
    /// Neither the group nor HTTP delivered the remaining blocks.
    case incomplete(blocksMissing: Int, reason: String)

    public var description: String {
        switch self {
        case let .badManifest(name, reason): return "the block manifest \(name) is unusable: \(reason)"
        case let .badSetting(text): return text
        case let .socket(operation, code): return "multicast socket: \(operation) failed: \(String(cString: strerror(code)))"
        case let .file(path, reason): return "\(path): \(reason)"
        case let .corruptBlock(block, source):
            return "block \(block) from \(source) does not match the manifest's SHA-256 (damaged in transit, or the file changed)"
        case let .incomplete(missing, reason): return "\(missing) blocks were never received: \(reason)"
        }
    }
}

extension MulticastError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .badManifest, .corruptBlock: return .badInput
        case .badSetting: return .badInput
        case .socket, .incomplete: return .network
        case .file: return .disk
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
