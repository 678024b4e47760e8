import Foundation

/// The Python test server (http_test_server.py) serving `root` on a free local port, with
/// misbehaviour selected per URL by its query string. Stopped when released.
public final class TestHTTPServer {
    public let port: Int
    private let process: Process
    /// The server exits when this closes, so it never outlives a crashed test run.
    private let lifeline = Pipe()

    public enum Failure: Error, CustomStringConvertible {
        case noPort(String)
        public var description: String {
            switch self { case let .noPort(line): return "the test HTTP server did not print its port (got \(line.debugDescription))" }
        }
    }

    /// `misbehave` is a query string (e.g. "drop=1000") applied to every file the server sends,
    /// so that several servers can play mirrors of one file, each failing its own way.
    public init(root: String, misbehave: String? = nil) throws {
        let script = packageRoot.appendingPathComponent("Tests/TestSupport/http_test_server.py").path
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, root] + (misbehave.map { ["--misbehave", $0] } ?? [])
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = lifeline
        try process.run()
        // Byte by byte: a buffered read could wait for more than the one line printed.
        var line = Data()
        let reader = output.fileHandleForReading
        while true {
            let byte = reader.readData(ofLength: 1)
            if byte.isEmpty || byte.first == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let port = Int(text.trimmingCharacters(in: .whitespaces)) else {
            process.terminate()
            process.waitUntilExit()
            throw Failure.noPort(text)
        }
        self.port = port
    }

    deinit {
        try? lifeline.fileHandleForWriting.close()
        // A server told to die (?exit=N) is gone already: its pid is not ours to signal.
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// Whether the server process still runs (one told to die by ?exit=N does not).
    public var isRunning: Bool { process.isRunning }

    /// `path` starts with "/" and may carry a query string.
    public func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }
}
