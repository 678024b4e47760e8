import Foundation
import Glibc
import TestSupport
import Testing

/// Distribution points (issue "Many machines at once"): `imprint dp sync` keeps a folder that
/// Debian's nginx serves in step with the server's content, moving only what changed; the
/// server knows which point is in sync, and hands machines whose check-in matches a point's
/// subnets the points in sync as `contentSources`.
@Suite("Distribution points", .serialized)
struct DistributionPointTests {
    // MARK: - Sync against real nginx

    @Test func syncMovesOnlyWhatChangedAndReplacesACorruptCopy() throws {
        let scratch = ScratchDirectory()
        let content = scratch.sub("content"), root = scratch.sub("dp")
        for folder in [content + "/images", content + "/drivers", root] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        // nginx's workers are not root: the scratch folder and the point's folder must be theirs to enter.
        chmod(scratch.path, 0o755)
        chmod(root, 0o755)
        func write(_ data: Data, _ path: String, mode: mode_t = 0o644) throws {
            try data.write(to: URL(fileURLWithPath: path))
            chmod(path, mode)
        }
        let imageA = Self.bytes(3 << 20, seed: 1), imageB = Self.bytes(1 << 20, seed: 2), driver = Data("[Version]\nSignature=\"$Windows NT$\"\n".utf8)
        try write(imageA, content + "/images/a.wim")
        try write(imageB, content + "/images/b.wim")
        try write(driver, content + "/drivers/x y.inf")
        // Never published, so never on a point: a hidden file, and one others may not read.
        try write(Data("secret".utf8), content + "/images/.hidden")
        try write(Data("key".utf8), content + "/images/private.key", mode: 0o600)

        let admin = "dp-admin"
        let server = try ServerProcess(arguments: ["--data", scratch.sub("data"), "--content", content, "--boot", scratch.sub("boot"),
                                                   "--admin-token", admin])
        let base = "http://127.0.0.1:\(server.port)"
        let nginxPort = try Loopback.freePort()
        let front = "http://127.0.0.1:\(nginxPort)/"

        func curl(_ method: String, _ url: String, token: String? = admin, body: String? = nil) throws -> (status: Int, json: [String: Any], body: Data) {
            let out = scratch.sub("out-\(UUID().uuidString.prefix(8))")
            var arguments = ["curl", "-sS", "-o", out, "-w", "%{http_code}", "-X", method]
            if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
            if let body {
                let file = scratch.sub("body-\(UUID().uuidString.prefix(8))")
                try body.write(toFile: file, atomically: true, encoding: .utf8)
                arguments += ["-H", "Content-Type: application/json", "--data-binary", "@" + file]
            }
            let status = Int(try run(arguments + [url], allowFailure: true).output) ?? 0
            let data = FileManager.default.contents(atPath: out) ?? Data()
            return (status, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:], data)
        }
        func point() throws -> [String: Any] {
            let list = try curl("GET", base + "/api/v1/admin/distribution-points")
            return (list.json["points"] as? [[String: Any]])?.first { $0["name"] as? String == "branch-1" } ?? [:]
        }
        func inSync() throws -> Bool { (try point()["sync"] as? [String: Any])?["inSync"] as? Bool ?? false }
        func served() throws -> Int {
            let metrics = String(decoding: try run(["curl", "-sS", base + "/metrics"]).stdout, as: UTF8.self)
            return metrics.split(separator: "\n").first { $0.hasPrefix("imprint_content_bytes_served_total ") }
                .flatMap { $0.split(separator: " ").last }.flatMap { Int($0) } ?? -1
        }

