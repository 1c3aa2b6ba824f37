import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Makes sure no connection thread stays inside one librabbitmq call past a deadline.
///
/// librabbitmq 0.11 writes with an infinite timeout (`poll(fd, POLLOUT, -1)` once the socket
/// buffer is full): a broker that stops reading a connection (flow control, a resource alarm, a
/// dead quorum leader) would park the connection's thread in that poll for ever, with every
/// command and the confirm timeout queued behind it. Each connection thread marks when it enters
/// a call that can block (`CallWatch.enter`) and when it goes back to its own poll
/// (`CallWatch.idle`); one watchdog thread for the process shuts the socket down when a call has
/// lasted longer than the watch's limit, which makes the call fail and the connection with it.
final class CallWatch: Sendable {
    private struct State {
        var descriptor: Int32 = -1
        var operation: String?
        var since: UInt64 = 0
        var fired = false
    }

    /// How long one call may last.
    let limitMilliseconds: UInt64
    private let state = Mutex(State())
    /// Called once, on the watchdog thread, when the socket was shut down.
    private let onFire: @Sendable (_ operation: String, _ seconds: Double) -> Void

    init(limitMilliseconds: UInt64, onFire: @escaping @Sendable (_ operation: String, _ seconds: Double) -> Void) {
        self.limitMilliseconds = limitMilliseconds
        self.onFire = onFire
    }

    /// The socket to shut down (-1: none, e.g. once the connection is torn down).
    func setDescriptor(_ descriptor: Int32) {
        state.withLock { $0.descriptor = descriptor }
    }

    /// The thread is about to make a call that can block.
    func enter(_ operation: String) {
        let now = Monotonic.milliseconds
        state.withLock {
            $0.operation = operation
            $0.since = now
        }
    }

    /// The thread is back in its own bounded poll.
    func idle() {
        state.withLock { $0.operation = nil }
    }

    var fired: Bool { state.withLock { $0.fired } }

    /// Shuts the socket down if the current call is overdue; true when it did.
    @discardableResult
    func check(now: UInt64) -> Bool {
        let overdue = state.withLock { state -> (String, Double, Int32)? in
            guard !state.fired, let operation = state.operation, state.descriptor >= 0, now >= state.since + limitMilliseconds else { return nil }
            state.fired = true
            return (operation, Double(now - state.since) / 1000, state.descriptor)
        }
        guard let (operation, seconds, descriptor) = overdue else { return false }
        shutdown(descriptor, Int32(SHUT_RDWR))
        onFire(operation, seconds)
        return true
    }
}
