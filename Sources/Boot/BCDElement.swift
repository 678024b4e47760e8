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
    // Windows RE (Microsoft's BcdLibraryElementTypes, BcdOSLoaderElementTypes and
    // BcdDeviceObjectElementTypes; the numbers as the stores Windows wrote hold them).
    public static let recoverySequence = BCDElementType(0x1400_0008)       // recoverysequence
    public static let recoveryEnabled = BCDElementType(0x1600_0009)        // recoveryenabled
    public static let displayMessage = BCDElementType(0x1500_0065)         // displaymessage
    public static let displayMessageOverride = BCDElementType(0x1500_0066) // displaymessageoverride
    public static let winPE = BCDElementType(0x2600_0022)                  // winpe
    public static let ramdiskSdiDevice = BCDElementType(0x3100_0003)       // ramdisksdidevice
    public static let ramdiskSdiPath = BCDElementType(0x3200_0004)         // ramdisksdipath
    /// bcdedit shows it as `custom:46000010 Yes`: Windows sets it on every WinRE loader.
    public static let winREMarker = BCDElementType(0x4600_0010)
}

/// How an element's data is stored, from bits 24-27 of its type.
public enum BCDElementFormat: UInt32, Sendable {
    case device = 1, string = 2, object = 3, objectList = 4, integer = 5, boolean = 6, integerList = 7
}

