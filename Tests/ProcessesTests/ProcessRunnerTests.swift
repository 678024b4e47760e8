import Foundation
import Processes
import Synchronization
import Testing

@Suite("One process runner: status, output, timeouts that stop the whole group")
struct ProcessRunnerTests {
    @Test func statusAndOutput() throws {
        let merged = try ProcessRunner().run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        #expect(merged.status == 3 && merged.signal == nil)
        #expect(merged.text == "out\nerr\n")
        let separate = try ProcessRunner(output: .separate).run(["sh", "-c", "echo out; echo err >&2"]).checked()
        #expect(separate.text == "out\n" && String(decoding: separate.errorOutput, as: UTF8.self) == "err\n")
        let killed = try ProcessRunner().run(["sh", "-c", "kill -KILL $$"])
        #expect(killed.status == 128 + 9 && killed.signal == 9)
        #expect(throws: ProcessError.self) { try killed.checked() }
        #expect((try? killed.checked()) == nil)
        do { try killed.checked() } catch { #expect(error.description == "sh -c 'kill -KILL $$' was killed by signal 9 (Killed)") }
    }

    @Test func theErrorShowsTheEndOfTheOutput() throws {
        let result = try ProcessRunner().run(["sh", "-c", "seq 1 100; echo 'mkfs: device is busy' >&2; exit 1"])
        do {
            try result.checked()
            Issue.record("a failing command passed")
        } catch {
            #expect(error.status == 1 && error.reason == .failed)
            #expect(error.outputTail == (82...100).map(String.init) + ["mkfs: device is busy"])
            #expect(error.description.hasPrefix("sh -c 'seq 1 100; echo '\\''mkfs: device is busy'\\'' >&2; exit 1' exited with status 1:\n  82\n"))
            #expect(error.description.hasSuffix("\n  100\n  mkfs: device is busy"))
        }
        // Kept apart, standard error is where a program says why.
        let apart = try ProcessRunner(output: .separate).run(["sh", "-c", "echo progress; echo 'no space left' >&2; exit 2"])
        #expect(apart.outputTail == ["no space left"])
    }

    @Test func linesAreStreamedAsTheyCome() throws {
        var lines: [String] = []
        let result = try ProcessRunner(collectsOutput: false).run(["sh", "-c", "printf 'one\\ntwo\\n\\nlast without newline'"]) {
            lines.append($0)
        }
        #expect(lines == ["one", "two", "", "last without newline"])
        #expect(result.output.isEmpty && result.outputTail == ["one", "two", "last without newline"], "blank lines tell nothing")
    }

    @Test func inputIsDevNullUnlessAFileIsGiven() throws {
        #expect(try ProcessRunner().run(["cat"]).checked().text == "")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("imprint-input-\(getpid())").path
        try "fed from a file\n".write(toFile: scratch, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        #expect(try ProcessRunner(inputFile: scratch).run(["cat"]).checked().text == "fed from a file\n")
        #expect(throws: ProcessError.self) { try ProcessRunner(inputFile: scratch + ".missing").run(["cat"]) }
    }

    @Test func aMissingProgramSaysSo() throws {
        do {
            _ = try ProcessRunner(environment: ["PATH": "/usr/bin:/bin"]).run(["imprint-no-such-tool", "-x"])
            Issue.record("a missing program ran")
        } catch {
            #expect(error.status == 127)
            #expect(error.description == "cannot start imprint-no-such-tool: no such program in /usr/bin:/bin (is its package installed?)")
        }
        // The child's PATH is the one searched, not ours.
        #expect(throws: ProcessError.self) { try ProcessRunner(environment: ["PATH": "/nonexistent"]).run(["sh", "-c", "true"]) }
        #expect(try ProcessRunner(environment: ["PATH": "/nonexistent:/bin"]).run(["sh", "-c", "echo $PATH"]).text == "/nonexistent:/bin\n")
    }

    @Test func noDescriptorOfOursReachesTheChild() throws {
        // Opened without close-on-exec, as a C library might.
        let leaky = open("/dev/null", O_RDONLY)
        #expect(leaky > 2)
        defer { close(leaky) }
        let listing = try ProcessRunner(output: .separate).run(["sh", "-c", "ls /proc/$$/fd"]).checked()
        #expect(listing.text.split(separator: "\n") == ["0", "1", "2"], "\(listing.text)")
        let input = try ProcessRunner().run(["readlink", "/proc/self/fd/0"]).checked()
        #expect(input.text == "/dev/null\n")
    }

    @Test func onlyAProgramThatMayBeStoppedLeadsItsOwnGroup() throws {
        let script = ["sh", "-c", "echo $$; cut -d ' ' -f 5 /proc/$$/stat"]
        let plain = try ProcessRunner().run(script).checked().text.split(separator: "\n")
        #expect(plain.count == 2 && plain[1] == "\(getpgrp())", "Ctrl-C on the terminal must still reach it")
        let stoppable = try ProcessRunner(isCancelled: { false }).run(script).checked().text.split(separator: "\n")
        #expect(stoppable.count == 2 && stoppable[0] == stoppable[1])
    }

    @Test func aTimeoutStopsTheWholeProcessGroup() throws {
        let started = ContinuousClock.now
        var grandchild: pid_t?
        do {
            _ = try ProcessRunner(timeout: .milliseconds(500)).run(["sh", "-c", "sleep 100 & echo $!; sleep 100"]) { line in
                grandchild = grandchild ?? pid_t(line)
            }
            Issue.record("ran past its timeout")
        } catch {
            #expect(error.reason == .timedOut(.milliseconds(500)))
            #expect(error.status == 128 + SIGTERM && error.signal == SIGTERM)
            #expect(error.description.hasPrefix("sh -c 'sleep 100 & echo $!; sleep 100' was stopped: it ran out of time"))
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        let orphan = try #require(grandchild)
        #expect(try waitUntilGone(orphan), "the background sleep \(orphan) outlived its group")
    }

    @Test func aProgramIgnoringSIGTERMIsKilled() throws {
        let started = ContinuousClock.now
        #expect(throws: ProcessError.self) {
            try ProcessRunner(timeout: .milliseconds(200), gracePeriod: .milliseconds(300)).run(["sh", "-c", "trap '' TERM; sleep 100"])
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func cancellationStopsIt() throws {
        let cancelled = Atomic(false)
        let canceller = Thread { Thread.sleep(forTimeInterval: 0.3); cancelled.store(true, ordering: .relaxed) }
        canceller.start()
        let started = ContinuousClock.now
        do {
            _ = try ProcessRunner(isCancelled: { cancelled.load(ordering: .relaxed) }).run(["sleep", "100"])
            Issue.record("ran on after cancellation")
        } catch {
            #expect(error.reason == .cancelled && error.description == "sleep 100 was stopped: cancelled")
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func aBackgroundJobHoldingTheOutputDoesNotHoldUsUp() throws {
        // As ntfs-3g's daemon would: the program has ended, its job still has the pipe.
        let started = ContinuousClock.now
        let result = try ProcessRunner().run(["sh", "-c", "sleep 30 & echo $!"]).checked()
        #expect(ContinuousClock.now - started < .seconds(10))
        if let job = pid_t(result.text.trimmingCharacters(in: .whitespacesAndNewlines)) { kill(job, SIGKILL) }
        #expect(try ProcessRunner(output: .discarded).run(["sh", "-c", "echo nobody reads this; exit 4"]).status == 4)
    }

    /// Whether `pid` is gone (or a zombie nobody has reaped yet) within a few seconds.
    private func waitUntilGone(_ pid: pid_t) throws -> Bool {
        for _ in 0..<100 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
            if stat.split(separator: ")").last?.split(separator: " ").first == "Z" { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}