        let created = try curl("PUT", base + "/api/v1/admin/distribution-points/branch-1",
                               body: #"{"url": "\#(front)", "subnets": ["127.0.0.0/8"], "priority": 10}"#)
        #expect(created.status == 201, "\(created.json)")
        let token = try #require(created.json["token"] as? String)
        #expect(try point()["status"] == nil && !(try inSync()), "a point that never reported is not in sync")

        let nginx = try Nginx(scratch, port: nginxPort, server: """
            root \(root);
            location ~ /\\. { deny all; }
            """)
        defer { withExtendedLifetime(nginx) {} }

        func sync(_ extra: [String] = [], token: String? = nil) throws -> CommandResult {
            try run([imprintBinary, "dp", "sync", "--server", base, "--token", token ?? created.json["token"] as? String ?? "", "--root", root] + extra,
                    allowFailure: true)
        }
        func throughNginx(_ path: String) throws -> (status: Int, body: Data) {
            let answer = try curl("GET", front + path, token: nil)
            return (answer.status, answer.body)
        }

        // The first sync fetches everything published, and nothing else.
        let servedBefore = try served()
        let first = try sync()
        #expect(first.status == 0, "\(first.output)\n\(first.stderr)")
        #expect(first.output.contains("3 files fetched, 4.0 MiB; 0 unchanged; 0 corrupt copies replaced; 0 removed"), "\(first.output)")
        #expect(first.output.contains("the server reports this point in sync"), "\(first.output)")
        #expect(try throughNginx("images/a.wim") == (200, imageA))
        #expect(try throughNginx("images/b.wim") == (200, imageB))
        #expect(try throughNginx("drivers/x%20y.inf") == (200, driver))
        #expect(!FileManager.default.fileExists(atPath: root + "/images/.hidden"))
        #expect(!FileManager.default.fileExists(atPath: root + "/images/private.key"))
        #expect(try throughNginx(".imprint-dp/cache.json").status == 403, "the tool's own folder is hidden")
        #expect(try served() - servedBefore == imageA.count + imageB.count + driver.count)
        #expect(try inSync())
        let status = try #require(try point()["status"] as? [String: Any])
        #expect(status["files"] as? Int == 3 && status["complete"] as? Bool == true, "\(status)")

        // Nothing changed: nothing moves, nothing is read again.
        let idle = try sync()
        #expect(idle.status == 0 && idle.output.contains("0 files fetched, 0 B; 3 unchanged; 0 corrupt copies replaced; 0 removed"),
                "\(idle.output)")
        #expect(idle.output.contains("0 hashed"), "\(idle.output)")

