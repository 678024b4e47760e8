import Foundation
import TestSupport
import Testing
@testable import Apply

/// Symlinks in a target directory, planted before the apply or made by the image itself, must
/// never lead a write outside it: not directly, not through a chain of them, not through `..`.
@Suite(.serialized)
struct SymlinkSafetyTests {
    /// target/ with a folder outside it holding one precious file.
    struct Layout {
        let scratch: ScratchDirectory
        var target: String { scratch.sub("target") }
        var outside: String { scratch.sub("outside") }

        init(_ label: String = #function) throws {
            scratch = ScratchDirectory(label)
            try FileManager.default.createDirectory(atPath: scratch.sub("target"), withIntermediateDirectories: true)
            try write(Array("keep me".utf8), to: scratch.sub("outside") + "/precious")
        }

        func link(_ name: String, to destination: String) throws {
            try FileManager.default.createSymbolicLink(atPath: target + "/" + name, withDestinationPath: destination)
        }

        func outsideIsUntouched() throws -> Bool {
            try FileManager.default.contentsOfDirectory(atPath: outside) == ["precious"]
                && String(contentsOfFile: outside + "/precious", encoding: .utf8) == "keep me"
        }
    }

    /// Every way a folder on the way can leave: a symlink to outside, a chain of two ending
    /// outside, a symlink to `..`, and `..` itself. Each is refused, naming the first bad
    /// folder, with openat2 and with the component-by-component fallback of older kernels.
    @Test(arguments: [true, false])
    func foldersOnTheWayAreNeverFollowed(openat2: Bool) throws {
        let layout = try Layout("symlink-parents-\(openat2)")
        try layout.link("direct", to: layout.outside)
        try layout.link("chain", to: "hop")
        try layout.link("hop", to: "../outside")
        try layout.link("up", to: "..")
        try FileManager.default.createDirectory(atPath: layout.target + "/real/inner", withIntermediateDirectories: true)
        try layout.link("real/inner/back", to: "../../../outside")
        let target = try DirectoryTarget(root: layout.target)
        target.haveOpenat2 = openat2
        for (path, unsafe) in [("direct/precious", "direct"), ("chain/precious", "chain"), ("chain/new/file", "chain"),
                               ("up/outside/precious", "up"), ("real/inner/back/precious", "real/inner/back"),
                               ("../outside/precious", "..")] {
            #expect {
                _ = try target.parent(of: path, imagePath: "\\" + path)
            } throws: { error in
                guard case let ApplyError.unsafePath(named, imagePath, _) = error else { return false }
                return named == layout.target + "/" + unsafe && imagePath == "\\" + path
                    && "\(error)".contains("nothing is written through it")
            }
            let fd = target.openBeneath(path, O_WRONLY | O_CREAT | O_TRUNC)
            #expect(fd < 0, "\(path) was opened")
            if fd >= 0 { close(fd) }
        }
        // The symlink itself, as the last component, is not opened either.
        #expect(target.openBeneath("direct", O_RDONLY) < 0)
        // A real folder is fine.
        let parent = try target.parent(of: "real/inner/file", imagePath: "\\real\\inner\\file")
        #expect(parent.name == "file")
        #expect(try layout.outsideIsUntouched())
    }

    /// A planted chain (sub -> hop -> outside) where the image has a folder: the image wins
    /// (the link is removed, never followed), the chain's other link stays, nothing outside
    /// changes.
    @Test func aPlantedChainIsReplacedNotFollowed() throws {
        let layout = try Layout()
        let wim = try BadInputTests.smallWIM(layout.scratch)
        try layout.link("sub", to: "hop")
        try layout.link("hop", to: layout.outside)
        try run([imprintBinary, "wim", "apply", wim, "1", layout.target, "--progress", "none"])
        #expect(try layout.outsideIsUntouched())
        var info = stat()
        #expect(lstat(layout.target + "/sub", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR)
        #expect(FileManager.default.fileExists(atPath: layout.target + "/sub/dir/text.txt"))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: layout.target + "/hop") == layout.outside)
    }

    /// The image's own links: `d/x -> ..` and `d/y -> x/../..` each look inside by their text,
    /// but y through x ends above the target. y is removed and listed; x and a link that stays
    /// inside through x are kept.
    @Test func imageSymlinkChainsThatLeaveAreRemoved() throws {
        let layout = try Layout()
        let tree = layout.scratch.sub("tree")
        try write(Array("top".utf8), to: tree + "/top.txt")
        try write(Array("x".utf8), to: tree + "/d/file")
        try FileManager.default.createSymbolicLink(atPath: tree + "/d/x", withDestinationPath: "..")
        try FileManager.default.createSymbolicLink(atPath: tree + "/d/y", withDestinationPath: "x/../..")
        try FileManager.default.createSymbolicLink(atPath: tree + "/d/z", withDestinationPath: "x/top.txt")
        try FileManager.default.createSymbolicLink(atPath: tree + "/d/w", withDestinationPath: "y/outside/precious")
        let wim = layout.scratch.sub("chains.wim")
        try capture(tree, wim)
        let result = try run([imprintBinary, "wim", "apply", wim, "1", layout.target, "--progress", "none"])
        #expect(result.output.contains("symlink leading outside the target through other symlinks, removed"), "\(result.output)")
        #expect(result.output.contains("/d/y"))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: layout.target + "/d/y")) == nil)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: layout.target + "/d/x") == "..")
        #expect(try String(contentsOfFile: layout.target + "/d/z", encoding: .utf8) == "top")
        // w went through y: gone with it, or dangling inside; never reaching outside.
        #expect((try? String(contentsOfFile: layout.target + "/d/w", encoding: .utf8)) == nil)
        #expect(try layout.outsideIsUntouched())
    }
}
