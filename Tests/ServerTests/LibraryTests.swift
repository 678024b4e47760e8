import Foundation
import Registry
import Server
import TestSupport
import Testing

/// The image library (issue 18) over real HTTP, on SQLite and PostgreSQL: a WIM made by
/// wimlib-imagex imported, an image extracted and checked against wimlib's own apply, a version
/// serviced (drivers, a file, DevicePath in the image's SOFTWARE hive, read back with hivex),
/// sequences resolved to versions, versions in use refused deletion; a server killed mid-job.
@Suite("imprint-server's image library", .serialized)
struct LibraryTests {
    /// Three images; image 2 a small Windows with a SOFTWARE hive holding DevicePath.
    static func installWIM(_ scratch: ScratchDirectory, into path: String) throws {
        func tree(_ name: String, files: [String: String]) throws -> String {
            let root = scratch.sub("tree-\(name)")
            for (relative, content) in files {
                let full = root + "/" + relative
                try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data(content.utf8).write(to: URL(fileURLWithPath: full))
            }
            return root
        }
        let home = try tree("home", files: ["Windows/System32/kernel32.dll": "home", "Windows/notepad.exe": String(repeating: "home ", count: 3000)])
        let pro = try tree("pro", files: ["Windows/System32/kernel32.dll": "pro", "Windows/notepad.exe": String(repeating: "pro ", count: 4000),
                                          "Windows/System32/drivers/etc/hosts": "127.0.0.1 localhost\n", "Program Files/App/app.exe": "app"])
        let software = pro + "/Windows/System32/config/SOFTWARE"
        try FileManager.default.createDirectory(atPath: (software as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(try HiveWriter.write(RegistryKey(name: "ROOT"))).write(to: URL(fileURLWithPath: software))
        try hivex(software, ["add Microsoft", "cd Microsoft", "add Windows", "cd Windows", "add CurrentVersion", "cd CurrentVersion",
                             "setval 1", "DevicePath", "expandstring:%SystemRoot%\\inf", "commit"], write: true)
        let education = try tree("education", files: ["Windows/System32/kernel32.dll": "education"])
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try run(["wimlib-imagex", "capture", home, path, "Windows Home", "--compress=LZX"])
        try run(["wimlib-imagex", "append", pro, path, "Windows Pro", "Pro edition", "--flags=Professional"])
        try run(["wimlib-imagex", "append", education, path, "Windows Education"])
    }

    @discardableResult
    static func hivex(_ hive: String, _ commands: [String], write: Bool = false) throws -> [String] {
        let script = hive + ".script-\(UUID().uuidString.prefix(6))"
        try (commands.joined(separator: "\n") + "\n").write(toFile: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: script) }
        return try run(["hivexsh"] + (write ? ["-w"] : []) + ["-f", script, hive]).output.split(separator: "\n").map(String.init)
    }

    /// Waits for a job to end; returns its record.
    static func finished(_ harness: ServerHarness, _ job: [String: Any]) async throws -> [String: Any] {
        let id = try #require(job["id"] as? String, "\(job)")
        for _ in 0..<600 {
            let record = try await harness.admin("GET", "/library/jobs/\(id)").json
            if let state = record["state"] as? String, state == "succeeded" || state == "failed" { return record }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("job \(id) did not end within 2 minutes")
        return [:]
    }

    /// Every file of an image as `wimlib-imagex apply` writes it: path → SHA-256.
    static func applied(_ wim: String, _ image: String, _ scratch: ScratchDirectory) throws -> [String: String] {
        let target = scratch.sub("apply-\(UUID().uuidString.prefix(8))")
        try run(["wimlib-imagex", "apply", wim, image, target])
        var files: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: target)
        while let relative = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: target + "/" + relative, isDirectory: &isDirectory)
            files[relative] = isDirectory.boolValue ? "folder" : String(try run(["sha256sum", target + "/" + relative]).output.prefix(64))
        }
        return files
    }

    static let sequenceTemplate = """
        {"name": "Library", "steps": [
          {"type": "findWindows", "as": "windows"},
          {"type": "applyImage", "name": "Apply", "image": {"library": "Lab Pro", "version": VERSION}, "target": "windows"}
        ]}
        """

    @Test("import, extract, service, resolve, refuse deleting what is in use", arguments: StorageKind.allCases)
    func libraryLifecycle(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let content = harness.server.configuration.contentDirectory
            try Self.installWIM(harness.scratch, into: content + "/images/install.wim")

            // Import: every image recorded with its metadata and the file's SHA-256.
            let importJob = try await harness.admin("POST", "/library/wims", json: #"{"file": "images/install.wim"}"#)
            #expect(importJob.status == 202, "\(importJob.text)")
            let imported = try await Self.finished(harness, importJob.json)
            #expect(imported["state"] as? String == "succeeded", "\(imported)")
            let wimID = try #require(imported["result"] as? String)
            let wim = try await harness.admin("GET", "/library/wims/\(wimID)").json
            let images = wim["images"] as? [[String: Any]] ?? []
            #expect(images.map { $0["name"] as? String } == ["Windows Home", "Windows Pro", "Windows Education"])
            #expect(images[1]["flags"] as? String == "Professional")
            #expect(images[1]["description"] as? String == "Pro edition")
            #expect(images[1]["fileCount"] as? Int == 5, "\(images[1])")
            let sha = String(try run(["sha256sum", content + "/images/install.wim"]).output.prefix(64))
            #expect(wim["sha256"] as? String == sha)
            #expect(wim["compression"] as? String == "lzx")
            // Imported twice: refused.
            #expect(try await harness.admin("POST", "/library/wims", json: #"{"file": "images/install.wim"}"#).status == 409)
            // A path out of the content folder: refused with the field.
            let escape = try await harness.admin("POST", "/library/wims", json: #"{"file": "../data/imprint.db"}"#)
            #expect(escape.status == 422 && escape.json["field"] as? String == "file", "\(escape.text)")

            // Extract image 2: the new file applies exactly as image 2 of the original.
            let extractJob = try await harness.admin("POST", "/library/images", json: #"{"wim": "\#(wimID)", "index": "2", "image": "Lab Pro", "description": "Pro for the lab"}"#)
            #expect(extractJob.status == 202, "\(extractJob.text)")
            let extracted = try await Self.finished(harness, extractJob.json)
            #expect(extracted["state"] as? String == "succeeded", "\(extracted)")
            #expect(extracted["result"] as? String == "Lab Pro/1")
            let answer = try await harness.admin("GET", "/library/images/Lab%20Pro")
            var image = answer.json["image"] as? [String: Any] ?? [:]
            #expect(answer.status == 200, "\(answer.text)")
            var versions = image["versions"] as? [[String: Any]] ?? []
            let first = try #require(versions.first)
            let firstFile = content + "/" + (first["file"] as? String ?? "")
            #expect(try run(["wimlib-imagex", "info", firstFile]).output.split(separator: "\n").contains { $0.hasPrefix("Image Count:") && $0.hasSuffix(" 1") })
            try run(["wimlib-imagex", "verify", firstFile])
            let original = try Self.applied(content + "/images/install.wim", "2", harness.scratch)
            #expect(try Self.applied(firstFile, "1", harness.scratch) == original)
            #expect((first["details"] as? [String: Any])?["name"] as? String == "Windows Pro")
            #expect(String(try run(["sha256sum", firstFile]).output.prefix(64)) == first["sha256"] as? String)

            // Service version 1: a driver set (two packages) and SetupComplete.cmd.
            for package in ["net", "storage"] {
                let folder = content + "/drivers/set/\(package)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try Data("[Version]\nSignature=\"$Windows NT$\"\n".utf8).write(to: URL(fileURLWithPath: folder + "/\(package).inf"))
                try Data(repeating: 0x5A, count: 4096).write(to: URL(fileURLWithPath: folder + "/\(package).sys"))
            }
            try FileManager.default.createDirectory(atPath: content + "/scripts", withIntermediateDirectories: true)
            try Data("@echo off\r\necho done\r\n".utf8).write(to: URL(fileURLWithPath: content + "/scripts/SetupComplete.cmd"))
            let serviceJob = try await harness.admin("POST", "/library/images/Lab%20Pro/versions/1/service", json: """
                {"drivers": ["drivers/set"], "files": [{"source": "scripts/SetupComplete.cmd", "destination": "/Windows/Setup/Scripts/SetupComplete.cmd"}]}
                """)
            #expect(serviceJob.status == 202, "\(serviceJob.text)")
            let serviced = try await Self.finished(harness, serviceJob.json)
            #expect(serviced["state"] as? String == "succeeded", "\(serviced)")
            #expect(serviced["result"] as? String == "Lab Pro/2")
            image = try await harness.admin("GET", "/library/images/Lab%20Pro").json["image"] as? [String: Any] ?? [:]
            versions = image["versions"] as? [[String: Any]] ?? []
            #expect(versions.count == 2 && image["latest"] as? Int == 2)
            let second = try #require(versions.last)
            #expect((second["origin"] as? [String: Any])?["fromVersion"] as? Int == 1)
            let secondFile = content + "/" + (second["file"] as? String ?? "")
            try run(["wimlib-imagex", "verify", secondFile])
            // Exactly the additions, and the hive changed; version 1 is untouched.
            let after = try Self.applied(secondFile, "1", harness.scratch)
            let added = Set(after.keys).subtracting(original.keys)
            #expect(added == ["Drivers", "Drivers/net", "Drivers/net/net.inf", "Drivers/net/net.sys", "Drivers/storage", "Drivers/storage/storage.inf",
                              "Drivers/storage/storage.sys", "Windows/Setup", "Windows/Setup/Scripts", "Windows/Setup/Scripts/SetupComplete.cmd"], "\(added.sorted())")
            #expect(Set(original.keys).subtracting(after.keys).isEmpty)
            let changed = original.keys.filter { after[$0] != original[$0] }
            #expect(changed == ["Windows/System32/config/SOFTWARE"])
            #expect(try Self.applied(firstFile, "1", harness.scratch) == original)
            let hive = harness.scratch.sub("SOFTWARE.v2")
            try run(["wimlib-imagex", "extract", secondFile, "1", "/Windows/System32/config/SOFTWARE", "--dest-dir=" + hive + ".d"])
            #expect(try Self.hivex(hive + ".d/SOFTWARE", ["cd \\Microsoft\\Windows\\CurrentVersion", "lsval"])
                    == ["\"DevicePath\"=str(2):\"%SystemRoot%\\\\inf;%SystemDrive%\\\\Drivers\""])
            #expect(try run(["hivexget", hive + ".d/SOFTWARE", "\\Microsoft\\Windows\\CurrentVersion", "DevicePath"]).output
                    .trimmingCharacters(in: .whitespacesAndNewlines) == "%SystemRoot%\\inf;%SystemDrive%\\Drivers")

            // A sequence naming the library's latest resolves to version 2 at check-in.
            let put = try await harness.admin("PUT", "/sequences/library", json: Self.sequenceTemplate.replacingOccurrences(of: "VERSION", with: "\"latest\""))
            #expect(put.status == 200, "\(put.text)")
            let unknown = try await harness.admin("PUT", "/sequences/bad", json: Self.sequenceTemplate
                .replacingOccurrences(of: "VERSION", with: "9"))
            #expect(unknown.status == 422 && unknown.json["field"] as? String == "$.steps[1].image.version", "\(unknown.text)")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "library", "variables": {}}]}"#)
            let checkIn = try await harness.checkIn(macs: ["52:54:00:18:00:01"]).json["deployment"] as? [String: Any]
            let deployment = (id: try #require(checkIn?["id"] as? String), token: try #require(checkIn?["token"] as? String))
            let handed = try await harness.request("GET", "/api/v1/deployments/\(deployment.id)/sequence", token: deployment.token).json
            let apply = (handed["steps"] as? [[String: Any]])?.last ?? [:]
            #expect(apply["source"] as? String == "${ServerURL}/content/" + (second["file"] as? String ?? ""), "\(apply)")
            #expect(apply["sha256"] as? String == second["sha256"] as? String)
            #expect(apply["image"] as? String == "1")
            let uses = try await harness.admin("GET", "/library/images/Lab%20Pro").json["deployments"] as? [[String: Any]] ?? []
            #expect(uses.map { $0["version"] as? Int } == [2] && uses.first?["deploymentID"] as? String == deployment.id, "\(uses)")
            let summary = try await harness.admin("GET", "/deployments/\(deployment.id)").json
            #expect((summary["libraryVersions"] as? [[String: Any]])?.first?["version"] as? Int == 2, "\(summary)")
            let page = try await harness.request("GET", "/dashboard/deployments/\(deployment.id)", token: harness.adminToken).text
            #expect(page.contains("Image library: <a href=\"/dashboard/images/Lab%20Pro\">Lab Pro</a> version 2"), "\(page)")

            // Version 2 is being applied (the deployment is active): neither retired nor deleted.
            let busy = try await harness.admin("DELETE", "/library/images/Lab%20Pro/versions/2")
            #expect(busy.status == 409 && busy.text.contains(deployment.id), "\(busy.text)")
            // Version 1, named by a sequence: not deleted; retired, "latest" still has version 2.
            try await harness.putSequence("pinned", Self.sequenceTemplate.replacingOccurrences(of: "VERSION", with: "1"))
            let named = try await harness.admin("DELETE", "/library/images/Lab%20Pro/versions/1")
            #expect(named.status == 409 && named.text.contains("pinned"), "\(named.text)")
            let retired = try await harness.admin("POST", "/library/images/Lab%20Pro/versions/1/retire")
            #expect(retired.status == 200 && retired.json["state"] as? String == "retired", "\(retired.text)")
            // Not named any more: deleted, with its file (no other version is the same file).
            try await harness.putSequence("pinned")
            let deleted = try await harness.admin("DELETE", "/library/images/Lab%20Pro/versions/1")
            #expect(deleted.status == 200, "\(deleted.text)")
            #expect(!FileManager.default.fileExists(atPath: firstFile))
            #expect(FileManager.default.fileExists(atPath: secondFile))
        }
    }

    /// A split set (its parts named) and a solid WIM (an ESD) import; their images extract into
    /// regular single-image WIMs that apply as wimlib applies the originals.
    @Test func splitAndSolidWIMsImportAndExtract() async throws {
        try await ServerHarness.with { harness in
            let content = harness.server.configuration.contentDirectory
            try Self.installWIM(harness.scratch, into: content + "/images/install.wim")
            // Enough data for several 1 MiB parts.
            let data = harness.scratch.sub("tree-data")
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            try run(["sh", "-c", "head -c 3000000 /dev/urandom > \(data)/random.bin"])
            try run(["wimlib-imagex", "append", data, content + "/images/install.wim", "Data"])
            try run(["wimlib-imagex", "split", content + "/images/install.wim", content + "/images/install.swm", "1"])
            let parts = try FileManager.default.contentsOfDirectory(atPath: content + "/images").filter { $0.hasPrefix("install") && $0.hasSuffix(".swm") && $0 != "install.swm" }.sorted()
            #expect(!parts.isEmpty, "wimlib made one part only")
            try run(["wimlib-imagex", "export", content + "/images/install.wim", "all", content + "/images/install.esd", "--solid"])
            let original = try Self.applied(content + "/images/install.wim", "3", harness.scratch)
            for (file, extra, compress) in [("images/install.swm", parts.map { "images/" + $0 }, "null"), ("images/install.esd", [], "\"lzx\"")] {
                let body = try JSONSerialization.data(withJSONObject: ["file": file, "parts": extra])
                let imported = try await Self.finished(harness, try await harness.admin("POST", "/library/wims", json: String(decoding: body, as: UTF8.self)).json)
                #expect(imported["state"] as? String == "succeeded", "\(file): \(imported)")
                let wim = try #require(imported["result"] as? String)
                let record = try await harness.admin("GET", "/library/wims/\(wim)").json
                #expect((record["images"] as? [Any])?.count == 4, "\(record)")
                #expect(record["solid"] as? Bool == file.hasSuffix(".esd"), "\(record)")
                let name = file.hasSuffix(".esd") ? "From ESD" : "From SWM"
                let extracted = try await Self.finished(harness, try await harness.admin("POST", "/library/images", json: """
                    {"wim": "\(wim)", "index": "Windows Education", "image": "\(name)", "compress": \(compress)}
                    """).json)
                #expect(extracted["state"] as? String == "succeeded", "\(extracted)")
                let image = try await harness.admin("GET", "/library/images/" + name.replacingOccurrences(of: " ", with: "%20")).json["image"] as? [String: Any]
                let version = try #require((image?["versions"] as? [[String: Any]])?.first)
                #expect(version["solid"] as? Bool == false && version["compression"] as? String == "lzx", "\(version)")
                #expect(try Self.applied(content + "/" + (version["file"] as? String ?? ""), "1", harness.scratch) == original)
            }
        }
    }

    /// A corrupt WIM is refused with the reason and nothing is recorded.
    @Test func aCorruptWIMIsRefused() async throws {
        try await ServerHarness.with { harness in
            let content = harness.server.configuration.contentDirectory
            try Self.installWIM(harness.scratch, into: content + "/images/install.wim")
            var bytes = try Data(contentsOf: URL(fileURLWithPath: content + "/images/install.wim"))
            // Flip bytes in the middle of the data (past the 208-byte header).
            for i in stride(from: 300, to: min(bytes.count - 1, 2300), by: 7) { bytes[i] ^= 0xFF }
            try bytes.write(to: URL(fileURLWithPath: content + "/images/corrupt.wim"))
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: content + "/images/truncated.wim"))
            for file in ["corrupt", "truncated"] {
                let job = try await harness.admin("POST", "/library/wims", json: #"{"file": "images/\#(file).wim"}"#)
                let done = try await Self.finished(harness, job.json)
                #expect(done["state"] as? String == "failed", "\(done)")
                #expect((done["message"] as? String ?? "").contains("\(file).wim"), "\(done)")
            }
            let overview = try await harness.admin("GET", "/library").json
            #expect((overview["wims"] as? [Any])?.isEmpty == true)
        }
    }

    /// The server killed while it services an image: at its next start the job is failed (not
    /// "running"), nothing of it is left in the library's work folder, the versions are intact.
    @Test func aJobInterruptedByAServerStopIsMarkedFailed() throws {
        let scratch = ScratchDirectory()
        let content = scratch.sub("content")
        try Self.installWIM(scratch, into: content + "/images/install.wim")
        // A big file to add, so the job is still running when the server is killed.
        let big = content + "/payload/big.bin"
        try FileManager.default.createDirectory(atPath: content + "/payload", withIntermediateDirectories: true)
        try run(["sh", "-c", "head -c 200000000 /dev/urandom > \(big)"])
        let admin = "library-admin-token"
        let arguments = ["--data", scratch.sub("data"), "--content", content, "--boot", scratch.sub("boot"), "--admin-token", admin]
        var versionFile = ""
        var serviceID = ""
        do {
            let server = try ServerProcess(arguments: arguments)
            let submitted = try server.admin("POST", "/library/wims", json: #"{"file": "images/install.wim"}"#, token: admin)
            let wim = try server.libraryJob(try #require(submitted["id"] as? String), token: admin)
            let wimID = try #require(wim["result"] as? String, "\(wim)")
            let extract = try server.admin("POST", "/library/images", json: #"{"wim": "\#(wimID)", "index": "2", "image": "Lab Pro"}"#, token: admin)
            _ = try server.libraryJob(try #require(extract["id"] as? String), token: admin, until: ["succeeded"])
            versionFile = ((try server.admin("GET", "/library/images/Lab%20Pro", token: admin)["image"] as? [String: Any])?["versions"] as? [[String: Any]])?
                .first?["file"] as? String ?? ""
            let service = try server.admin("POST", "/library/images/Lab%20Pro/versions/1/service",
                                           json: #"{"files": [{"source": "payload/big.bin", "destination": "/big.bin"}]}"#, token: admin)
            serviceID = try #require(service["id"] as? String, "\(service)")
            let running = try server.libraryJob(serviceID, token: admin, until: ["running"])
            #expect(running["state"] as? String == "running")
            usleep(300_000)
            try server.kill()
        }
        let work = content + "/library/.work"
        let server = try ServerProcess(arguments: arguments)
        let job = try server.admin("GET", "/library/jobs/\(serviceID)", token: admin)
        #expect(job["state"] as? String == "failed", "\(job)")
        #expect((job["message"] as? String ?? "").contains("interrupted"), "\(job)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: work)) ?? []).isEmpty)
        let versions = ((try server.admin("GET", "/library/images/Lab%20Pro", token: admin)["image"] as? [String: Any])?["versions"] as? [[String: Any]]) ?? []
        #expect(versions.count == 1)
        try run(["wimlib-imagex", "verify", content + "/" + versionFile])

        // An import killed while it checks a big WIM: failed at the next start, nothing recorded;
        // imported again, it succeeds.
        try run(["wimlib-imagex", "capture", content + "/payload", content + "/images/big.wim", "Big", "--compress=none"])
        var importID = ""
        do {
            let second = try ServerProcess(arguments: arguments)
            importID = try #require(try second.admin("POST", "/library/wims", json: #"{"file": "images/big.wim"}"#, token: admin)["id"] as? String)
            #expect(try second.libraryJob(importID, token: admin, until: ["running"])["state"] as? String == "running")
            try second.kill()
        }
        let third = try ServerProcess(arguments: arguments)
        let killed = try third.admin("GET", "/library/jobs/\(importID)", token: admin)
        #expect(killed["state"] as? String == "failed" && (killed["message"] as? String ?? "").contains("interrupted"), "\(killed)")
        let wims = try third.admin("GET", "/library", token: admin)["wims"] as? [[String: Any]] ?? []
        #expect(!wims.contains { $0["file"] as? String == "images/big.wim" }, "\(wims)")
        let again = try third.libraryJob(try #require(try third.admin("POST", "/library/wims", json: #"{"file": "images/big.wim"}"#, token: admin)["id"] as? String),
                                         token: admin)
        #expect(again["state"] as? String == "succeeded", "\(again)")
    }
}

/// The real agent deploys a library image onto a loop disk: the server resolves the sequence's
/// library image to its latest version at check-in, the agent streams that file and checks its
/// SHA-256, and the library lists the deployment with the version it applied.
@Suite("the agent deploys a library image", .serialized)
struct LibraryDeploymentTests {
    @Test func agentAppliesTheLatestVersionAndTheServerRecordsIt() throws {
        let scratch = ScratchDirectory()
        let content = scratch.sub("content")
        try LibraryTests.installWIM(scratch, into: content + "/images/install.wim")
        let disk = try LoopDisk(scratch, "target", size: 512 << 20)
        let admin = "library-e2e-admin"
        let server = try ServerProcess(arguments: ["--data", scratch.sub("data"), "--content", content, "--boot", scratch.sub("boot"),
                                                   "--admin-token", admin, "--unknown-machines", "default"])
        let base = "http://127.0.0.1:\(server.port)"
        func curl(_ method: String, _ path: String, _ body: String? = nil) throws -> [String: Any] {
            try server.admin(method, path, json: body, token: admin)
        }
        func finished(_ job: [String: Any]) throws -> [String: Any] {
            try server.libraryJob(try #require(job["id"] as? String, "\(job)"), token: admin)
        }
        let wim = try #require(try finished(try curl("POST", "/library/wims", #"{"file": "images/install.wim"}"#))["result"] as? String)
        let made = try finished(try curl("POST", "/library/images", #"{"wim": "\#(wim)", "index": "Windows Pro", "image": "Lab Pro", "pipable": true}"#))
        #expect(made["result"] as? String == "Lab Pro/1", "\(made)")
        let sequence = """
            {"name": "Library end to end", "steps": [
              {"type": "selectDisk", "name": "Choose", "rules": {"name": "\(disk.device)", "wipe": true}},
              {"type": "partition", "name": "Layout", "layout": {"table": "gpt", "partitions": [
                {"id": "windows", "role": "basic", "size": "rest", "format": {"filesystem": "ntfs", "label": "Windows"}}]}},
              {"type": "applyImage", "name": "Apply", "image": {"library": "Lab Pro"}, "target": "windows", "mode": "stream"}]}
            """
        #expect(try curl("PUT", "/sequences/library-e2e", sequence)["name"] as? String == "library-e2e")
        _ = try curl("PUT", "/rules", #"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "library-e2e", "variables": {}}]}"#)

        let agent = try run([imprintBinary, "agent", "--server", base, "--spool", scratch.sub("spool"), "--log", scratch.sub("agent.log")],
                            allowFailure: true)
        let log = (try? String(contentsOfFile: scratch.sub("agent.log"), encoding: .utf8)) ?? ""
        #expect(agent.status == 0, "agent: \(agent.stderr)\n\(log)")
        let deployment = try #require((try curl("GET", "/deployments")["deployments"] as? [[String: Any]])?.first)
        #expect(deployment["state"] as? String == "succeeded", "\(deployment)")
        let detail = try curl("GET", "/library/images/Lab%20Pro")
        let uses = detail["deployments"] as? [[String: Any]] ?? []
        #expect(uses.count == 1 && uses.first?["deploymentID"] as? String == deployment["id"] as? String && uses.first?["version"] as? Int == 1, "\(detail)")
        // Streamed whole (pipable) and checked against the version's SHA-256.
        let version = ((detail["image"] as? [String: Any])?["versions"] as? [[String: Any]])?.first ?? [:]
        #expect(log.contains("SHA-256 \(version["sha256"] as? String ?? "?")"), "\(log)")

        let mountPoint = scratch.sub("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run(["ntfs-3g", "-o", "ro", disk.device + "p1", mountPoint])
        defer { _ = try? run(["umount", mountPoint], allowFailure: true) }
        #expect(FileManager.default.contents(atPath: mountPoint + "/Program Files/App/app.exe") == Data("app".utf8))
        #expect(FileManager.default.fileExists(atPath: mountPoint + "/Windows/System32/config/SOFTWARE"))
    }
}
