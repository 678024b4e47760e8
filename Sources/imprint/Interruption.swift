import Apply
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT during an apply: instead of dying with the volume mounted by libntfs-3g
/// (whose last changes would then never be written), the handler only records the signal in
/// `applyStopSignal`; the apply stops at its next safe point, the target unmounts, and the
/// tool exits with 128 + the signal number, as a shell reports a process the signal killed.
/// Nothing else writes the flag or resets it (a sequence step's timeout stops its apply through
/// the run's own `ApplyStop`), so a signal, once recorded, is never lost.
enum Interruption {
    /// Installs the handlers (once, before an apply starts).
    static func install() {
        // Touch the global first: its lazy initialisation must not happen inside the handler.
        _ = applyStopSignal.load(ordering: .relaxed)
        for signal in [SIGTERM, SIGINT] {
            var action = sigaction()
            // Storing to an atomic is all a signal handler may safely do here.
            action.__sigaction_handler.sa_handler = { applyStopSignal.store($0, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            // SA_RESETHAND: a second Ctrl-C or SIGTERM kills at once, for a user who will not
            // wait; the volume is then as after a SIGKILL, which the next apply copes with.
            action.sa_flags = SA_RESTART | Int32(bitPattern: UInt32(SA_RESETHAND))
            sigaction(signal, &action, nil)
        }
        // A parent may hand down these signals blocked (test runners do), and then they would
        // stay pending for ever: unblock them here, before the reader threads start, which
        // inherit this mask.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The signal that stopped the apply, by name.
    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        default: return "signal \(signal)"
        }
    }
}
