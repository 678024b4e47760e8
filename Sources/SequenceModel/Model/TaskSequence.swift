import DiskModel
import Foundation
import Primitives

/// A task sequence: what a machine does, step by step, as MDT's and ConfigMgr's do.
public struct TaskSequence: Sendable {
    public var name: String
    public var version: String
    public var description: String?
    /// Default values; the server's per-machine variables and `setVariable` steps override them.
    public var variables: [String: String]
    /// Variables whose values never appear in logs or events (passwords, product keys).
    public var secrets: Set<String>
    public var steps: [Step]
    /// Refuse an image that comes over plain HTTP without a SHA-256 (`requireVerifiedContent`)
    /// instead of only warning: anyone on the network could change it on the way.
    public var requireVerifiedContent: Bool = false
    /// Where the sequence came from, for messages and the USB log file beside it.
    public var origin: String
    /// SHA-256 (hex) of the bytes it was read from, set by whoever read them: a run's state is
    /// resumed only by the very same sequence.
    public var digest: String?

    /// Every step, depth first, groups included.
    public var allSteps: [Step] {
        func walk(_ steps: [Step]) -> [Step] { steps.flatMap { [$0] + walk($0.children) } }
        return walk(steps)
    }
}

public struct Step: Sendable {
    /// `3` or `2.1`: the position shown to technicians (1-based, groups nest).
    public var number: String
    /// `$.steps[2].steps[0]`: where the step is in the file.
    public var jsonPath: String
    public var name: String
    public var condition: Condition?
    public var continueOnError: Bool
    public var retry: Retry
    /// Seconds; nil means no limit.
    public var timeout: Double?
    public var action: StepAction

    public var type: String { action.typeName }
    public var children: [Step] { if case let .group(steps) = action { return steps }; return [] }
}

public struct Retry: Sendable, Equatable {
    /// Extra attempts after the first failure.
    public var count: Int
    /// Seconds between attempts.
    public var delay: Double
    public static let none = Retry(count: 0, delay: 0)
}

/// What a step does, with its checked parameters. Strings may hold `${Variable}`, substituted
/// when the step runs.
public enum StepAction: Sendable {
    case group([Step])
    case selectDisk(rules: DiskRules)
    case partition(layout: PartitionLayout)
    case format(volume: String, spec: FormatSpec)
    case findWindows(rules: DiskRules, volume: String)
    case cleanVolume(volume: String, mode: CleanupMode, folders: [String])
    case applyImage(ApplyImageStep)
    case writeImage(WriteImageStep)
    case captureImage(CaptureImageStep)
    case injectDrivers(InjectDriversStep)
    case makeBootable(MakeBootableStep)
    case unattend(UnattendStep)
    case runCommand(RunCommandStep)
    case setVariable(name: String, value: String)
    case reboot
    case poweroff

    public var typeName: String {
        switch self {
        case .group: return "group"
        case .selectDisk: return "selectDisk"
        case .partition: return "partition"
        case .format: return "format"
        case .findWindows: return "findWindows"
        case .cleanVolume: return "cleanVolume"
        case .applyImage: return "applyImage"
        case .writeImage: return "writeImage"
        case .captureImage: return "captureImage"
        case .injectDrivers: return "injectDrivers"
        case .makeBootable: return "makeBootable"
        case .unattend: return "unattend"
        case .runCommand: return "runCommand"
        case .setVariable: return "setVariable"
        case .reboot: return "reboot"
        case .poweroff: return "poweroff"
        }
    }

    /// True for steps that write a disk: `plan` shows them, `run` needs --yes for them.
    public var isDestructive: Bool {
        switch self {
        case .partition, .format, .cleanVolume, .applyImage, .writeImage, .makeBootable: return true
        default: return false
        }
    }

    public static let typeNames = ["group", "selectDisk", "partition", "format", "findWindows", "cleanVolume", "applyImage",
                                   "writeImage", "captureImage", "injectDrivers", "makeBootable", "unattend", "runCommand", "setVariable", "reboot", "poweroff"]
}

/// An image source nothing can vouch for: plain `http://` (not https, not a local file) and no
/// SHA-256 to check what arrives against. A WIM streamed by Range reads has no whole-file hash
/// either, so only the sequence's `sha256` can protect it.
public enum UnverifiedContent {
    public static func isUnverified(source: String, sha256: String?) -> Bool {
        (sha256 ?? "").isEmpty && source.lowercased().hasPrefix("http://")
    }

    public static func warning(_ source: String) -> String {
        "image \(source) comes over plain HTTP without a sha256: anyone on the network could change it; "
            + "give its sha256 or serve it over HTTPS"
    }

    public static func refusal(_ source: String) -> String {
        warning(source) + " (the sequence sets requireVerifiedContent, so it is not used)"
    }
}

