import Foundation
@testable import Boot
import Primitives
import Registry
import TestSupport
import Testing

@Suite("BCD store as bcdboot writes it, read back by hivex")
struct BCDStoreTests {
    static let disk = GUID("6F3C0A4E-1D2B-4C5D-8E9F-0A1B2C3D4E5F") ?? .zero
    static let esp = GUID("11111111-2222-4333-8444-555555555555") ?? .zero
    static let windows = GUID("AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE") ?? .zero
    static let loader = GUID("0D7A4A36-4B1F-4B8D-9C84-61C2D3A7E001") ?? .zero
    static let resume = GUID("0D7A4A36-4B1F-4B8D-9C84-61C2D3A7E002") ?? .zero

    static func configuration() -> BootConfiguration {
        BootConfiguration(firmware: .uefi, systemPartition: .gptPartition(partition: esp, disk: disk),
                          windowsPartition: .gptPartition(partition: windows, disk: disk), locale: "de-DE",
                          timeout: 5, osDescription: "Windows 11", loaderID: loader, resumeID: resume)
    }

    /// Every object and every element, as hivex reads them, equals what we meant to write.
    static func checkWithHivex(_ path: String, _ store: BCDStore, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try hivexsh(path, ["cd \\Description", "lsval"]).sorted()
                == ["\"KeyName\"=\"BCD00000000\"", "\"System\"=dword:00000001", "\"TreatAsSystem\"=dword:00000001"],
                sourceLocation: sourceLocation)
        let objectKeys = try hivexsh(path, ["cd \\Objects", "ls"])
        #expect(objectKeys.sorted() == store.objects.map { $0.id.braced }.sorted(), sourceLocation: sourceLocation)
        for object in store.objects {
            let key = "\\Objects\\" + object.id.braced
            #expect(try hivexsh(path, ["cd \(key)\\Description", "lsval"]) == [String(format: "\"Type\"=dword:%08x", object.type)],
                    sourceLocation: sourceLocation)
            let elementKeys = try hivexsh(path, ["cd \(key)\\Elements", "ls"])
            #expect(elementKeys == object.elements.map(\.type.keyName).sorted(), "\(key)", sourceLocation: sourceLocation)
            guard !object.elements.isEmpty else { continue }
            let lines = try hivexsh(path, object.elements.flatMap { ["cd \(key)\\Elements\\\($0.type.keyName)", "lsval"] })
            #expect(lines == object.elements.map { hivexLine($0.value.registryValue) }, "\(key)", sourceLocation: sourceLocation)
        }
    }

    @Test func uefiStoreReadsBackWithHivexAndOurReader() throws {
        let scratch = ScratchDirectory()
        let store = BCDBuilder.store(Self.configuration())
        let path = scratch.sub("BCD")
        let bytes = try store.hiveBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try Self.checkWithHivex(path, store)
        try run(["hivexml", path])
        #expect(try BCDStore(hiveBytes: bytes, file: path) == canonical(store))
    }

    @Test func storeHoldsWhatBcdbootWrites() throws {
        let store = BCDBuilder.store(Self.configuration())
        let ids = Set(store.objects.map(\.id))
        // Every object another object names exists.
        for object in store.objects {
            for element in object.elements {
                switch element.value {
                case let .object(id): #expect(ids.contains(id), "\(object.id) \(element.type) names a missing object")
                case let .objectList(list): for id in list { #expect(ids.contains(id), "\(object.id) \(element.type) names a missing object") }
                default: break
                }
            }
        }
        let manager = try #require(store[BCDObjectID.bootManager])
        #expect(manager.type == 0x1010_0002)
        #expect(manager[.applicationPath] == .string("\\EFI\\Microsoft\\Boot\\bootmgfw.efi"))
        #expect(manager[.applicationDevice] == .device(.gptPartition(partition: Self.esp, disk: Self.disk)))
        #expect(manager[.defaultObject] == .object(Self.loader))
        #expect(manager[.displayOrder] == .objectList([Self.loader]))
        #expect(manager[.toolsDisplayOrder] == .objectList([BCDObjectID.memoryDiagnostic]))
        #expect(manager[.timeout] == .integer(5))
        #expect(manager[.preferredLocale] == .string("de-DE"))
        let loader = try #require(store[Self.loader])
        #expect(loader.type == 0x1020_0003)
        #expect(loader[.applicationPath] == .string("\\Windows\\system32\\winload.efi"))
        #expect(loader[.applicationDevice] == .device(.gptPartition(partition: Self.windows, disk: Self.disk)))
        #expect(loader[.osDevice] == .device(.gptPartition(partition: Self.windows, disk: Self.disk)))
        #expect(loader[.systemRoot] == .string("\\Windows"))
        #expect(loader[.nxPolicy] == .integer(0))
        #expect(loader[.description] == .string("Windows 11"))
        #expect(store[Self.resume]?[.applicationPath] == .string("\\Windows\\system32\\winresume.efi"))
        #expect(store[BCDObjectID.memoryDiagnostic]?[.applicationPath] == .string("\\EFI\\Microsoft\\Boot\\memtest.efi"))
    }

    @Test func notAStoreIsRefused() throws {
        let bytes = try HiveWriter.write(RegistryKey(name: "R", subkeys: [RegistryKey(name: "Objects")]))
        #expect(throws: BootError.self) { try BCDStore(hiveBytes: bytes, file: "BCD") }
    }
}
