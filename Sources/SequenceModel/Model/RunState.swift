import DiskModel
import Foundation

/// How far a run of a task sequence got, kept where it outlives the machine's power: on the
/// target disk (`_ImprintTaskSequence\state.json` at the root of the run's NTFS volume, as
/// ConfigMgr keeps `_SMSTaskSequence`) and on the server (`PUT /api/v1/deployments/{id}/state`).
/// After a power cut the agent finds it, checks that the disk is the one it chose, and goes on
/// at the interrupted step. Secret variables are never in it: they come back with the sequence.
public struct RunState: Sendable, Codable, Equatable {
    /// The folder at the root of the volume: run state, and a refresh's clean-up record.
    public static let folder = RefreshRecord.folder
    public static let fileName = "state.json"
    public static var path: String { folder + "/" + fileName }
    /// Larger is not a run state: the server refuses it, the agent ignores it.
    public static let sizeLimit = 64 << 10

    public enum StepProgress: String, Sendable, Codable, Equatable {
        /// Begun and not ended: the step a power cut interrupted.
        case started
        /// Ended (succeeded, skipped, or failed and continued): never run again in this run.
        case ended
    }

    public var format = 1
    /// The server's deployment; nil for a sequence run from a file (a USB stick, `imprint sequence run`).
    public var deploymentID: String?
    /// The deployment's bearer token, so the agent that restarts after a power cut proves it
    /// continues this run (the server then hands it the deployment again at once). Only in the
    /// copy on the target disk; the server never stores it.
    public var token: String?
    public var sequenceName: String
    public var sequenceVersion: String
    /// SHA-256 of the sequence's bytes: a state is resumed only by the same sequence.
    public var sequenceDigest: String
    /// Grows by one at every save: of two copies (disk, server) the higher is the newer.
    public var revision = 0
    /// By step number (`3`, `2.1`): begun or ended. A step not listed has not begun.
    public var steps: [String: StepProgress] = [:]
    /// The variables as the run left them, secret ones left out.
    public var variables: [String: String] = [:]
    /// The disk the run chose (selectDisk, findWindows), to find it again and refuse another.
    public var disk: DiskRecord?
    /// Volumes made or found, by the name steps use.
    public var volumes: [String: VolumeRecord] = [:]
    /// The volume this state is kept on (a volume's name); nil until there is an NTFS one.
    public var stateVolume: String?
    /// `Drivers\<package>` folders put on each volume (for the unattend's DriverPaths).
    public var driverPaths: [String: [String]] = [:]
    /// How many times this run was resumed after an interruption.
    public var resumes = 0
    /// The run ended (succeeded or failed): nothing to resume.
    public var ended = false
    /// ISO 8601, when it was saved.
    public var updated = ""

    public init(deploymentID: String?, sequenceName: String, sequenceVersion: String, sequenceDigest: String) {
        self.deploymentID = deploymentID
        self.sequenceName = sequenceName
        self.sequenceVersion = sequenceVersion
        self.sequenceDigest = sequenceDigest
    }

    /// Any bytes: the state, or why not with the JSON path of the value at fault.
    public static func decode(_ data: Data) throws(JSONProblem) -> RunState {
        do { return try JSONDecoder().decode(RunState.self, from: data) } catch { throw JSONProblem(error) }
    }

    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// The step a power cut interrupted: the first begun and not ended (the deepest one when a
    /// group is begun), nil when none is.
    public func interruptedStep(in sequence: TaskSequence) -> Step? {
        sequence.allSteps.last { steps[$0.number] == .started }
    }
}

/// What identifies a disk across a reboot: its size and what it says of itself, and the
/// partition table's id once the run wrote or found one. Device paths are not identity
/// (`/dev/sda` and `/dev/sdb` may swap at boot).
public struct DiskRecord: Sendable, Codable, Equatable {
    public var size: UInt64
    public var model: String?
    public var serial: String?
    public var wwn: String?
    /// The GPT disk GUID or the MBR signature.
    public var partitionTableID: String?

    public init(size: UInt64, model: String?, serial: String?, wwn: String?, partitionTableID: String?) {
        self.size = size
        self.model = model
        self.serial = serial
        self.wwn = wwn
        self.partitionTableID = partitionTableID
    }

    /// What `disk` says of itself now.
    public init(_ disk: Disk) {
        self.init(size: disk.size, model: disk.model, serial: disk.serial, wwn: disk.wwn, partitionTableID: disk.partitionTable?.id)
    }

    /// Why `other` is not this disk, nil when it is: every recorded property must be the same.
    public func mismatch(_ other: DiskRecord) -> String? {
        if size != other.size { return "its size is \(other.size) bytes, the run's disk had \(size)" }
        let pairs: [(String, String?, String?)] = [("serial", serial, other.serial), ("WWN", wwn, other.wwn),
                                                   ("model", model, other.model),
                                                   ("partition table id", partitionTableID, other.partitionTableID)]
        for (what, recorded, seen) in pairs {
            if let recorded, !recorded.isEmpty, recorded != seen {
                return "its \(what) is \(seen.map { "\"\($0)\"" } ?? "missing"), the run's disk had \"\(recorded)\""
            }
        }
        return nil
    }
}

/// A volume as the run knows it: which partition of the run's disk.
public struct VolumeRecord: Sendable, Codable, Equatable {
    public var partition: Int
    public var offset: UInt64
    public var size: UInt64
    public var sectorSize: Int

    public init(partition: Int, offset: UInt64, size: UInt64, sectorSize: Int) {
        self.partition = partition
        self.offset = offset
        self.size = size
        self.sectorSize = sectorSize
    }
}
