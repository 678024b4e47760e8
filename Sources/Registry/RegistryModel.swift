import Primitives

/// A registry value's type, as Windows numbers them (winnt.h REG_*).
public enum RegistryValueType: UInt32, Sendable {
    case none = 0, string = 1, expandString = 2, binary = 3, dword = 4, dwordBigEndian = 5, link = 6,
         multiString = 7, resourceList = 8, fullResourceDescriptor = 9, resourceRequirementsList = 10, qword = 11
}

/// One value: a name ("" is the key's default value), a type and the bytes as stored.
public struct RegistryValue: Equatable, Sendable {
    public var name: String
    /// Raw type number: hives may hold types outside `RegistryValueType`, and they round-trip.
    public var type: UInt32
    public var data: [UInt8]

    public init(name: String, type: UInt32, data: [UInt8]) {
        self.name = name
        self.type = type
        self.data = data
    }

    public init(name: String, type: RegistryValueType, data: [UInt8]) {
        self.init(name: name, type: type.rawValue, data: data)
    }

    /// REG_SZ (or REG_EXPAND_SZ): UTF-16LE with the terminating NUL Windows stores.
    public static func string(_ name: String, _ text: String, type: RegistryValueType = .string) -> RegistryValue {
        RegistryValue(name: name, type: type, data: UTF16LE.encode(text) + [0, 0])
    }

    /// REG_MULTI_SZ: each string NUL-terminated, then one more NUL.
    public static func multiString(_ name: String, _ texts: [String]) -> RegistryValue {
        RegistryValue(name: name, type: .multiString, data: texts.flatMap { UTF16LE.encode($0) + [0, 0] } + [0, 0])
    }

    public static func dword(_ name: String, _ number: UInt32) -> RegistryValue {
        RegistryValue(name: name, type: .dword, data: number.littleEndianBytes)
    }

    public static func binary(_ name: String, _ bytes: [UInt8]) -> RegistryValue {
        RegistryValue(name: name, type: .binary, data: bytes)
    }

    public var knownType: RegistryValueType? { RegistryValueType(rawValue: type) }

    /// The text of a string value, without the trailing NUL(s).
    public var stringValue: String? {
        guard type == RegistryValueType.string.rawValue || type == RegistryValueType.expandString.rawValue
                || type == RegistryValueType.link.rawValue else { return nil }
        var units = UTF16LE.units(data)
        while units.last == 0 { units.removeLast() }
        return String(decoding: units, as: UTF16.self)
    }

    public var multiStringValue: [String]? {
        guard type == RegistryValueType.multiString.rawValue else { return nil }
        var result: [String] = []
        var current: [UInt16] = []
        for unit in UTF16LE.units(data) {
            if unit == 0 {
                if current.isEmpty { break }
                result.append(String(decoding: current, as: UTF16.self))
                current = []
            } else {
                current.append(unit)
            }
        }
        if !current.isEmpty { result.append(String(decoding: current, as: UTF16.self)) }
        return result
    }

    public var dwordValue: UInt32? {
        guard type == RegistryValueType.dword.rawValue, data.count == 4 else { return nil }
        return data.le32(0)
    }
}

/// A key and everything under it. Windows compares key and value names ignoring case.
public struct RegistryKey: Equatable, Sendable {
    public var name: String
    public var className: String?
    public var values: [RegistryValue]
    public var subkeys: [RegistryKey]

    public init(name: String, className: String? = nil, values: [RegistryValue] = [], subkeys: [RegistryKey] = []) {
        self.name = name
        self.className = className
        self.values = values
        self.subkeys = subkeys
    }

    public func subkey(_ name: String) -> RegistryKey? {
        subkeys.first { namesEqual($0.name, name) }
    }

    public func value(_ name: String) -> RegistryValue? {
        values.first { namesEqual($0.name, name) }
    }

    /// The key at `path` below this one (`Objects\{...}\Elements`), case-insensitively.
    public func key(at path: String) -> RegistryKey? {
        var key = self
        for part in keyPathComponents(path) {
            guard let next = key.subkey(part) else { return nil }
            key = next
        }
        return key
    }

    /// Adds or replaces a subkey, keeping names unique as Windows requires.
    public mutating func set(subkey: RegistryKey) {
        if let index = subkeys.firstIndex(where: { namesEqual($0.name, subkey.name) }) {
            subkeys[index] = subkey
        } else {
            subkeys.append(subkey)
        }
    }

    public mutating func set(value: RegistryValue) {
        if let index = values.firstIndex(where: { namesEqual($0.name, value.name) }) {
            values[index] = value
        } else {
            values.append(value)
        }
    }
}

/// `A\B\C` (or `A/B/C`) as its parts, ignoring empty ones.
public func keyPathComponents(_ path: String) -> [String] {
    path.split(whereSeparator: { $0 == "\\" || $0 == "/" }).map(String.init)
}

/// Windows' comparison of registry names: by upper-cased UTF-16 code units.
func namesEqual(_ a: String, _ b: String) -> Bool { upcasedUnits(a) == upcasedUnits(b) }

/// Upper-cases each UTF-16 unit on its own, as the kernel's RtlUpcaseUnicodeChar does; this
/// order is what hash leaves are sorted by.
func upcasedUnits(_ name: String) -> [UInt16] {
    name.utf16.map { unit in
        if unit >= 0x61 && unit <= 0x7A { return unit - 0x20 }
        if unit < 0x80 { return unit }
        guard let scalar = Unicode.Scalar(unit) else { return unit }
        let upper = String(Character(scalar)).uppercased().utf16
        return upper.count == 1 ? upper.first ?? unit : unit
    }
}
