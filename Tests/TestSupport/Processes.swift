// Helpers every test target shares: scratch directories, running programs, finding the
// `imprint` executable built alongside the tests.
import Foundation
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

public struct CommandResult {
    public var status: Int32
    public var stdout: Data
    public var stderr: String
    public var output: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion, optionally feeding `stdinFile` to it.
@discardableResult
public func run(_ arguments: [String], stdinFile: String? = nil, allowFailure: Bool = false,
         sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    if arguments.first == "ntfs-3g" {
        // The driver forks a daemon that inherits whatever the parent holds open, which keeps
        // Foundation's Process waiting forever: spawn it bare and wait for the parent only.
        let status = try spawnAndWait(arguments)
        if !allowFailure && status != 0 {
            Issue.record("\(arguments.joined(separator: " ")) exited \(status)", sourceLocation: sourceLocation)
        }
        return CommandResult(status: status, stdout: Data(), stderr: "")
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    if let stdinFile { process.standardInput = FileHandle(forReadingAtPath: stdinFile) }
    try process.run()
    // Drain both pipes while the program runs so a chatty program never blocks.
    final class Collected: @unchecked Sendable { var data = Data() }
    let collected = Collected()
    let group = DispatchGroup()
    group.enter()
    let reader = out.fileHandleForReading
    DispatchQueue.global().async { collected.data = reader.readDataToEndOfFile(); group.leave() }
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let outData = collected.data
    process.waitUntilExit()
    let result = CommandResult(status: process.terminationStatus, stdout: outData, stderr: String(decoding: errData, as: UTF8.self))
    if !allowFailure && result.status != 0 {
        Issue.record("\(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
    }
    return result
}

/// posix_spawn with output to /dev/null and every other descriptor closed, then waitpid.
public func spawnAndWait(_ arguments: [String]) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    for fd in 3..<256 { posix_spawn_file_actions_addclose(&actions, Int32(fd)) }
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid = pid_t()
    let rc = posix_spawnp(&pid, arguments[0], &actions, nil, &argv, environ)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
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

