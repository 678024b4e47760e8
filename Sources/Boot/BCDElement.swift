import DiskModel
import Foundation
import Primitives
import Registry

/// A BCD element type: class (bits 28-31), format (bits 24-27) and subtype, as Microsoft's
/// BcdElementType documents. The element's key name is this number as 8 hex digits.
public struct BCDElementType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    public var format: BCDElementFormat? { BCDElementFormat(rawValue: (rawValue >> 24) & 0xF) }
    public var keyName: String { String(format: "%08X", rawValue) }
    public var description: String { keyName }

    // Library (class 1): every boot application.
    public static let applicationDevice = BCDElementType(0x1100_0001)      // device
    public static let applicationPath = BCDElementType(0x1200_0002)        // path
    public static let description = BCDElementType(0x1200_0004)            // description
    public static let preferredLocale = BCDElementType(0x1200_0005)        // locale
    public static let inheritedObjects = BCDElementType(0x1400_0006)       // inherit
    public static let allowBadMemoryAccess = BCDElementType(0x1600_000B)   // badmemoryaccess
    public static let debuggerType = BCDElementType(0x1500_0011)           // debugtype
    public static let serialDebuggerPort = BCDElementType(0x1500_0012)     // debugport
    public static let serialDebuggerBaudRate = BCDElementType(0x1500_0013) // baudrate
    public static let emsEnabled = BCDElementType(0x1600_0020)             // bootems
    public static let isolatedExecutionContext = BCDElementType(0x1600_0060) // isolatedcontext
    public static let allowedInMemorySettings = BCDElementType(0x1700_0077) // allowedinmemorysettings
    // Boot manager (class 2, bootmgr subtypes).
    public static let displayOrder = BCDElementType(0x2400_0001)           // displayorder
    public static let defaultObject = BCDElementType(0x2300_0003)          // default
    public static let timeout = BCDElementType(0x2500_0004)                // timeout
    public static let resumeObject = BCDElementType(0x2300_0006)           // resumeobject
    public static let toolsDisplayOrder = BCDElementType(0x2400_0010)      // toolsdisplayorder
    // OS loader (class 2, winload subtypes).
    public static let osDevice = BCDElementType(0x2100_0001)               // osdevice
    public static let systemRoot = BCDElementType(0x2200_0002)             // systemroot
    public static let associatedResumeObject = BCDElementType(0x2300_0003) // resumeobject
    public static let nxPolicy = BCDElementType(0x2500_0020)               // nx
    public static let bootMenuPolicy = BCDElementType(0x2500_00C2)         // bootmenupolicy
    public static let hypervisorDebuggerType = BCDElementType(0x2500_00F3) // hypervisordebugtype
    public static let hypervisorDebuggerPort = BCDElementType(0x2500_00F4) // hypervisordebugport
    public static let hypervisorDebuggerBaudRate = BCDElementType(0x2500_00F5) // hypervisorbaudrate
    // Resume application (class 2, winresume subtypes).
    public static let hiberFileDevice = BCDElementType(0x2100_0001)        // filedevice
    public static let hiberFilePath = BCDElementType(0x2200_0002)          // filepath
    public static let resumeDebugOptionEnabled = BCDElementType(0x2600_0006) // debugoptionenabled
}

/// How an element's data is stored, from bits 24-27 of its type.
public enum BCDElementFormat: UInt32, Sendable {
    case device = 1, string = 2, object = 3, objectList = 4, integer = 5, boolean = 6, integerList = 7
}

/// A boot device as BCD stores it: the boot library's device descriptor. Partitions are named
/// by their disk (GPT disk GUID, or MBR disk signature) and the partition (GPT unique
/// partition GUID, or its byte offset on an MBR disk), so drive letters play no part.
public enum BCDDevice: Equatable, Sendable {
    case gptPartition(partition: GUID, disk: GUID)
    case mbrPartition(offset: UInt64, signature: UInt32)

    /// Device type "partition" in the boot library's numbering.
    static let partitionType: UInt32 = 6
    /// Partition styles as the boot library numbers them (GPT 0, MBR 1).
    static let gptStyle: UInt32 = 0
    static let mbrStyle: UInt32 = 1
    /// The descriptor after the 16-byte options GUID: 72 bytes for a partition.
    static let descriptorSize: UInt32 = 0x48

