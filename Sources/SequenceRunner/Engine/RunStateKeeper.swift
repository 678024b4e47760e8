import Apply
import DiskModel
import Disks
import Foundation
import SequenceModel
import Transport

/// What a run keeps of itself so a power cut is resumed: who it reports to, and the state it
/// continues (found on the disk, or sent back by the server).
public struct RunRecording: Sendable {
    public var deploymentID: String?
    /// The deployment's token: kept in the disk's copy so the agent that restarts proves it
    /// continues this run.
    public var token: String?
    /// The server's base URL, to `PUT /api/v1/deployments/{id}/state` (with the token, which
    /// the run's transfer options carry for that origin); nil without a server.
    public var server: String?
    /// SHA-256 of the sequence's bytes.
    public var sequenceDigest: String
    /// The state an interrupted run left: the run goes on from it.
    public var resume: RunState?

    public init(deploymentID: String?, token: String?, server: String?, sequenceDigest: String, resume: RunState?) {
        self.deploymentID = deploymentID
        self.token = token
        self.server = server
        self.sequenceDigest = sequenceDigest
        self.resume = resume
    }
}

/// Keeps a run's state on the largest NTFS volume the run has (as ConfigMgr keeps
/// `_SMSTaskSequence` on the drive with the most room) and on the server, at every step's
/// start and end: never while a step runs, so the volume is never mounted twice at once.
///
/// The disk's copy is two files, `state-0.json` and `state-1.json`, written in turn and each
/// flushed to the disk: a cut while one is written leaves the other whole, and the reader
/// takes the valid one with the higher revision (libntfs-3g has no atomic rename to build
/// write-beside-then-rename on).
final class RunStateKeeper {
    private(set) var state: RunState
    let recording: RunRecording
    private var warnedDisk = false
    /// The volume this run has written its state to.
    private var writtenToDisk: String?
    private var warnedServer = false
    private var stateClient: HTTPClient?

    init(sequence: TaskSequence, recording: RunRecording) {
        self.recording = recording
        if let resume = recording.resume {
            state = resume
        } else {
            state = RunState(deploymentID: recording.deploymentID, sequenceName: sequence.name,
                             sequenceVersion: sequence.version, sequenceDigest: recording.sequenceDigest)
        }
        state.token = recording.token
        state.deploymentID = recording.deploymentID ?? state.deploymentID
    }

    static let slots = [RunState.folder + "/state-0.json", RunState.folder + "/state-1.json"]

    func isEnded(_ step: Step) -> Bool { state.steps[step.number] == .ended }
    func wasStarted(_ step: Step) -> Bool { state.steps[step.number] == .started }

    func started(_ step: Step, _ context: RunContext) {
        state.steps[step.number] = .started
        save(context)
    }

    func ended(_ step: Step, _ context: RunContext) {
        state.steps[step.number] = .ended
        save(context)
    }

    func countResume() { state.resumes += 1 }

    /// The run is over. Succeeded: the folder goes from the disk (its refresh record with it,
    /// the new system being whole). Failed: the state stays, marked ended (nothing resumes
    /// it), as does a refresh's record, so running the refresh again goes on with it.
    func finish(succeeded: Bool, _ context: RunContext) {
        state.ended = true
        if succeeded, let name = state.stateVolume, let volume = context.volumes[name] {
            do {
                let files = try NTFSVolumeFiles(device: volume.device)
                defer { try? files.close() }
                try files.remove(RunState.folder)
                try files.sync()
            } catch {
                context.bus.log("could not remove the run state from \(volume.device): \(error); Windows ignores it, the next deployment replaces it",
                                level: "warning")
            }
            sendToServer(context)
        } else {
            save(context)
        }
    }

    /// Takes what the run knows now into the state and writes it to the disk and the server.
    func save(_ context: RunContext) {
        state.revision += 1
        state.updated = Date().formatted(.iso8601)
        let secrets = context.variables.secretNames
        let redactor = context.variables.redactor
        // Secrets, and variables named like them (set during the run), come back with the
        // sequence and the server's variables, never from a disk or the server's copy.
        state.variables = context.variables.values.filter { name, value in
            !secrets.contains(name) && !SecretNames.looksSecret(name) && redactor.redact(value) == value
        }
        if let disk = context.selectedDisk {
            state.disk = DiskRecord(disk)
        }
        state.volumes = context.volumes.compactMapValues { volume in
            volume.partition.map { VolumeRecord(partition: $0, offset: volume.offset, size: volume.size, sectorSize: volume.sectorSize) }
        }
        state.driverPaths = context.driverPaths
        chooseStateVolume(context)
        writeToDisk(context)
        sendToServer(context)
    }

