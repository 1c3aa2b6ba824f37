import Foundation
import Synchronization

/// Wall-clock time spent in named parts of the dispatcher's work (a store transaction, an
/// outbox round, handling one kind of message): count, total and longest, so that
/// `stepfleet bench dispatcher` can say where the time goes. Recording costs one lock.
public final class PhaseTimings: Sendable {
    public struct Total: Sendable, Equatable {
        public var count = 0
        public var seconds = 0.0
        public var longest = 0.0

        /// Mean seconds per occurrence (0 when none).
        public var mean: Double { count == 0 ? 0 : seconds / Double(count) }
    }

    private let totals = Mutex<[String: Total]>([:])

    public init() {}

    public func record(_ part: String, seconds: Double) {
        totals.withLock { totals in
            var total = totals[part] ?? Total()
            total.count += 1
            total.seconds += seconds
            total.longest = max(total.longest, seconds)
            totals[part] = total
        }
    }

    /// Seconds since `start` (a `DispatchTime` uptime in nanoseconds), recorded under `part`.
    public func record(_ part: String, since start: UInt64) {
        record(part, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    public var snapshot: [String: Total] { totals.withLock { $0 } }

    public func reset() { totals.withLock { $0 = [:] } }

    public static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }
}