        // One file changes on the server: the point is out of sync until the next sync, which
        // fetches only that file and leaves the others as they are (same inode, same time).
        let unchangedBefore = try Self.identity(root + "/images/b.wim")
        let driverBefore = try Self.identity(root + "/drivers/x y.inf")
        let imageA2 = Self.bytes((3 << 20) + 4096, seed: 3)
        try write(imageA2, content + "/images/a.wim")
        #expect(!(try inSync()), "the content changed since the point's report")
        let servedBeforeChange = try served()
        let second = try sync()
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.output.contains("1 file fetched, 3.0 MiB; 2 unchanged; 0 corrupt copies replaced; 0 removed"), "\(second.output)")
        #expect(try served() - servedBeforeChange == imageA2.count, "only the changed file crossed the network")
        #expect(try Self.identity(root + "/images/b.wim") == unchangedBefore)
        #expect(try Self.identity(root + "/drivers/x y.inf") == driverBefore)
        #expect(try throughNginx("images/a.wim") == (200, imageA2))
        #expect(try inSync())

        // The point's copy goes bad in place (same size, same time, same inode): the cache
        // trusts it, --verify reads it, finds its SHA-256 wrong and fetches it again.
        let corrupt = Data(repeating: 0xEE, count: imageB.count)
        try Self.overwriteKeepingTime(root + "/images/b.wim", with: corrupt)
        #expect(try Self.identity(root + "/images/b.wim") == unchangedBefore)
        let trusting = try sync()
        #expect(trusting.output.contains("0 files fetched, 0 B; 3 unchanged"), "without --verify the cache is trusted: \(trusting.output)")
        let verified = try sync(["--verify"])
        #expect(verified.status == 0, "\(verified.stderr)")
        #expect(verified.output.contains("1 file fetched, 1.0 MiB; 2 unchanged; 1 corrupt copy replaced; 0 removed"), "\(verified.output)")
        #expect(verified.output.contains("3 hashed"), "\(verified.output)")
        #expect(try throughNginx("images/b.wim") == (200, imageB))
        #expect(try inSync())

        // A file no longer published leaves the point; a partial download left by an
        // interrupted run is resumed, not started again.
        try FileManager.default.removeItem(atPath: content + "/drivers/x y.inf")
        let imageC = Self.bytes(2 << 20, seed: 4)
        try write(imageC, content + "/images/c.wim")
        let staging = root + "/.imprint-dp/staging"
        let shaC = try #require(String(decoding: try run(["sha256sum", content + "/images/c.wim"]).stdout, as: UTF8.self).split(separator: " ").first)
        try imageC.prefix(1 << 20).write(to: URL(fileURLWithPath: staging + "/\(shaC).partial"))
        let servedBeforeResume = try served()
        let third = try sync()
        #expect(third.status == 0, "\(third.stderr)")
        #expect(third.output.contains("1 file fetched, 2.0 MiB; 2 unchanged; 0 corrupt copies replaced; 1 removed"), "\(third.output)")
        #expect(try served() - servedBeforeResume <= imageC.count - (1 << 20), "the partial download was resumed")
        #expect(try throughNginx("drivers/x%20y.inf").status == 404)
        #expect(!FileManager.default.fileExists(atPath: root + "/drivers"), "the folder left empty is removed")
        #expect(try throughNginx("images/c.wim") == (200, imageC))
        #expect(FileManager.default.fileExists(atPath: root + "/.imprint-dp/cache.json"), "hidden files are never removed")
        #expect(try inSync())

        // A file put on the point by hand is not published: removed at the next sync.
        try write(Data("stray".utf8), root + "/stray.txt")
        let fourth = try sync()
        #expect(fourth.output.contains("; 3 unchanged; 0 corrupt copies replaced; 1 removed"), "\(fourth.output)")

        // A wrong token: a clear refusal and a non-zero exit, nothing changed.
        let refused = try sync(token: "not-the-token")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("refused this point's token (HTTP 403)"), "\(refused.stderr)")
        #expect(try throughNginx("images/c.wim") == (200, imageC))
        _ = token
    }

    // MARK: - The admin API, the manifest, check-ins

    @Test(arguments: StorageKind.allCases) func checkInGetsTheMatchingPointsInSync(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            try FileManager.default.createDirectory(atPath: harness.content + "/images", withIntermediateDirectories: true)
            let image = Self.bytes(1 << 20, seed: 5)
            try image.write(to: URL(fileURLWithPath: harness.content + "/images/x.wim"))
            chmod(harness.content + "/images/x.wim", 0o644)
            try Data("hidden".utf8).write(to: URL(fileURLWithPath: harness.content + "/.env"))
            try Data("private".utf8).write(to: URL(fileURLWithPath: harness.content + "/images/private.key"))
            chmod(harness.content + "/images/private.key", 0o600)
            // Symlinks are followed as /content follows them: within the folder, published; out of it, not.
            try FileManager.default.createSymbolicLink(atPath: harness.content + "/latest.wim", withDestinationPath: "images/x.wim")
            try FileManager.default.createSymbolicLink(atPath: harness.content + "/passwd", withDestinationPath: "/etc/passwd")

            // Refusals: a URL agents cannot append paths to, a bad subnet, no rules.
            func put(_ name: String, _ json: String) async throws -> ServerHarness.Answer {
                try await harness.admin("PUT", "/distribution-points/\(name)", json: json)
            }
            let noSlash = try await put("near", #"{"url": "http://dp-near.example/content", "subnets": ["127.0.0.0/8"]}"#)
            #expect(noSlash.status == 422 && noSlash.json["field"] as? String == "url", "\(noSlash.text)")
            let badSubnet = try await put("near", #"{"url": "http://dp-near.example/content/", "subnets": ["127.0.0.1/8"]}"#)
            #expect(badSubnet.status == 422 && badSubnet.json["field"] as? String == "subnets[0]", "\(badSubnet.text)")
            let noRules = try await put("near", #"{"url": "http://dp-near.example/content/"}"#)
            #expect(noRules.status == 422, "\(noRules.text)")
            #expect(try await put("bad name", #"{"url": "http://x/", "subnets": ["10.0.0.0/8"]}"#).status != 201)

            let near = try await put("near", #"{"url": "http://dp-near.example/a&b/", "subnets": ["127.0.0.0/8"], "priority": 10}"#)
            #expect(near.status == 201, "\(near.text)")
            let nearToken = try #require(near.json["token"] as? String)
            let far = try await put("far", #"{"url": "http://dp-far.example/", "subnets": ["10.99.0.0/16"], "gateways": ["10.99.0.1"]}"#)
            #expect(far.status == 201)
            #expect((far.json["warnings"] as? [String])?.isEmpty == true, "\(far.text)")
            let farToken = try #require(far.json["token"] as? String)
            let never = try await put("never", #"{"url": "http://dp-never.example/", "subnets": ["127.0.0.0/8"], "priority": 5}"#)
            #expect(never.status == 201)
            // Updating keeps the token, and does not show it again.
            let updated = try await put("near", #"{"url": "http://dp-near.example/a&b/", "subnets": ["127.0.0.0/8"], "priority": 10}"#)
            #expect(updated.status == 200 && updated.json["token"] == nil, "\(updated.text)")

            // The manifest: the point's own token only; exactly the published files.
            #expect(try await harness.request("GET", "/api/v1/distribution/manifest").status == 401)
            #expect(try await harness.request("GET", "/api/v1/distribution/manifest", token: "wrong").status == 403)
            #expect(try await harness.request("GET", "/api/v1/distribution/manifest", token: harness.adminToken).status == 403)
            let manifest = try await harness.request("GET", "/api/v1/distribution/manifest", token: nearToken)
            #expect(manifest.status == 200, "\(manifest.text)")
            let files = manifest.json["files"] as? [[String: Any]] ?? []
            #expect(files.compactMap { $0["path"] as? String } == ["images/x.wim", "latest.wim"], "\(manifest.text)")
            let sha = try #require(files.first?["sha256"] as? String)
            #expect(sha == String(decoding: try run(["sha256sum", harness.content + "/images/x.wim"]).stdout, as: UTF8.self).prefix(64).description)
            #expect(files.first?["size"] as? Int == image.count)

            // SHA-256s are kept by path, size and time: bytes changed in place with the time put
            // back are not read again (what `touch` after a hand edit is for).
            let original = try Self.identity(harness.content + "/images/x.wim")
            try Self.overwriteKeepingTime(harness.content + "/images/x.wim", with: Self.bytes(1 << 20, seed: 6))
            #expect(try Self.identity(harness.content + "/images/x.wim") == original)
            let cached = try await harness.request("GET", "/api/v1/distribution/manifest", token: nearToken)
            #expect((cached.json["files"] as? [[String: Any]])?.first?["sha256"] as? String == sha)
            try image.write(to: URL(fileURLWithPath: harness.content + "/images/x.wim"))

            // Not reported: no sources. Reported in sync: its URL; the point that never reported
            // and the one whose subnet does not hold 127.0.0.1 are not given.
            #expect(try await Self.contentSources(harness, mac: "52:54:00:00:0d:01") == nil)
            let held = try await harness.request("GET", "/api/v1/distribution/manifest", token: nearToken)
            let heldFiles = Dictionary(uniqueKeysWithValues: (held.json["files"] as? [[String: Any]] ?? []).compactMap { file in
                (file["path"] as? String).flatMap { path in (file["sha256"] as? String).map { (path, $0) } }
            })
            #expect(heldFiles.count == 2)
            let report = try JSONSerialization.data(withJSONObject: ["files": heldFiles, "complete": true, "errors": [] as [String],
                                                                     "summary": "2 files fetched"])
            for pointToken in [nearToken, farToken] {
                let stored = try await harness.request("PUT", "/api/v1/distribution/status", body: report, token: pointToken)
                #expect(stored.status == 200 && stored.json["inSync"] as? Bool == true, "\(stored.text)")
            }
            #expect(try await Self.contentSources(harness, mac: "52:54:00:00:0d:02") == ["http://dp-near.example/a&b/"])
            // A machine whose default gateway is far's gets far too, after near (priority 10 before 100).
            #expect(try await Self.contentSources(harness, mac: "52:54:00:00:0d:06", gateways: ["10.99.0.1"])
                    == ["http://dp-near.example/a&b/", "http://dp-far.example/"])

            // A bad report is refused, and the stored one stays.
            let bad = try await harness.request("PUT", "/api/v1/distribution/status", body: Data(#"{"files": {"x": "nothex"}}"#.utf8), token: nearToken)
            #expect(bad.status == 422, "\(bad.text)")

            // The list and the dashboard show who is in sync; everything escaped.
            let list = try await harness.admin("GET", "/distribution-points")
            let points = list.json["points"] as? [[String: Any]] ?? []
            #expect(points.compactMap { $0["name"] as? String } == ["never", "near", "far"], "priority order: \(list.text)")
            let inSync = points.map { ($0["sync"] as? [String: Any])?["inSync"] as? Bool ?? false }
            #expect(inSync == [false, true, true])
            #expect(points.allSatisfy { $0["tokenHash"] == nil && !"\($0)".contains(Self.sha256Hex(nearToken)) })
            let page = try await harness.request("GET", "/dashboard/distribution-points", token: harness.adminToken)
            #expect(page.status == 200)
            #expect(page.text.contains("http://dp-near.example/a&amp;b/") && !page.text.contains("a&b/"), "escaped")
            #expect(page.text.contains("in sync") && page.text.contains("never reported"))
            #expect(page.text.contains("href=\"/dashboard/distribution-points\""), "the nav links the page")

            // The content changes: the point is no longer in sync, and no longer given.
            try Self.bytes(1 << 20, seed: 7).write(to: URL(fileURLWithPath: harness.content + "/images/new.wim"))
            chmod(harness.content + "/images/new.wim", 0o644)
            let after = try await harness.admin("GET", "/distribution-points")
            let nearAfter = (after.json["points"] as? [[String: Any]])?.first { $0["name"] as? String == "near" }
            let syncAfter = nearAfter?["sync"] as? [String: Any]
            #expect(syncAfter?["inSync"] as? Bool == false && syncAfter?["missing"] as? Int == 1, "\(after.text)")
            // Check-ins reuse the content's view for up to 5 s.
            try await Task.sleep(nanoseconds: 5_500_000_000)
            #expect(try await Self.contentSources(harness, mac: "52:54:00:00:0d:03") == nil)

            // A point whose subnets no longer hold the machine's address is not given either.
            let resynced = try await harness.request("GET", "/api/v1/distribution/manifest", token: nearToken)
            let all = Dictionary(uniqueKeysWithValues: (resynced.json["files"] as? [[String: Any]] ?? []).compactMap { file in
                (file["path"] as? String).flatMap { path in (file["sha256"] as? String).map { (path, $0) } }
            })
            let full = try JSONSerialization.data(withJSONObject: ["files": all])
            #expect(try await harness.request("PUT", "/api/v1/distribution/status", body: full, token: nearToken).json["inSync"] as? Bool == true)
            #expect(try await Self.contentSources(harness, mac: "52:54:00:00:0d:04") == ["http://dp-near.example/a&b/"])
            #expect(try await put("near", #"{"url": "http://dp-near.example/a&b/", "subnets": ["10.0.0.0/8"]}"#).status == 200)
            #expect(try await Self.contentSources(harness, mac: "52:54:00:00:0d:05") == nil)

            // A new token replaces the old one; a deleted point's token stops working.
            let rotated = try await put("near", #"{"url": "http://dp-near.example/a&b/", "subnets": ["10.0.0.0/8"], "newToken": true}"#)
            let newToken = try #require(rotated.json["token"] as? String)
            #expect(try await harness.request("GET", "/api/v1/distribution/manifest", token: nearToken).status == 403)
            #expect(try await harness.request("GET", "/api/v1/distribution/manifest", token: newToken).status == 200)
            #expect(try await harness.admin("DELETE", "/distribution-points/near").status == 200)
            #expect(try await harness.admin("DELETE", "/distribution-points/near").status == 404)
            #expect(try await harness.request("GET", "/api/v1/distribution/manifest", token: newToken).status == 403)
        }
    }

    // MARK: - Helpers

    /// The `contentSources` of a new machine's deployment (the default rule gives it one at once).
    static func contentSources(_ harness: ServerHarness, mac: String, gateways: [String]? = nil) async throws -> [String]? {
        if try await harness.admin("GET", "/sequences/base").status != 200 {
            try await harness.putSequence("base")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
        }
        let answer = try await harness.checkIn(macs: [mac], gateways: gateways)
        let deployment = answer.json["deployment"] as? [String: Any]
        #expect(deployment != nil, "\(answer.text)")
        return deployment?["contentSources"] as? [String]
    }

    static func bytes(_ count: Int, seed: UInt64) -> Data {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var bytes = [UInt8](repeating: 0, count: count)
        for index in 0..<count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            bytes[index] = UInt8(truncatingIfNeeded: state)
        }
        return Data(bytes)
    }

    struct Identity: Equatable {
        var inode: UInt64
        var size: Int
        var modified: Int
    }

    static func identity(_ path: String) throws -> Identity {
        var info = stat()
        guard stat(path, &info) == 0 else { throw POSIXError(.ENOENT) }
        return Identity(inode: UInt64(info.st_ino), size: Int(info.st_size),
                        modified: Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec))
    }

    /// Writes `data` over the file's bytes (same inode, same size) and puts its times back, as
    /// a disk error would leave it.
    static func overwriteKeepingTime(_ path: String, with data: Data) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { throw POSIXError(.ENOENT) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: data)
        try handle.close()
        var times = [info.st_atim, info.st_mtim]
        guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw POSIXError(.EPERM) }
    }

    static func sha256Hex(_ text: String) -> String {
        (try? run(["sh", "-c", "printf %s \"$0\" | sha256sum", text]).output.prefix(64).description) ?? ""
    }
}
