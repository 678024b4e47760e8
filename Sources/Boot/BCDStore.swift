import DiskModel
import Foundation
import Primitives
import Registry

/// Well-known BCD object identifiers (bcdedit's aliases), from Microsoft's BCD documentation.
public enum BCDObjectID {
    public static let bootManager = uuid("9dea862c-5cdd-4e70-acc1-f32b344d4795")          // {bootmgr}
    public static let memoryDiagnostic = uuid("b2721d73-1db4-4c62-bf78-c548a880142d")     // {memdiag}
    public static let globalSettings = uuid("7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e")       // {globalsettings}
    public static let resumeLoaderSettings = uuid("1afa9c49-16ab-4a5c-901b-212802da9460") // {resumeloadersettings}
    public static let hypervisorSettings = uuid("7ff607e0-4395-11db-b0de-0800200c9a66")   // {hypervisorsettings}
    public static let debuggerSettings = uuid("4636856e-540f-4170-a130-a84776f4c654")     // {dbgsettings}
    public static let emsSettings = uuid("0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9")          // {emssettings}
    public static let badMemory = uuid("5189b25c-5558-4bf2-bca4-289b11bd29e2")            // {badmemory}
    public static let bootLoaderSettings = uuid("6efb52bf-1766-41db-a6b3-0ee5eff72bd7")   // {bootloadersettings}

    private static func uuid(_ text: String) -> GUID {
        // Literals above are valid GUIDs; the fallback only keeps this free of force-unwraps.
        GUID(text) ?? .zero
    }
}

/// BCD object types: kind (bits 28-31: 1 application, 2 inheritable settings), image or
/// inheritance class (bits 20-23) and application type (bits 0-19).
public enum BCDObjectType {
    public static let bootManager: UInt32 = 0x1010_0002      // firmware application, Windows Boot Manager
    public static let osLoader: UInt32 = 0x1020_0003         // boot application, winload
    public static let resume: UInt32 = 0x1020_0004           // boot application, winresume
    public static let memoryDiagnostic: UInt32 = 0x1020_0005 // boot application, memtest
    public static let inheritAny: UInt32 = 0x2010_0000       // settings any application inherits
    public static let inheritOSLoader: UInt32 = 0x2020_0003  // settings for OS loaders
    public static let inheritResume: UInt32 = 0x2020_0004    // settings for resume applications
    public static let deviceOptions: UInt32 = 0x3000_0000    // device options (a ramdisk's SDI file)
}

public struct BCDObject: Equatable, Sendable {
    public var id: GUID
    public var type: UInt32
    /// In the order written; element types are unique within an object.
    public var elements: [(type: BCDElementType, value: BCDElementValue)]

    public init(id: GUID, type: UInt32, elements: [(BCDElementType, BCDElementValue)]) {
        self.id = id
        self.type = type
        self.elements = elements.map { (type: $0.0, value: $0.1) }
    }

    public subscript(_ type: BCDElementType) -> BCDElementValue? {
        elements.first { $0.type == type }?.value
    }

    public static func == (a: BCDObject, b: BCDObject) -> Bool {
        a.id == b.id && a.type == b.type && a.elements.count == b.elements.count
            && zip(a.elements, b.elements).allSatisfy { $0.type == $1.type && $0.value == $1.value }
    }
}

/// A BCD store: a registry hive whose root has `Description` (KeyName BCD00000000, System,
/// TreatAsSystem) and `Objects\{guid}\Description\Type`, `Objects\{guid}\Elements\XXXXXXXX\Element`.
public struct BCDStore: Equatable, Sendable {
    public var objects: [BCDObject]

    public init(objects: [BCDObject]) { self.objects = objects }

    public subscript(_ id: GUID) -> BCDObject? { objects.first { $0.id == id } }

    public var hive: RegistryKey {
        let description = RegistryKey(name: "Description", values: [
            .string("KeyName", "BCD00000000"), .dword("System", 1), .dword("TreatAsSystem", 1),
        ])
        let objectKeys = objects.map { object in
            RegistryKey(name: object.id.braced, subkeys: [
                RegistryKey(name: "Description", values: [.dword("Type", object.type)]),
                RegistryKey(name: "Elements", subkeys: object.elements.map { element in
                    RegistryKey(name: element.type.keyName, values: [element.value.registryValue])
                }),
            ])
        }
        return RegistryKey(name: "NewStoreRoot", subkeys: [description, RegistryKey(name: "Objects", subkeys: objectKeys)])
    }

    /// The store as a hive file's bytes.
    public func hiveBytes(time: Date = Date()) throws -> [UInt8] {
        try HiveWriter.write(hive, fileName: "BCD", time: time)
    }

    /// Reads a store back from a hive's tree. The store's own structure (Description, Objects,
    /// object keys named by GUIDs with a Type) must be there; an element whose data does not
    /// fit its format, or whose format is unknown, is kept raw (`boot show` prints it in hex):
    /// stores Windows wrote hold elements no document names.
    public init(hive root: RegistryKey) throws {
        // BCD00000000 for the system's store, BCD00000001 in the stores on Windows' media.
        guard let keyName = root.key(at: "Description")?.value("KeyName")?.stringValue, keyName.hasPrefix("BCD") else {
            throw BootError.badStore("the hive has no Description\\KeyName = BCD0000000x: not a BCD store")
        }
        guard let objectsKey = root.subkey("Objects") else { throw BootError.badStore("no Objects key") }
        objects = try objectsKey.subkeys.map { key in
            guard let id = GUID(key.name) else { throw BootError.badStore("object key \(key.name) is not a {GUID}") }
            guard let type = key.key(at: "Description")?.value("Type")?.dwordValue else {
                throw BootError.badStore("object \(key.name) has no Description\\Type")
            }
            let elements = try (key.subkey("Elements")?.subkeys ?? []).map { elementKey -> (BCDElementType, BCDElementValue) in
                guard elementKey.name.count == 8, let raw = UInt32(elementKey.name, radix: 16) else {
                    throw BootError.badElement(object: key.name, element: elementKey.name, reason: "not 8 hex digits")
                }
                let type = BCDElementType(raw)
                guard let value = elementKey.value("Element") else { return (type, .raw(registryType: 0, data: [])) }
                let decoded = try? BCDElementValue.decode(value, as: type, object: key.name)
                return (type, decoded ?? .raw(registryType: value.type, data: value.data))
            }
            return BCDObject(id: id, type: type, elements: elements)
        }
    }

    public init(hiveBytes bytes: [UInt8], file: String) throws {
        try self.init(hive: try Hive(bytes: bytes, file: file).readTree())
    }
}
