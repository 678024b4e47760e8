import Failures

/// What can go wrong reading or editing a hive, in words a technician can act on: the file,
/// the byte offset in it and what was wrong there.
public enum RegistryError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The bytes are not a usable hive (`offset` is from the start of the file).
    case corrupt(file: String, offset: Int, reason: String)
    /// Windows had not finished writing the hive (its base block says so) and its transaction
    /// logs could not be replayed: `reason` says what the base block shows and why the logs
    /// (none, damaged, or not this hive's) did not help.
    case needsLogReplay(file: String, reason: String)
    case keyNotFound(file: String, path: String)
    case notAKeyPath(String)
    case tooLarge(file: String, what: String)
    /// Two subkeys or two values of one key whose names differ only in case.
    case duplicateName(key: String, name: String)

    public var description: String {
        switch self {
        case let .corrupt(file, offset, reason):
            return "\(file): offset \(offset) (0x\(String(offset, radix: 16))): \(reason)"
        case let .needsLogReplay(file, reason):
            let name = fileName(file)
            return "\(file): this hive needs its transaction logs replayed: \(reason). Windows had not finished writing it "
                + "(it was running or hibernated when the disk was read, or was stopped by a crash or power cut); its latest "
                + "changes are in \(name).LOG1 and \(name).LOG2 beside it, which Windows replays when it next starts. "
                + "Keep those files with the hive for Imprint to replay, or start that Windows once and shut it down fully"
        case let .keyNotFound(file, path): return "\(file): no key \(path)"
        case let .notAKeyPath(path): return "\"\(path)\" is not a registry key path"
        case let .tooLarge(file, what): return "\(file): \(what) is too large for a registry hive"
        case let .duplicateName(key, name):
            return "key \(key) holds \"\(name)\" twice (registry names ignore case)"
        }
    }
}

extension RegistryError: ClassifiedError {
    /// A hive Windows had not finished writing is not wrong input: using it is refused for
    /// safety (editing it would lose or mix up Windows' pending changes). The rest is damage.
    public var failureKind: FailureKind {
        if case .needsLogReplay = self { return .refused }
        return .badInput
    }
}
