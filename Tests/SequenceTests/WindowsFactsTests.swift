import DiskModel
import Foundation
import InstalledWindows
import Testing
import TestSupport
@testable import SequenceModel
import SequenceRunner

/// What Windows is on a disk, read from hives hivex wrote (onto an empty hive from the lab's
/// independent writer), on NTFS volumes made by mkntfs and filled through ntfs-3g: the reader's
/// values, `imprint disk list` (text and JSON), the `windows.*` facts a sequence's conditions
/// test after findWindows, and what a volume without hives or with a damaged one gives.
@Suite(.serialized)
struct WindowsFactsTests {
    /// 2024-01-15T10:30:00Z as a FILETIME, the 8 bytes Windows stores in ShutdownTime.
    static let shutdownBytes = "00,84,e0,ca,9d,47,da,01"

    /// hivexsh commands that make keys (each once) and set values in them.
    struct HiveScript {
        var lines: [String] = []
        private var made: Set<String> = []

        mutating func key(_ path: String, _ values: [(name: String, value: String)] = []) {
            lines.append("cd \\")
            var reached = ""
            for part in path.split(separator: "\\") {
                reached += "\\" + part.lowercased()
                if made.insert(reached).inserted { lines.append("add \(part)") }
                lines.append("cd \(part)")
            }
            guard !values.isEmpty else { return }
            lines.append("setval \(values.count)")
            for (name, value) in values { lines += [name, value] }
        }

        /// The hive: an empty one from `Initramfs/lab/empty-hive.py`, filled by `hivexsh -w`.
        func write(_ path: String) throws -> Data {
            try run(["python3", packageRoot.appendingPathComponent("Initramfs/lab/empty-hive.py").path, path])
            let script = path + ".hivexsh"
            try ((lines + ["commit"]).joined(separator: "\n") + "\n").write(toFile: script, atomically: true, encoding: .utf8)
            try run(["hivexsh", "-w", "-f", script, path])
            return try Data(contentsOf: URL(fileURLWithPath: path))
        }
    }

    /// A Windows 10 22H2 (build 19045.3803) as sysprep left it or not; its computer name is
    /// in ControlSet002 (Select\Current = 2), ControlSet001 holding a stale one.
    static func windowsFiles(_ scratch: ScratchDirectory, build: String = "19045", imageState: String = "IMAGE_STATE_COMPLETE",
                             computerName: String = "PC-0042") throws -> [String: Data] {
        var software = HiveScript()
        software.key("Microsoft\\Windows NT\\CurrentVersion", [
            ("ProductName", "string:Windows 10 Pro"), ("EditionID", "string:Professional"), ("InstallationType", "string:Client"),
            ("CurrentMajorVersionNumber", "dword:0x0000000a"), ("CurrentMinorVersionNumber", "dword:0x00000000"),
            ("CurrentVersion", "string:6.3"), ("CurrentBuild", "string:\(build)"), ("CurrentBuildNumber", "string:\(build)"),
            ("UBR", "dword:0x00000edb"), ("DisplayVersion", "string:22H2"),
        ])
        software.key("Microsoft\\Windows\\CurrentVersion\\Setup\\State", [("ImageState", "string:\(imageState)")])
        var system = HiveScript()
        system.key("Select", [("Current", "dword:0x00000002"), ("Default", "dword:0x00000002")])
        system.key("ControlSet001\\Control\\ComputerName\\ComputerName", [("ComputerName", "string:OLD-NAME")])
        system.key("ControlSet002\\Control\\ComputerName\\ComputerName", [("ComputerName", "string:\(computerName)")])
        system.key("ControlSet002\\Control\\Windows", [("ShutdownTime", "hex:3:" + shutdownBytes)])
        system.key("ControlSet002\\Control\\ProductOptions", [("ProductType", "string:WinNT")])
        let name = UUID().uuidString.prefix(6)
        return [
            "Windows/System32/config/SOFTWARE": try software.write(scratch.sub("SOFTWARE-\(name)")),
            "Windows/System32/config/SYSTEM": try system.write(scratch.sub("SYSTEM-\(name)")),
            "Windows/System32/kernel32.dll": Data(kernel32(machine: 0x8664)),
        ]
    }

