import Boot
import Foundation
import Primitives
import Registry
import TestSupport
import Testing

/// A value as `hivexsh lsval` prints it (regedit's syntax), to compare hivex's reading of a
/// hive with the value we meant to write.
func hivexLine(_ value: RegistryValue) -> String {
    let name = value.name.isEmpty ? "\"@\"" : "\"\(value.name)\""
    let digits = Array("0123456789abcdef")
    let hex = value.data.map { String([digits[Int($0 >> 4)], digits[Int($0 & 15)]]) }.joined(separator: ",")
    switch value.knownType {
    case .string?:
        return name + "=\"" + (value.stringValue ?? "").replacingOccurrences(of: "\\", with: "\\\\") + "\""
    case .dword?:
        return name + "=dword:" + String(format: "%08x", value.dwordValue ?? 0)
    default:
        return name + "=hex(\(value.type)):" + hex
    }
}

@discardableResult
func hivexsh(_ hive: String, _ commands: [String], write: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
    let script = hive + ".script-\(UUID().uuidString.prefix(6))"
    try (commands.joined(separator: "\n") + "\n").write(toFile: script, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: script) }
    return try run(["hivexsh"] + (write ? ["-w"] : []) + ["-f", script, hive], sourceLocation: sourceLocation)
        .output.split(separator: "\n").map(String.init)
}

/// A store in the order a hive keeps it (keys sorted by upper-cased name), to compare what
/// was built with what was read back.
func canonical(_ store: BCDStore) -> BCDStore {
    BCDStore(objects: store.objects.sorted { $0.id.braced.uppercased() < $1.id.braced.uppercased() }.map { object in
        BCDObject(id: object.id, type: object.type,
                  elements: object.elements.sorted { $0.type.keyName < $1.type.keyName }.map { ($0.type, $0.value) })
    })
}
