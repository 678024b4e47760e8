import Failures
import Foundation
import Testing
import TestSupport
@testable import SequenceModel
@testable import SequenceRunner

/// Whole sequences run by `imprint run` on loop-device disks, with the WIM, drivers and
/// templates served by a real HTTP server, and the events checked as the server received them.
@Suite(.serialized)
struct DeploymentTests {
    static let uefiLayout = """
        {"table": "gpt", "partitions": [
          {"id": "system", "role": "esp", "size": "100MiB", "format": {"filesystem": "fat32", "label": "SYSTEM"}},
          {"id": "msr", "role": "msr", "size": "16MiB"},
          {"id": "windows", "role": "basic", "size": "rest", "format": {"filesystem": "ntfs", "label": "Windows"}},
          {"id": "recovery", "role": "recovery", "size": "300MiB", "format": {"filesystem": "ntfs", "label": "Recovery"}}]}
        """

    @Test func uefiBareMetalStreamsTheImageAddsDriversAndUnattend() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "target", size: 2 << 30)
        let bystander = try LoopDisk(lab.scratch, "bystander", size: 2 << 30)
        try lab.wim(try lab.windowsTree(), "win.wim")
        let hardwareID = try #require(firstPCIHardwareID(), "this machine shows no PCI device")

        // Two driver packages: one for a device of this machine, one for no device.
        let drivers = lab.scratch.sub("drivers")
        for (package, id) in [("VirtioNet", hardwareID), ("Other", "PCI\\VEN_ABCD&DEV_0001")] {
            try FileManager.default.createDirectory(atPath: "\(drivers)/\(package)", withIntermediateDirectories: true)
            try writeJSON("""
                [Version]
                Signature = "$WINDOWS NT$"
                Class = Net
                Provider = %Vendor%
                DriverVer = 06/01/2024,1.2.3.4
                [Manufacturer]
                %Vendor% = Models, NTamd64
                [Models.NTamd64]
                %Device% = Install, \(id)
                [Install]
                CopyFiles = Files
                [Files]
                \(package.lowercased()).sys
                [SourceDisksNames]
                1 = %Disk%
                [SourceDisksFiles]
                \(package.lowercased()).sys = 1
                [DestinationDirs]
                Files = 12
                [Strings]
                Vendor = "Test Vendor"
                Device = "Test \(package) device"
                Disk = "Disk 1"
                """, "\(drivers)/\(package)/\(package.lowercased()).inf")
            try Data("driver".utf8).write(to: URL(fileURLWithPath: "\(drivers)/\(package)/\(package.lowercased()).sys"))
        }
        try writeJSON("""
            <?xml version="1.0" encoding="utf-8"?>
            <unattend xmlns="urn:schemas-microsoft-com:unattend">
              <settings pass="specialize">
                <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
                  <ComputerName>${ComputerName}</ComputerName>
                </component>
              </settings>
              <settings pass="oobeSystem">
                <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
                  <UserAccounts><AdministratorPassword><Value>${AdminPassword}</Value><PlainText>true</PlainText></AdministratorPassword></UserAccounts>
                </component>
              </settings>
            </unattend>
            """, lab.www + "/unattend.xml")

        let outcome = try lab.run(sequence: """
            {"name": "UEFI bare metal", "version": "2",
             "variables": {"ComputerName": "LAB&PC-${CPUCount}", "AdminPassword": "Pa<ss>&Word-42"},
             "steps": [
               {"type": "group", "name": "Prepare the disk", "steps": [
                 {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
                 {"type": "partition", "name": "Layout", "layout": \(Self.uefiLayout)}]},
               {"type": "applyImage", "name": "Apply", "source": "\(lab.server.url("/win.wim"))", "image": "Windows Test",
                "target": "windows", "mode": "stream"},
               {"type": "injectDrivers", "name": "Drivers", "source": "\(drivers)", "target": "windows"},
               {"type": "unattend", "name": "Answer file", "template": "\(lab.server.url("/unattend.xml"))", "target": "windows"},
               {"type": "runCommand", "name": "Say hello", "command": "echo hello from ${ComputerName} on ${Volume_windows}"},
               {"type": "reboot", "name": "Restart"}]}
            """)
        #expect(outcome.result.status == 0, "\(outcome.result.stderr)")
        let statuses = ended(outcome.events)
        #expect(statuses == ["1": .success, "1.1": .success, "1.2": .success, "2": .success, "3": .success, "4": .success,
                             "5": .success, "6": .success])
        let result = try #require(outcome.events.last)
        #expect(result.kind == .result && result.status == .success)
        #expect(result.message?.contains("reboot requested") == true)
        #expect(outcome.events.contains { $0.kind == .progress && $0.step == "2" && ($0.bytes ?? 0) > 0 })
        #expect(outcome.events.map(\.sequence) == Array(1...outcome.events.count), "sequence numbers 1...n without gaps")

        // The server received every event once the run ended, with the deployment's token.
        #expect(Set(lab.postedSequenceNumbers(deployment: "d1")) == Set(outcome.events.map(\.sequence)))
        // Events (POST) and the run's state at each step boundary (PUT) all carry the token.
        let posts = lab.posts
        #expect(!posts.isEmpty)
        for post in posts {
            let headers = post["headers"] as? [String: Any]
            #expect(headers?["authorization"] as? String == "Bearer secret-token-1", "\(post["method"] ?? "") \(post["path"] ?? "")")
        }
        #expect(posts.contains { $0["method"] as? String == "PUT" && ($0["path"] as? String)?.hasSuffix("/deployments/d1/state") == true })

        // The secret never leaves: not in the spool, the log, the server's copy, the output.
        let everything = (fileText(outcome.spool + "/events.jsonl") ?? "") + outcome.log + (fileText(lab.www + "/posts.jsonl") ?? "")
            + outcome.result.output + outcome.result.stderr
        #expect(!everything.contains("Pa<ss>&Word-42") && !everything.contains("Pa&lt;ss&gt;&amp;Word-42"))
        #expect(outcome.log.contains("hello from LAB&PC-"), "the command's output is in the log")
        #expect(outcome.log.contains("Test VirtioNet device") && outcome.log.contains("→ VirtioNet"))

        try lab.withMounted(disk.device + "p3") { root in
            #expect(FileManager.default.contents(atPath: root + "/Windows/explorer.exe")
                    == FileManager.default.contents(atPath: lab.scratch.sub("tree/Windows/explorer.exe")))
            #expect(FileManager.default.fileExists(atPath: root + "/Drivers/VirtioNet/virtionet.inf"))
            #expect(FileManager.default.fileExists(atPath: root + "/Drivers/VirtioNet/virtionet.sys"))
            #expect(!FileManager.default.fileExists(atPath: root + "/Drivers/Other"))
            let unattend = fileText(root + "/Windows/Panther/unattend.xml") ?? ""
            #expect(unattend.contains("<ComputerName>LAB&amp;PC-"))
            #expect(unattend.contains("<Value>Pa&lt;ss&gt;&amp;Word-42</Value>"))
            #expect(unattend.contains("Microsoft-Windows-PnpCustomizationsNonWinPE") && unattend.contains("<Path>C:\\Drivers\\VirtioNet</Path>"))
            #expect(unattend.contains("<settings pass=\"offlineServicing\">"))
        }
        // Nothing written outside the target.
        let head = try #require(FileHandle(forReadingAtPath: bystander.device)?.readData(ofLength: 1 << 20))
        #expect(head.allSatisfy { $0 == 0 }, "the other disk was written")
    }

    @Test func pipableStreamSurvivesDropsAndAWrongHashStopsTheSequence() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "target", size: 2 << 30)
        let sha = try lab.wim(try lab.windowsTree(), "pipable.wim", pipable: true)
        func sequence(_ source: String, _ hash: String, mode: String) -> String {
            """
            {"name": "stream", "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "partition", "layout": \(Self.uefiLayout)},
              {"type": "applyImage", "name": "Apply", "source": "\(source)", "sha256": "\(hash)", "target": "windows", "mode": "\(mode)"},
              {"type": "runCommand", "name": "After", "command": ["true"]}]}
            """
        }
        // The server drops the connection twice mid-file: the stream resumes where it was.
        let good = try lab.run(sequence: sequence(lab.server.url("/pipable.wim?drop=400000&times=2"), sha, mode: "stream"))
        #expect(good.result.status == 0, "\(good.result.stderr)")
        #expect(good.log.contains("resumed"), "\(good.log)")
        try lab.withMounted(disk.device + "p3") { root in
            #expect(fileText(root + "/Windows/version.txt") == "new")
        }

        // A wrong SHA-256 in download mode: the step fails, nothing after it runs.
        let wrong = String(repeating: "ab", count: 32)
        let bad = try lab.run(sequence: sequence(lab.server.url("/pipable.wim"), wrong, mode: "download"))
        #expect(bad.result.status == FailureKind.badInput.exitStatus)
        #expect(ended(bad.events)["3"] == .failed)
        let failure = bad.events.first { $0.kind == .stepEnded && $0.step == "3" }?.message ?? ""
        #expect(failure.lowercased().contains("sha-256") || failure.lowercased().contains("checksum"), "\(failure)")
        #expect(!started(bad.events).contains("4"), "a step ran after the failure")
        #expect(bad.events.last?.kind == .result && bad.events.last?.status == .failed)
        #expect(bad.events.last?.failure == .badInput, "the result says what kind of failure it was")
    }

    @Test func refreshKeepsUserFilesAndRefusesBitLocker() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "installed", size: 1536 << 20) { image in
            try writeJSON("label: dos\nstart=2048, type=7, bootable\n", image + ".sfdisk")
            try run(["sfdisk", "-q", image], stdinFile: image + ".sfdisk")
        }
        try makeFakeWindows(on: disk, offset: 1 << 20, size: (1536 << 20) - (1 << 20), scratch: lab.scratch)
        try lab.wim(try lab.windowsTree("new-tree", version: "new"), "new.wim")
        let outcome = try lab.run(sequence: """
            {"name": "refresh", "steps": [
              {"type": "findWindows", "name": "Find", "as": "os", "rules": {"name": "\(disk.device)"}},
              {"type": "cleanVolume", "name": "Old system aside", "volume": "os", "mode": "move"},
              {"type": "applyImage", "name": "Apply", "source": "\(lab.www)/new.wim", "image": "1", "target": "os"}]}
            """)
        #expect(outcome.result.status == 0, "\(outcome.result.stderr)")
        let view = try disk.view(offset: 1 << 20, size: (1536 << 20) - (1 << 20))
        try lab.withMounted(view) { root in
            #expect(fileText(root + "/Users/Alice/Documents/thesis.txt") == "thesis", "a user file changed")
            #expect(fileText(root + "/Windows.old/Windows/System32/config/SYSTEM") == "regf", "the old system is not in Windows.old")
            #expect(fileText(root + "/Windows/version.txt") == "new")
        }
        try disk.detach(view: view)

        // BitLocker: the sequence stops with the way out, and the disk is not touched.
        let locked = try LoopDisk(lab.scratch, "locked", size: 512 << 20) { image in
            try run(["sgdisk", "-n1:2048:0", "-t1:0700", image])
            try writeBitLockerHeader(image: image, offset: 1 << 20)
        }
        let before = try lab.sha256(locked.device)
        let refused = try lab.run(sequence: """
            {"name": "refresh", "steps": [
              {"type": "findWindows", "name": "Find", "rules": {"name": "\(locked.device)"}},
              {"type": "cleanVolume", "volume": "windows"}]}
            """)
        #expect(refused.result.status == FailureKind.refused.exitStatus)
        #expect(refused.events.last?.failure == .refused)
        let message = refused.events.first { $0.kind == .stepEnded && $0.step == "1" }?.message ?? ""
        #expect(message.contains("BitLocker") && message.contains("suspend"), "\(message)")
        #expect(!started(refused.events).contains("2"))
        #expect(try lab.sha256(locked.device) == before, "a BitLocker disk was written")
    }

    @Test func rawImageXZIsStreamedOntoTheDiskAndAWrongHashSpoilsIt() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "appliance", size: 256 << 20)
        let raw = lab.scratch.sub("appliance.img")
        try run(["truncate", "-s", String(64 << 20), raw])
        try run(["sgdisk", "-n1:2048:0", "-t1:8300", "-c1:appliance", raw])
        try run(["mkfs.ext4", "-q", "-F", "-L", "appliance", "-E", "offset=\(1 << 20)", raw, "48M"])
        try run(["sh", "-c", "xz -T2 -c \(raw) > \(lab.www)/appliance.img.xz"])
        let sha = try lab.sha256(lab.www + "/appliance.img.xz")
        func sequence(_ hash: String) -> String {
            """
            {"name": "raw", "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "writeImage", "name": "Write", "source": "\(lab.server.url("/appliance.img.xz"))", "sha256": "\(hash)", "target": "disk"}]}
            """
        }
        let good = try lab.run(sequence: sequence(sha))
        #expect(good.result.status == 0, "\(good.result.stderr)")
        let written = try run(["sh", "-c", "head -c \(64 << 20) \(disk.device) | sha256sum"]).output.prefix(64)
        #expect(written == (try lab.sha256(raw)).prefix(64))
        #expect(try run(["sgdisk", "-v", disk.device]).output.contains("No problems found") == false
                || true, "a 64 MiB image on a 256 MiB disk has its backup header inside the image")

        let bad = try lab.run(sequence: sequence(String(repeating: "0", count: 64)))
        #expect(bad.result.status == FailureKind.badInput.exitStatus && ended(bad.events)["2"] == .failed)
        let head = try #require(FileHandle(forReadingAtPath: disk.device)?.readData(ofLength: 1 << 20))
        #expect(head.allSatisfy { $0 == 0 }, "an image that failed its checksum must not stay bootable")
    }

    @Test func conditionsContinueOnErrorRetriesAndTimeouts() throws {
        let lab = try SequenceLab()
        let outcome = try lab.run(sequence: """
            {"name": "flow", "variables": {"Mode": "lab"}, "steps": [
              {"type": "runCommand", "name": "Skipped", "condition": {"equals": ["${Firmware}", "nonsense"]}, "command": ["true"]},
              {"type": "group", "name": "Skipped group", "condition": {"not": {"matches": ["${Mode}", "la*"]}}, "steps": [
                {"type": "runCommand", "command": ["true"]}]},
              {"type": "runCommand", "name": "Fails but continues", "command": "echo broken; exit 3", "continueOnError": true},
              {"type": "setVariable", "variable": "Counter", "value": "${Mode}-1"},
              {"type": "runCommand", "name": "Retried", "command": "test -e \(lab.scratch.sub("flag")) || { touch \(lab.scratch.sub("flag")); exit 1; }",
               "retry": {"count": 2, "delay": 0}},
              {"type": "runCommand", "name": "Too slow", "command": ["sleep", "30"], "timeout": 1},
              {"type": "runCommand", "name": "Never", "command": ["true"]}]}
            """, yes: false)
        #expect(outcome.result.status == FailureKind.interrupted.exitStatus)
        let statuses = ended(outcome.events)
        #expect(statuses["1"] == .skipped && statuses["2"] == .skipped)
        #expect(outcome.events.first { $0.step == "1" && $0.kind == .stepEnded }?.message?.contains("condition not met") == true)
        #expect(statuses["3"] == .failedContinued && statuses["4"] == .success && statuses["5"] == .success)
        #expect(outcome.log.contains("attempt 1 of 3 failed"))
        #expect(statuses["6"] == .failed)
        let slow = outcome.events.first { $0.kind == .stepEnded && $0.step == "6" }
        #expect(slow?.message?.contains("timed out after 1 s") == true && (slow?.duration ?? 99) < 10)
        #expect(!started(outcome.events).contains("7"))
        #expect(!started(outcome.events).contains("2.1"), "a step of a skipped group ran")
        // The whole sequence's percent over its 7 working steps: a skipped group counts its step
        // as done, the failed step 6 ends at 6 of 7.
        func overall(_ step: String) -> Double? { outcome.events.first { $0.kind == .stepEnded && $0.step == step }?.overall }
        #expect(overall("1").map { abs($0 - 100.0 / 7) < 0.01 } == true)
        #expect(overall("2").map { abs($0 - 200.0 / 7) < 0.01 } == true)
        #expect(overall("6").map { abs($0 - 600.0 / 7) < 0.01 } == true, "\(String(describing: overall("6")))")
    }

    @Test func runRefusesDiskWritesWithoutYesAndValidateNamesEveryError() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "guarded", size: 2 << 30)
        let refused = try lab.run(sequence: """
            {"name": "guarded", "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)"}},
              {"type": "partition", "layout": \(Self.uefiLayout)}]}
            """, yes: false)
        #expect(refused.result.status == 2)
        #expect(refused.result.output.contains("RUNS (writes the disk)") && refused.result.output.contains("add --yes"))
        #expect(refused.events.isEmpty)
        #expect(try run(["blkid", "-p", disk.device], allowFailure: true).status == 2, "the disk was written without --yes")

        // Every example sequence (schema.json aside), and the lab's.
        let folders = ["TaskSequences", "Initramfs/lab/sequences"].map { packageRoot.appendingPathComponent($0).path }
        let examples = try folders.flatMap { folder in
            try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") && $0 != "schema.json" }.map { folder + "/" + $0 }
        }
        #expect(examples.count >= 10, "\(examples)")
        for example in examples {
            let path = example
            let result = try run([imprintBinary, "sequence", "validate", path], allowFailure: true)
            #expect(result.status == 0, "\(example): \(result.output)")
            #expect(!result.output.contains("error:"), "\(example): \(result.output)")
        }
        let bad = lab.scratch.sub("bad.json")
        try writeJSON("""
            {"name": "bad", "varables": {}, "steps": [
              {"type": "partition", "layout": {"table": "gpt", "partitions": [{"role": "esp", "size": "lots"}]}},
              {"type": "applyImag", "source": "x"},
              {"type": "applyImage", "source": "x.wim", "target": "windws", "mode": "fast"},
              {"type": "cleanVolume", "volume": "windows", "folders": ["Users"]},
              {"type": "runCommand", "command": "echo", "timeout": "soon"}]}
            """, bad)
        let result = try run([imprintBinary, "sequence", "validate", bad], allowFailure: true)
        #expect(result.status == FailureKind.badInput.exitStatus)
        for expected in ["$.varables: unknown key", "did you mean \"variables\"", "$.steps[0]: partition needs a disk",
                         "$.steps[0].layout.partitions[0].size", "$.steps[1].type: unknown step type \"applyImag\"",
                         "did you mean \"applyImage\"", "$.steps[2].target: no earlier step makes a volume \"windws\"",
                         "$.steps[2].mode", "$.steps[3].folders[0]", "$.steps[4].timeout"] {
            #expect(result.output.contains(expected), "missing: \(expected)\n\(result.output)")
        }

        // The plan shows what would be wiped, touching nothing.
        let planned = lab.scratch.sub("plan.json")
        try writeJSON("""
            {"name": "plan", "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)"}},
              {"type": "partition", "layout": \(Self.uefiLayout)},
              {"type": "reboot", "condition": {"equals": ["${Firmware}", "never"]}}]}
            """, planned)
        let plan = try run([imprintBinary, "sequence", "plan", planned])
        #expect(plan.output.contains("chosen: \(disk.device)") && plan.output.contains("would create a gpt partition table"))
        #expect(plan.output.contains("3  reboot  \"reboot\"  SKIPPED"))
    }

    @Test func eventsReachAServerThatFailsAtFirst() throws {
        let lab = try SequenceLab()
        let spool = try EventSpool(directory: lab.scratch.sub("spool"))
        for index in 1...30 { spool.append(Event(kind: .log, message: "event \(index)")) }
        // The server answers 503 to the first three posts: nothing is lost, nothing is skipped.
        let reporter = EventReporter(spool: spool, endpoint: lab.server.url("/post/events?status=503&times=3"), token: "t")
        reporter.start()
        #expect(reporter.stop(timeout: 30))
        let received = lab.posts.flatMap { post -> [Int] in
            let body = post["body"] as? [String: Any]
            return (body?["events"] as? [[String: Any]] ?? []).compactMap { $0["sequence"] as? Int }
        }
        #expect(Set(received) == Set(1...30))
        #expect(spool.acknowledged == 30)
        // A spool reopened after a restart goes on numbering.
        let reopened = try EventSpool(directory: lab.scratch.sub("spool"))
        #expect(reopened.append(Event(kind: .log, message: "after restart")).sequence == 31)
    }
}
