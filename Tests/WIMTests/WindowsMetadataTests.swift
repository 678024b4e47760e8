import Foundation
import TestSupport
import Testing
import CImprintSystem
@testable import Apply
@testable import WIM

/// A WIM captured by wimlib from a real NTFS volume carries what Windows has and POSIX lacks:
/// named streams, DOS names, attributes, security descriptors. Applied to a directory, each is
/// kept in a `user.wim.*` extended attribute or listed in the summary, never dropped silently.
@Suite(.serialized)
struct WindowsMetadataTests {
    @Test func ntfsMetadataIsKeptInXattrs() throws {
        let scratch = ScratchDirectory()
        let volume = scratch.sub("vol.img"), mount = scratch.sub("mnt")
        try run(["truncate", "-s", "32M", volume])
        try run(["mkfs.ntfs", "-F", "-Q", volume])
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try run(["ntfs-3g", "-o", "streams_interface=windows", volume, mount])
        do {
            try write(Array("main data".utf8), to: mount + "/Dir/file.txt")
            try write(Array("[ZoneTransfer]\nZoneId=3".utf8), to: mount + "/Dir/file.txt:Zone.Identifier")
            try write(Array("hello".utf8), to: mount + "/LongFileName.txt")
            try run(["setfattr", "-n", "system.ntfs_dos_name", "-v", "LONGFI~1.TXT", mount + "/LongFileName.txt"])
            try run(["setfattr", "-n", "system.ntfs_attrib_be", "-v", "0x00000023", mount + "/LongFileName.txt"])
        }
        try run(["umount", mount])
        let wim = scratch.sub("ntfs.wim")
        try run(["wimlib-imagex", "capture", volume, wim, "NTFS volume"])

        let target = scratch.sub("out")
        let result = try run([imprintBinary, "wim", "apply", wim, "1", target, "--progress", "none"])
        #expect(try String(contentsOfFile: target + "/Dir/file.txt", encoding: .utf8) == "main data")
        #expect(xattr(target + "/Dir/file.txt", "user.wim.stream.Zone.Identifier") == Array("[ZoneTransfer]\nZoneId=3".utf8))
        #expect(xattr(target + "/LongFileName.txt", "user.wim.dos_name") == Array("LONGFI~1.TXT".utf8))
        #expect(xattr(target + "/LongFileName.txt", "user.wim.attributes") == Array("23".utf8))
        // The security descriptor is the one the WIM holds for that file, byte for byte.
        let archive = try WIMArchive(path: wim)
        let meta = try archive.metadata(image: 1)
        let entry = try #require(meta.entries.first { $0.name == "LongFileName.txt" })
        #expect(entry.securityID >= 0)
        #expect(xattr(target + "/LongFileName.txt", "user.wim.security_descriptor") == meta.securityDescriptors[Int(entry.securityID)])
        #expect(result.output.contains("user.wim.* extended attributes"))

        // A named stream too large for an xattr is listed, not dropped silently.
        try run(["ntfs-3g", "-o", "streams_interface=windows", volume, mount])
        try write(testBytes(20_000, seed: 1), to: mount + "/Dir/file.txt:big")
        try run(["umount", mount])
        let wim2 = scratch.sub("ntfs2.wim")
        try run(["wimlib-imagex", "capture", volume, wim2])
        let second = try run([imprintBinary, "wim", "apply", wim2, "1", scratch.sub("out2"), "--progress", "none"])
        #expect(second.output.contains("named stream larger than an extended attribute can hold"))
        #expect(second.output.contains("/Dir/file.txt:big"))
    }
}
