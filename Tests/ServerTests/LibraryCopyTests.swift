import Foundation
import Server
import TestSupport
import Testing

/// A servicing job copies the version it starts from: a reflink where the filesystem shares
/// blocks (XFS here, on a loop device), so the copy takes no room until it changes; a copy in
/// the kernel elsewhere (ext4).
@Suite("the library copies a version", .serialized)
struct LibraryCopyTests {
    @Test func aReflinkOnXFSAndAKernelCopyElsewhere() throws {
        let scratch = ScratchDirectory()
        let disk = try LoopDisk(scratch, "xfs", size: 400 << 20)
        try run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", disk.device])
        let mountPoint = scratch.sub("xfs")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run(["mount", disk.device, mountPoint])
        defer { _ = try? run(["umount", mountPoint], allowFailure: true) }
        let bytes = Data((0..<(64 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) })
        try bytes.write(to: URL(fileURLWithPath: mountPoint + "/v1.wim"))
        try run(["sync"])
        func free(_ path: String) -> UInt64 {
            var info = statvfs()
            statvfs(path, &info)
            return UInt64(info.f_bavail) * UInt64(info.f_frsize)
        }
        let before = free(mountPoint)
        try LibraryWork.copyFile(mountPoint + "/v1.wim", to: mountPoint + "/v2.wim")
        try run(["sync"])
        #expect(FileManager.default.contents(atPath: mountPoint + "/v2.wim") == bytes)
        #expect(before - free(mountPoint) < 4 << 20, "the copy took \(before - free(mountPoint)) bytes: not a reflink")

        // ext4 (the scratch folder): no reflink, a whole copy.
        let plain = scratch.sub("plain.wim")
        try bytes.write(to: URL(fileURLWithPath: plain))
        try LibraryWork.copyFile(plain, to: plain + ".copy")
        #expect(FileManager.default.contents(atPath: plain + ".copy") == bytes)
    }
}
