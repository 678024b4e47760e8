/// What kind of failure stopped a command, a step or a deployment: what a program acts on
/// beside the technician's message. `imprint` exits with `exitStatus` (README, "Exit
/// statuses"), events carry it to the server, and the dashboard groups failures by it.
public enum FailureKind: String, Sendable, Codable, CaseIterable {
    /// The input is wrong: a corrupt or truncated WIM, a sequence, layout or rule file with a
    /// mistake, an image whose checksum does not match. Running again changes nothing.
    case badInput
    /// Refused for safety: the boot medium, a busy or read-only disk, a disk that changed since
    /// the plan, BitLocker, a destructive step without `--yes`. Nothing was written.
    case refused
    /// The server or a content source could not be reached or answered wrongly. Worth a retry.
    case network
    /// Reading or writing a disk or volume failed: an I/O error, a full disk, mkfs failing.
    case disk
    /// A signal, a step's timeout or the technician stopped it; running again continues.
    case interrupted
    /// Anything else: a bug, or a failure nobody classified. The message says what happened.
    case `internal`

    /// The exit status of `imprint` for a failure of this kind.
    public var exitStatus: Int32 {
        switch self {
        case .internal: return 1
        case .refused: return 2
        case .badInput: return 4
        case .network: return 5
        case .disk: return 6
        // As timeout(1) reports a command that ran out of time. A command stopped by a signal
        // exits with 128 + the signal's number instead, as a shell reports it.
        case .interrupted: return 124
        }
    }

    /// The kind an error declares, or `internal` for one that declares none.
    public init(of error: any Error) {
        self = (error as? any ClassifiedError)?.failureKind ?? .internal
    }
}

/// An error that knows what kind of failure it is. Every error type a command or a step can
/// end with adopts it, next to its cases, so the kind is decided where the failure is understood.
public protocol ClassifiedError: Error {
    var failureKind: FailureKind { get }
}
