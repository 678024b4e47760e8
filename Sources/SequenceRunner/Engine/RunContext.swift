import Apply
import DiskModel
import Disks
import Drivers
import Failures
import Foundation
import SequenceModel
import Synchronization
import Transport

/// How a sequence runs on this machine.
public struct RunOptions: Sendable {
    /// Steps that write disks run only when allowed (`--yes`, or the boot environment's agent).
    public var allowDestructive = false
    /// Reboot and poweroff happen only in the boot environment; elsewhere they are reported.
    public var allowPowerActions = false
    public var environment = DiskEnvironment.system
    public var transfer = TransferOptions()
    /// Overrides each applyImage's cache folder (tests, USB media).
    public var cacheDirectory: String?
    /// Keep the run's state on the disk and the server so a power cut is resumed, and the
    /// state to resume; nil keeps none.
    public var recording: RunRecording?
    /// How far a driver bundle may expand in the boot environment's tmpfs, and the memory any
    /// xz stream (bundles, `.img.xz`) may take to decode.
    public var extraction = ExtractionLimits()

    public init() {}
}

/// A volume a step made or found, by the name later steps use.
public struct Volume: Sendable {
    public var device: String
    public var offset: UInt64
    public var size: UInt64
    public var sectorSize: Int
    public var diskPath: String
    /// Its partition on the disk (the run state records it to find the volume after a reboot).
    public var partition: Int?
}

/// What steps share while a sequence runs.
/// Unchecked: its `var`s are used by one thread at a time (the engine's, or a step's thread
/// while the engine waits for it); other threads a step starts read only its `let`s, and what
/// crosses threads (`cancelled`, `applyStop`, the bus, the client) is checked `Sendable` itself.
final class RunContext: @unchecked Sendable {
    let options: RunOptions
    let bus: EventBus
    /// Each change reaches the bus as a redactor of its own: events come from other threads too
    /// (a stream's transfer), which must not read this.
    var variables: Variables {
        didSet { bus.redactor = variables.redactor }
    }
    var selectedDisk: Disk?
    var diskRules: DiskRules?
    var diskSelection: DiskSelection?
    var volumes: [String: Volume] = [:]
    /// Loop devices and partition views to release when the sequence ends.
    var exposures: [ExposedPartitions] = []
    /// `Drivers\<package>` folders put on each volume, for the unattend's DriverPaths.
    var driverPaths: [String: [String]] = [:]
    /// The unattend.xml written per volume, so injecting drivers afterwards can update it.
    var unattendWritten: [String: String] = [:]
    var powerAction: StepAction?
    /// Set when a step runs past its timeout: transfers and commands stop at the next check.
    let cancelled = ManagedAtomicFlag()
    /// Requested at the same time: an apply stops at its next safe point (`applyStopSignal`
    /// stays the signal handlers' alone).
    let applyStop = ApplyStop()
    let client: HTTPClient
    /// The sequence's `requireVerifiedContent`: refuse, not only warn about, an image over
    /// plain HTTP with no SHA-256.
    var requireVerifiedContent = false
    /// The run's state as it is kept on the disk and the server; nil when it is not kept.
    var keeper: RunStateKeeper?

    init(options: RunOptions, bus: EventBus, variables: Variables) {
        self.options = options
        self.bus = bus
        self.variables = variables
        var transfer = options.transfer
        let flag = cancelled
        transfer.isCancelled = { flag.value }
        client = HTTPClient(options: transfer)
        bus.redactor = variables.redactor
    }

    func substitute(_ text: String) -> String {
        variables.substitute(text, unknown: { [bus] (name: String) -> Void in
            bus.log("${\(name)} is not set: replaced by nothing", level: "warning")
        })
    }

    /// Called by a step with its image's resolved source and SHA-256, before it reads or writes
    /// anything: an unverifiable source is refused or, by default, logged as a warning.
    func checkVerified(_ source: String, sha256: String?, step: Step) throws {
        guard UnverifiedContent.isUnverified(source: source, sha256: sha256) else { return }
        if requireVerifiedContent { throw StepFailure(UnverifiedContent.refusal(source), kind: .refused) }
        bus.log(UnverifiedContent.warning(source), step: step, level: "warning")
    }

    func volume(_ name: String) throws -> Volume {
        let resolved = substitute(name)
        guard let volume = volumes[resolved] else {
            throw StepFailure("no volume \"\(resolved)\" exists yet (known: \(volumes.keys.sorted().joined(separator: ", ")))", kind: .badInput)
        }
        return volume
    }

    func releaseAll() {
        for exposure in exposures { exposure.release() }
        exposures.removeAll()
    }
}

/// A step's failure in a technician's words.
public struct StepFailure: ClassifiedError, CustomStringConvertible {
    public var description: String
    public var failureKind: FailureKind
    public init(_ description: String, kind: FailureKind = .internal) {
        self.description = description
        self.failureKind = kind
    }
}

/// A thread-safe flag (set from the timeout watcher, read by transfers and commands).
final class ManagedAtomicFlag: Sendable {
    private let state = Atomic<Bool>(false)
    var value: Bool {
        get { state.load(ordering: .acquiring) }
        set { state.store(newValue, ordering: .releasing) }
    }
}
