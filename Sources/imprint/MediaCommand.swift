import ArgumentParser
import DiskModel
import Disks
import Foundation
import SequenceModel
import SequenceRunner
import Transport

/// `imprint media`: the field technician's USB stick (made by `Initramfs/usb`). The stick holds
/// `TaskSequences/*.json` and `Content/`; booted with no server, the boot environment mounts it
/// at /run/imprint/media and runs `imprint media menu`, which offers the sequences on the console
/// and writes the log and the events under `Logs/` on the stick, so they come back with it.
struct MediaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "media",
        abstract: "Run task sequences from an Imprint USB stick, with no server.",
        subcommands: [MediaList.self, MediaMenu.self]
    )

    static let defaultRoot = "/run/imprint/media"
}

/// The sequences a stick offers: every `TaskSequences/*.json`, each checked as `imprint sequence
/// validate` does, so a broken file is shown with its first error instead of failing mid-run.
struct MediaCatalog {
    struct Entry: Encodable {
        var number: Int?
        var file: String
        var name: String
        var description: String?
        var steps: Int?
        var problem: String?
        var path: String
    }

    let root: String
    var entries: [Entry] = []
    var usable: [Entry] { entries.filter { $0.problem == nil } }

    init(root: String) throws {
        self.root = root
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("\(root): no such folder: the USB stick is not mounted there (the boot environment mounts "
                                  + "the filesystem labelled IMPRINT at \(MediaCommand.defaultRoot))")
        }
        let folder = root + "/TaskSequences"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
            throw ValidationError("\(folder): no such folder: put the task sequences (.json files) in a folder named "
                                  + "TaskSequences at the top of the stick (Initramfs/usb does)")
        }
        // Only the top level: TaskSequences/disks/ holds rule and layout fragments, not sequences.
        // schema.json is the format's JSON Schema, copied along with the examples; ._*.json are
        // the metadata files macOS leaves on FAT sticks.
        let files = names.filter { $0.lowercased().hasSuffix(".json") && !$0.hasPrefix(".") && $0.lowercased() != "schema.json" }
            .sorted { $0.localizedStandardCompare($1) == .orderedAscending }
        guard !files.isEmpty else {
            throw ValidationError("\(folder): holds no task sequence (.json file); copy one there, "
                                  + "e.g. with Initramfs/usb --sequence FILE")
        }
        var number = 0
        for file in files {
            let path = folder + "/" + file
            guard let data = FileManager.default.contents(atPath: path) else {
                entries.append(Entry(file: file, name: file, problem: "cannot read the file", path: path))
                continue
            }
            let (parsed, issues) = SequenceParser.parse(data, origin: path)
            if let parsed {
                number += 1
                entries.append(Entry(number: number, file: file, name: parsed.name, description: parsed.description,
                                     steps: parsed.allSteps.count, path: path))
            } else {
                let errors = issues.filter { $0.severity == .error }
                entries.append(Entry(file: file, name: file,
                                     problem: "\(errors.count) error(s), the first: \(errors.first?.description ?? "unknown")"
                                         + " (imprint sequence validate lists them all)", path: path))
            }
        }
    }

    /// `--choice`: a number from the menu or a file name in TaskSequences.
    func entry(for choice: String) throws -> Entry {
        let trimmed = choice.trimmingCharacters(in: .whitespaces)
        if let number = Int(trimmed) {
            guard let entry = usable.first(where: { $0.number == number }) else {
                throw ValidationError("there is no sequence number \(number) on the stick; the choices are "
                                      + (usable.isEmpty ? "none (no usable sequence)" : "1 to \(usable.count)"))
            }
            return entry
        }
        if let entry = entries.first(where: { $0.file.lowercased() == trimmed.lowercased()
                                              || $0.file.lowercased() == trimmed.lowercased() + ".json" }) {
            if let problem = entry.problem { throw ValidationError("\(entry.path) cannot run: \(problem)") }
            return entry
        }
        throw ValidationError("\"\(trimmed)\" is neither a number from the menu nor a file in \(root)/TaskSequences")
    }

    var text: String {
        var lines = ["Task sequences on the USB stick (\(root)/TaskSequences):", ""]
        for entry in entries {
            if let number = entry.number {
                lines.append(String(format: "  %2d) ", number) + entry.name + "   [\(entry.file), \(entry.steps ?? 0) steps]")
                if let description = entry.description, !description.isEmpty { lines.append("      " + description) }
            } else {
                lines.append("   -) \(entry.file): cannot be used: \(entry.problem ?? "")")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// `imprint media list`
struct MediaList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the task sequences on the stick, checked, with their numbers in the menu.")

    @Option(help: "Where the stick is mounted.") var media = MediaCommand.defaultRoot
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let catalog: MediaCatalog
        do { catalog = try MediaCatalog(root: media) } catch { throw fail(error) }
        if json { try printJSON(catalog.entries) } else { print(catalog.text) }
        if catalog.usable.isEmpty { throw ExitCode(1) }
    }
}

/// `imprint media menu`
struct MediaMenu: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "menu",
        abstract: "Offer the stick's task sequences on the console and run the one chosen, from local content.",
        discussion: """
            The log and the events go to Logs/ on the stick, named by time, serial number and sequence. \
            With --choice, or when the stick holds a single usable sequence, nothing is asked \
            (the boot environment passes imprint.choice=N from the kernel command line). \
            Exit status: 0 done, 1 the sequence failed, 2 nothing done (see the message), \
            \(MediaMenu.leftForShell) the technician asked for a shell.
            """)

    /// The exit status for "q" at the menu: the boot environment opens a shell without calling it a failure.
    static let leftForShell: Int32 = 5

    @Option(help: "Where the stick is mounted.") var media = MediaCommand.defaultRoot
    @Option(help: "The sequence to run without asking: its number in the menu or its file name.") var choice: String?
    @Flag(help: "Allow the steps that write disks outside the boot environment.") var yes = false
    @OptionGroup var machine: MachineOptions

    func run() throws {
        let catalog: MediaCatalog
        do { catalog = try MediaCatalog(root: media) } catch { throw fail(error) }
        print(catalog.text)
        print("")
        guard !catalog.usable.isEmpty else {
            throw fail(ValidationError("no usable task sequence on the stick: fix the files listed above "
                                       + "(imprint sequence validate FILE shows every error)"))
        }
        let chosen: MediaCatalog.Entry
        var asked = false
        if let choice {
            do { chosen = try catalog.entry(for: choice) } catch { throw fail(error) }
            print("chosen on the command line (imprint.choice=\(choice)): \(chosen.name)")
        } else if catalog.usable.count == 1, let only = catalog.usable.first {
            chosen = only
            print("the stick holds one usable sequence; running it: \(only.name)")
        } else {
            guard let picked = try ask(catalog) else {
                print("no sequence chosen")
                throw ExitCode(MediaMenu.leftForShell)
            }
            chosen = picked
            asked = true
        }

        let loaded: TaskSequence
        do { loaded = try SequenceLoader.load(chosen.path, client: HTTPClient(options: TransferOptions())).0 } catch { throw fail(error) }
        let (facts, variables, disks) = try machine.load()
        // The stick may be mounted elsewhere than the sequence's default (a technician testing it
        // on a workstation), so ${Media} always names where it really is.
        var serverVariables = variables
        serverVariables["Media"] = media
        let inBootEnvironment = AgentEnvironment.isBootEnvironment
        let destructive = loaded.allSteps.contains(where: \.action.isDestructive)
        if destructive && (asked || (!yes && !inBootEnvironment)) {
            print(SequencePlanner.text(SequencePlanner.plan(loaded, facts: facts, serverVariables: serverVariables, disks: disks)))
            if !yes && !inBootEnvironment {
                print("nothing done: this sequence writes disks; add --yes to run it outside the boot environment")
                throw ExitCode(2)
            }
            // Chosen by hand: the plan above says which disk is erased; make the technician say so.
            guard confirm("Run \"\(loaded.name)\" as planned above? This erases the disk it names. Type yes and press Enter: ") else {
                print("nothing done: not confirmed")
                throw ExitCode(MediaMenu.leftForShell)
            }
        }

        let logs = media + "/Logs"
        do { try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true) } catch {
            throw fail(ValidationError("\(logs): cannot create the log folder on the stick (\(error)); is the stick write-protected?"))
        }
        let base = Self.logName(facts: facts, file: chosen.file)
        let logPath = logs + "/" + base + ".log"
        print("log: \(logPath)")
        fflush(nil)  // all streams; Swift 6 forbids touching the global `stdout`
        var options = RunOptions()
        options.allowDestructive = yes || inBootEnvironment
        options.allowPowerActions = inBootEnvironment
        options.environment = machine.environment.environment
        if options.allowDestructive {
            options.recording = AgentEnvironment.localRecording(loaded, deploymentID: nil, token: nil, server: nil,
                                                                environment: options.environment)
        }
        let result = try AgentEnvironment.execute(
            loaded, facts: facts, serverVariables: serverVariables, options: options,
            spool: logs + "/" + base + ".events", log: logPath, server: nil,
            beforePowerAction: { Self.unmount(media) })
        print(result.status == .success ? "done; the log is on the stick: Logs/\(base).log"
                                        : "FAILED; the log is on the stick: Logs/\(base).log")
        if result.status != .success { throw result.exitCode }
    }

    /// Unmounts the stick before the power goes, so its FAT is marked clean and the log is complete
    /// when it is pulled out. The event spool's file may still be open here (the sequence engine
    /// keeps its event bus alive to the end of the process); everything in it was fsynced as
    /// written, so this process's own descriptors under the stick are closed first.
    static func unmount(_ media: String) {
        if umount(media) == 0 { return }
        let prefix = URL(fileURLWithPath: media).standardizedFileURL.path + "/"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            guard let descriptor = Int32(name), descriptor > 2,
                  let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + name),
                  target.hasPrefix(prefix) else { continue }
            close(descriptor)
        }
        if umount(media) != 0 {
            FileHandle.standardError.write(Data("imprint: warning: could not unmount \(media) (\(String(cString: strerror(errno)))); the log was synced, but Windows may offer to check the stick\n".utf8))
        }
    }

    /// `20261130-0142-SERIAL-usb-offline`: FAT forbids ':' and one stick serves many machines, so
    /// the time and the machine's serial number (else its first MAC address) keep runs apart.
    static func logName(facts: Facts, file: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let variables = facts.variables
        let machine = [variables["SerialNumber"], variables["MACAddress"]].compactMap { $0 }.first { !$0.isEmpty } ?? "machine"
        let stem = file.lowercased().hasSuffix(".json") ? String(file.dropLast(5)) : file
        let safe = { (text: String) in
            String(text.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }.prefix(40))
        }
        return formatter.string(from: Date()) + "-" + safe(machine) + "-" + safe(stem)
    }

    /// The numbered menu on the console; nil when the technician types q.
    private func ask(_ catalog: MediaCatalog) throws -> MediaCatalog.Entry? {
        while true {
            prompt("Type the number of the sequence to run and press Enter (q for a shell): ")
            guard let line = readLine() else {
                throw fail(ValidationError("no choice made: the console closed its input; "
                                           + "pass imprint.choice=N on the kernel command line to choose without asking"))
            }
            let answer = line.trimmingCharacters(in: .whitespaces)
            if answer.isEmpty { continue }
            if answer.lowercased() == "q" { return nil }
            do { return try catalog.entry(for: answer) } catch { print("\(error)") }
        }
    }

    private func confirm(_ question: String) -> Bool {
        prompt(question)
        return readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes"
    }

    /// Without a newline, print() would leave the question in stdout's buffer.
    private func prompt(_ text: String) {
        print(text, terminator: "")
        fflush(nil)  // all streams; Swift 6 forbids touching the global `stdout`
    }
}
