import Foundation
import Primitives

/// What a partition is for; it decides the default type, name and attributes.
public enum PartitionRole: String, Sendable, Codable, CaseIterable {
    case esp, msr, basic, recovery, linux, swap

    /// The role for a name a technician may write; `windows` and `data` are what people call
    /// a basic data partition.
    public init?(name: String) {
        switch name.lowercased() {
        case "windows", "data": self = .basic
        default:
            guard let role = PartitionRole(rawValue: name.lowercased()) else { return nil }
            self = role
        }
    }

    /// The GPT partition type GUID.
    public var gptType: GUID {
        let text: String
        switch self {
        case .esp: text = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        case .msr: text = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
        case .basic: text = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        case .recovery: text = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"
        case .linux: text = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        case .swap: text = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
        }
        return GUID(text) ?? .zero
    }

    /// The MBR type byte, or nil when the role has no MBR form (MSR exists only on GPT).
    public func mbrType(format: FormatSpec?) -> UInt8? {
        switch self {
        case .esp: return 0xEF
        case .msr: return nil
        // Windows expects FAT32 volumes under 0x0C (FAT32 with LBA); 0x07 is NTFS/exFAT.
        case .basic: return format?.filesystem == .fat32 ? 0x0C : 0x07
        case .recovery: return 0x27
        case .linux: return 0x83
        case .swap: return 0x82
        }
    }

    /// The GPT name Windows Setup and most tools give a partition of this role.
    public var defaultName: String {
        switch self {
        case .esp: return "EFI system partition"
        case .msr: return "Microsoft reserved partition"
        case .basic: return "Basic data partition"
        case .recovery: return "Recovery"
        case .linux: return "Linux filesystem"
        case .swap: return "Linux swap"
        }
    }

    /// GPT attributes the role gets unless the layout says otherwise: Windows keeps its
    /// recovery partition from being deleted or given a drive letter.
    public var defaultAttributes: UInt64 {
        self == .recovery ? GPTAttribute.required.mask | GPTAttribute.noDriveLetter.mask : 0
    }
}

/// The GPT attribute bits a layout may name.
public enum GPTAttribute: String, Sendable, CaseIterable {
    case required, noBlockIOProtocol, legacyBIOSBootable, readOnly, shadowCopy, hidden, noDriveLetter

    public var bit: Int {
        switch self {
        case .required: return 0
        case .noBlockIOProtocol: return 1
        case .legacyBIOSBootable: return 2
        case .readOnly: return 60
        case .shadowCopy: return 61
        case .hidden: return 62
        case .noDriveLetter: return 63
        }
    }

    public var mask: UInt64 { 1 << UInt64(bit) }

    init?(name: String) {
        guard let match = GPTAttribute.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else { return nil }
        self = match
    }
}

/// How big a partition is to be.
public enum PartitionSize: Sendable, Equatable, Codable, CustomStringConvertible {
    case bytes(UInt64)
    /// A share of the whole disk, above 0 and at most 100.
    case percent(Double)
    /// Whatever the other partitions leave.
    case rest

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let bytes = try? container.decode(UInt64.self) {
            self = .bytes(bytes)
            return
        }
        guard let text = try? container.decode(String.self) else {
            throw JSONInput.invalid(decoder, "expected a size like \"260MiB\", a percentage like \"25%\", \"rest\" or a number of bytes")
        }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.lowercased() == "rest" {
            self = .rest
        } else if trimmed.hasSuffix("%") {
            let number = trimmed.dropLast().trimmingCharacters(in: .whitespaces)
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
                  let value = Double(number), value > 0, value <= 100 else {
                throw JSONInput.invalid(decoder, "\"\(text)\" is not a percentage above 0% and at most 100%")
            }
            self = .percent(value)
        } else if let bytes = ByteSize.parse(trimmed) {
            self = .bytes(bytes)
        } else {
            throw JSONInput.invalid(decoder, "\"\(text)\" is not a size (like \"260MiB\", \"1GiB\", \"500MB\"), a percentage (\"25%\") or \"rest\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .bytes(bytes): try container.encode(bytes)
        case .percent: try container.encode(description)
        case .rest: try container.encode("rest")
        }
    }

    public var description: String {
        switch self {
        case let .bytes(bytes): return ByteSize.format(bytes)
        case let .percent(value):
            return (value == value.rounded() ? String(Int(value)) : String(value)) + "%"
        case .rest: return "rest"
        }
    }
}

/// One partition as the technician describes it.
public struct PartitionSpec: Sendable, Equatable, Decodable {
    /// A name other parts of the job refer to (`"windows"`); unique in the layout.
    public var id: String?
    public var role: PartitionRole
    /// An explicit type: a GUID on GPT, `0x07` on MBR. Normalised by `PartitionLayout`
    /// (upper-case GUID, lower-case `0x` and two digits).
    public var type: String?
    public var size: PartitionSize
    /// The GPT partition name.
    public var name: String?
    /// The MBR boot flag.
    public var active: Bool
    /// GPT attribute bits; nil means the role's default.
    public var attributes: UInt64?
    public var format: FormatSpec?

