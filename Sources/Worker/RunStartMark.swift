import Synchronization

/// When a step's container started and how long its run phase took to get there: set once by
/// the runtime's `started` callback (an escaping closure, so the mark is a shared reference).
final class RunStartMark: Sendable {
    private let mark = Mutex<(at: ContinuousClock.Instant, initialiseMs: Int)?>(nil)

    func set(at instant: ContinuousClock.Instant, initialiseMs: Int) {
        mark.withLock { $0 = (instant, initialiseMs) }
    }

    /// Nil until the container started.
    var value: (at: ContinuousClock.Instant, initialiseMs: Int)? { mark.withLock { $0 } }
}
