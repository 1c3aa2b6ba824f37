import Foundation
import Synchronization

/// What `RepositoryFiles` read from a mirror, kept for the next step: a file at a commit (or
/// the reason it was refused) never changes, and a change's refs are those of its mirror's
/// fetch for that change. A cache-hit step of a commit seen before starts no git process.
///
/// Bounded by entries and by bytes; the least recently used go first. Only what git's objects
/// decide is kept: a git that failed or timed out is asked again next time.
final class RepositoryFileCache: Sendable {
    enum Entry: Sendable, Equatable {
        /// A file's contents, nil when the commit has no such path.
        case file(Data?)
        /// The path is not a regular file, or is too large.
        case refused(StepFailure)
        /// A change's refs (`RepositoryFiles.refs`).
        case refs(String)

        var bytes: Int {
            switch self {
            case .file(let data): data?.count ?? 0
            case .refused(let failure): failure.description.utf8.count
            case .refs(let text): text.utf8.count
            }
        }
    }

    private struct State {
        var entries: [String: (entry: Entry, used: UInt64)] = [:]
        var bytes = 0
        var uses: UInt64 = 0
    }

    let maximumEntries: Int
    let maximumBytes: Int
    private let state = Mutex(State())

    init(maximumEntries: Int = 256, maximumBytes: Int = 8 << 20) {
        self.maximumEntries = maximumEntries
        self.maximumBytes = maximumBytes
    }

    func value(_ key: String) -> Entry? {
        state.withLock { state in
            guard let found = state.entries[key] else { return nil }
            state.uses += 1
            state.entries[key]!.used = state.uses
            return found.entry
        }
    }

    /// Keeps `entry` unless it alone is larger than the cache; older entries make room.
    func store(_ key: String, _ entry: Entry) {
        let size = entry.bytes + key.utf8.count
        guard size <= maximumBytes else { return }
        state.withLock { state in
            if let old = state.entries.removeValue(forKey: key) { state.bytes -= old.entry.bytes + key.utf8.count }
            while !state.entries.isEmpty, state.entries.count >= maximumEntries || state.bytes + size > maximumBytes {
                let oldest = state.entries.min { $0.value.used < $1.value.used }!
                state.entries.removeValue(forKey: oldest.key)
                state.bytes -= oldest.value.entry.bytes + oldest.key.utf8.count
            }
            state.uses += 1
            state.entries[key] = (entry, state.uses)
            state.bytes += size
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
    var bytes: Int { state.withLock { $0.bytes } }
}
