import Foundation
@testable import Boot
import Primitives
import Registry
import Testing

/// Each element format's encoding against publicly documented examples (Microsoft's
/// BcdElementType and the BCD store as bcdedit /export writes it; Misty Projects' and
/// Geoff Chappell's dumps of device elements).
@Suite("BCD element encodings")
struct BCDElementTests {
    @Test func elementTypeFields() {
        // 0x11000001 BcdLibraryDevice_ApplicationDevice: class 1 (library), format 1 (device).
        #expect(BCDElementType.applicationDevice.format == .device)
        #expect(BCDElementType.applicationPath.format == .string)
        #expect(BCDElementType.defaultObject.format == .object)
        #expect(BCDElementType.displayOrder.format == .objectList)
        #expect(BCDElementType.timeout.format == .integer)
        #expect(BCDElementType.isolatedExecutionContext.format == .boolean)
        #expect(BCDElementType.allowedInMemorySettings.format == .integerList)
        #expect(BCDElementType.bootMenuPolicy.keyName == "250000C2")
        #expect(BCDElementType.applicationDevice.keyName == "11000001")
    }

    @Test func stringIsRegSzWithNul() {
        let value = BCDElementValue.string("\\Windows").registryValue
        #expect(value.name == "Element" && value.type == RegistryValueType.string.rawValue)
        #expect(value.data == Array("\\Windows".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } + [0, 0])
    }

    @Test func objectIsBracedLowerCaseGuid() {
        let value = BCDElementValue.object(BCDObjectID.memoryDiagnostic).registryValue
        #expect(value.stringValue == "{b2721d73-1db4-4c62-bf78-c548a880142d}")
    }

    @Test func objectListIsMultiSz() {
        let value = BCDElementValue.objectList([BCDObjectID.globalSettings, BCDObjectID.hypervisorSettings]).registryValue
        #expect(value.type == RegistryValueType.multiString.rawValue)
        #expect(value.multiStringValue == ["{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}", "{7ff607e0-4395-11db-b0de-0800200c9a66}"])
    }

    @Test func integerIsEightBytesLittleEndian() {
        // timeout 30 as bcdedit /export shows it: hex:1e,00,00,00,00,00,00,00
        let value = BCDElementValue.integer(30).registryValue
        #expect(value.type == RegistryValueType.binary.rawValue)
        #expect(value.data == [0x1E, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func booleanIsOneByte() {
        #expect(BCDElementValue.boolean(true).registryValue.data == [1])
        #expect(BCDElementValue.boolean(false).registryValue.data == [0])
    }

    @Test func integerListIsEightBytesEach() {
        // allowedinmemorysettings 0x15000075: hex:75,00,00,15,00,00,00,00
        #expect(BCDElementValue.integerList([0x1500_0075]).registryValue.data == [0x75, 0, 0, 0x15, 0, 0, 0, 0])
    }

    /// Misty Projects' dump of `partition=C:` on an MBR disk (Windows 8.1): offset 0x15f00000,
    /// disk signature 0xb3eba8f1.
    @Test func mbrPartitionDeviceMatchesPublishedDump() throws {
        let published: [UInt8] = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x15, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xf1, 0xa8, 0xeb, 0xb3,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]
        let device = BCDDevice.mbrPartition(offset: 0x15F0_0000, signature: 0xB3EB_A8F1)
        #expect(device.encoded == published)
        #expect(BCDDevice(encoded: published) == device)
    }

    /// GPT: the same 88-byte descriptor, partition GUID at 0x20, style 0 at 0x34, disk GUID at
    /// 0x38, both GUIDs in Windows' byte order (first three fields little-endian).
    @Test func gptPartitionDeviceLayout() throws {
        let partition = try #require(GUID("11223344-5566-7788-99AA-BBCCDDEEFF00"))
        let disk = try #require(GUID("A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90"))
        let bytes = BCDDevice.gptPartition(partition: partition, disk: disk).encoded
        #expect(bytes.count == 0x58)
        #expect(Array(bytes[0..<0x10]) == [UInt8](repeating: 0, count: 16))
        #expect(Array(bytes[0x10..<0x1C]) == [6, 0, 0, 0, 0, 0, 0, 0, 0x48, 0, 0, 0])
        #expect(Array(bytes[0x20..<0x30]) == [0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x88, 0x77, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00])
        #expect(Array(bytes[0x30..<0x38]) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[0x38..<0x48]) == [0xD4, 0xC3, 0xB2, 0xA1, 0xF6, 0xE5, 0x18, 0x07, 0x29, 0x3A, 0x4B, 0x5C, 0x6D, 0x7E, 0x8F, 0x90])
        #expect(Array(bytes[0x48..<0x58]) == [UInt8](repeating: 0, count: 16))
        #expect(BCDDevice(encoded: bytes) == .gptPartition(partition: partition, disk: disk))
    }

    @Test func decodingChecksFormats() {
        #expect(throws: BootError.self) {
            try BCDElementValue.decode(.binary("Element", [1, 2]), as: .timeout, object: "{x}")
        }
        #expect(throws: BootError.self) {
            try BCDElementValue.decode(.dword("Element", 1), as: .applicationPath, object: "{x}")
        }
        #expect(throws: BootError.self) {
            try BCDElementValue.decode(.binary("Element", [0, 1]), as: .isolatedExecutionContext, object: "{x}")
        }
    }
}