    public init(id: String? = nil, role: PartitionRole, type: String? = nil, size: PartitionSize,
                name: String? = nil, active: Bool = false, attributes: UInt64? = nil, format: FormatSpec? = nil) {
        self.id = id
        self.role = role
        self.type = type
        self.size = size
        self.name = name
        self.active = active
        self.attributes = attributes
        self.format = format
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case id, role, type, size, name, active, attributes, format
    }

    /// The GPT name field holds 36 UTF-16 code units.
    static let maximumNameLength = 36

    public init(from decoder: any Decoder) throws {
        try UnknownKeyCheck.check(decoder, allowed: Set(CodingKeys.allStringValues))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id)
        if let id, id.trimmingCharacters(in: .whitespaces).isEmpty {
            throw DecodingError.dataCorruptedError(forKey: .id, in: container, debugDescription: "an id must not be empty")
        }
        let roleName = try container.decode(String.self, forKey: .role)
        guard let role = PartitionRole(name: roleName) else {
            throw DecodingError.dataCorruptedError(forKey: .role, in: container, debugDescription:
                "unknown role \"\(roleName)\" (known: \(PartitionRole.allCases.map(\.rawValue).joined(separator: ", ")); windows and data mean basic)")
        }
        self.role = role
        type = try container.decodeIfPresent(String.self, forKey: .type)
        size = try container.decode(PartitionSize.self, forKey: .size)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        if let name, name.utf16.count > Self.maximumNameLength || name.contains("\0") {
            throw DecodingError.dataCorruptedError(forKey: .name, in: container, debugDescription:
                "a GPT partition name holds at most \(Self.maximumNameLength) UTF-16 code units and no NUL, \"\(name)\" has \(name.utf16.count)")
        }
        active = try container.decodeIfPresent(Bool.self, forKey: .active) ?? false
        attributes = try container.decodeIfPresent(AttributeList.self, forKey: .attributes)?.mask
        format = try container.decodeIfPresent(FormatSpec.self, forKey: .format)
    }
}

/// GPT attributes as JSON: a number, a `"0x..."` string, or a list of bit names.
private struct AttributeList: Decodable {
    var mask: UInt64

    init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer() {
            if let number = try? single.decode(UInt64.self) {
                mask = number
                return
            }
            if let text = try? single.decode(String.self) {
                let digits = text.lowercased().hasPrefix("0x") ? String(text.dropFirst(2)) : ""
                guard !digits.isEmpty, let number = UInt64(digits, radix: 16) else {
                    throw JSONInput.invalid(decoder, "\"\(text)\" is not an attribute mask; write a number, \"0x8000000000000001\" or a list of names")
                }
                mask = number
                return
            }
        }
        guard var list = try? decoder.unkeyedContainer() else {
            throw JSONInput.invalid(decoder, "expected a number or a list of attribute names")
        }
        var mask: UInt64 = 0
        while !list.isAtEnd {
            let index = list.currentIndex
            let path = decoder.codingPath + [LayoutPathKey(index)]
            guard let name = try? list.decode(String.self) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "expected an attribute name"))
            }
            guard let attribute = GPTAttribute(name: name) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription:
                    "unknown attribute \"\(name)\" (known: \(GPTAttribute.allCases.map(\.rawValue).joined(separator: ", ")))"))
            }
            mask |= attribute.mask
        }
        self.mask = mask
    }
}

/// A coding path element we build ourselves, for errors found after decoding.
struct LayoutPathKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ name: String) { stringValue = name; intValue = nil }
    init(_ index: Int) { stringValue = String(index); intValue = index }
    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { self.init(intValue) }
}

/// The partitions to make on a disk, in order, as read from the layout JSON:
/// `{"table": "gpt", "partitions": [{"role": "esp", "size": "260MiB", ...}, ...]}`.
public struct PartitionLayout: Sendable, Equatable, Decodable {
    public var table: PartitionTableType
    public var partitions: [PartitionSpec]

    /// Checks and normalises a layout made in code; errors name the JSON path the same
    /// value would have in a file.
    public init(table: PartitionTableType, partitions: [PartitionSpec]) throws(DiskError) {
        self.table = table
        self.partitions = partitions
        if let problem = normalise() {
            throw DiskError.invalidLayout(reason: "\(JSONProblem(codingPath: problem.path, reason: problem.reason).jsonPath): \(problem.reason)")
        }
    }

    /// No checks, so tests can hand the planner what decoding would refuse.
    init(uncheckedTable table: PartitionTableType, partitions: [PartitionSpec]) {
        self.table = table
        self.partitions = partitions
    }

    private enum CodingKeys: String, CodingKey, CaseIterable { case table, partitions }

