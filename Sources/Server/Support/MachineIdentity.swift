import Foundation
import SequenceModel

/// What a check-in (or an administrator's registration) says a machine is: its MACs, SMBIOS
/// UUID and serial number, checked and written one way, so that the database compares them
/// exactly (never as patterns) and nothing a client sends can match more than it names.
public struct MachineIdentity: Sendable, Equatable {
    /// Lowercase, colon-separated (`52:54:00:12:34:56`), in the order given, without repeats.
    public var macs: [String]
    /// Lowercase canonical form (`4c4c4544-0031-...`).
    public var uuid: String?
    public var serial: String?

    /// At most this many MACs: a machine with more network interfaces than that is not a PC.
    public static let maximumMACs = 32
    public static let maximumSerialLength = 64

    /// Checks every identifier; `prefix` is where they sit in the request (`facts.` for a check-in),
    /// so the error names the field as the client sent it (`facts.macAddresses[2]`).
    public init(macs: [String], uuid: String?, serial: String?, prefix: String, macsField: String, uuidField: String,
                serialField: String) throws(IdentityError) {
        guard macs.count <= Self.maximumMACs else {
            throw IdentityError(field: prefix + macsField, message: "\(macs.count) MAC addresses; at most \(Self.maximumMACs) are accepted")
        }
        var normalized: [String] = []
        for (index, text) in macs.enumerated() {
            guard let mac = Self.normalizedMAC(text) else {
                throw IdentityError(field: "\(prefix)\(macsField)[\(index)]",
                                    message: "\"\(Self.printable(text))\" is not a MAC address: expected six hex pairs such as 52:54:00:12:34:56")
            }
            if !normalized.contains(mac) { normalized.append(mac) }
        }
        self.macs = normalized
        if let uuid, !uuid.isEmpty {
            guard let canonical = Self.normalizedUUID(uuid) else {
                throw IdentityError(field: prefix + uuidField,
                                    message: "\"\(Self.printable(uuid))\" is not a UUID: expected 32 hex digits as 8-4-4-4-12, as SMBIOS gives it")
            }
            // A board that leaves its UUID at a placeholder shares it with every board of its
            // kind: it names no machine, so it counts as none (no conflict between such machines).
            self.uuid = Self.placeholderUUIDs.contains(canonical) ? nil : canonical
        } else {
            self.uuid = nil
        }
        if let serial, !serial.isEmpty {
            guard serial.utf8.count <= Self.maximumSerialLength, serial.allSatisfy(Self.isPrintableASCII),
                  serial.trimmingCharacters(in: .whitespaces) == serial else {
                throw IdentityError(field: prefix + serialField,
                                    message: "\"\(Self.printable(serial))\" is not a serial number: expected 1 to \(Self.maximumSerialLength) "
                                        + "printable ASCII characters without leading or trailing spaces")
            }
            self.serial = serial
        } else {
            self.serial = nil
        }
    }

