import Foundation
import Protocol
import Synchronization

/// The workers that announced themselves (`WorkerPresence`), as last heard. In memory only: a
/// dispatcher that restarts hears from every running worker again within seconds. Bounded:
/// a worker not heard from for `FleetView.window` goes, and at most `capacity` are kept.
public final class WorkerRoster: Sendable {
    public struct Entry: Sendable, Equatable {
        public var presence: WorkerPresence
        /// The broker user that published it (verified by the broker).
        public var brokerUser: String?
        /// When the dispatcher heard it (seconds since 1970, the dispatcher's clock).
        public var heardAt: Double
    }

    static let capacity = 10_000
    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    func record(_ presence: WorkerPresence, brokerUser: String?, now: Double) {
        entries.withLock { entries in
            entries[presence.worker] = Entry(presence: presence, brokerUser: brokerUser, heardAt: now)
            entries = entries.filter { now - $0.value.heardAt <= FleetView.window }
            if entries.count > Self.capacity {
                for (name, _) in entries.sorted(by: { $0.value.heardAt < $1.value.heardAt }).prefix(entries.count - Self.capacity) { entries[name] = nil }
            }
        }
    }

    /// The workers heard from within `FleetView.window`.
    func recent(now: Double) -> [Entry] {
        entries.withLock { $0.values.filter { now - $0.heardAt <= FleetView.window } }
    }
}
