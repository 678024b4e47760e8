import Foundation
import Primitives

/// Which disk to install on, in the spirit of Ironic's root device hints: every key narrows the
/// choice, and `prefer` breaks ties among the disks that are left.
///
/// ```json
/// { "size": ">= 64GiB", "model": "Samsung*", "transport": ["nvme", "sata"], "prefer": "smallest" }
/// ```
public struct DiskRules: Sendable, Codable, Equatable {
    /// All must hold.
    public var size: [SizeCondition]
    public var model: Glob?
    public var vendor: Glob?
    public var serial: Glob?
    public var wwn: Glob?
    /// Matched against the device path (`/dev/sda`) and the kernel name (`sda`).
    public var name: Glob?
    /// Any of these; nil means any transport.
    public var transport: [Transport]?
    public var rotational: Bool?
    /// Nil and false both refuse removable disks; true accepts only removable ones.
    public var removable: Bool?
    public var hasWindows: Bool?
    public var prefer: Preference
    /// Whether a disk that holds partitions or a filesystem may be chosen (and destroyed).
    public var wipe: Bool

    public init(size: [SizeCondition] = [], model: Glob? = nil, vendor: Glob? = nil,
                serial: Glob? = nil, wwn: Glob? = nil, name: Glob? = nil,
                transport: [Transport]? = nil, rotational: Bool? = nil, removable: Bool? = nil,
                hasWindows: Bool? = nil, prefer: Preference = .smallest, wipe: Bool = false) {
        self.size = size
        self.model = model
        self.vendor = vendor
        self.serial = serial
        self.wwn = wwn
        self.name = name
        self.transport = transport
        self.rotational = rotational
        self.removable = removable
        self.hasWindows = hasWindows
        self.prefer = prefer
        self.wipe = wipe
    }

    public enum Preference: String, Sendable, Codable, CaseIterable {
        /// Ironic's choice: the smallest suitable disk, leaving bigger ones for data.
        case smallest
        case largest
        /// The first in kernel name order (sda, sdb, ..., sdz, sdaa).
        case first
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case size, model, vendor, serial, wwn, name, transport, rotational, removable, hasWindows, prefer, wipe
    }

    public init(from decoder: any Decoder) throws {
        try UnknownKeyCheck.check(decoder, allowed: Set(CodingKeys.allStringValues))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        size = try container.decodeIfPresent(OneOrMany<SizeCondition>.self, forKey: .size)?.values ?? []

        func pattern(_ key: CodingKeys, _ caseRule: CaseRule) throws -> Glob? {
            guard let text = try container.decodeIfPresent(String.self, forKey: key) else { return nil }
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: key, in: container,
                    debugDescription: "an empty pattern matches no disk; leave \"\(key.rawValue)\" out to accept any")
            }
            return Glob(trimmed, caseRule)
        }
        // Vendors and models are free text whose case varies between firmware versions;
        // WWNs are hex, where case carries no meaning. Serials are kept exact, and device names
        // are Linux's, where case tells devices apart.
        model = try pattern(.model, .caseInsensitive)
        vendor = try pattern(.vendor, .caseInsensitive)
        serial = try pattern(.serial, .caseSensitive)
        wwn = try pattern(.wwn, .caseInsensitive)
        name = try pattern(.name, .caseSensitive)

        transport = try container.decodeIfPresent(OneOrMany<TransportName>.self, forKey: .transport)?
            .values.map(\.transport)
        rotational = try container.decodeIfPresent(Bool.self, forKey: .rotational)
        removable = try container.decodeIfPresent(Bool.self, forKey: .removable)
        hasWindows = try container.decodeIfPresent(Bool.self, forKey: .hasWindows)
        if let text = try container.decodeIfPresent(String.self, forKey: .prefer) {
            guard let preference = Preference(rawValue: text.lowercased()) else {
                throw DecodingError.dataCorruptedError(forKey: .prefer, in: container,
                    debugDescription: "unknown preference \"\(text)\" (known: "
                        + Preference.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            prefer = preference
        } else {
            prefer = .smallest
        }
        wipe = try container.decodeIfPresent(Bool.self, forKey: .wipe) ?? false
    }

    /// Writes the rules back in the form they are read, so a plan can show what it obeyed.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if !size.isEmpty { try container.encode(size.map(\.text), forKey: .size) }
        try container.encodeIfPresent(model?.pattern, forKey: .model)
        try container.encodeIfPresent(vendor?.pattern, forKey: .vendor)
        try container.encodeIfPresent(serial?.pattern, forKey: .serial)
        try container.encodeIfPresent(wwn?.pattern, forKey: .wwn)
        try container.encodeIfPresent(name?.pattern, forKey: .name)
        try container.encodeIfPresent(transport, forKey: .transport)
        try container.encodeIfPresent(rotational, forKey: .rotational)
        try container.encodeIfPresent(removable, forKey: .removable)
        try container.encodeIfPresent(hasWindows, forKey: .hasWindows)
        try container.encode(prefer, forKey: .prefer)
        try container.encode(wipe, forKey: .wipe)
    }
}

