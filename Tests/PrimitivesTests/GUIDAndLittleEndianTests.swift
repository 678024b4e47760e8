import Primitives
import Testing

@Suite("GUIDs in text and on disk; little-endian fields")
struct GUIDAndLittleEndianTests {
    static let espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

    @Test func textAndOnDiskForms() throws {
        let guid = try #require(GUID(Self.espType))
        #expect(guid.description == Self.espType)
        #expect(guid.bytes == [0xC1, 0x2A, 0x73, 0x28, 0xF8, 0x1F, 0x11, 0xD2, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B])
        // GPT and BCD store the first three groups little-endian.
        #expect(guid.onDiskBytes == [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B])
        #expect(GUID(onDisk: guid.onDiskBytes) == guid)
        #expect(GUID(onDisk: guid.onDiskBytes[0..<15]) == nil)
        #expect(guid.braced == "{c12a7328-f81f-11d2-ba4b-00a0c93ec93b}")
        #expect(GUID(guid.braced) == guid)
        #expect(GUID(Self.espType.lowercased()) == guid)
    }

    @Test func malformedTextIsNil() {
        for text in ["", "{}", "C12A7328F81F11D2BA4B00A0C93EC93B", "C12A7328-F81F-11D2-BA4B-00A0C93EC93", "G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                     "C12A7328-F81F-11D2-BA4B-00A0C93EC9é", "{C12A7328-F81F-11D2-BA4B-00A0C93EC93B", " C12A7328-F81F-11D2-BA4B-00A0C93EC93B"] {
            #expect(GUID(text) == nil, "\(text)")
        }
        #expect(GUID(bytes: [1, 2, 3]) == nil)
    }

    @Test func randomGUIDsAreVersion4() {
        let guid = GUID.random()
        #expect(guid.bytes[6] >> 4 == 4)
        #expect(guid.bytes[8] >> 6 == 2)
        #expect(guid != GUID.random())
    }

    @Test func integerFields() {
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.put(UInt16(0x0102), at: 0)
        bytes.put(UInt32(0x0304_0506), at: 2)
        bytes.put(UInt64(0x0708_090A_0B0C_0D0E), at: 6)
        #expect(bytes == [0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08, 0x07, 0, 0])
        #expect(bytes.le16(0) == 0x0102)
        #expect(bytes.le32(2) == 0x0304_0506)
        #expect(bytes.le64(6) == 0x0708_090A_0B0C_0D0E)
        bytes.withUnsafeBytes { raw in
            #expect(raw.le16(0) == 0x0102)
            #expect(raw.le32(2) == 0x0304_0506)
            #expect(raw.le64(6) == 0x0708_090A_0B0C_0D0E)
        }
        #expect(Int32(-2).littleEndianBytes == [0xFE, 0xFF, 0xFF, 0xFF])
        bytes.put([0xAA, 0xBB], at: 14)
        #expect(bytes.suffix(2) == [0xAA, 0xBB])
    }

    @Test func utf16LittleEndian() {
        let name = "Prg😀é"
        let encoded = UTF16LE.encode(name)
        #expect(encoded.prefix(4) == [0x50, 0x00, 0x72, 0x00])
        #expect(encoded.count == 12)
        #expect(UTF16LE.decode(encoded) == name)
        #expect(UTF16LE.decode(encoded[2...]) == "rg😀é")
        #expect(UTF16LE.units(encoded + [0x41]) == Array(name.utf16))
        #expect(UTF16LE.units([UInt8]()) == [])
        // An unpaired surrogate is shown, not refused.
        #expect(UTF16LE.decode([0x3D, 0xD8, 0x41, 0x00]) == "\u{FFFD}A")
        #expect(UTF16LE.decode(storedUnits: UTF16LE.storedUnits(name)) == name)
    }
}
