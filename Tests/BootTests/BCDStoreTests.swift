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

/// The store with Windows RE, against what Windows 10 Setup wrote (Fixtures/win10-uefi-winre):
/// the same elements with the same values on the WinRE loader, its options object and the
/// Windows loader, only the GUIDs and partitions being this machine's.
@Suite("BCD store with Windows RE, as Setup and reagentc write it")
struct BCDRecoveryStoreTests {
    static let recoveryPartition = GUID("99999999-8888-4777-8666-555555555555") ?? .zero
    static let winre = GUID("0D7A4A36-4B1F-4B8D-9C84-61C2D3A7E003") ?? .zero
    static let options = GUID("0D7A4A36-4B1F-4B8D-9C84-61C2D3A7E004") ?? .zero

    static func configuration(_ firmware: Firmware = .uefi) -> BootConfiguration {
        var configuration = BCDStoreTests.configuration()
        configuration.firmware = firmware
        configuration.locale = "en-US"  // the fixture's locale
        configuration.recovery = RecoveryEnvironment(partition: .gptPartition(partition: recoveryPartition, disk: BCDStoreTests.disk),
                                                     partitionOffset: 1 << 20, loaderID: winre, optionsID: options)
        return configuration
    }

    @Test(arguments: Firmware.allCases) func readsBackWithHivex(_ firmware: Firmware) throws {
        let scratch = ScratchDirectory()
        let store = BCDBuilder.store(Self.configuration(firmware))
        let path = scratch.sub("BCD")
        let bytes = try store.hiveBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try BCDStoreTests.checkWithHivex(path, store)
        #expect(try BCDStore(hiveBytes: bytes, file: path) == canonical(store))
        let winre = try #require(store[Self.winre])
        #expect(winre[.applicationPath] == .string("\\windows\\system32\\winload.\(firmware == .uefi ? "efi" : "exe")"))
        // hivexget gives the ramdisk device's bytes as stored.
        let device = try run(["hivexget", path, "\\Objects\\\(Self.winre.braced)\\Elements\\11000001", "Element"]).output
        #expect(!device.isEmpty)
    }

    @Test func sameElementsAndValuesAsSetupWrote() throws {
        let scratch = ScratchDirectory()
        let fixture = try BCDFixtureTests.fixture("win10-uefi-winre", scratch)
        let windows = try BCDStore(hiveBytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture))), file: fixture)
        let ours = BCDBuilder.store(Self.configuration())
        // Windows' GUIDs in its store, ours in ours.
        let theirWinRE = try #require(windows.objects.first { $0[.winPE] == .boolean(true) })
        guard case let .objectList(sequence)? = windows.objects.first(where: { $0.id != theirWinRE.id && $0[.recoverySequence] != nil })?[.recoverySequence] else {
            Issue.record("no recoverysequence in Windows' store"); return
        }
        #expect(sequence == [theirWinRE.id])
        guard case let .device(.ramdisk(theirImage, theirPath, theirOptions))? = theirWinRE[.applicationDevice] else {
            Issue.record("Windows' WinRE device is no ramdisk"); return
        }
        let ourWinRE = try #require(ours[Self.winre])
        func comparable(_ object: BCDObject, ramdisk: BCDDevice, partition: BCDDevice, options: GUID) -> [String: String] {
            Dictionary(uniqueKeysWithValues: object.elements.map { element -> (String, String) in
                var text = element.value.description.lowercased()
                text = text.replacingOccurrences(of: ramdisk.description.lowercased(), with: "RAMDISK")
                text = text.replacingOccurrences(of: partition.description.lowercased(), with: "PARTITION")
                text = text.replacingOccurrences(of: options.braced.lowercased(), with: "OPTIONS")
                return (element.type.keyName, text)
            })
        }
        let ourRamdisk = Self.configuration().recovery?.ramdisk ?? .boot
        let ourPartition = BCDDevice.gptPartition(partition: Self.recoveryPartition, disk: BCDStoreTests.disk)
        let theirRamdisk = BCDDevice.ramdisk(image: theirImage, path: theirPath, options: theirOptions)
        #expect(comparable(ourWinRE, ramdisk: ourRamdisk, partition: ourPartition, options: Self.options)
                == comparable(theirWinRE, ramdisk: theirRamdisk, partition: theirImage, options: theirOptions))
        let theirOptionsObject = try #require(windows[theirOptions])
        let ourOptionsObject = try #require(ours[Self.options])
        #expect(theirOptionsObject.type == BCDObjectType.deviceOptions && ourOptionsObject.type == BCDObjectType.deviceOptions)
        #expect(comparable(ourOptionsObject, ramdisk: ourRamdisk, partition: ourPartition, options: Self.options)
                == comparable(theirOptionsObject, ramdisk: theirRamdisk, partition: theirImage, options: theirOptions))
        // The Windows loader: recoverysequence, recoveryenabled, displaymessageoverride as Windows has them.
        let theirLoader = try #require(windows.objects.first { $0.type == BCDObjectType.osLoader && $0.id != theirWinRE.id })
        let ourLoader = try #require(ours[BCDStoreTests.loader])
        for type in [BCDElementType.recoveryEnabled, .displayMessageOverride] {
            #expect(ourLoader[type] == theirLoader[type], "\(type)")
        }
        #expect(ourLoader[.recoverySequence] == .objectList([Self.winre]))
    }

    @Test func reagentXMLNamesTheLoaderAndPartition() throws {
        let recovery = try #require(Self.configuration().recovery)
        let xml = try #require(ReAgentXML(recovery))
        #expect(Array(xml.bytes.prefix(3)) == [0xEF, 0xBB, 0xBF])
        #expect(xml.text.hasPrefix("<?xml version='1.0' encoding='utf-8'?>\n\n<WindowsRE version=\"2.0\">\n"))
        #expect(xml.text.contains("  <WinreBCD id=\"{0d7a4a36-4b1f-4b8d-9c84-61c2d3a7e003}\"/>\n"))
        #expect(xml.text.contains("  <WinreLocation path=\"\\Recovery\\WindowsRE\" id=\"0\" offset=\"1048576\" guid=\"\(BCDStoreTests.disk.braced)\"/>\n"))
        #expect(xml.text.contains("  <InstallState state=\"1\"/>\n"))
        let mbr = try #require(ReAgentXML(RecoveryEnvironment(partition: .mbrPartition(offset: 5 << 20, signature: 0xB3EB_A8F1), partitionOffset: 5 << 20)))
        #expect(mbr.text.contains("id=\"3018565873\" offset=\"5242880\" guid=\"{00000000-0000-0000-0000-000000000000}\""))
        // xmllint (libxml2) parses it.
        let scratch = ScratchDirectory()
        try Data(xml.bytes).write(to: URL(fileURLWithPath: scratch.sub("ReAgent.xml")))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/xmllint") {
            try run(["xmllint", "--noout", scratch.sub("ReAgent.xml")])
        }
    }
}
