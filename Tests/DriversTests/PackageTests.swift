import Foundation
import Testing
import TestSupport
@testable import Drivers

@Suite struct PackageTests {
    let amd64 = TargetOS(architecture: .amd64)
    static let longFolder = String(repeating: "a-very-long-folder-name-", count: 3) + "/"
        + String(repeating: "another-long-folder-name", count: 3)

    @Test func sanitizedNames() {
        #expect(DriverSource.sanitize("Intel/NIC I219") == "Intel-NIC-I219")
        #expect(DriverSource.sanitize("../..//Dell: Audio (Realtek)") == "Dell-Audio-Realtek")
        #expect(DriverSource.sanitize("..") == "package")
    }

    @Test func installPlanCopiesTheWholePackageAndWarnsAboutMissingFiles() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeShare(at: scratch.sub("share"))
        let packages = try DriverSource.local(scratch.sub("share"))
        let nic = try #require(packages.first { $0.name == "Intel-NIC-I219" })
        let plan = try DriverInstallPlan.make(for: nic, target: amd64)
        // readme.txt is named by no INF, and is copied anyway.
        #expect(plan.files.map(\.destination) == Fixtures.nicFiles.sorted().map { "Drivers/Intel-NIC-I219/\($0)" })
        #expect(plan.files.allSatisfy { FileManager.default.fileExists(atPath: $0.source) && $0.source.hasPrefix(nic.root + "/") })
        #expect(plan.warnings.isEmpty)

        let old = try #require(packages.first { $0.name == "Intel-NIC-old" })
        let oldPlan = try DriverInstallPlan.make(for: old, target: amd64)
        #expect(oldPlan.warnings.count == 3)
        #expect(oldPlan.warnings.first?.contains("x64/e1d68x64.sys is named by the INF but missing") == true)

        let usb = try #require(packages.first { $0.name == "Logitech-Receiver" })
        #expect(try DriverInstallPlan.make(for: usb, target: amd64).warnings.map { $0.contains("logi_receiver.cat") } == [true])

