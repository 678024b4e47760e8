import Failures
import DiskModel
import Disks
import Foundation

/// Why a disk could not be made bootable, in a technician's words.
public enum BootError: Error, CustomStringConvertible, Sendable {
    case missingBootFiles(volume: String, path: String)
    case volume(device: String, path: String, operation: String, errno: Int32)
    case badElement(object: String, element: String, reason: String)
    case badStore(String)
    case probe(device: String, reason: String)
    case tool(command: String, status: Int32, output: String)
    case unsupported(String)

    public var description: String {
        switch self {
        case let .missingBootFiles(volume, path):
            return "\(volume): no \(path): the volume holds no applied Windows image (apply one first), or it is not the Windows volume"
        case let .volume(device, path, operation, code):
            return "\(device): \(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .badElement(object, element, reason): return "BCD object \(object), element \(element): \(reason)"
        case let .badStore(reason): return "BCD store: \(reason)"
        case let .probe(device, reason): return "\(device): \(reason)"
        case let .tool(command, status, output):
            return "\(command) exited with status \(status)" + (output.isEmpty ? "" : ": " + output.trimmingCharacters(in: .whitespacesAndNewlines))
        case let .unsupported(reason): return reason
        }
    }
}

/// The tools the boot step runs (mtools, efibootmgr): their output on success, a `BootError.tool`
/// naming the command otherwise (127 when it could not be started at all).
enum BootTool {
    static func run(_ command: [String]) throws -> String {
        do {
            let result = try CommandRunner.run(command)
            guard result.status == 0 else { throw BootError.tool(command: command.joined(separator: " "), status: result.status, output: result.output) }
            return result.output
        } catch let error as DiskError {
            throw BootError.tool(command: command.joined(separator: " "), status: 127, output: error.description)
        }
    }
}

/// GUIDs as Windows stores them on disk (and in BCD device data): the first three fields
/// little-endian, the last eight bytes in order.
enum WindowsGUID {
    static func bytes(_ uuid: UUID) -> [UInt8] {
        let u = uuid.uuid
        return [u.3, u.2, u.1, u.0, u.5, u.4, u.7, u.6, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15]
    }

    static func uuid(_ b: ArraySlice<UInt8>) -> UUID? {
        guard b.count == 16 else { return nil }
        let a = Array(b)
        return UUID(uuid: (a[3], a[2], a[1], a[0], a[5], a[4], a[7], a[6], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]))
    }

    /// `{9dea862c-5cdd-4e70-acc1-f32b344d4795}`: lower case in braces, as BCD key names are.
    static func braced(_ uuid: UUID) -> String { "{" + uuid.uuidString.lowercased() + "}" }

    static func parse(_ text: String) -> UUID? {
        var trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("{") && trimmed.hasSuffix("}") { trimmed = String(trimmed.dropFirst().dropLast()) }
        return UUID(uuidString: trimmed)
    }
}

extension BootError: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .missingBootFiles, .badElement, .badStore, .unsupported: return .badInput
        case .volume, .probe, .tool: return .disk
        }
    }
}
