import Foundation
import Protocol

/// What a followed log stream delivered, so that the rest can be read once the container has
/// exited.
///
/// The engine's followed log stream (dockerd 20.10, json-file driver) ends when the container
/// exits, and can end before the engine has written the container's last, unterminated output
/// (its log copier writes a line without a newline only when the pipe closes): `printf
/// "partial"` was lost in 3 of 5 runs, while `docker logs` had it. So the worker follows with
/// time stamps, remembers the last one and how many frames carried it, and after the exit reads
/// the log again from that time stamp, skipping what it already has.
///
/// The engine stamps each stream's frames as its copier gets them, so stdout's and stderr's
/// frames are not in time order in the log: the re-read starts a little before the latest
/// stamp seen (`window`) and skips every frame the follow delivered, by stream and stamp.
struct LogCatchUp: Equatable {
    /// How far before the latest stamp the re-read starts: far more than the two streams'
    /// copiers ever drift apart.
    static let window: Int64 = 2_000_000_000

    /// The latest stamp seen, in nanoseconds since 1970.
    private(set) var latest: Int64?
    /// Frames the follow delivered within `window` of `latest`, by stream and stamp, counted.
    private var seen: [Key: Int] = [:]
    /// The size of `seen` at which frames out of the window are forgotten.
    private var pruneAt = 4_096

    private struct Key: Hashable {
        let stream: LogBatch.Stream
        let stamp: Int64
    }

    /// A frame of the followed stream; returns its payload without the time stamp.
    mutating func followed(_ stream: LogBatch.Stream, _ payload: Data) -> Data {
        let (stamp, text) = Self.split(payload)
        guard let nanoseconds = stamp.flatMap(Self.nanoseconds) else { return text }
        seen[Key(stream: stream, stamp: nanoseconds), default: 0] += 1
        if nanoseconds > latest ?? .min {
            latest = nanoseconds
            // Forget what fell out of the window now and then, so the map stays small.
            if seen.count > pruneAt {
                seen = seen.filter { $0.key.stamp >= nanoseconds - Self.window }
                pruneAt = max(4_096, seen.count * 2)
            }
        }
        return text
    }

    /// The `since` of the re-read (nil: from the start).
    func rereading() -> String? {
        latest.map { Self.unixTime(nanoseconds: $0 - Self.window) }
    }

    /// A frame of the re-read: its payload when it is new, nil when it was followed already.
    mutating func reread(_ stream: LogBatch.Stream, _ payload: Data) -> Data? {
        let (stamp, text) = Self.split(payload)
        if let nanoseconds = stamp.flatMap(Self.nanoseconds) {
            let key = Key(stream: stream, stamp: nanoseconds)
            if let count = seen[key] {
                seen[key] = count > 1 ? count - 1 : nil
                return nil
            }
        }
        return text
    }

    /// `2026-11-29T22:22:59.95466419Z text` as the stamp and the text.
    static func split(_ payload: Data) -> (stamp: String?, text: Data) {
        guard let space = payload.prefix(40).firstIndex(of: 0x20) else { return (nil, payload) }
        let stamp = String(decoding: payload[payload.startIndex..<space], as: UTF8.self)
        guard stamp.hasSuffix("Z"), stamp.contains("T") else { return (nil, payload) }
        return (stamp, Data(payload[(space + 1)...]))
    }

    /// `2026-11-29T22:22:59.95466419Z` as nanoseconds since 1970.
    static func nanoseconds(_ stamp: String) -> Int64? {
        guard stamp.hasSuffix("Z") else { return nil }
        let parts = stamp.dropLast().split(separator: ".", maxSplits: 1)
        guard let whole = parts.first else { return nil }
        let fields = whole.split(whereSeparator: { $0 == "-" || $0 == "T" || $0 == ":" }).compactMap { Int($0) }
        guard fields.count == 6 else { return nil }
        var time = tm()
        time.tm_year = Int32(fields[0] - 1900)
        time.tm_mon = Int32(fields[1] - 1)
        time.tm_mday = Int32(fields[2])
        time.tm_hour = Int32(fields[3])
        time.tm_min = Int32(fields[4])
        time.tm_sec = Int32(fields[5])
        let seconds = timegm(&time)
        guard seconds >= 0 else { return nil }
        var fraction = parts.count > 1 ? String(parts[1].prefix(9)) : ""
        guard fraction.allSatisfy(\.isNumber) else { return nil }
        fraction += String(repeating: "0", count: 9 - fraction.count)
        return Int64(seconds) * 1_000_000_000 + (Int64(fraction) ?? 0)
    }

    /// Nanoseconds since 1970 as the engine's `since` takes them: `1795990979.954664190`.
    static func unixTime(nanoseconds: Int64) -> String {
        let fraction = String(nanoseconds % 1_000_000_000)
        return "\(nanoseconds / 1_000_000_000)." + String(repeating: "0", count: 9 - fraction.count) + fraction
    }
}
