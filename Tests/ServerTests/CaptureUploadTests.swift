import Foundation
import Server
import TestSupport
import Testing
import Transport

/// Uploads of captured images (issue 16): a deployment sends the WIM its `captureImage` step
/// made, in pieces that survive a dropped connection, authenticated by its token, only under a
/// name its sequence uploads; the server keeps it only once the SHA-256 announced matches.
/// Real HTTP, the agent's own uploader, SQLite.
@Suite("imprint-server receives captured images", .serialized)
struct CaptureUploadTests {
    static let sequence = """
        {"name": "Capture", "steps": [
          {"type": "findWindows", "as": "windows"},
          {"type": "captureImage", "volume": "windows", "imageName": "Reference", "upload": "reference.wim"},
          {"type": "captureImage", "volume": "windows", "imageName": "Per machine", "upload": "ref-${ComputerName}.wim"}
        ]}
        """

    /// A deployment of the capture sequence, and its token.
    static func deployment(_ harness: ServerHarness) async throws -> (id: String, token: String) {
        try await harness.putSequence("capture", sequence)
        try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "capture", "variables": {}}]}"#)
        let answer = try await harness.checkIn(macs: ["52:54:00:16:00:01"])
        var deployment = answer.json["deployment"] as? [String: Any]
        if deployment == nil {
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            for machine in machines { _ = try await harness.admin("POST", "/machines/\(machine["id"] as? String ?? "")/approve") }
            deployment = try await harness.checkIn(macs: ["52:54:00:16:00:01"]).json["deployment"] as? [String: Any]
        }
        return (try #require(deployment?["id"] as? String), try #require(deployment?["token"] as? String))
    }

    static func file(_ scratch: ScratchDirectory, size: Int) throws -> (path: String, sha256: String) {
        let path = scratch.sub("capture-\(size).wim")
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(size)
        let bytes = (0..<size).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, String(try run(["sha256sum", path]).output.prefix(64)))
    }

    static func announce(_ harness: ServerHarness, _ id: String, _ name: String, size: Int, sha256: String, token: String?) async throws
        -> ServerHarness.Answer {
        let body = try JSONSerialization.data(withJSONObject: ["size": size, "sha256": sha256])
        return try await harness.request("POST", "/api/v1/deployments/\(id)/captures/\(name)", body: body, token: token)
    }

    /// A PUT of the file's bytes from `offset` (all of them, or `count`), as curl sends it.
    static func put(_ harness: ServerHarness, _ id: String, _ name: String, file: String, offset: Int, count: Int? = nil,
                    token: String?, extra: [String] = []) async throws -> ServerHarness.Answer {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        let slice = data.subdata(in: offset..<(count.map { offset + $0 } ?? data.count))
        let piece = harness.scratch.sub("piece-\(UUID().uuidString)")
        try slice.write(to: URL(fileURLWithPath: piece))
        var arguments = ["curl", "-sS", "-o", harness.scratch.sub("put-answer"), "-w", "%{http_code}", "-X", "PUT", "-H", "Expect:",
                         "-H", "Upload-Offset: \(offset)", "-H", "Content-Type: application/octet-stream", "--data-binary", "@" + piece]
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        arguments += extra + [harness.base + "/api/v1/deployments/\(id)/captures/\(name)"]
        let final = arguments
        let status = try await ServerHarness.offload { try run(final, allowFailure: true).output }
        let body = FileManager.default.contents(atPath: harness.scratch.sub("put-answer")) ?? Data()
        return ServerHarness.Answer(status: Int(status) ?? 0, headers: [:], body: body)
    }

    static func uploader(_ harness: ServerHarness, _ id: String, _ name: String, token: String) -> ResumableUpload {
        var options = TransferOptions()
        options.bearerToken = BearerToken(token, for: harness.base)
        options.retryDelay = 0.1
        return ResumableUpload(client: HTTPClient(options: options), url: harness.base + "/api/v1/deployments/\(id)/captures/\(name)")
    }

    @Test func theAgentsUploaderSendsAWholeFileThatTheServerVerifies() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await Self.deployment(harness)
            let (path, sha) = try Self.file(harness.scratch, size: 3_000_000)
            let uploader = Self.uploader(harness, id, "reference.wim", token: token)
            let outcome = try await ServerHarness.offload { try uploader.send(file: path, size: 3_000_000, sha256: sha) { _ in } }
            #expect(outcome.path == "capture/reference.wim" && outcome.sent == 3_000_000 && outcome.resumes == 0)
            let stored = harness.content + "/captures/capture/reference.wim"
            #expect(FileManager.default.contents(atPath: stored) == FileManager.default.contents(atPath: path))
            // No piece or record is published beside it: only the verified file.
            let listing = try FileManager.default.contentsOfDirectory(atPath: harness.content + "/captures/capture")
            #expect(listing.filter { !$0.hasPrefix(".") } == ["reference.wim"])
            // Served under /content like any image, so a later sequence can deploy it.
            #expect(try await harness.request("HEAD", "/content/captures/capture/reference.wim").status == 200)
            // Announced again (the agent lost the last answer): complete at once, nothing resent.
            let again = try await Self.announce(harness, id, "reference.wim", size: 3_000_000, sha256: sha, token: token)
            #expect(again.status == 200 && again.json["complete"] as? Bool == true, "\(again.text)")
        }
    }

    @Test func anInterruptedUploadGoesOnFromWhatTheServerKept() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await Self.deployment(harness)
            let size = 2_000_000
            let (path, sha) = try Self.file(harness.scratch, size: size)
            let first = try await Self.announce(harness, id, "ref-LAB-PC1.wim", size: size, sha256: sha, token: token)
            #expect(first.status == 200 && first.json["offset"] as? Int == 0, "\(first.text)")
            // The first 700 000 bytes arrive, then the connection is gone.
            let partial = try await Self.put(harness, id, "ref-LAB-PC1.wim", file: path, offset: 0, count: 700_000, token: token)
            #expect(partial.status == 200 && partial.json["offset"] as? Int == 700_000, "\(partial.text)")
            // A body cut off mid-way (curl gives up after a second at 200 KB/s): what arrived stays.
            _ = try await Self.put(harness, id, "ref-LAB-PC1.wim", file: path, offset: 700_000, token: token,
                                   extra: ["--limit-rate", "200K", "--max-time", "1"])
            let held = try await Self.announce(harness, id, "ref-LAB-PC1.wim", size: size, sha256: sha, token: token)
            let offset = try #require(held.json["offset"] as? Int, "\(held.text)")
            #expect(offset > 700_000 && offset < size, "\(held.text)")
            // A PUT from any other offset is refused with the one to use.
            let wrong = try await Self.put(harness, id, "ref-LAB-PC1.wim", file: path, offset: 0, token: token)
            #expect(wrong.status == 409 && wrong.text.contains("Upload-Offset: \(offset)"), "\(wrong.text)")
            // The agent's uploader sends only the rest.
            let uploader = Self.uploader(harness, id, "ref-LAB-PC1.wim", token: token)
            let outcome = try await ServerHarness.offload { try uploader.send(file: path, size: UInt64(size), sha256: sha) { _ in } }
            #expect(outcome.sent == UInt64(size - offset), "\(outcome)")
            #expect(FileManager.default.contents(atPath: harness.content + "/captures/capture/ref-LAB-PC1.wim")
                    == FileManager.default.contents(atPath: path))
        }
    }

    @Test func aFileWhoseSHA256IsNotTheAnnouncedOneIsNotKept() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await Self.deployment(harness)
            let (path, _) = try Self.file(harness.scratch, size: 500_000)
            let wrongSHA = String(repeating: "ab", count: 32)
            #expect(try await Self.announce(harness, id, "reference.wim", size: 500_000, sha256: wrongSHA, token: token).status == 200)
            let answer = try await Self.put(harness, id, "reference.wim", file: path, offset: 0, token: token)
            #expect(answer.status == 422 && answer.text.contains("not the \(wrongSHA) announced"), "\(answer.text)")
            let folder = harness.content + "/captures/capture"
            #expect((try? FileManager.default.contentsOfDirectory(atPath: folder))?.isEmpty ?? true)
        }
    }

    @Test func onlyTheDeploymentsOwnNamesWithItsTokenAreAccepted() async throws {
        try await ServerHarness.with { harness in
            let (id, token) = try await Self.deployment(harness)
            let sha = String(repeating: "cd", count: 32)
            // A name the sequence does not upload.
            let other = try await Self.announce(harness, id, "other.wim", size: 10, sha256: sha, token: token)
            #expect(other.status == 403 && other.text.contains("uploads no capture named other.wim"), "\(other.text)")
            // A variable matches one word, never a path.
            #expect(try await Self.announce(harness, id, "ref-A.B_c-1.wim", size: 10, sha256: sha, token: token).status == 200)
            for name in ["ref-..%2F..%2Fboot%2Fvmlinuz.wim", "..wim", ".hidden.wim", "ref-x.txt", "ref-a%00.wim"] {
                let answer = try await Self.announce(harness, id, name, size: 10, sha256: sha, token: token)
                #expect([403, 404, 422].contains(answer.status), "\(name): \(answer.status) \(answer.text)")
            }
            // No token, a wrong one.
            #expect(try await Self.announce(harness, id, "reference.wim", size: 10, sha256: sha, token: nil).status == 401)
            #expect(try await Self.announce(harness, id, "reference.wim", size: 10, sha256: sha, token: "not-the-token").status == 403)
            // Bad announcements.
            let badSHA = try await Self.announce(harness, id, "reference.wim", size: 10, sha256: "xyz", token: token)
            #expect(badSHA.status == 422 && badSHA.json["field"] as? String == "sha256", "\(badSHA.text)")
            let huge = try await Self.announce(harness, id, "reference.wim", size: Int(1 << 50), sha256: sha, token: token)
            #expect(huge.status == 413, "\(huge.text)")
            // Data past the announced size.
            let (path, _) = try Self.file(harness.scratch, size: 20)
            _ = try await Self.announce(harness, id, "reference.wim", size: 10, sha256: sha, token: token)
            let tooLong = try await Self.put(harness, id, "reference.wim", file: path, offset: 0, token: token)
            #expect(tooLong.status == 413, "\(tooLong.text)")
            // Nothing was published.
            let published = (try? FileManager.default.contentsOfDirectory(atPath: harness.content + "/captures/capture")) ?? []
            #expect(published.filter { !$0.hasPrefix(".") }.isEmpty, "\(published)")
        }
    }
}