    /// A check-in's facts, with the error naming `facts.macAddresses[i]`, `facts.uuid` or
    /// `facts.serialNumber`. Manufacturer and model are checked too: the dashboard and rules show them.
    public init(checkIn facts: Facts) throws(IdentityError) {
        try self.init(macs: facts.macAddresses, uuid: facts.uuid, serial: facts.serialNumber, prefix: "facts.",
                      macsField: "macAddresses", uuidField: "uuid", serialField: "serialNumber")
        for (field, value) in [("manufacturer", facts.manufacturer), ("model", facts.model), ("cpuModel", facts.cpuModel)] {
            guard let value else { continue }
            guard value.count <= 200, !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw IdentityError(field: "facts.\(field)", message: "at most 200 characters and no control characters")
            }
        }
        guard !isEmpty else {
            throw IdentityError(field: "facts.macAddresses", message: "the facts name no MAC address, UUID or serial number to know the machine by")
        }
    }

    /// UUIDs firmware leaves unset: all zeros, all ones, and the AMI default seen on many boards.
    static let placeholderUUIDs: Set<String> = [
        "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "03000200-0400-0500-0006-000700080009",
    ]

    public var isEmpty: Bool { macs.isEmpty && uuid == nil && serial == nil }

    /// As the `machines.macs` column keeps them: `,a,b,` (empty when there is none).
    var macField: String { macs.isEmpty ? "" : "," + macs.joined(separator: ",") + "," }

    /// `52:54:00:AB:CD:EF`, `52-54-00-ab-cd-ef` (Windows), `5254.00ab.cdef` (Cisco) → `52:54:00:ab:cd:ef`;
    /// nil for anything else. Only the hex digits are kept, so the result is never a pattern.
    public static func normalizedMAC(_ text: String) -> String? {
        let separators: Set<Character> = [":", "-", "."]
        let hex = text.filter { !separators.contains($0) }
        guard text.count <= 17, hex.count == 12, hex.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return nil }
        let groups = text.split(omittingEmptySubsequences: false, whereSeparator: { separators.contains($0) })
        // Six pairs, three quads (Cisco) or one run of twelve: never a separator in odd places.
        guard [1, 3, 6].contains(groups.count), Set(groups.map { $0.count }).count == 1 else { return nil }
        let lower = Array(hex.lowercased())
        return stride(from: 0, to: 12, by: 2).map { String(lower[$0..<$0 + 2]) }.joined(separator: ":")
    }

    /// 8-4-4-4-12 hex digits (braces, as Windows writes them, are accepted) → lowercase; nil otherwise.
    public static func normalizedUUID(_ text: String) -> String? {
        var body = Substring(text)
        if body.hasPrefix("{") && body.hasSuffix("}") { body = body.dropFirst().dropLast() }
        let groups = body.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.count) == [8, 4, 4, 4, 12], groups.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isHexDigit } }) else { return nil }
        return body.lowercased()
    }

    static func isPrintableASCII(_ character: Character) -> Bool {
        character.isASCII && (character.asciiValue.map { (0x20...0x7E).contains($0) } ?? false)
    }

    /// What a refused value looked like, safe to quote in a message: at most 40 characters,
    /// anything unprintable as `?`.
    static func printable(_ text: String) -> String {
        String(text.prefix(40).map { isPrintableASCII($0) ? $0 : "?" }) + (text.count > 40 ? "..." : "")
    }
}

/// An identifier that cannot be a machine's: the field as the client sent it, and why.
public struct IdentityError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var message: String
    public var description: String { "\(field): \(message)" }
}

/// A known machine set against a check-in that shares at least one identifier with it.
struct IdentityComparison {
    var record: Machine
    /// What both name alike: `MAC 52:54:00:12:34:56`, `UUID ...`, `serial ...`.
    var matching: [String] = []
    /// Where the check-in contradicts the record, or leaves out what the record has (the real
    /// agent always sends its machine's UUID and serial, so a check-in without them is not it).
    var differing: [String] = []

    init(record: Machine, claim: MachineIdentity) {
        self.record = record
        compare("UUID", record.uuid, claim.uuid)
        compare("serial", record.serial, claim.serial)
        let common = record.macs.filter(claim.macs.contains)
        matching += common.map { "MAC \($0)" }
        if !record.macs.isEmpty && common.isEmpty {
            differing.append(claim.macs.isEmpty
                ? "MAC missing (the machine has \(record.macs.joined(separator: ", ")))"
                : "MAC differs (the machine has \(record.macs.joined(separator: ", ")), this check-in \(claim.macs.joined(separator: ", ")))")
        }
    }

    private mutating func compare(_ name: String, _ recorded: String?, _ claimed: String?) {
        switch (recorded, claimed) {
        case let (recorded?, claimed?) where recorded == claimed: matching.append("\(name) \(recorded)")
        case let (recorded?, claimed?): differing.append("\(name) differs (the machine has \(recorded), this check-in \(claimed))")
        case let (recorded?, nil): differing.append("\(name) missing (the machine has \(recorded))")
        // The record lacks it (a machine registered by MAC alone): nothing to contradict.
        case (nil, _): break
        }
    }

    /// The check-in is this machine: it names part of its identity and contradicts none of it.
    var isExact: Bool { differing.isEmpty && !matching.isEmpty }

    var conflict: IdentityConflict { IdentityConflict(machineID: record.id, matching: matching, differing: differing) }

    /// Between two exact matches, the one that shares more identifiers wins; then the older.
    static func ranksBelow(_ a: IdentityComparison, _ b: IdentityComparison) -> Bool {
        if a.matching.count != b.matching.count { return a.matching.count < b.matching.count }
        return (a.record.firstSeen, a.record.id) > (b.record.firstSeen, b.record.id)
    }
}
