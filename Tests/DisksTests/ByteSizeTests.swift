import Testing
@testable import DiskModel
@testable import Disks

@Test func byteSizesParse() {
    #expect(ByteSize.parse("64GiB") == 64 << 30)
    #expect(ByteSize.parse("500 MB") == 500_000_000)
    #expect(ByteSize.parse("12") == 12)
    #expect(ByteSize.parse("1.5TiB") == 3 << 39)
    #expect(ByteSize.parse("lots") == nil)
    #expect(ByteSize.parse("-1GiB") == nil)
    #expect(ByteSize.format(260 << 20) == "260 MiB")
}
