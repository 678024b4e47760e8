// Helpers every test target shares: scratch directories, running programs, finding the
// `imprint` executable built alongside the tests.
import Foundation
import Processes
import Testing

/// A scratch directory removed when the test ends.
public final class ScratchDirectory {
    public let path: String

    public init(_ label: String = #function) {
        let safe = label.filter { $0.isLetter || $0.isNumber }
        path = NSTemporaryDirectory() + "imprint-test-\(safe)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func sub(_ name: String) -> String { path + "/" + name }
}

public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: String
    public var output: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion, optionally feeding `stdinFile` to it. A program that cannot be
/// started ends with status 127 and says why in `stderr`, as a shell would.
@discardableResult
public func run(_ arguments: [String], stdinFile: String? = nil, allowFailure: Bool = false,
         sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
    // The driver forks a daemon that keeps whatever it is given open: no output pipe to wait on.
    let output: ProcessRunner.Output = arguments.first == "ntfs-3g" ? .discarded : .separate
    let result: CommandResult
    do {
        let finished = try ProcessRunner(inputFile: stdinFile, output: output).run(arguments)
        result = CommandResult(status: finished.status, stdout: Data(finished.output),
                               stderr: String(decoding: finished.errorOutput, as: UTF8.self))
    } catch {
        result = CommandResult(status: error.status, stdout: Data(), stderr: error.description)
    }
    if !allowFailure && result.status != 0 {
        Issue.record("\(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
    }
    return result
}

/// Runs a program with no output and every other descriptor closed, for one that leaves a
/// server or daemon running; its exit status.
public func spawnAndWait(_ arguments: [String]) throws -> Int32 {
    try ProcessRunner(output: .discarded).run(arguments).status
}

/// The repository's root folder, for files the tests share with users (example layouts).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// The `imprint` executable built alongside the tests.
public var imprintBinary: String {
    if let fromEnvironment = ProcessInfo.processInfo.environment["IMPRINT_BIN"] { return fromEnvironment }
    for configuration in ["debug", "release"] {
        let candidate = packageRoot.appendingPathComponent(".build/\(configuration)/imprint").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return "imprint"
}

