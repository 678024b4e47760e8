import Apply
import Foundation
import TestSupport
import Testing

/// An apply to an NTFS volume killed at any moment (SIGKILL: no chance to clean up) leaves the
/// user's files intact, and the same apply run again completes with exactly what an
/// uninterrupted apply gives; SIGTERM stops it at a safe point with the volume unmounted
/// cleanly.
@Suite(.serialized)
struct CrashSafetyTests {
    /// Files outside the image, as a user's profile on a machine being refreshed.
    static let userFiles: [(path: String, bytes: [UInt8])] = [
        ("Users/Alice/Documents/report.docx", testBytes(300_000, seed: 501)),
        ("Users/Alice/notes.txt", testBytes(4_000, seed: 502, compressible: true)),
        ("Users/Alice/empty.txt", []),
        ("Users/Bob/Pictures/photo.jpg", testBytes(1 << 20, seed: 503)),
        ("Users/Bob/small.ini", Array("[settings]\r\nkey=value\r\n".utf8)),
    ]

    /// What a user file is: its bytes and what ntfs-3g shows of its NTFS metadata.
    struct UserFile: Equatable {
        var contents: Data?
        var xattrs: [String: [UInt8]]
    }

    let ntfs = NTFSApplyTests()

    /// A WIM of a few thousand files (~30 MB of data, LZX) so an apply lasts long enough to be
    /// cut at several points. Half the files are random, half compress well.
    func makeWIM(_ scratch: ScratchDirectory) throws -> String {
        let tree = scratch.sub("tree")
        var seed: UInt64 = 1000
        for d in 0..<40 {
            for f in 0..<90 {
                seed += 1
                let size = [100, 2_000, 8_000, 20_000][f % 4] + f
                try write(testBytes(size, seed: seed, compressible: f % 2 == 0), to: tree + "/Windows/dir\(d)/file\(f).bin")
            }
        }
        try write(testBytes(3 << 20, seed: 7), to: tree + "/Windows/big.bin")
        let wim = scratch.sub("image.wim")
        try capture(tree, wim, ["--compress=LZX"])
        return wim
    }

    func makeVolume(_ path: String, withUsers: Bool, scratch: ScratchDirectory) throws {
        try run(["truncate", "-s", "160M", path])
        try run(["mkfs.ntfs", "-F", "-Q", path])
        guard withUsers else { return }
        try ntfs.withMount(path, at: scratch.sub("populate")) {
            for file in CrashSafetyTests.userFiles { try write(file.bytes, to: scratch.sub("populate") + "/" + file.path) }
        }
    }

    /// The user files as ntfs-3g reads them from a read-only mount. A kill between an MFT
    /// record's write and its copy's leaves $MFTMirr apart, which ntfs-3g refuses; the next
    /// apply has ntfsfix correct it (`NTFSTarget.mountRepairingMirror`), and so does this look.
    func userFiles(_ volume: String, scratch: ScratchDirectory) throws -> [String: UserFile] {
        let mount = scratch.sub("check")
        let check = try run(["ntfsfix", "-n", volume], allowFailure: true)
        if (check.output + check.stderr).contains("$MFTMirr does not match $MFT") {
            try run(["ntfsfix", volume])
        }
        return try ntfs.withMount(volume, at: mount, readOnly: true) {
            var files: [String: UserFile] = [:]
            for file in CrashSafetyTests.userFiles {
                let full = mount + "/" + file.path
                var xattrs: [String: [UInt8]] = [:]
                for name in NTFSApplyTests.ntfsXattrs { xattrs[name] = xattr(full, name) }
                files[file.path] = UserFile(contents: FileManager.default.contents(atPath: full), xattrs: xattrs)
            }
            return files
        }
    }

    /// Starts `imprint wim apply`, sends `signal` after `delay` seconds (unless it ended before),
    /// and returns how it ended (128 + signal when a signal ended it) and its standard error.
    func applyInterrupted(_ wim: String, _ volume: String, signal: Int32, after delay: Double, extra: [String] = [],
                          scratch: ScratchDirectory) throws -> (status: Int32, stderr: String) {
        let run = try startApply(wim, volume, progress: "none", output: FileHandle.nullDevice, extra: extra, scratch: scratch)
        usleep(useconds_t(delay * 1_000_000))
        if run.process.isRunning { kill(run.process.processIdentifier, signal) }
        return run.finish()
    }

