#if canImport(Glibc)
import Failures
import Glibc
#endif

/// Everything that can go wrong while finding, choosing, partitioning or formatting a disk,
/// phrased for the technician who reads it: which disk or file, what, and what to do.
public enum DiskError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A system call on a device or file failed.
    case io(path: String, operation: String, errno: Int32)
    /// A JSON input (rules, layout) is malformed; `jsonPath` is like `$.partitions[2].size`.
    case invalidJSON(file: String, jsonPath: String, reason: String)
    /// libblkid could not probe a device.
    case probe(path: String, reason: String)
    /// No disk satisfies the selection rules.
    case noDiskMatches(reasons: [String])
    /// A layout does not fit the disk or is inconsistent.
    case invalidLayout(reason: String)
    /// The disk about to be written is not the one that was planned.
    case diskChanged(path: String, reason: String)
    /// A safety rule refuses to write this disk.
    case refused(path: String, reason: String)
    /// A formatting or helper program failed.
    case commandFailed(command: String, status: Int32, output: String)
    /// The kernel did not show the new partitions in time.
    case partitionsNotVisible(path: String, reason: String)
    /// After formatting, libblkid does not see what was made.
    case formatNotVisible(path: String, expected: String, found: String)

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .invalidJSON(file, jsonPath, reason):
            return "\(file): \(jsonPath): \(reason)"
        case let .probe(path, reason):
            return "\(path): cannot probe: \(reason)"
        case let .noDiskMatches(reasons):
            return "no disk matches the rules:\n" + reasons.map { "  " + $0 }.joined(separator: "\n")
        case let .invalidLayout(reason):
            return "invalid partition layout: \(reason)"
        case let .diskChanged(path, reason):
            return "\(path): refusing to write: this is not the disk the plan chose (\(reason))"
        case let .refused(path, reason):
            return "\(path): refusing to write: \(reason)"
        case let .commandFailed(command, status, output):
            let tail = output.split(separator: "\n", omittingEmptySubsequences: true).suffix(8).joined(separator: "\n  ")
            return "\(command) failed (exit status \(status))" + (tail.isEmpty ? "" : ":\n  " + tail)
        case let .partitionsNotVisible(path, reason):
            return "\(path): the new partitions did not appear: \(reason)"
        case let .formatNotVisible(path, expected, found):
            return "\(path): after formatting, libblkid sees \(found) instead of \(expected)"
        }
    }
}

extension DiskError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .io, .probe, .commandFailed, .partitionsNotVisible, .formatNotVisible: return .disk
        case .invalidJSON, .invalidLayout: return .badInput
        case .noDiskMatches, .diskChanged, .refused: return .refused
        }
    }
}
