import Failures
import Foundation
import Testing
import TestSupport
@testable import SequenceModel
@testable import SequenceRunner

/// An image over plain HTTP without a SHA-256 could be changed by anyone on the network: a
/// warning by default, refused before anything is written with `requireVerifiedContent`.
@Suite(.serialized)
struct VerifiedContentTests {
    static let warning = "comes over plain HTTP without a sha256: anyone on the network could change it"

    @Test func theParserWarnsOrRefusesLiteralSources() throws {
        func issues(_ require: Bool?, _ step: String) -> [SequenceIssue] {
            let setting = require.map { "\"requireVerifiedContent\": \($0), " } ?? ""
            let json = """
                {"name": "v", \(setting)"steps": [{"type": "selectDisk", "rules": {}}, \(step)]}
                """
            return SequenceParser.parse(Data(json.utf8), origin: "test").1
        }
        let plain = #"{"type": "writeImage", "source": "http://10.0.0.1/disk.img.xz"}"#
        let warned = issues(nil, plain)
        #expect(warned.count == 1 && warned.first?.severity == .warning && warned.first?.path == "$.steps[1].source")
        #expect(warned.first?.message.contains(Self.warning) == true)
        let refused = issues(true, plain)
        #expect(refused.count == 1 && refused.first?.severity == .error)
        #expect(refused.first?.message.contains("requireVerifiedContent") == true)
        // A SHA-256, HTTPS or a local file: nothing to say, required or not.
        let sha = String(repeating: "a", count: 64)
        for step in [#"{"type": "writeImage", "source": "http://10.0.0.1/disk.img", "sha256": "\#(sha)"}"#,
                     #"{"type": "writeImage", "source": "https://server/disk.img"}"#,
                     #"{"type": "writeImage", "source": "/media/disk.img"}"#] {
            #expect(issues(true, step).isEmpty, "\(step)")
        }
        // Not a boolean.
        #expect(issues(nil, plain).count == 1)
        let wrong = SequenceParser.parse(Data(#"{"name": "v", "requireVerifiedContent": "yes", "steps": [{"type": "reboot"}]}"#.utf8), origin: "t").1
        #expect(wrong.contains { $0.path == "$.requireVerifiedContent" && $0.severity == .error })
        let parsed = SequenceParser.parse(Data(#"{"name": "v", "requireVerifiedContent": true, "steps": [{"type": "reboot"}]}"#.utf8), origin: "t").0
        #expect(parsed?.requireVerifiedContent == true)
    }

    /// The source comes from a variable, so only the run can judge it: with the setting, the
    /// run stops before its first step, and the disk the sequence would wipe is untouched.
    @Test func requiredVerificationRefusesBeforeAnythingIsWiped() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "kept", size: 64 << 20)
        try run(["sh", "-c", "head -c 1048576 /dev/urandom > \(lab.www)/disk.img"])
        let before = try lab.sha256(disk.device)
        let json = """
            {"name": "strict", "requireVerifiedContent": true, "variables": {"Images": "\(lab.server.url(""))"}, "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "writeImage", "name": "Write", "source": "${Images}/disk.img", "target": "disk"}]}
            """
        let validated = lab.scratch.sub("strict.json")
        try writeJSON(json, validated)
        // validate has no variables' runtime values to judge by: it passes; plan judges them.
        let plan = try run([imprintBinary, "sequence", "plan", validated], allowFailure: true)
        #expect(plan.output.contains("2  writeImage  \"Write\"  FAILS"), "\(plan.output)")
        #expect(plan.output.contains(Self.warning))

        let outcome = try lab.run(sequence: json)
        #expect(outcome.result.status == FailureKind.refused.exitStatus, "\(outcome.result.stderr)")
        #expect(!started(outcome.events).contains("1"), "a step ran before the refusal")
        let failed = try #require(outcome.events.first { $0.kind == .stepEnded && $0.step == "2" })
        #expect(failed.status == .failed && failed.failure == .refused)
        #expect(failed.message?.contains(Self.warning) == true && failed.message?.contains("give its sha256 or serve it over HTTPS") == true)
        #expect(outcome.events.last?.failure == .refused)
        #expect(try lab.sha256(disk.device) == before, "the disk was written")
        #expect(try lab.requests("/disk.img") == 0, "the image was downloaded")
    }

    /// Without the setting the image is written, and the technician is told in the log and the
    /// events why that was a risk.
    @Test func withoutTheSettingItIsAWarning() throws {
        let lab = try SequenceLab()
        let disk = try LoopDisk(lab.scratch, "written", size: 64 << 20)
        try run(["sh", "-c", "head -c 1048576 /dev/urandom > \(lab.www)/disk.img"])
        let outcome = try lab.run(sequence: """
            {"name": "lenient", "steps": [
              {"type": "selectDisk", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "writeImage", "name": "Write", "source": "\(lab.server.url("/disk.img"))", "target": "disk"}]}
            """)
        #expect(outcome.result.status == 0, "\(outcome.result.stderr)")
        let warning = outcome.events.first { $0.kind == .log && $0.step == "2" && ($0.message ?? "").contains(Self.warning) }
        #expect(warning?.level == "warning")
        #expect(outcome.log.contains(Self.warning))
        let written = try run(["sh", "-c", "head -c 1048576 \(disk.device) | sha256sum"]).output.prefix(64)
        #expect(written == (try lab.sha256(lab.www + "/disk.img")).prefix(64))
    }
}