        // File names differ only in case from what the INF says: fine on Windows, so no warning.
        let reader = try #require(packages.first { $0.name == "Realtek-CardReader" })
        #expect(reader.infs.first?.encoding == .utf16LE)
        #expect(try DriverInstallPlan.make(for: reader, target: amd64).warnings.isEmpty)
    }

    @Test func aBrokenINFDoesNotSinkTheShare() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeShare(at: scratch.sub("share"))
        try Fixtures.write("[Version]\nSignature=\"$WINDOWS NT$\"\nProvider=\"Contoso\n", to: scratch.sub("share/Contoso/Broken/bad.INF"))
        try Fixtures.makeSysfs(at: scratch.sub("sys"))
        let packages = try DriverSource.local(scratch.sub("share"))
        let broken = try #require(packages.first { $0.name == "Contoso-Broken" })
        #expect(broken.infs.isEmpty)
        #expect(broken.problems.map(\.description) == [scratch.sub("share/Contoso/Broken/bad.INF") + ":3: unterminated quoted string"])
        let result = DriverMatcher.match(devices: DeviceIDs.scan(sysfsRoot: scratch.sub("sys")), packages: packages, architecture: .amd64)
        #expect(result.matches.count == 6)
        #expect(result.problems.map(\.line) == [3])
    }

    @Test func plansForMatchesOncePerPackage() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeSysfs(at: scratch.sub("sys"))
        try Fixtures.makeShare(at: scratch.sub("share"))
        let result = DriverMatcher.match(devices: DeviceIDs.scan(sysfsRoot: scratch.sub("sys")),
                                         packages: try DriverSource.local(scratch.sub("share")), architecture: .amd64)
        let plans = try DriverInstallPlan.make(for: result.matches, target: amd64)
        // Two SATA controllers share the AHCI package; it is copied once.
        #expect(plans.map(\.package.name) == ["Storage-AHCI", "Intel-NIC-I219", "Realtek-CardReader", "Logitech-Receiver"])
    }

    @Test(arguments: ["gnu", "pax", "ustar"])
    func tarXZBundleIsExtractedAndMatched(format: String) throws {
        let scratch = ScratchDirectory()
        let share = scratch.sub("share")
        try Fixtures.makeShare(at: share)
        try Fixtures.makeSysfs(at: scratch.sub("sys"))
        // Past ustar's 100-byte name field: GNU writes ././@LongLink, pax a `path` record,
        // ustar splits it into prefix and name.
        let deep = "Intel/NIC I219/x64/\(Self.longFolder)/e1d.dat"
        try Fixtures.write(String(repeating: "0123456789", count: 2000), to: share + "/" + deep)
        try run(["tar", "--format=\(format)", "-C", share, "-cf", scratch.sub("drivers.tar"), "."])
        try run(["xz", "-T1", scratch.sub("drivers.tar")])

        let packages = try DriverSource.bundle(scratch.sub("drivers.tar.xz"), scratch: scratch.sub("extracted"))
        #expect(packages.count == 6)
        let extracted = try String(contentsOfFile: scratch.sub("extracted/") + deep, encoding: .utf8)
        #expect(extracted.count == 20000)
        let result = DriverMatcher.match(devices: DeviceIDs.scan(sysfsRoot: scratch.sub("sys")), packages: packages, architecture: .amd64)
        #expect(result.matches.count == 6)
        let nic = try #require(result.matches.first { $0.package.name == "Intel-NIC-I219" })
        let plan = try DriverInstallPlan.make(for: nic.package, target: amd64)
        #expect(plan.files.contains { $0.destination == "Drivers/Intel-NIC-I219/x64/\(Self.longFolder)/e1d.dat" })
        #expect(plan.warnings.isEmpty)
    }

    /// A ustar member written by hand, for what `tar` itself will not produce.
    static func member(_ name: String, type: Character, body: String = "", link: String = "") -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, _ offset: Int) { for (i, byte) in text.utf8.enumerated() { header[offset + i] = byte } }
        put(name, 0)
        put("0000644", 100); put("0000000", 108); put("0000000", 116)
        put(String(format: "%011o", body.utf8.count), 124)
        put("14712345670", 136)
        put("        ", 148)
        put(String(type), 156)
        put(link, 157)
        put("ustar", 257); put("00", 263)
        put(String(format: "%06o", header.reduce(0) { $0 + Int($1) }), 148)
        header[154] = 0; header[155] = 0x20
        var data = Array(body.utf8)
        data += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        return header + data
    }

    @Test(arguments: [
        ("../evil.inf", Character("0"), "'../evil.inf' has a '..' component"),
        ("drivers/../../evil.sys", Character("0"), "'drivers/../../evil.sys' has a '..' component"),
        ("/etc/evil.inf", Character("0"), "'/etc/evil.inf' has an absolute path"),
        ("drivers/link", Character("2"), "'drivers/link' is a symbolic link"),
        ("drivers/hard", Character("1"), "'drivers/hard' is a hard link"),
        ("drivers/null", Character("3"), "'drivers/null' is a device"),
    ])
    func hostileMembersAreRejected(name: String, type: Character, expected: String) throws {
        let scratch = ScratchDirectory()
        let archive = Self.member("drivers/", type: "5") + Self.member("drivers/ok.inf", type: "0", body: "[Version]\n")
            + Self.member(name, type: type, body: type == "0" ? "owned" : "", link: type == "0" ? "" : "/etc/passwd")
            + [UInt8](repeating: 0, count: 1024)
        try Data(archive).write(to: URL(fileURLWithPath: scratch.sub("evil.tar")))
        try run(["xz", scratch.sub("evil.tar")])
        do {
            _ = try DriverSource.bundle(scratch.sub("evil.tar.xz"), scratch: scratch.sub("out"))
            Issue.record("\(name) was accepted")
        } catch let error as DriverSourceError {
            #expect(error.description.contains(expected), "\(error)")
            #expect(error.description.hasPrefix(scratch.sub("evil.tar.xz")))
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("evil.inf")))
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("out/drivers/link")))
    }

    @Test func truncatedAndCorruptBundles() throws {
        let scratch = ScratchDirectory()
        var archive = Self.member("a.inf", type: "0", body: String(repeating: "x", count: 2000))
        archive = Array(archive.prefix(1024))
        try Data(archive).write(to: URL(fileURLWithPath: scratch.sub("short.tar")))
        try run(["xz", scratch.sub("short.tar")])
        #expect(throws: DriverSourceError.self) { try DriverSource.extractTarXZ(scratch.sub("short.tar.xz"), into: scratch.sub("o1")) }

        var corrupt = Self.member("a.inf", type: "0", body: "x") + [UInt8](repeating: 0, count: 1024)
        corrupt[0] = UInt8(ascii: "b")  // checksum no longer matches
        try Data(corrupt).write(to: URL(fileURLWithPath: scratch.sub("bad.tar")))
        try run(["xz", scratch.sub("bad.tar")])
        #expect(throws: DriverSourceError.self) { try DriverSource.extractTarXZ(scratch.sub("bad.tar.xz"), into: scratch.sub("o2")) }
    }

    /// What is beside `directory` whose name starts with its own (a partial extraction).
    func leftovers(of directory: String) throws -> [String] {
        let parent = (directory as NSString).deletingLastPathComponent
        let name = (directory as NSString).lastPathComponent
        return try FileManager.default.contentsOfDirectory(atPath: parent).filter { $0.hasPrefix(name) }
    }

    /// A bundle of a few KB that expands to 24 MiB (zeros compress to nothing) stops at the
    /// cap, names the bundle and the limit, and leaves nothing behind.
    @Test func aBundleExpandingPastTheCapIsRefusedAndRemoved() throws {
        let scratch = ScratchDirectory()
        let share = scratch.sub("share")
        try Fixtures.makeShare(at: share)
        try run(["truncate", "-s", "24M", share + "/Intel/NIC I219/x64/padding.bin"])
        try run(["tar", "-C", share, "-cf", scratch.sub("bomb.tar"), "."])
        try run(["xz", "-T1", scratch.sub("bomb.tar")])
        let size = try #require(try FileManager.default.attributesOfItem(atPath: scratch.sub("bomb.tar.xz"))[.size] as? Int)
        #expect(size < 100_000)
        #expect {
            _ = try DriverSource.bundle(scratch.sub("bomb.tar.xz"), scratch: scratch.sub("out"), limits: ExtractionLimits(maxBytes: 8 << 20))
        } throws: { error in
            guard case let ExtractionError.tooLarge(archive, limit, _) = error else { return false }
            let text = "\(error)"
            return archive == scratch.sub("bomb.tar.xz") && limit == 8 << 20 && text.contains("8 MiB") && text.contains("nothing of it was kept")
        }
        #expect(try leftovers(of: scratch.sub("out")).isEmpty)
        // Under a cap it fits, the same bundle extracts in full.
        let packages = try DriverSource.bundle(scratch.sub("bomb.tar.xz"), scratch: scratch.sub("out"), limits: ExtractionLimits(maxBytes: 64 << 20))
        #expect(packages.count == 6)
        #expect(try leftovers(of: scratch.sub("out")) == ["out"])
    }

    /// With no configured cap, the free space of the destination's filesystem (less the
    /// reserve) is the cap: a reserve larger than any disk refuses even a small bundle.
    @Test func theDefaultCapIsTheFreeSpace() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeShare(at: scratch.sub("share"))
        try run(["tar", "-C", scratch.sub("share"), "-cf", scratch.sub("small.tar"), "."])
        try run(["xz", "-T1", scratch.sub("small.tar")])
        #expect {
            _ = try DriverSource.bundle(scratch.sub("small.tar.xz"), scratch: scratch.sub("out"), limits: ExtractionLimits(reserve: 1 << 62))
        } throws: { "\($0)".contains("free space") }
        #expect(try leftovers(of: scratch.sub("out")).isEmpty)
        #expect(try DriverSource.bundle(scratch.sub("small.tar.xz"), scratch: scratch.sub("out")).count == 6)
    }

    /// A bundle whose xz stream asks for more memory than allowed is refused before anything
    /// is extracted.
    @Test func aBundleNeedingTooMuchMemoryIsRefused() throws {
        let scratch = ScratchDirectory()
        try Fixtures.makeShare(at: scratch.sub("share"))
        try run(["tar", "-C", scratch.sub("share"), "-cf", scratch.sub("wide.tar"), "."])
        try run(["xz", "-T1", "--lzma2=dict=512MiB,mf=hc3", scratch.sub("wide.tar")])
        #expect {
            _ = try DriverSource.bundle(scratch.sub("wide.tar.xz"), scratch: scratch.sub("out"), limits: ExtractionLimits(xzMemoryLimit: 32 << 20))
        } throws: { "\($0)".contains("needs 513 MiB of memory to decompress, more than the limit of 32 MiB") }
        #expect(try leftovers(of: scratch.sub("out")).isEmpty)
    }
}