    /// A running `imprint wim apply` whose standard error goes to a file in `scratch`.
    struct RunningApply {
        let process: Process
        let errorFile: FileHandle
        let errorPath: String

        /// Waits for the end; the status is 128 + signal when a signal ended it.
        func finish() -> (status: Int32, stderr: String) {
            process.waitUntilExit()
            try? errorFile.close()
            let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
            return (status, (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
        }
    }

    func startApply(_ wim: String, _ target: String, progress: String, output: Any, extra: [String] = [],
                    scratch: ScratchDirectory) throws -> RunningApply {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: imprintBinary)
        process.arguments = ["wim", "apply", wim, "1", target, "--progress", progress] + extra
        let errPath = scratch.sub("stderr.txt")
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let errFile = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardError = errFile
        process.standardOutput = output
        do { try process.run() } catch { try? errFile.close(); throw error }
        return RunningApply(process: process, errorFile: errFile, errorPath: errPath)
    }

    /// An uninterrupted apply on a fresh volume: its snapshot and how long it took.
    func reference(_ wim: String, scratch: ScratchDirectory) throws -> (files: [String: NTFSApplyTests.FileState], seconds: Double) {
        let volume = scratch.sub("reference.img")
        try makeVolume(volume, withUsers: false, scratch: scratch)
        let started = Date()
        try run([imprintBinary, "wim", "apply", wim, "1", volume, "--progress", "none"])
        let seconds = Date().timeIntervalSince(started)
        let files = try ntfs.withMount(volume, at: scratch.sub("ref"), readOnly: true) { try ntfs.snapshot(scratch.sub("ref")).files }
        return (files, seconds)
    }

    /// Starts `imprint wim apply --progress json` and sends `signal` as soon as it reports
    /// progress in `phase` ("creating" or "data"): timing-free, so a loaded machine cannot make
    /// the signal arrive after the apply ended. Returns how it ended and its standard error.
    func applyInterrupted(_ wim: String, _ target: String, signal: Int32, inPhase phase: String,
                          scratch: ScratchDirectory) throws -> (status: Int32, stderr: String, signalled: Bool) {
        let out = Pipe()
        let run = try startApply(wim, target, progress: "json", output: out, scratch: scratch)
        let process = run.process
        var pending = Data(), signalled = false
        while case let chunk = out.fileHandleForReading.availableData, !chunk.isEmpty {
            pending.append(chunk)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                if !signalled && line.contains("\"phase\":\"\(phase)\"") && !line.contains("\"done\":0,") {
                    kill(process.processIdentifier, signal)
                    signalled = true
                }
            }
        }
        let (status, stderr) = run.finish()
        return (status, stderr, signalled)
    }