public struct ApplyImageStep: Sendable {
    public enum Mode: String, Sendable, CaseIterable { case download, stream }
    /// A path or an http(s) URL.
    public var source: String
    /// An index (`1`) or a name (`Windows 11 Pro`).
    public var image: String
    /// The SHA-256 of the whole WIM file, checked as it arrives.
    public var sha256: String?
    /// The volume (a partition id of a layout, or the name findWindows gave).
    public var target: String
    public var mode: Mode
    /// Where `download` keeps the WIM.
    public var cacheDirectory: String
    /// `"image": {"library": NAME, "version": ...}`: a library image of imprint-server, which
    /// puts the version's URL, SHA-256 and index in its place when it hands the sequence out.
    /// Still set here, the sequence did not come from the server: the step fails saying so.
    public var library: LibraryImageReference? = nil
    /// The multicast session imprint-server put this machine in for the image (`"multicast"`):
    /// receive the file from the group, with `source` for repairs and the fallback. Nil: by HTTP.
    public var multicast: MulticastSessionDescriptor? = nil
}

/// A library image as a sequence names it; `version` is "latest" or a number.
public struct LibraryImageReference: Sendable, Equatable {
    public var name: String
    public var version: String

    public var description: String { "library image \"\(name)\" (version \(version))" }
}

public struct WriteImageStep: Sendable {
    /// A path or URL of a raw `.img` or `.img.xz`.
    public var source: String
    /// The SHA-256 of the source as stored (compressed for .xz).
    public var sha256: String?
    /// `disk` (the selected disk) or a volume name.
    public var target: String
    /// The multicast session imprint-server put this machine in for the image (`"multicast"`).
    public var multicast: MulticastSessionDescriptor? = nil
}

/// Captures a Windows volume into a WIM (ImageX/DISM's capture of a reference machine), then
/// uploads it to the server or leaves it at a path (a USB stick).
public struct CaptureImageStep: Sendable {
    /// The volume (findWindows's name or a partition id of a layout).
    public var volume: String
    /// The image's name and description in the WIM.
    public var imageName: String
    public var imageDescription: String?
    /// The FLAGS element (the edition, e.g. Professional).
    public var flags: String?
    /// A file name the server keeps under its captures folder for this sequence...
    public var upload: String?
    /// ...or a path on this machine (a USB stick, a mounted share); exactly one of the two.
    public var path: String?
    /// `none`, `xpress`, `lzx` or `lzms`, optionally `:LEVEL` (1-100).
    public var compress: String
    /// Where the WIM is written before it is uploaded (it needs room for the whole image).
    public var workDirectory: String
    /// Capture a Windows that sysprep has not generalized (a backup, not a deployable image).
    public var allowNotGeneralized: Bool
    /// A WimScript.ini-style exclusion file (path or URL); nil: DISM's default exclusions.
    public var config: String?
}

public struct InjectDriversStep: Sendable {
    /// A folder, a `.tar.xz` bundle (path or URL), or an HTTP index (`.json` URL).
    public var source: String
    public var target: String
    public var architecture: String
}

public struct MakeBootableStep: Sendable {
    /// The volume holding the applied Windows, and the ESP (volume names, like other steps).
    public var windows: String
    public var esp: String
    /// `uefi`, `bios`, or `auto` (bios when the system partition is on an MBR disk); may hold a variable.
    public var firmware: String
    public var locale: String
    /// Seconds the boot menu waits.
    public var menuTimeout: UInt64
    /// The boot menu's name for this Windows.
    public var label: String
    /// Windows RE on a recovery partition.
    public var recovery: RecoveryChoice = .automatic
}

/// makeBootable's `recovery`: where Winre.wim goes, as Windows Setup puts it.
public enum RecoveryChoice: Sendable, Equatable {
    /// The Windows disk's recovery partition, when the layout has one (a volume of the run)
    /// and the image holds Winre.wim; otherwise none.
    case automatic
    /// This volume; an image without Winre.wim is then an error.
    case volume(String)
    /// No Windows RE (`"recovery": false`).
    case off
}

public struct UnattendStep: Sendable {
    /// The template: a path or URL (or inline text in `content`).
    public var template: String?
    public var content: String?
    public var target: String
}

public struct RunCommandStep: Sendable {
    /// argv; one string means `/bin/sh -c`.
    public var command: [String]
    /// True for the string form: variables are inserted shell-quoted, so a value with `&` or
    /// spaces stays one word and cannot run commands of its own.
    public var shell: Bool
    public var environment: [String: String]
    /// A volume mounted (ntfs-3g) for the command's time, its mount point in `${TargetMount}`.
    public var mountVolume: String?
    /// Exit codes counted as success.
    public var successCodes: [Int32]
    /// A command cut off by a power cut is run again when the run resumes only if this is
    /// true (running it twice is safe); otherwise the run stops there, as nobody can tell what
    /// it had done.
    public var runAgainAfterInterruption = false
}