    /// The start of a PE file: "MZ", the PE header's offset at 0x3C, "PE\0\0" and the machine.
    static func kernel32(machine: UInt16) -> [UInt8] {
        var pe = [UInt8](repeating: 0, count: 0x400)
        pe[0] = 0x4D; pe[1] = 0x5A; pe[0x3C] = 0x80
        pe[0x80] = 0x50; pe[0x81] = 0x45
        pe[0x84] = UInt8(machine & 0xFF); pe[0x85] = UInt8(machine >> 8)
        return pe
    }

    @Test func theReaderTakesEveryValueFromHivexHives() throws {
        let scratch = ScratchDirectory()
        let files = try Self.windowsFiles(scratch)
        let (details, problems) = WindowsDetails.read(place: "test volume") { file in
            files["Windows/" + file.rawValue].map { [UInt8]($0) }
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(details.architecture == "x64" && details.architectureCode == 9)
        #expect(details.productName == "Windows 10 Pro" && details.editionID == "Professional" && details.installationType == "Client")
        #expect(details.build == "19045" && details.updateBuildRevision == 3803 && details.displayVersion == "22H2")
        #expect(details.version == "10.0.19045.3803")
        #expect(details.computerName == "PC-0042", "the current control set (Select\\Current = 2) is read")
        #expect(details.lastShutdown == "2024-01-15T10:30:00Z")
        #expect(details.imageState == "IMAGE_STATE_COMPLETE" && details.generalized == false)
        #expect(details.productType == "WinNT")
        #expect(WindowsFacts.variables(details) == [
            "WindowsBuild": "19045", "WindowsUBR": "3803", "WindowsVersion": "10.0.19045.3803", "WindowsDisplayVersion": "22H2",
            "WindowsEdition": "Professional", "WindowsProductName": "Windows 10 Pro", "WindowsInstallationType": "Client",
            "WindowsArchitecture": "x64", "WindowsComputerName": "PC-0042", "WindowsImageState": "IMAGE_STATE_COMPLETE",
            "WindowsGeneralized": "false", "WindowsLastShutdown": "2024-01-15T10:30:00Z",
        ])

        // A damaged SOFTWARE hive, a missing kernel32.dll: no crash, each named, SYSTEM's values kept.
        var damaged = [UInt8](try #require(files["Windows/System32/config/SOFTWARE"]))
        damaged.replaceSubrange(0..<4, with: Array("junk".utf8))
        let (partial, trouble) = WindowsDetails.read(place: "/dev/sdz partition 3") { file in
            switch file {
            case .software: return damaged
            case .system: return files["Windows/System32/config/SYSTEM"].map { [UInt8]($0) }
            case .kernel32: return nil
            }
        }
        #expect(partial.computerName == "PC-0042" && partial.build == nil && partial.architecture == nil && partial.generalized == nil)
        #expect(trouble.count == 2, "\(trouble)")
        #expect(trouble.contains { $0.hasPrefix("/dev/sdz partition 3: Windows/System32/config/SOFTWARE") && $0.contains("regf") }, "\(trouble)")
        #expect(trouble.contains("/dev/sdz partition 3: no Windows/System32/kernel32.dll"), "\(trouble)")
    }

