import Foundation
import Testing
import TestSupport
@testable import SequenceModel
@testable import SequenceRunner

/// What the sequence tests share: a scratch folder, a real HTTP server over `www/`, WIMs made
/// by wimlib-imagex, and `imprint run` with its spool, log and events read back.
final class SequenceLab {
    let scratch: ScratchDirectory
    let www: String
    let server: TestHTTPServer
    private var runs = 0

    init(_ label: String = #function) throws {
        scratch = ScratchDirectory(label)
        www = scratch.sub("www")
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        server = try TestHTTPServer(root: www)
    }

    /// A small Windows-like tree: what the tests look for after an apply.
    func windowsTree(_ name: String = "tree", version: String = "new") throws -> String {
        let root = scratch.sub(name)
        let files: [String: Data] = [
            "Windows/System32/config/SYSTEM": Data("regf \(version)".utf8),
            // Random, so the WIM is as large as the data (the stream tests drop mid-file).
            "Windows/explorer.exe": Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }),
            "Windows/version.txt": Data(version.utf8),
            "Program Files/App/app.dll": Data(repeating: 0x5A, count: 70_000),
            "Users/Default/NTUSER.DAT": Data("default profile".utf8),
        ]
        for (path, data) in files {
            let full = root + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: full))
        }
        return root
    }

    /// Captures `tree` with wimlib-imagex (LZX) into www/`name`; returns its SHA-256.
    @discardableResult
    func wim(_ tree: String, _ name: String, pipable: Bool = false) throws -> String {
        let path = www + "/" + name
        try TestSupport.run(["wimlib-imagex", "capture", tree, path, "Windows Test", "--compress=LZX"] + (pipable ? ["--pipable"] : []))
        return try sha256(path)
    }

    /// How many GET/HEAD requests the test server had for `path`.
    func requests(_ path: String) throws -> Int {
        let data = try TestSupport.run(["curl", "-sf", server.url("/_stats")]).stdout
        return ((try JSONSerialization.jsonObject(with: data) as? [String: Int]) ?? [:])[path] ?? 0
    }

    func sha256(_ path: String) throws -> String {
        try TestSupport.run(["sha256sum", path]).output.split(separator: " ").first.map(String.init) ?? ""
    }

    struct Outcome {
        var result: CommandResult
        var events: [Event]
        var log: String
        var spool: String
    }

    /// `imprint run` on a sequence given as JSON text, reporting to the test server.
    /// `deployment`: the deployment's id (by default one of its own per run; a resumed run gives the interrupted one's).
    func run(sequence json: String, yes: Bool = true, extra: [String] = [], deployment: String? = nil,
             sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        runs += 1
        let file = scratch.sub("sequence-\(runs).json")
        try writeJSON(json, file)
        let spool = scratch.sub("spool-\(runs)")
        let result = try TestSupport.run(
            [imprintBinary, "run", file, "--spool", spool, "--cache", scratch.sub("cache"),
             "--server", server.url("/post"), "--deployment", deployment ?? "d\(runs)", "--token", "secret-token-\(runs)"]
                + (yes ? ["--yes"] : []) + extra,
            allowFailure: true, sourceLocation: sourceLocation)
        let events = EventSpool.read(spool + "/events.jsonl")
        let log = (try? String(contentsOfFile: file + ".log", encoding: .utf8)) ?? ""
        return Outcome(result: result, events: events, log: log, spool: spool)
    }

    /// Lines the server received, as {path, headers, body} objects.
    var posts: [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: www + "/posts.jsonl") else { return [] }
        return data.split(separator: UInt8(ascii: "\n")).compactMap {
            try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any]
        }
    }

    /// The sequence numbers the server received for one deployment.
    func postedSequenceNumbers(deployment: String) -> [Int] {
        posts.filter { ($0["path"] as? String)?.contains("/deployments/\(deployment)/") == true }.flatMap { post -> [Int] in
            let body = post["body"]
            let object = (body as? [String: Any]) ?? (body as? String).flatMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            return (object?["events"] as? [[String: Any]] ?? []).compactMap { $0["sequence"] as? Int }
        }
    }

    /// Mounts an NTFS device read-only for `body` (ntfs-3g, as a technician would look).
    func withMounted<T>(_ device: String, _ body: (String) throws -> T) throws -> T {
        let point = scratch.sub("mnt-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        try TestSupport.run(["ntfs-3g", "-o", "ro", device, point])
        defer { _ = try? TestSupport.run(["umount", point], allowFailure: true) }
        return try body(point)
    }
}

func ended(_ events: [Event]) -> [String: Event.Status] {
    Dictionary(events.filter { $0.kind == .stepEnded }.compactMap { e in e.step.map { ($0, e.status ?? .failed) } },
               uniquingKeysWith: { _, last in last })
}

func started(_ events: [Event]) -> Set<String> {
    Set(events.filter { $0.kind == .stepStarted }.compactMap(\.step))
}

func fileText(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// The first PCI device of this machine, as an INF hardware ID (`PCI\VEN_1AF4&DEV_1042`).
func firstPCIHardwareID() -> String? {
    let root = "/sys/bus/pci/devices"
    for device in ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted() {
        guard let vendor = fileText("\(root)/\(device)/vendor"), let id = fileText("\(root)/\(device)/device") else { continue }
        let v = vendor.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(2).uppercased()
        let d = id.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(2).uppercased()
        return "PCI\\VEN_\(v)&DEV_\(d)"
    }
    return nil
}
