import Synchronization

/// The slots of a credit subscription: at most `capacity` deliveries are held by the
/// application at once, acked or not. Each delivery takes a slot until the application
/// releases it, so a consumer that acks early (claim-then-ack) still never receives more work
/// than it has room for, and nothing it was handed is ever returned to the queue for lack of
/// room. Shared by the application side (release, pause) and the connection thread (taking).
final class CreditState: Sendable {
    private struct Counts {
        var capacity: Int
        var outstanding = 0
        var paused = false
    }

    private let counts: Mutex<Counts>

    init(capacity: Int, paused: Bool = false) {
        counts = Mutex(Counts(capacity: max(0, capacity), paused: paused))
    }

    /// How many more deliveries the application can take right now (0 while paused).
    var wanted: Int {
        counts.withLock { $0.paused ? 0 : max(0, $0.capacity - $0.outstanding) }
    }

    /// Deliveries handed over and not yet released.
    var outstanding: Int { counts.withLock { $0.outstanding } }

    var isPaused: Bool { counts.withLock { $0.paused } }

    func took() { counts.withLock { $0.outstanding += 1 } }

    func release() { counts.withLock { $0.outstanding = max(0, $0.outstanding - 1) } }

    func setPaused(_ paused: Bool) { counts.withLock { $0.paused = paused } }
}