    @Test func killedAtSeveralPointsThenReappliedEqualsAnUninterruptedApply() throws {
        let scratch = ScratchDirectory()
        let wim = try makeWIM(scratch)
        let expected = try reference(wim, scratch: scratch)
        #expect(expected.files.count > 3000)

        let volume = scratch.sub("target.img")
        try makeVolume(volume, withUsers: true, scratch: scratch)
        let before = try userFiles(volume, scratch: scratch)
        #expect(before["Users/Bob/Pictures/photo.jpg"]?.contents == Data(CrashSafetyTests.userFiles[3].bytes))

        // Points spread over the apply: early (structure), middle (data), late (metadata).
        var killed = 0
        var lastRunKilled = false
        for fraction in [0.15, 0.35, 0.6, 0.85] {
            let (status, stderr) = try applyInterrupted(wim, volume, signal: SIGKILL, after: expected.seconds * fraction, scratch: scratch)
            lastRunKilled = status == 128 + SIGKILL
            if lastRunKilled { killed += 1 } else { #expect(status == 0, "apply ended with \(status): \(stderr)") }
            #expect(try userFiles(volume, scratch: scratch) == before, "user files after a SIGKILL at \(fraction) of the apply")
        }
        // Most runs must really have been cut, or this test proves nothing.
        #expect(killed >= 2, "only \(killed) of 4 runs were killed before they finished")

        let again = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--progress", "none"])
        #expect(again.status == 0)
        // A run cut by SIGKILL leaves the volume marked dirty; the next apply says so and goes on.
        // (A run that finished after it, on a quick moment of a loaded machine, left it clean.)
        if lastRunKilled {
            #expect(again.stderr.contains("the volume is marked dirty"), "\(again.stderr)")
            // What the cut runs wrote whole is kept, not written again — not asked here: on a
            // loaded machine the cut at 0.85 of the reference's time can still fall in the
            // structure pass, before any file is whole (a full run saw it). The next test checks
            // keeping whole files with the cut placed in the data pass; this one, the result.
        }
        #expect(try userFiles(volume, scratch: scratch) == before)
        let actual = try ntfs.withMount(volume, at: scratch.sub("after"), readOnly: true) { try ntfs.snapshot(scratch.sub("after")).files }
        let users = Set(actual.keys.filter { $0 == "Users" || $0.hasPrefix("Users/") })
        ntfs.compare(expected.files, actual, ignoring: users)
    }

    /// An apply going on over what an earlier run wrote keeps every file already whole and equal
    /// to the image's (its data is not written again) and rewrites the rest: here one file with
    /// other bytes of the same size and one cut short. The result equals a fresh apply, times,
    /// attributes and security descriptors included.
    @Test func anApplyOverAnEarlierRunKeepsWholeFilesAndRewritesTheRest() throws {
        let scratch = ScratchDirectory()
        let wim = try makeWIM(scratch)
        let expected = try reference(wim, scratch: scratch)
        let volume = scratch.sub("reference.img")
        let changed = "Windows/dir3/file5.bin", cut = "Windows/dir4/file6.bin"
        let changedBytes = try #require(expected.files[changed]?.contents), cutBytes = try #require(expected.files[cut]?.contents)
        try ntfs.withMount(volume, at: scratch.sub("alter")) {
            try write(Array(repeating: 0x5A, count: changedBytes.count), to: scratch.sub("alter") + "/" + changed)
            try write(Array(cutBytes.prefix(cutBytes.count / 2)), to: scratch.sub("alter") + "/" + cut)
        }
        let again = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--progress", "json"])
        let result = try #require(again.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first { $0["type"] as? String == "result" }, "no result event: \(again.output.suffix(500))")
        let files = expected.files.filter { $0.value.type == S_IFREG && ($0.value.size > 0) }.count
        #expect(result["filesKeptWhole"] as? Int == files - 2, "kept \(result["filesKeptWhole"] ?? "?") of \(files) files")
        #expect(result["bytesWritten"] as? Int == changedBytes.count + cutBytes.count, "wrote \(result["bytesWritten"] ?? "?") bytes")
        let actual = try ntfs.withMount(volume, at: scratch.sub("after"), readOnly: true) { try ntfs.snapshot(scratch.sub("after")).files }
        ntfs.compare(expected.files, actual, ignoring: [])
    }

    /// A power cut between an MFT record's write and its copy's leaves $MFTMirr apart from
    /// $MFT, and libntfs-3g then refuses the volume (EIO). The apply going on corrects the copy
    /// (ntfsfix), says so, and completes.
    @Test func aMirrorACutLeftApartIsCorrectedAndTheApplyGoesOn() throws {
        let scratch = ScratchDirectory()
        let wim = try makeWIM(scratch)
        let expected = try reference(wim, scratch: scratch)
        let volume = scratch.sub("target.img")
        try makeVolume(volume, withUsers: true, scratch: scratch)
        // The boot sector: bytes per sector (11), sectors per cluster (13), $MFTMirr's cluster (0x38).
        let handle = try #require(FileHandle(forUpdatingAtPath: volume))
        let boot = [UInt8](handle.readData(ofLength: 512))
        let cluster = UInt64(boot[11]) | UInt64(boot[12]) << 8
        let mirror = (0..<8).reduce(UInt64(0)) { $0 | UInt64(boot[0x38 + $1]) << (8 * UInt64($1)) } * cluster * UInt64(boot[13])
        try handle.seek(toOffset: mirror + 0x100)
        let byte = [UInt8](handle.readData(ofLength: 1))
        try handle.seek(toOffset: mirror + 0x100)
        handle.write(Data([byte[0] ^ 0xFF]))
        try handle.close()
        // As ntfs-3g (libntfs-3g) sees it: refused.
        try FileManager.default.createDirectory(atPath: scratch.sub("refused"), withIntermediateDirectories: true)
        let refused = try run(["ntfs-3g", "-o", "ro", volume, scratch.sub("refused")], allowFailure: true)
        if refused.status == 0 { _ = try? run(["umount", scratch.sub("refused")], allowFailure: true) }
        #expect(refused.status != 0, "ntfs-3g mounted a volume whose $MFTMirr differs")
        // Read-only (a resuming agent looking for its run state) it reads as if the copy were
        // right, and nothing is written: the mirror still differs afterwards.
        let imageBefore = try Data(contentsOf: URL(fileURLWithPath: volume))
        let files = try NTFSVolumeFiles(device: volume, readOnly: true)
        #expect(try files.read("Users/Bob/Pictures/photo.jpg") == CrashSafetyTests.userFiles[3].bytes)
        try files.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: volume)) == imageBefore, "a read-only look changed the volume")
        let applied = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--progress", "none"], allowFailure: true)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(applied.stderr.contains("$MFTMirr") && applied.stderr.contains("ntfsfix"), "\(applied.stderr)")
        #expect(try userFiles(volume, scratch: scratch)["Users/Bob/Pictures/photo.jpg"]?.contents == Data(CrashSafetyTests.userFiles[3].bytes))
        let actual = try ntfs.withMount(volume, at: scratch.sub("after"), readOnly: true) { try ntfs.snapshot(scratch.sub("after")).files }
        ntfs.compare(expected.files, actual, ignoring: Set(actual.keys.filter { $0 == "Users" || $0.hasPrefix("Users/") }))
    }

    /// The issue's finding: a refresh (`--cleanup move`) killed at several points and run again
    /// made a second `Windows.old.000` of the half-applied new system each time. Now every run
    /// goes on with the one refresh: one Windows.old, holding exactly the old system.
    @Test func aRefreshKilledAtSeveralPointsKeepsOneWindowsOld() throws {
        let scratch = ScratchDirectory()
        let wim = try makeWIM(scratch)
        let expected = try reference(wim, scratch: scratch)
        let volume = scratch.sub("target.img")
        try makeVolume(volume, withUsers: true, scratch: scratch)
        let oldSystem: [(path: String, bytes: [UInt8])] = [("Windows/System32/config/SYSTEM", Array("regf old".utf8)),
                                                           ("Windows/old.dll", testBytes(200_000, seed: 601)),
                                                           ("ProgramData/Vendor/state.dat", testBytes(3_000, seed: 602))]
        try ntfs.withMount(volume, at: scratch.sub("old")) {
            for file in oldSystem { try write(file.bytes, to: scratch.sub("old") + "/" + file.path) }
        }
        let before = try userFiles(volume, scratch: scratch)
        var killed = 0, finished = false
        for fraction in [0.1, 0.4, 0.75] {
            let (status, stderr) = try applyInterrupted(wim, volume, signal: SIGKILL, after: expected.seconds * fraction,
                                                        extra: ["--cleanup", "move"], scratch: scratch)
            if status == 128 + SIGKILL { killed += 1 } else { #expect(status == 0, "apply ended with \(status): \(stderr)") }
            #expect(try userFiles(volume, scratch: scratch) == before, "user files after a SIGKILL at \(fraction) of the refresh")
            // A run the kill came too late for finished the refresh (a resumed one keeps what is
            // whole, so it is quick): one more would rightly be a new refresh, moving this new
            // system into Windows.old.000.
            if status == 0 { finished = true; break }
        }
        #expect(killed >= 1, "no run was killed before it finished")
        if !finished {
            let again = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--cleanup", "move", "--progress", "none"])
            #expect(again.status == 0)
        }
        #expect(try userFiles(volume, scratch: scratch) == before)
        let actual = try ntfs.withMount(volume, at: scratch.sub("after"), readOnly: true) { try ntfs.snapshot(scratch.sub("after")).files }
        #expect(!actual.keys.contains { $0.hasPrefix("Windows.old.") }, "a second Windows.old: \(actual.keys.filter { $0.hasPrefix("Windows.old.") }.sorted().prefix(3))")
        for file in oldSystem { #expect(actual["Windows.old/" + file.path]?.contents == Data(file.bytes), "\(file.path) is not in Windows.old") }
        // Windows.old holds the old system and nothing of the new image.
        #expect(actual.keys.filter { $0.hasPrefix("Windows.old/Windows/dir") }.isEmpty, "the new system was moved into Windows.old")
        #expect(actual["_ImprintTaskSequence"] == nil, "the finished refresh left its record")
        let kept = Set(actual.keys.filter { $0 == "Users" || $0.hasPrefix("Users/") || $0.hasPrefix("Windows.old") })
        ntfs.compare(expected.files, actual, ignoring: kept)
    }

    @Test func sigtermStopsAtASafePointAndUnmountsCleanly() throws {
        let scratch = ScratchDirectory()
        let wim = try makeWIM(scratch)
        let volume = scratch.sub("target.img")
        try makeVolume(volume, withUsers: true, scratch: scratch)
        let before = try userFiles(volume, scratch: scratch)
        // How long an apply lasts here, to send SIGTERM in its middle.
        // An uninterrupted apply, to compare with at the end.
        let reference = scratch.sub("reference.img")
        try makeVolume(reference, withUsers: false, scratch: scratch)
        try run([imprintBinary, "wim", "apply", wim, "1", reference, "--progress", "none"])

        let (status, stderr, signalled) = try applyInterrupted(wim, volume, signal: SIGTERM, inPhase: "data", scratch: scratch)
        #expect(signalled)
        #expect(status == 128 + SIGTERM, "\(stderr)")
        #expect(stderr.contains("interrupted by SIGTERM: the volume was unmounted cleanly; run the same apply again to finish"), "\(stderr)")
        // Clean: not even marked dirty (ntfsinfo refuses a dirty volume), and ntfs-3g mounts it.
        let info = try run(["ntfsinfo", "-m", volume], allowFailure: true)
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.output.contains("Volume Flags: 0x0000"), "\(info.output)")
        #expect(try userFiles(volume, scratch: scratch) == before)

        let again = try run([imprintBinary, "wim", "apply", wim, "1", volume, "--progress", "none"])
        #expect(again.status == 0)
        #expect(!again.stderr.contains("marked dirty"), "\(again.stderr)")
        #expect(try userFiles(volume, scratch: scratch) == before)
        let expected = try ntfs.withMount(reference, at: scratch.sub("ref"), readOnly: true) { try ntfs.snapshot(scratch.sub("ref")).files }
        let actual = try ntfs.withMount(volume, at: scratch.sub("after"), readOnly: true) { try ntfs.snapshot(scratch.sub("after")).files }
        let users = Set(actual.keys.filter { $0 == "Users" || $0.hasPrefix("Users/") })
        ntfs.compare(expected, actual, ignoring: users)
    }

    @Test func sigtermStopsADirectoryApply() throws {
        let scratch = ScratchDirectory()
        let wim = try makeWIM(scratch)
        try run([imprintBinary, "wim", "apply", wim, "1", scratch.sub("reference"), "--progress", "none"])
        // In the middle of creating files (progress comes every 1,024 entries).
        let (status, stderr, signalled) = try applyInterrupted(wim, scratch.sub("target"), signal: SIGTERM, inPhase: "creating", scratch: scratch)
        #expect(signalled)
        #expect(status == 128 + SIGTERM, "\(stderr)")
        #expect(stderr.contains("interrupted by SIGTERM: stopped between files; run the same apply again to finish"), "\(stderr)")
        try run([imprintBinary, "wim", "apply", wim, "1", scratch.sub("target"), "--progress", "none"])
        let expected = try TreeSnapshot(scratch.sub("reference")), actual = try TreeSnapshot(scratch.sub("target"))
        #expect(expected.differences(from: actual).isEmpty, "\(expected.differences(from: actual))")
    }
}