/// A boot device as BCD stores it: a device element's data is the GUID of an object with more
/// options for the device (zero when there is none; a ramdisk names its options object, which
/// holds the SDI file), then the boot library's device descriptor. Partitions are named by
/// their disk (GPT disk GUID, or MBR disk signature) and the partition (GPT unique partition
/// GUID, or its byte offset on an MBR disk), so drive letters play no part.
///
/// Descriptor layout (little-endian; from the stores Windows Setup and reagentc wrote, kept
/// under Tests/BootTests/Fixtures, checked against Microsoft's bcdedit names for the devices):
/// 0x00 device type, 0x04 flags, 0x08 size of the whole descriptor, 0x0C reserved, then:
/// - type 6, partition (size 0x48): 0x10 partition id (GPT partition GUID, or MBR byte
///   offset), 0x20 the disk's local type (0: a hard disk), 0x24 partition style (GPT 0, MBR 1),
///   0x28 disk id (GPT disk GUID, or MBR signature);
/// - type 5, `boot` (size 0x48, all zero after the header): the device the boot manager was
///   loaded from;
/// - type 0, a block device, flags 1: 0x10 its kind, 3 for a ramdisk; 0x14 20 bytes of ramdisk
///   base, size and offset (zero: the boot manager decides); 0x28 a file path: version 1,
///   length of the whole file path, path type 5 (a device descriptor, then the path), the
///   descriptor of the device holding the file, and the path in UTF-16LE ending in NUL.
///   bcdedit shows it as `ramdisk=[device]\path,{options}`.
/// Any other descriptor (locate, file, VHD, network...) is kept as stored and shown in hex.
public indirect enum BCDDevice: Equatable, Sendable {
    case gptPartition(partition: GUID, disk: GUID)
    case mbrPartition(offset: UInt64, signature: UInt32)
    /// `boot`: the device the boot manager came from.
    case boot
    /// A WIM loaded into memory and booted (WinRE, WinPE): the file `path` on `image`, with the
    /// SDI file named by the device options object `options`.
    case ramdisk(image: BCDDevice, path: String, options: GUID)
    /// A descriptor Imprint does not decode: the element's bytes as stored.
    case other([UInt8])

    // Device types, kinds and styles in the boot library's numbering.
    static let blockIOType: UInt32 = 0
    static let bootType: UInt32 = 5
    static let partitionType: UInt32 = 6
    static let ramdiskKind: UInt32 = 3
    static let gptStyle: UInt32 = 0
    static let mbrStyle: UInt32 = 1
    /// Partition and boot descriptors are 0x48 bytes.
    static let descriptorSize: UInt32 = 0x48
    /// The flags Windows writes on a ramdisk's block-device descriptor.
    static let ramdiskFlags: UInt32 = 1
    /// A file path: version 1, path type 5 (a device descriptor, then the path).
    static let filePathVersion: UInt32 = 1
    static let filePathWithDevice: UInt32 = 5
    /// Header of a block descriptor (16) + kind (4) + ramdisk base, size and offset (20).
    static let ramdiskFilePathOffset = 0x28
    static let filePathHeaderSize = 12

    /// The element's bytes: the options GUID, then the descriptor.
    public var encoded: [UInt8] {
        switch self {
        case let .other(bytes): return bytes
        case let .ramdisk(_, _, options): return options.onDiskBytes + descriptor
        default: return [UInt8](repeating: 0, count: 16) + descriptor
        }
    }

    /// The descriptor alone (as it is nested in a ramdisk's file path).
    var descriptor: [UInt8] {
        switch self {
        case let .gptPartition(partition, disk):
            var bytes = Self.header(type: Self.partitionType, size: Int(Self.descriptorSize))
            bytes.put(partition.onDiskBytes, at: 0x10)
            bytes.put(Self.gptStyle, at: 0x24)
            bytes.put(disk.onDiskBytes, at: 0x28)
            return bytes
        case let .mbrPartition(offset, signature):
            var bytes = Self.header(type: Self.partitionType, size: Int(Self.descriptorSize))
            bytes.put(offset, at: 0x10)
            bytes.put(Self.mbrStyle, at: 0x24)
            bytes.put(signature, at: 0x28)
            return bytes
        case .boot:
            return Self.header(type: Self.bootType, size: Int(Self.descriptorSize))
        case let .ramdisk(image, path, _):
            let nested = image.descriptor
            let name = UTF16LE.encode(path) + [0, 0]
            let filePathSize = Self.filePathHeaderSize + nested.count + name.count
            var bytes = Self.header(type: Self.blockIOType, size: Self.ramdiskFilePathOffset + filePathSize)
            bytes.put(Self.ramdiskFlags, at: 0x04)
            bytes.put(Self.ramdiskKind, at: 0x10)
            let at = Self.ramdiskFilePathOffset
            bytes.put(Self.filePathVersion, at: at)
            bytes.put(UInt32(filePathSize), at: at + 4)
            bytes.put(Self.filePathWithDevice, at: at + 8)
            bytes.put(nested + name, at: at + Self.filePathHeaderSize)
            return bytes
        case let .other(bytes):
            return Array(bytes.dropFirst(16))
        }
    }

    private static func header(type: UInt32, size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.put(type, at: 0)
        bytes.put(UInt32(size), at: 8)
        return bytes
    }

    /// Reads an element's bytes; a descriptor of another kind, or one that does not hold
    /// together, becomes `.other` (shown in hex, never refused: Windows has more devices than
    /// Imprint writes). nil only when the bytes are too short to be a device element at all.
    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 0x20, let options = GUID(onDisk: bytes[0..<0x10]) else { return nil }
        let descriptor = Array(bytes[0x10...])
        if let device = Self.decode(descriptor, options: options), Self.optionsFit(device.device, options) {
            self = device.device
        } else {
            self = .other(bytes)
        }
    }

    /// Only a ramdisk names an options object; another device with one is kept as stored.
    private static func optionsFit(_ device: BCDDevice, _ options: GUID) -> Bool {
        if case let .ramdisk(_, _, named) = device { return named == options }
        return options == .zero
    }

    /// A descriptor at the start of `bytes` and the size it claims; nil when it is not one of
    /// the kinds above or its fields do not fit in it.
    private static func decode(_ bytes: [UInt8], options: GUID?) -> (device: BCDDevice, size: Int)? {
        guard bytes.count >= 0x10 else { return nil }
        let size = Int(bytes.le32(8))
        guard size >= 0x10, size <= bytes.count else { return nil }
        switch bytes.le32(0) {
        case partitionType:
            guard size >= 0x38 else { return nil }
            switch bytes.le32(0x24) {
            case gptStyle:
                guard let partition = GUID(onDisk: bytes[0x10..<0x20]), let disk = GUID(onDisk: bytes[0x28..<0x38]) else { return nil }
                return (.gptPartition(partition: partition, disk: disk), size)
            case mbrStyle:
                return (.mbrPartition(offset: bytes.le64(0x10), signature: bytes.le32(0x28)), size)
            default: return nil
            }
        case bootType:
            return (.boot, size)
        case blockIOType:
            let at = ramdiskFilePathOffset
            guard size >= at + filePathHeaderSize, bytes.le32(0x10) == ramdiskKind,
                  bytes.le32(at) == filePathVersion, bytes.le32(at + 8) == filePathWithDevice else { return nil }
            let filePathSize = Int(bytes.le32(at + 4))
            guard filePathSize >= filePathHeaderSize, at + filePathSize <= size else { return nil }
            let filePath = Array(bytes[(at + filePathHeaderSize)..<(at + filePathSize)])
            guard let (image, imageSize) = decode(filePath, options: nil), imageSize <= filePath.count else { return nil }
            let name = Array(filePath[imageSize...])
            guard name.count % 2 == 0 else { return nil }
            let path = UTF16LE.decode(name).split(separator: "\0", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            // The options GUID sits before the outer descriptor; a nested ramdisk has none.
            return (.ramdisk(image: image, path: path, options: options ?? .zero), size)
        default:
            return nil
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
    /// An element whose format Imprint does not know, or whose data does not fit its format:
    /// the registry value's type and bytes as stored.
    case raw(registryType: UInt32, data: [UInt8])

    var format: BCDElementFormat? {
        switch self {
        case .device: return .device
        case .string: return .string
        case .object: return .object
        case .objectList: return .objectList
        case .integer: return .integer
        case .boolean: return .boolean
        case .integerList: return .integerList
        case .raw: return nil
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
        case let .raw(type, data): return RegistryValue(name: "Element", type: type, data: data)
        }
    }

    /// Reads an element back, checking its stored type and size against its format.
    public static func decode(_ value: RegistryValue, as type: BCDElementType, object: String) throws -> BCDElementValue {
        func bad(_ reason: String) -> BootError { .badElement(object: object, element: type.keyName, reason: reason) }
        guard let format = type.format else { throw bad("unknown data format \((type.rawValue >> 24) & 0xF)") }
        let binary = RegistryValueType.binary.rawValue
        switch format {
        case .device:
            guard value.type == binary, let device = BCDDevice(encoded: value.data) else { throw bad("not a device descriptor (under 32 bytes)") }
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
            // Windows writes 8 bytes, but its media stores hold shorter ones (timeout 30 as 1e,
            // baudrate 115200 as 00 c2 01): the bytes there are the low ones.
            guard value.type == binary, (1...8).contains(value.data.count) else {
                throw bad("expected 1 to 8 bytes of REG_BINARY, found \(value.data.count)")
            }
            return .integer(value.data.reversed().reduce(0) { $0 << 8 | UInt64($1) })
        case .boolean:
            guard value.type == binary, (1...8).contains(value.data.count) else {
                throw bad("expected 1 byte of REG_BINARY, found \(value.data.count)")
            }
            return .boolean(value.data.contains { $0 != 0 })
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
        case .boot:
            return "boot"
        case let .ramdisk(image, path, options):
            return "ramdisk=[\(image)]\(path),\(options.braced)"
        case let .other(bytes):
            return "device hex:" + bytes.map { String(format: "%02x", $0) }.joined(separator: ",")
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
        case let .raw(type, data):
            return "raw (registry type \(type)) hex:" + data.map { String(format: "%02x", $0) }.joined(separator: ",")
        }
    }
}
