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