    /// Sticks to the volume chosen once while it is still NTFS; otherwise the largest NTFS volume.
    private func chooseStateVolume(_ context: RunContext) {
        if let name = state.stateVolume, let volume = context.volumes[name], NTFSTarget.hasNTFSBootSector(volume.device) { return }
        state.stateVolume = context.volumes
            .filter { $0.value.partition != nil && NTFSTarget.hasNTFSBootSector($0.value.device) }
            .max { ($0.value.size, $1.key) < ($1.value.size, $0.key) }?.key
    }

    private func writeToDisk(_ context: RunContext) {
        guard let name = state.stateVolume, let volume = context.volumes[name] else { return }
        do {
            let files = try NTFSVolumeFiles(device: volume.device)
            // The first write of a run fills both slots: a newer-looking state of an earlier
            // run on this volume must not outlive it.
            for slot in writtenToDisk == name ? [Self.slots[state.revision % 2]] : Self.slots {
                try files.write(state.encoded(), to: slot)
            }
            writtenToDisk = name
            try files.sync()
            try files.close()
        } catch {
            guard !warnedDisk else { return }
            warnedDisk = true
            context.bus.log("could not keep the run state on \(volume.device): \(error); after a power cut this run starts over",
                            level: "warning")
        }
    }

    private func sendToServer(_ context: RunContext) {
        guard let server = recording.server, let id = state.deploymentID else { return }
        var copy = state
        copy.token = nil
        do {
            let (status, body) = try serverClient(context).put(server + "/api/v1/deployments/\(id)/state", json: copy.encoded(), limit: 64 << 10)
            guard (200..<300).contains(status) else {
                throw StepFailure("HTTP \(status): \(String(decoding: body.prefix(200), as: UTF8.self))")
            }
        } catch {
            guard !warnedServer else { return }
            warnedServer = true
            context.bus.log("the server did not take the run state: \(error); the copy on the disk still counts", level: "warning")
        }
    }

    /// The run's transfer settings (token, CA) with one quick attempt: a server that is away
    /// must not hold up every step; the disk's copy is what a resumed run relies on.
    private func serverClient(_ context: RunContext) -> HTTPClient {
        if let client = stateClient { return client }
        var options = context.options.transfer
        options.retries = 0
        options.connectTimeout = min(options.connectTimeout, 5)
        options.stallTimeout = min(options.stallTimeout, 10)
        // The server takes a run's state only with the deployment's token, sent to its origin alone.
        if let token = recording.token, let server = recording.server {
            options.bearerToken = BearerToken(token, for: server)
        }
        let client = HTTPClient(options: options)
        stateClient = client
        return client
    }

    // MARK: Finding a state after a reboot

    /// The newest readable state on a volume, nil when there is none.
    static func read(_ files: VolumeFiles) -> RunState? {
        slots.compactMap { path -> RunState? in
            guard let bytes = try? files.read(path), bytes.count <= RunState.sizeLimit else { return nil }
            return try? RunState.decode(Data(bytes))
        }.max { $0.revision < $1.revision }
    }
}

/// A run state found on a disk of this machine.
public struct FoundRunState: Sendable {
    public var state: RunState
    public var disk: String
    public var partition: Int
}

public enum RunStateFinder {
    /// Every unfinished run state on the NTFS volumes of this machine's disks, newest first.
    /// Unreadable volumes are passed over: finding nothing means starting afresh.
    public static func find(_ environment: DiskEnvironment) -> [FoundRunState] {
        guard let disks = try? DiskInventory.scan(environment) else { return [] }
        var found: [FoundRunState] = []
        for disk in disks where disk.bootMedium == nil {
            for partition in disk.partitionTable?.partitions ?? [] where partition.filesystem?.type == "ntfs" {
                guard let exposure = try? PartitionAccess.device(for: partition, of: disk) else { continue }
                defer { exposure.release() }
                guard let device = exposure.devices.first, let files = try? NTFSVolumeFiles(device: device.path, readOnly: true) else { continue }
                if let state = RunStateKeeper.read(files), !state.ended {
                    found.append(FoundRunState(state: state, disk: disk.path, partition: partition.number))
                }
                try? files.close()
            }
        }
        return found.sorted { $0.state.revision > $1.state.revision }
    }
}