/// One comparison such as `>= 64GiB`.
public struct SizeCondition: Sendable, Codable, Equatable {
    public enum Comparison: String, Sendable, Codable, CaseIterable {
        case atLeast = ">=", atMost = "<=", equal = "==", notEqual = "!=", greater = ">", less = "<"

        func holds(_ actual: UInt64, _ wanted: UInt64) -> Bool {
            switch self {
            case .atLeast: return actual >= wanted
            case .atMost: return actual <= wanted
            case .equal: return actual == wanted
            case .notEqual: return actual != wanted
            case .greater: return actual > wanted
            case .less: return actual < wanted
            }
        }
    }

    public var comparison: Comparison
    public var bytes: UInt64
    /// The size as the rules wrote it (`2TB`), since reformatting it in binary units
    /// (`1.8 TiB`) would make messages disagree with the file.
    public var sizeText: String

    public init(_ comparison: Comparison, _ bytes: UInt64, sizeText: String? = nil) {
        self.comparison = comparison
        self.bytes = bytes
        self.sizeText = sizeText ?? ByteSize.format(bytes)
    }

    /// `>= 64GiB`, with a bare size meaning `==`, or why the text is not a comparison.
    public static func parse(_ text: String) -> Result<SizeCondition, ParseFailure> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var comparison = Comparison.equal
        var rest = Substring(trimmed)
        // The two-character operators come first in allCases so `>=` is not read as `>`.
        for candidate in Comparison.allCases where rest.hasPrefix(candidate.rawValue) {
            comparison = candidate
            rest = rest.dropFirst(candidate.rawValue.count)
            break
        }
        let sizeText = rest.trimmingCharacters(in: .whitespaces)
        guard let bytes = ByteSize.parse(sizeText) else {
            return .failure(ParseFailure(reason: "\"\(text)\" is not a size comparison: expected an operator "
                + "(>=, <=, >, <, ==, !=) or none, then a size such as 64GiB or 2TB"))
        }
        // A bare small number is almost surely GiB written Ironic's way, not a byte count.
        if bytes < 1 << 20, sizeText.allSatisfy(\.isNumber) {
            return .failure(ParseFailure(reason: "\"\(text)\" has no unit and would mean \(bytes) bytes; "
                + "write \(sizeText)GiB or \(sizeText)GB"))
        }
        return .success(SizeCondition(comparison, bytes, sizeText: sizeText))
    }

    public struct ParseFailure: Error, Sendable { public var reason: String }

    public var text: String { "\(comparison.rawValue) \(sizeText)" }

    public func holds(for size: UInt64) -> Bool { comparison.holds(size, bytes) }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Double.self) {
            // Int(exactly:) rather than Int(_:): a number too large for Int is input, not a reason to trap.
            let example = Int(exactly: number.rounded()).map { "\($0)GiB" } ?? "64GiB"
            throw JSONInput.invalid(decoder, "\(number) has no unit; write a string such as \">= \(example)\"")
        }
        let text = try container.decode(String.self)
        switch Self.parse(text) {
        case let .success(condition): self = condition
        case let .failure(failure): throw JSONInput.invalid(decoder, failure.reason)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

/// Decodes a single value or an array of them, so `"transport": "nvme"` and
/// `"transport": ["nvme", "sata"]` both work, with array errors at `$.transport[1]`.
struct OneOrMany<Element: Decodable>: Decodable {
    var values: [Element]

    init(from decoder: any Decoder) throws {
        if var list = try? decoder.unkeyedContainer() {
            var values: [Element] = []
            while !list.isAtEnd { values.append(try list.decode(Element.self)) }
            // An empty list would reject every disk, which is never what was meant.
            guard !values.isEmpty else { throw JSONInput.invalid(decoder, "an empty list matches no disk") }
            self.values = values
        } else {
            values = [try Element(from: decoder)]
        }
    }
}

/// Transport's own decoding would not say which names exist.
struct TransportName: Decodable {
    var transport: Transport

    init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let transport = Transport(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw JSONInput.invalid(decoder, "unknown transport \"\(text)\" (known: "
                + Transport.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        self.transport = transport
    }
}
