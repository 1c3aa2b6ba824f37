import Foundation
import Synchronization

/// The warm containers of a runtime (`OCIWarmContainer`): at most `capacity` in all, made for
/// the images steps ran on last, each taken at most once. Pure bookkeeping: the runtime makes,
/// runs and removes the containers.
final class OCIWarmPool: Sendable {
    /// What a warm container was made for; a step takes one only of its own key.
    struct Key: Hashable, Sendable {
        var imageID: String
        var imageUser: String
        var limits: ContainerLimits
    }

    /// A warm container being made or ready.
    struct Entry: Sendable {
        let key: Key
        let id: String
        let made: Task<OCIWarmContainer?, Never>
    }

    let capacity: Int
    private let state = Mutex<(entries: [Entry], failed: Set<Key>, closed: Bool)>(([], [], false))

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    /// Removes and returns an entry of `key`, the oldest first.
    func take(_ key: Key) -> Entry? {
        state.withLock { state in
            guard let index = state.entries.firstIndex(where: { $0.key == key }) else { return nil }
            return state.entries.remove(at: index)
        }
    }

    /// Whether another container for `key` is wanted: fewer than `capacity` of it, and none
    /// of its key failed to start before.
    func wants(_ key: Key) -> Bool {
        state.withLock { state in
            capacity > 0 && !state.closed && !state.failed.contains(key) && state.entries.filter { $0.key == key }.count < capacity
        }
    }

    /// Adds `entry`; returns the entries of other keys it pushes out (the oldest first) when
    /// the pool is full, for the runtime to remove.
    func add(_ entry: Entry) -> [Entry] {
        state.withLock { state in
            guard !state.closed else { return [entry] }
            var evicted: [Entry] = []
            while state.entries.count >= capacity, let index = state.entries.firstIndex(where: { $0.key != entry.key }) {
                evicted.append(state.entries.remove(at: index))
            }
            guard state.entries.count < capacity else { return evicted + [entry] }
            state.entries.append(entry)
            return evicted
        }
    }

    /// Removes the entry `id` if it is still waiting; nil when a step took it.
    func remove(id: String) -> Entry? {
        state.withLock { state in
            guard let index = state.entries.firstIndex(where: { $0.id == id }) else { return nil }
            return state.entries.remove(at: index)
        }
    }

    /// Every waiting entry, removed, and none added from now on (at shutdown).
    func close() -> [Entry] {
        state.withLock { state in
            state.closed = true
            defer { state.entries = [] }
            return state.entries
        }
    }

    /// A container of `key` could not be made or ended before its step: none is made for it
    /// again (its image may lack `opschain-action --wait`, or its user).
    func failed(_ key: Key) {
        state.withLock { state in
            if state.failed.count >= 1_000 { state.failed.removeAll() }
            state.failed.insert(key)
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