    /// 16 bytes of additional-options GUID (none), then type, flags, size, a reserved dword,
    /// the partition identifier at 0x20, the disk's local device type at 0x30 (0: a local
    /// disk), the partition style at 0x34 and the disk identifier at 0x38.
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 0x58)
        bytes.put(Self.partitionType, at: 0x10)
        bytes.put(Self.descriptorSize, at: 0x18)
        switch self {
        case let .gptPartition(partition, disk):
            bytes.put(partition.onDiskBytes, at: 0x20)
            bytes.put(Self.gptStyle, at: 0x34)
            bytes.put(disk.onDiskBytes, at: 0x38)
        case let .mbrPartition(offset, signature):
            bytes.put(offset, at: 0x20)
            bytes.put(Self.mbrStyle, at: 0x34)
            bytes.put(signature, at: 0x38)
        }
        return bytes
    }

    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 0x48 else { return nil }
        guard bytes.le32(0x10) == Self.partitionType else { return nil }
        switch bytes.le32(0x34) {
        case Self.gptStyle:
            guard let partition = GUID(onDisk: bytes[0x20..<0x30]), let disk = GUID(onDisk: bytes[0x38..<0x48]) else { return nil }
            self = .gptPartition(partition: partition, disk: disk)
        case Self.mbrStyle:
            self = .mbrPartition(offset: bytes.le64(0x20), signature: bytes.le32(0x38))
        default: return nil
        }
    }
}

/// An element's value in one of the seven documented formats.
public enum BCDElementValue: Equatable, Sendable {
    case device(BCDDevice)
    case string(String)
    case object(GUID)
    case objectList([GUID])
    case integer(UInt64)
    case boolean(Bool)
    case integerList([UInt64])

    var format: BCDElementFormat {
        switch self {
        case .device: return .device
        case .string: return .string
        case .object: return .object
        case .objectList: return .objectList
        case .integer: return .integer
        case .boolean: return .boolean
        case .integerList: return .integerList
        }
    }

    /// The `Element` value of the element's key: devices, integers and booleans as
    /// REG_BINARY (8 bytes little-endian for an integer, 1 byte for a boolean), strings and
    /// objects as REG_SZ (`{guid}`), object lists as REG_MULTI_SZ.
    public var registryValue: RegistryValue {
        switch self {
        case let .device(device): return .binary("Element", device.encoded)
        case let .string(text): return .string("Element", text)
        case let .object(id): return .string("Element", id.braced)
        case let .objectList(ids): return .multiString("Element", ids.map(\.braced))
        case let .integer(number): return .binary("Element", number.littleEndianBytes)
        case let .boolean(flag): return .binary("Element", [flag ? 1 : 0])
        case let .integerList(numbers): return .binary("Element", numbers.flatMap(\.littleEndianBytes))
        }
    }

    /// Reads an element back, checking its stored type and size against its format.
    public static func decode(_ value: RegistryValue, as type: BCDElementType, object: String) throws -> BCDElementValue {
        func bad(_ reason: String) -> BootError { .badElement(object: object, element: type.keyName, reason: reason) }
        guard let format = type.format else { throw bad("unknown data format \((type.rawValue >> 24) & 0xF)") }
        let binary = RegistryValueType.binary.rawValue
        switch format {
        case .device:
            guard value.type == binary, let device = BCDDevice(encoded: value.data) else { throw bad("not a partition device descriptor") }
            return .device(device)
        case .string:
            guard let text = value.stringValue else { throw bad("expected REG_SZ") }
            return .string(text)
        case .object:
            guard let text = value.stringValue, let id = GUID(text) else { throw bad("expected a {GUID} string") }
            return .object(id)
        case .objectList:
            guard let texts = value.multiStringValue else { throw bad("expected REG_MULTI_SZ") }
            let ids = texts.compactMap { GUID($0) }
            guard ids.count == texts.count else { throw bad("a list entry is not a {GUID}") }
            return .objectList(ids)
        case .integer:
            guard value.type == binary, value.data.count == 8 else { throw bad("expected 8 bytes of REG_BINARY, found \(value.data.count)") }
            return .integer(value.data.le64(0))
        case .boolean:
            guard value.type == binary, value.data.count == 1 else { throw bad("expected 1 byte of REG_BINARY, found \(value.data.count)") }
            return .boolean(value.data[0] != 0)
        case .integerList:
            guard value.type == binary, value.data.count % 8 == 0 else { throw bad("expected a multiple of 8 bytes of REG_BINARY") }
            return .integerList(stride(from: 0, to: value.data.count, by: 8).map { value.data.le64($0) })
        }
    }
}

extension BCDDevice: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .gptPartition(partition, disk):
            return "partition \(partition.braced) on GPT disk \(disk.braced)"
        case let .mbrPartition(offset, signature):
            return "partition at byte \(offset) on MBR disk " + String(format: "0x%08x", signature)
        }
    }
}

extension BCDElementValue: CustomStringConvertible {
    /// As bcdedit would show the value (GUIDs and devices spelled out, numbers in decimal).
    public var description: String {
        switch self {
        case let .device(device): return device.description
        case let .string(text): return text
        case let .object(id): return id.braced
        case let .objectList(ids): return ids.map(\.braced).joined(separator: " ")
        case let .integer(number): return String(number)
        case let .boolean(flag): return flag ? "Yes" : "No"
        case let .integerList(numbers): return numbers.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
        }
    }
}
