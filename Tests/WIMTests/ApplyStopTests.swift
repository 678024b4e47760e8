import Apply
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A run's own stop request (a sequence step's timeout) stops its apply like a signal does,
/// is cleared by its owner, and never touches the process-wide signal flag.
struct ApplyStopTests {
    @Test func aRunsOwnStopIsCheckedBesidesTheSignalFlagAndLeavesItAlone() throws {
        let stop = ApplyStop()
        #expect(throws: Never.self) { try checkApplyStop(stop) }
        stop.request(SIGALRM)
        let error = #expect(throws: ApplyInterrupted.self) { try checkApplyStop(stop) }
        #expect(error?.signal == SIGALRM)
        #expect(throws: Never.self, "another run's apply was stopped") { try checkApplyStop(ApplyStop()) }
        stop.clear()
        #expect(throws: Never.self) { try checkApplyStop(stop) }
        #expect(applyStopSignal.load(ordering: .relaxed) == 0)
    }
}
