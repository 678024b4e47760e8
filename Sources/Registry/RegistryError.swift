import Failures

/// What can go wrong reading or editing a hive, in words a technician can act on: the file,
/// the byte offset in it and what was wrong there.
public enum RegistryError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The bytes are not a usable hive (`offset` is from the start of the file).
    case corrupt(file: String, offset: Int, reason: String)
    /// Windows did not finish writing the hive: its .LOG files hold changes we cannot replay.
    case dirty(file: String, primary: UInt32, secondary: UInt32)
    case keyNotFound(file: String, path: String)
    case notAKeyPath(String)
    case tooLarge(file: String, what: String)
    /// Two subkeys or two values of one key whose names differ only in case.
    case duplicateName(key: String, name: String)

    public var description: String {
        switch self {
        case let .corrupt(file, offset, reason):
            return "\(file): offset \(offset) (0x\(String(offset, radix: 16))): \(reason)"
        case let .dirty(file, primary, secondary):
            return "\(file): the hive was not saved cleanly (sequence numbers \(primary) and \(secondary) differ), "
                + "so its .LOG files hold changes Imprint cannot replay; start Windows once or use a clean image"
        case let .keyNotFound(file, path): return "\(file): no key \(path)"
        case let .notAKeyPath(path): return "\"\(path)\" is not a registry key path"
        case let .tooLarge(file, what): return "\(file): \(what) is too large for a registry hive"
        case let .duplicateName(key, name):
            return "key \(key) holds \"\(name)\" twice (registry names ignore case)"
        }
    }
}

extension RegistryError: ClassifiedError {
    public var failureKind: FailureKind { .badInput }
}
