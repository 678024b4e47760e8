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

    /// Windows' media stores hold integers shorter than 8 bytes (timeout 30 as `1e`, baud
    /// rate 115200 as `00 c2 01`): the bytes there are the low ones.
    @Test func shortIntegersAsWindowsMediaStoresHoldThem() throws {
        #expect(try BCDElementValue.decode(.binary("Element", [0x1E]), as: .timeout, object: "{x}") == .integer(30))
        #expect(try BCDElementValue.decode(.binary("Element", [0x00, 0xC2, 0x01]), as: .serialDebuggerBaudRate, object: "{x}") == .integer(115_200))
    }

    /// The WinRE ramdisk of a store Windows 10 Setup wrote (Fixtures/win10-uefi-winre.bcd.gz,
    /// object {347518e2-...} element 11000001): `ramdisk=[partition]\Recovery\WindowsRE\Winre.wim,{options}`.
    @Test func ramdiskDeviceMatchesWhatSetupWrote() throws {
        let options = try #require(GUID("347518e3-f3cc-11ea-911e-c7eaa7d84b6c"))
        let partition = try #require(GUID("fb3fd5c6-af83-4c23-9d60-772453d0623d"))
        let disk = try #require(GUID("d148fb7c-be81-4d12-8dcf-62260299abde"))
        let device = BCDDevice.ramdisk(image: .gptPartition(partition: partition, disk: disk), path: "\\Recovery\\WindowsRE\\Winre.wim", options: options)
        let published = hexBytes(
            "e3187534ccf3ea11911ec7eaa7d84b6c0000000001000000b800000000000000030000000000000000000000000000000000"
            + "00000000000001000000900000000500000006000000000000004800000000000000c6d53ffb83af234c9d60772453d0623d"
            + "00000000000000007cfb48d181be124d8dcf62260299abde000000000000000000000000000000005c005200650063006f00"
            + "76006500720079005c00570069006e0064006f0077007300520045005c00570069006e00720065002e00770069006d000000")
        let bytes = device.encoded
        #expect(bytes == published)
        #expect(bytes.count == 0xC8)
        #expect(Array(bytes[0..<16]) == options.onDiskBytes)
        #expect(bytes.le32(0x10) == 0 && bytes.le32(0x14) == 1 && bytes.le32(0x18) == 0xB8 && bytes.le32(0x20) == 3)
        #expect(bytes.le32(0x38) == 1 && bytes.le32(0x3C) == 0x90 && bytes.le32(0x40) == 5)
        #expect(bytes.le32(0x44) == 6 && bytes.le32(0x4C) == 0x48)
        #expect(Array(bytes[0x54..<0x64]) == partition.onDiskBytes && Array(bytes[0x6C..<0x7C]) == disk.onDiskBytes)
        #expect(UTF16LE.decode(Array(bytes[0x8C...])) == "\\Recovery\\WindowsRE\\Winre.wim\0")
        #expect(BCDDevice(encoded: bytes) == device)
        #expect(device.description == "ramdisk=[partition {fb3fd5c6-af83-4c23-9d60-772453d0623d} on GPT disk {d148fb7c-be81-4d12-8dcf-62260299abde}]\\Recovery\\WindowsRE\\Winre.wim,{347518e3-f3cc-11ea-911e-c7eaa7d84b6c}")
    }

    @Test func unknownDevicesStayAsStored() {
        var locate = [UInt8](repeating: 0, count: 0x58)
        locate[0x10] = 8
        locate[0x18] = 0x48
        #expect(BCDDevice(encoded: locate) == .other(locate))
        #expect(BCDDevice(encoded: locate)?.encoded == locate)
    }

    @Test func decodingChecksFormats() {
        #expect(throws: BootError.self) {
            try BCDElementValue.decode(.binary("Element", [UInt8](repeating: 1, count: 9)), as: .timeout, object: "{x}")
        }
        #expect(throws: BootError.self) {
            try BCDElementValue.decode(.dword("Element", 1), as: .applicationPath, object: "{x}")
        }
        #expect(throws: BootError.self) {
            try BCDElementValue.decode(.binary("Element", []), as: .isolatedExecutionContext, object: "{x}")
        }
    }
}

/// "0a1b..." as bytes (test data copied from hive dumps).
func hexBytes(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex, let next = text.index(index, offsetBy: 2, limitedBy: text.endIndex) {
        bytes.append(UInt8(text[index..<next], radix: 16) ?? 0)
        index = next
    }
    return bytes
}
