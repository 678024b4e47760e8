/// What a refresh may clean up, kept apart from the NTFS code that does it so a sequence's
/// checks (and its fuzzer) need nothing else.
public enum CleanupMode: String, Sendable, CaseIterable {
    /// Rename them under `Windows.old\` (a new name on the volume; no data is copied).
    case move
    /// Remove them and everything in them.
    case delete
}

public enum CleanupPolicy {
    /// The old installation's top-level folders, as MDT's and Windows Setup's refresh move them.
    public static let defaultFolders = ["Windows", "Program Files", "Program Files (x86)", "ProgramData"]
    /// Never moved or deleted, compared case-insensitively: user profiles are what a refresh keeps.
    public static let protectedFolders = ["Users"]
}

/// A refresh's clean-up as it stands on the volume (`_ImprintTaskSequence\refresh.json`),
/// written durably before the first folder moves and again once the last has: a run cut off
/// by a power cut finds it and goes on with the same `Windows.old` (never a second one), and
/// after the clean-up never moves the half-applied new system aside. Removed when the
/// deployment (or `imprint wim apply --cleanup`) has finished.
public struct RefreshRecord: Sendable, Codable, Equatable {
    /// The folder at the root of the volume where Imprint keeps what must outlive a power cut
    /// (this record, a task sequence's run state), as ConfigMgr keeps `_SMSTaskSequence`.
    public static let folder = "_ImprintTaskSequence"
    public static let path = folder + "/refresh.json"

    public var mode: String
    /// The folder the old system goes into (move); nil for delete.
    public var destination: String?
    public var folders: [String]
    /// Every listed folder is moved or deleted: the volume's top-level system folders are the new image's.
    public var complete: Bool
    /// ISO 8601, when the clean-up began.
    public var started: String

    public init(mode: CleanupMode, destination: String?, folders: [String], complete: Bool, started: String) {
        self.mode = mode.rawValue
        self.destination = destination
        self.folders = folders
        self.complete = complete
        self.started = started
    }
}