    public init(from decoder: any Decoder) throws {
        try UnknownKeyCheck.check(decoder, allowed: Set(CodingKeys.allStringValues))
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let tableName = try container.decode(String.self, forKey: .table)
        switch tableName.lowercased() {
        case "gpt": table = .gpt
        // libblkid and sfdisk call an MBR table "dos".
        case "mbr", "dos": table = .mbr
        default:
            throw DecodingError.dataCorruptedError(forKey: .table, in: container,
                debugDescription: "unknown partition table \"\(tableName)\" (known: gpt, mbr)")
        }
        partitions = try container.decode([PartitionSpec].self, forKey: .partitions)
        if let problem = normalise() {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + problem.path, debugDescription: problem.reason))
        }
    }

    /// Checks what depends on the table type or on several partitions at once, and rewrites
    /// explicit types to one spelling. Returns the first problem, with its path.
    private mutating func normalise() -> (path: [any CodingKey], reason: String)? {
        let list = LayoutPathKey("partitions")
        func at(_ index: Int, _ field: String? = nil) -> [any CodingKey] {
            [list, LayoutPathKey(index)] + (field.map { [LayoutPathKey($0)] } ?? [])
        }
        guard !partitions.isEmpty else { return ([list], "a layout needs at least one partition") }
        switch table {
        case .mbr:
            if partitions.count > 4 {
                return ([list], "an MBR table holds at most 4 partitions and \(partitions.count) are listed (extended and logical partitions are not supported; use GPT)")
            }
        case .gpt:
            if partitions.count > GPTGeometry.entryCount {
                return ([list], "a GPT table holds at most \(GPTGeometry.entryCount) partitions and \(partitions.count) are listed")
            }
        }
        var ids: [String: Int] = [:]
        var restIndex: Int?
        var activeIndex: Int?
        var percentTotal = 0.0
        for (index, partition) in partitions.enumerated() {
            if let id = partition.id {
                if let first = ids[id] { return (at(index, "id"), "id \"\(id)\" is already used by $.partitions[\(first)]") }
                ids[id] = index
            }
            switch partition.size {
            case .rest:
                if let first = restIndex { return (at(index, "size"), "only one partition may take the rest, and $.partitions[\(first)] already does") }
                restIndex = index
            case let .percent(value):
                percentTotal += value
                if percentTotal > 100 + Self.percentTolerance { return (at(index, "size"), "the percentages add up to \(PartitionSize.percent(percentTotal)), more than 100%") }
            case .bytes: break
            }
            switch table {
            case .gpt:
                if partition.active {
                    return (at(index, "active"), "the boot flag exists only in MBR tables; on GPT use \"attributes\": [\"legacyBIOSBootable\"]")
                }
                if let type = partition.type {
                    guard let guid = GUID(type), guid != .zero else {
                        return (at(index, "type"), "\"\(type)\" is not a GPT type GUID (like EBD0A0A2-B9E5-4433-87C0-68B6B72699C7)")
                    }
                    partitions[index].type = guid.description
                }
            case .mbr:
                if partition.role == .msr {
                    return (at(index, "role"), "a Microsoft reserved partition exists only on GPT disks")
                }
                if partition.name != nil { return (at(index, "name"), "partition names exist only in GPT tables") }
                if partition.attributes != nil { return (at(index, "attributes"), "attributes exist only in GPT tables") }
                if partition.active {
                    if let first = activeIndex { return (at(index, "active"), "only one partition may be active, and $.partitions[\(first)] already is") }
                    activeIndex = index
                }
                if let type = partition.type {
                    guard let byte = Self.mbrTypeByte(type) else {
                        return (at(index, "type"), "\"\(type)\" is not an MBR type byte (like \"0x07\")")
                    }
                    if byte == 0 || byte == 0xEE {
                        return (at(index, "type"), "type \(type) marks an empty or GPT-protective entry, not a partition")
                    }
                    if [0x05, 0x0F, 0x85].contains(byte) {
                        return (at(index, "type"), "extended partitions are not supported")
                    }
                    partitions[index].type = Self.mbrTypeText(byte)
                }
            }
        }
        return nil
    }

    /// Shares like 33.3 + 33.3 + 33.4 add up to a hair over 100 in binary floating point.
    static let percentTolerance = 1e-9

    /// `0x07`, `0x7` or `07`.
    static func mbrTypeByte(_ text: String) -> UInt8? {
        let lower = text.lowercased()
        let digits = lower.hasPrefix("0x") ? String(lower.dropFirst(2)) : lower
        guard (1...2).contains(digits.count) else { return nil }
        return UInt8(digits, radix: 16)
    }

    static func mbrTypeText(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16)
        return "0x" + (byte < 0x10 ? "0" + hex : hex)
    }
}

/// The fixed shape of the GPT tables we write.
enum GPTGeometry {
    static let entryCount = 128
    static let entrySize = 128
    static let arrayBytes = entryCount * entrySize

    static func arraySectors(sectorSize: Int) -> UInt64 {
        UInt64((arrayBytes + sectorSize - 1) / sectorSize)
    }
}
