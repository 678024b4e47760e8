#if canImport(Glibc)
import Glibc
#endif

/// What a new thread runs: a checked `Sendable` box, handed to `pthread_create` as its argument.
private final class ThreadStart: Sendable {
    let body: @Sendable (Int) -> Void
    let index: Int
    init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
}

/// Starts `count` threads running `body(index)` and returns them, for `joinThreads`. Fewer
/// start when the system refuses one (none at worst): the caller decides what that means.
func startThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) -> [pthread_t] {
    var threads: [pthread_t] = []
    for i in 0..<count {
        let start = Unmanaged.passRetained(ThreadStart(body, i))
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        // Decoders keep their tables on the heap, but LZMS recursion-free decoding still likes room.
        pthread_attr_setstacksize(&attributes, 8 << 20)
        let rc = pthread_create(&thread, &attributes, { raw in
            let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
            start.body(start.index)
            return nil
        }, start.toOpaque())
        pthread_attr_destroy(&attributes)
        if rc == 0 {
            threads.append(thread)
        } else {
            start.release()
        }
    }
    return threads
}

func joinThreads(_ threads: [pthread_t]) {
    for t in threads { pthread_join(t, nil) }
}

/// The number of CPUs this process may use.
public func availableProcessorCount() -> Int {
    max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}
