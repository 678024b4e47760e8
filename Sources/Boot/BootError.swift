import Failures
import DiskModel
import Disks
import Foundation
import Processes

/// Why a disk could not be made bootable, in a technician's words.
public enum BootError: Error, CustomStringConvertible, Sendable {
    case missingBootFiles(volume: String, path: String)
    case badElement(object: String, element: String, reason: String)
    case badStore(String)
    case probe(device: String, reason: String)
    case tool(command: String, status: Int32, output: String)
    case unsupported(String)
    case badBootCode(file: String, reason: String)
    case io(device: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .missingBootFiles(volume, path):
            return "\(volume): no \(path): the volume holds no applied Windows image (apply one first), or it is not the Windows volume"
        case let .badElement(object, element, reason): return "BCD object \(object), element \(element): \(reason)"
        case let .badStore(reason): return "BCD store: \(reason)"
        case let .probe(device, reason): return "\(device): \(reason)"
        case let .tool(command, status, output):
            return "\(command) exited with status \(status)" + (output.isEmpty ? "" : ": " + output.trimmingCharacters(in: .whitespacesAndNewlines))
        case let .unsupported(reason): return reason
        case let .badBootCode(file, reason): return "BIOS boot code \(file): \(reason)"
        case let .io(device, operation, code): return "\(device): \(operation) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// The tools the boot step runs (mtools, efibootmgr): their output on success, a `BootError.tool`
/// naming the command otherwise (127 when it could not be started at all).
enum BootTool {
    static func run(_ command: [String]) throws(BootError) -> String {
        do {
            return try ProcessRunner.systemTools.run(command).checked().text
        } catch {
            let output = error.reason == .failed ? error.outputTail.joined(separator: "\n") : error.description
            throw BootError.tool(command: command.joined(separator: " "), status: error.status, output: output)
        }
    }
}

extension BootError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .missingBootFiles, .badElement, .badStore, .unsupported, .badBootCode: return .badInput
        case .probe, .tool, .io: return .disk
        }
    }
}
