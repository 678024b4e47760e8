import Foundation

// The image library (as ConfigMgr's "Operating System Images"): WIM files administrators
// import, and named images in versions that sequences deploy. An imported WIM is a source; a
// library image's version is a single-image WIM of its own, made from a source by extraction
// (export) or from an earlier version by offline servicing, never changed after it is written.

/// One image inside a WIM, as its XML says (and, for Windows, as WIMGAPI filled it in from the
/// image's own hives).
public struct LibraryImageDetails: Codable, Sendable, Equatable {
    public var index: Int
    public var name: String?
    public var description: String?
    /// FLAGS (the edition an install.wim's image is, e.g. Professional).
    public var flags: String?
    public var edition: String?
    public var productName: String?
    public var installationType: String?
    /// x86, x64, arm, arm64 (WINDOWS/ARCH's number, named).
    public var architecture: String?
    public var languages: [String]
    public var defaultLanguage: String?
    /// MAJOR.MINOR.BUILD.SPBUILD, as `winver` shows it.
    public var version: String?
    public var build: Int?
    public var directoryCount: UInt64?
    public var fileCount: UInt64?
    /// The bytes of every file's data, as the image would be applied.
    public var totalBytes: UInt64?
}

/// A WIM file imported into the library (uploaded, or registered from under `--content`).
public struct LibraryWIM: Codable, Sendable {
    public var id: String
    /// Under the content folder (and served from /content/ like any content).
    public var file: String
    /// Parts of a split set after the first (under the content folder).
    public var parts: [String]
    public var sha256: String
    public var size: UInt64
    public var compression: String
    public var solid: Bool
    public var pipable: Bool
    public var images: [LibraryImageDetails]
    public var imported: String
}

/// One version of a library image: its own single-image WIM.
public struct LibraryVersion: Codable, Sendable {
    public enum State: String, Codable, Sendable, CaseIterable { case ready, retired }

    /// How a version was made.
    public struct Origin: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable { case extract, service }
        public var kind: Kind
        /// extract: the imported WIM and its image.
        public var wim: String?
        public var index: Int?
        /// service: the version it was made from.
        public var fromVersion: Int?
        /// The job that made it, and what it changed (one line each).
        public var job: String
        public var changes: [String]
    }

    public var image: String
    public var version: Int
    public var state: State
    /// Under the content folder: `library/files/<sha256>.wim`, so equal files are stored once.
    public var file: String
    public var sha256: String
    public var size: UInt64
    public var compression: String
    public var solid: Bool
    public var pipable: Bool
    public var details: LibraryImageDetails
    public var origin: Origin
    public var created: String
    public var retired: String?
}

/// A named image of the library ("Windows 11 Pro") and its versions, newest last.
public struct LibraryImage: Codable, Sendable {
    public var name: String
    public var description: String?
    public var created: String
    public var versions: [LibraryVersion]

    /// What `"version": "latest"` names: the newest version not retired.
    public var latest: LibraryVersion? { versions.last { $0.state == .ready } }
}

/// A background job of the library: import a WIM, extract an image, service a version.
public struct LibraryJob: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case `import`, extract, service }
    public enum State: String, Codable, Sendable { case queued, running, succeeded, failed }

    public var id: String
    public var kind: Kind
    public var state: State
    /// What was asked (the request's JSON, as accepted).
    public var request: String
    public var percent: Double?
    /// The last line of the log, or why it failed.
    public var message: String?
    public var log: [String]
    /// What it made: a WIM id, or "IMAGE/VERSION".
    public var result: String?
    public var created: String
    public var started: String?
    public var ended: String?
    /// The server instance running it (`host:port`, the same across its restarts), and when it
    /// last said the job was alive: instances sharing a database tell a job another one runs
    /// from one a stopped instance left behind.
    public var instance: String?
    public var heartbeat: String?
}

/// A deployment that applied a library image's version (which machines run version 3?).
public struct LibraryUse: Codable, Sendable {
    public var deploymentID: String
    public var machineID: String
    public var image: String
    public var version: Int
    public var state: String
    public var created: String
}