    /// One disk: partition 1 a Windows with readable hives, partition 2 NTFS without any; a
    /// second disk whose Windows has a damaged SOFTWARE hive.
    @Test func diskListShowsWhatEachInstalledWindowsIs() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "facts", size: 160 << 20) { image in
            try writeJSON("label: dos\nstart=2048, size=143360, type=7\nstart=145408, type=7\n", image + ".sfdisk")
            try run(["sfdisk", "-q", image], stdinFile: image + ".sfdisk")
        }
        try makeFakeWindows(on: disk, offset: 1 << 20, size: 70 << 20, scratch: scratch, files: try Self.windowsFiles(scratch))
        try makeFakeWindows(on: disk, offset: 71 << 20, size: (160 - 71) << 20, scratch: scratch, label: "Data", files: [:])
        var broken = try Self.windowsFiles(scratch, computerName: "BROKEN-1")
        broken["Windows/System32/config/SOFTWARE"] = Data("regf, but cut short".utf8)
        let damaged = try LoopDisk(scratch, "damaged", size: 64 << 20)
        try makeFakeWindows(on: damaged, offset: 0, size: 64 << 20, scratch: scratch, files: broken)

        let json = try run([imprintBinary, "disk", "list", "--json"]).stdout
        let disks = try JSONDecoder().decode([Disk].self, from: json)
        let listed = try #require(disks.first { $0.path == disk.device })
        try #require(listed.windows.count == 1, "the volume without hives is no Windows")
        let windows = listed.windows[0]
        #expect(windows.partition == 1 && windows.problems.isEmpty, "\(windows.problems)")
        let details = try #require(windows.details)
        #expect(details.build == "19045" && details.version == "10.0.19045.3803" && details.architecture == "x64")
        #expect(details.computerName == "PC-0042" && details.generalized == false && details.lastShutdown == "2024-01-15T10:30:00Z")
        // The JSON carries what follows from the values too, for programs that read it.
        let raw = try #require(try JSONSerialization.jsonObject(with: json) as? [[String: Any]])
        let entry = try #require(raw.first { $0["path"] as? String == disk.device })
        let rawDetails = try #require(((entry["windows"] as? [[String: Any]])?.first)?["details"] as? [String: Any])
        #expect(rawDetails["version"] as? String == "10.0.19045.3803" && rawDetails["generalized"] as? Bool == false)

        let other = try #require(disks.first { $0.path == damaged.device })
        let hurt = try #require(other.windows.first)
        #expect(hurt.details?.computerName == "BROKEN-1" && hurt.details?.build == nil)
        #expect(hurt.problems.count == 1 && hurt.problems[0].hasPrefix("\(damaged.device): Windows/System32/config/SOFTWARE"),
                "\(hurt.problems)")

        let text = try run([imprintBinary, "disk", "list"]).output
        #expect(text.contains("Windows 10 Pro (Professional, Client), version 10.0.19045.3803 (22H2), x64, computer PC-0042, "
                              + "not generalized (IMAGE_STATE_COMPLETE), last shut down 2024-01-15T10:30:00Z"), "\(text)")
        #expect(text.contains("not read: \(damaged.device): Windows/System32/config/SOFTWARE"), "\(text)")
    }

    /// findWindows makes the facts; a condition on windows.build holds or not as the build
    /// says; a Windows whose hives cannot be read leaves them unknown, and no condition holds.
    @Test func conditionsOnWindowsBuildFollowWhatFindWindowsRead() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "installed", size: 96 << 20) { image in
            try writeJSON("label: dos\nstart=2048, type=7\n", image + ".sfdisk")
            try run(["sfdisk", "-q", image], stdinFile: image + ".sfdisk")
        }
        let files = try Self.windowsFiles(lab.scratch, imageState: "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE")
        try makeFakeWindows(on: disk, offset: 1 << 20, size: 95 << 20, scratch: lab.scratch, files: files)
        func sequence(_ device: String) -> String {
            """
            {"name": "facts", "steps": [
              {"type": "setVariable", "name": "Before", "variable": "Seen", "value": "x",
               "condition": {"fact": "windows.build", ">=": 1}},
              {"type": "findWindows", "name": "Find", "as": "os", "rules": {"name": "\(device)"}},
              {"type": "setVariable", "name": "Recent", "variable": "A", "value": "${WindowsBuild} on ${WindowsComputerName}",
               "condition": {"fact": "windows.build", ">=": 19045}},
              {"type": "setVariable", "name": "Eleven", "variable": "B", "value": "x", "condition": {"fact": "windows.build", ">=": 22000}},
              {"type": "setVariable", "name": "Sysprepped", "variable": "C", "value": "x",
               "condition": {"all": [{"fact": "windows.generalized", "==": true}, {"fact": "windows.architecture", "matches": "x6?"}]}},
              {"type": "setVariable", "name": "Older", "variable": "D", "value": "x", "condition": {"fact": "windows.build", "<": "19045"}}]}
            """
        }
        let outcome = try lab.run(sequence: sequence(disk.device))
        #expect(outcome.result.status == 0, "\(outcome.result.stderr)")
        let statuses = ended(outcome.events)
        #expect(statuses["1"] == .skipped, "windows.build is unknown before findWindows")
        #expect(statuses["3"] == .success && statuses["4"] == .skipped && statuses["5"] == .success && statuses["6"] == .skipped,
                "\(statuses)")
        let skipped = outcome.events.first { $0.kind == .stepEnded && $0.step == "4" }?.message ?? ""
        #expect(skipped.contains("windows.build is 19045, not at least 22000"), "\(skipped)")
        #expect(outcome.log.contains("A = 19045 on PC-0042") || outcome.events.contains { $0.message?.contains("19045 on PC-0042") == true },
                "the variables are substituted")
        #expect(outcome.log.contains("it is Windows 10 Pro"), "findWindows says what it found")

        // The same Windows with its hives damaged: findWindows still finds it, warns naming the
        // volume and the hive, and windows.build is unknown (a ">=" does not hold).
        let damaged = try LoopDisk(lab.scratch, "damaged", size: 96 << 20) { image in
            try writeJSON("label: dos\nstart=2048, type=7\n", image + ".sfdisk")
            try run(["sfdisk", "-q", image], stdinFile: image + ".sfdisk")
        }
        var hurt = files
        hurt["Windows/System32/config/SOFTWARE"] = Data(repeating: 0x55, count: 8192)
        hurt["Windows/System32/config/SYSTEM"] = Data("regf".utf8)
        hurt["Windows/System32/kernel32.dll"] = nil
        try makeFakeWindows(on: damaged, offset: 1 << 20, size: 95 << 20, scratch: lab.scratch, files: hurt)
        let second = try lab.run(sequence: sequence(damaged.device))
        #expect(second.result.status == 0, "\(second.result.stderr)")
        let after = ended(second.events)
        #expect(after["2"] == .success && after["3"] == .skipped && after["5"] == .skipped && after["6"] == .skipped, "\(after)")
        let warnings = second.events.filter { $0.kind == .log && $0.level == "warning" }.compactMap(\.message)
        #expect(warnings.contains { $0.contains("Windows/System32/config/SOFTWARE") && $0.contains(damaged.device) }, "\(warnings)")
        #expect(warnings.contains { $0.contains("windows.* facts are not set") }, "\(warnings)")
    }

    @Test func factConditionsAreCheckedWithTheirJSONPath() throws {
        func issues(_ condition: String) -> [SequenceIssue] {
            let json = """
                {"name": "x", "steps": [{"type": "findWindows"},
                  {"type": "setVariable", "variable": "A", "value": "1", "condition": \(condition)}]}
                """
            return SequenceParser.parse(Data(json.utf8), origin: "x.json").1
        }
        #expect(issues(#"{"fact": "windows.build", ">=": 19045}"#).isEmpty)
        #expect(issues(#"{"fact": "MemoryMiB", "atLeast": "8GiB"}"#).isEmpty)
        let unknown = issues(#"{"fact": "windows.bild", ">=": 19045}"#)
        #expect(unknown.first?.path == "$.steps[1].condition.fact" && unknown.first?.message == "unknown fact \"windows.bild\"", "\(unknown)")
        #expect(unknown.first?.hint?.contains("windows.build") == true)
        let notANumber = issues(#"{"fact": "windows.build", ">=": "new"}"#)
        #expect(notANumber.first?.path == "$.steps[1].condition.>=" && notANumber.first?.severity == .error, "\(notANumber)")
        let two = issues(#"{"fact": "windows.build", ">=": 1, "<": 2}"#)
        #expect(two.first?.path == "$.steps[1].condition" && two.first?.message.contains("one comparison") == true, "\(two)")
        let none = issues(#"{"fact": "windows.build"}"#)
        #expect(none.first?.path == "$.steps[1].condition" && none.first?.message.contains("needs a comparison") == true, "\(none)")
        let badOperator = issues(#"{"fact": "windows.build", "=>": 1}"#)
        #expect(badOperator.first?.path == "$.steps[1].condition.=>", "\(badOperator)")

        // Before any findWindows: a warning, since the condition could never hold there.
        let early = SequenceParser.parse(Data(#"""
            {"name": "x", "steps": [{"type": "setVariable", "variable": "A", "value": "1",
              "condition": {"fact": "windows.edition", "==": "Professional"}}]}
            """#.utf8), origin: "x.json").1
        #expect(early.count == 1 && early[0].severity == .warning && early[0].path == "$.steps[0].condition.fact", "\(early)")

        // A sequence cannot set a Windows fact, nor can the server pass one off as read.
        let setting = SequenceParser.parse(Data(#"{"name": "x", "variables": {"WindowsBuild": "99999"}, "steps": [{"type": "reboot"}]}"#.utf8),
                                           origin: "x.json").1
        #expect(setting.contains { $0.path == "$.variables.WindowsBuild" && $0.severity == .error }, "\(setting)")
        var variables = Variables(facts: [:], sequence: [:], server: ["WindowsBuild": "99999"], secrets: [])
        let condition = Condition.fact("windows.build", .atLeast, "19045")
        #expect(condition.evaluate { variables.substitute($0) }.0 == false)
        variables.setWindowsFacts(["WindowsBuild": "19045"])
        #expect(condition.evaluate { variables.substitute($0) } == (true, "windows.build is 19045, at least 19045"))
        variables.setWindowsFacts([:])
        #expect(condition.evaluate { variables.substitute($0) }.0 == false, "a later findWindows with nothing readable clears them")
    }

    /// `sequence plan` sets the facts of the Windows its findWindows would choose (the one
    /// with Users), so later conditions are planned as they would run.
    @Test func thePlanTestsTheFactsOfTheWindowsItWouldFind() throws {
        var old = WindowsDetails()
        (old.build, old.editionID) = ("17763", "Enterprise")
        var current = WindowsDetails()
        (current.build, current.editionID) = ("19045", "Professional")
        let table = PartitionTable(type: .gpt, id: nil, partitions: [
            Partition(number: 3, offset: 1 << 30, size: 60 << 30, type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", filesystem: Filesystem(type: "ntfs")),
            Partition(number: 4, offset: 61 << 30, size: 60 << 30, type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", filesystem: Filesystem(type: "ntfs")),
        ])
        let disk = Disk(name: "sda", path: "/dev/sda", size: 128 << 30, partitionTable: table, windows: [
            WindowsInstallation(partition: 3, label: nil, systemRoot: "Windows", hasUsers: false, details: old),
            WindowsInstallation(partition: 4, label: nil, systemRoot: "Windows", hasUsers: true, details: current),
        ])
        let (sequence, issues) = SequenceParser.parse(Data("""
            {"name": "plan", "steps": [
              {"type": "findWindows"},
              {"type": "setVariable", "variable": "A", "value": "1", "condition": {"fact": "windows.build", ">=": 19045}},
              {"type": "setVariable", "variable": "B", "value": "1", "condition": {"fact": "windows.edition", "==": "enterprise"}}]}
            """.utf8), origin: "plan.json")
        #expect(issues.isEmpty, "\(issues)")
        let facts = Facts(macAddresses: [], uuid: nil, serialNumber: nil, manufacturer: nil, model: nil, firmware: "uefi",
                          memoryMiB: 4096, cpuCount: 2, cpuModel: nil, architecture: "amd64", disks: [])
        let lines = SequencePlanner.plan(try #require(sequence), facts: facts, disks: [disk])
        #expect(lines.map(\.verdict) == ["runs", "runs", "skipped"], "\(lines.map(\.details))")
        #expect(lines[0].details.contains { $0.contains("partition 4") }, "\(lines[0].details)")
        #expect(lines[2].details.contains("condition not met: windows.edition is Professional, not equal to enterprise"), "\(lines[2].details)")
    }
}
