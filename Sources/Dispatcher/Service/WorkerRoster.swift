import Foundation
import Protocol
import Synchronization

/// The workers that announced themselves (`WorkerPresence`), as last heard. In memory only: a
/// dispatcher that restarts hears from every running worker again within seconds. Bounded:
/// a worker not heard from for `FleetView.window` is no longer listed, and at most `capacity`
/// are kept.
public final class WorkerRoster: Sendable {
    public struct Entry: Sendable, Equatable {
        public var presence: WorkerPresence
        /// The broker user that published it (verified by the broker).
        public var brokerUser: String?
        /// When the dispatcher heard it (seconds since 1970, the dispatcher's clock).
        public var heardAt: Double
    }

    let capacity: Int
    private let entries = Mutex<[String: Entry]>([:])

    public init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// Keeps `presence` as heard now from `brokerUser`. Refused (false, nothing kept) when its
    /// name is a worker another broker user announced within the window (no account speaks
    /// for another's worker), or when the roster is full of workers heard within the window.
    /// Stale entries are dropped only when the roster is full: `recent` skips them anyway.
    func record(_ presence: WorkerPresence, brokerUser: String, now: Double) -> Bool {
        entries.withLock { entries in
            if let known = entries[presence.worker], known.brokerUser != brokerUser, now - known.heardAt <= FleetView.window { return false }
            if entries[presence.worker] == nil, entries.count >= capacity {
                entries = entries.filter { now - $0.value.heardAt <= FleetView.window }
                guard entries.count < capacity else { return false }
            }
            entries[presence.worker] = Entry(presence: presence, brokerUser: brokerUser, heardAt: now)
            return true
        }
    }

    /// The workers heard from within `FleetView.window`.
    func recent(now: Double) -> [Entry] {
        entries.withLock { $0.values.filter { now - $0.heardAt <= FleetView.window } }
    }
}
