import Foundation

/// A lock for async code that, unlike an actor, is not re-entered at suspension points: a
/// storage operation holding it runs its statements (and its transaction) alone even though
/// each statement awaits the database thread.
final class AsyncLock: @unchecked Sendable {
    private let lock = NSLock()
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    @discardableResult
    func withLock<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if locked {
                waiters.append(continuation)
                lock.unlock()
            } else {
                locked = true
                lock.unlock()
                continuation.resume()
            }
        }
    }

    private func release() {
        lock.lock()
        if waiters.isEmpty {
            locked = false
            lock.unlock()
        } else {
            // Ownership passes straight to the next waiter; `locked` stays true.
            let next = waiters.removeFirst()
            lock.unlock()
            next.resume()
        }
    }
}
