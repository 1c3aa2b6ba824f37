import Foundation

/// What a followed log stream delivered, so that the rest can be read once the container has
/// exited.
///
/// The engine's followed log stream (dockerd 20.10, json-file driver) ends when the container
/// exits, and can end before the engine has written the container's last, unterminated output
/// (its log copier writes a line without a newline only when the pipe closes): `printf
/// "partial"` was lost in 3 of 5 runs, while `docker logs` had it. So the worker follows with
/// time stamps, remembers the last one and how many frames carried it, and after the exit reads
/// the log again from that time stamp, skipping what it already has.
struct LogCatchUp: Equatable {
    /// The last frame's time stamp, as the engine wrote it.
    private(set) var lastStamp: String?
    /// Frames seen with `lastStamp`.
    private(set) var framesAtLast = 0
    /// Frames of the re-read still to skip (set by `rereading()`).
    private var toSkip = 0

    /// A frame of the followed stream; returns its payload without the time stamp.
    mutating func followed(_ payload: Data) -> Data {
        let (stamp, text) = Self.split(payload)
        if let stamp {
            if stamp == lastStamp {
                framesAtLast += 1
            } else {
                lastStamp = stamp
                framesAtLast = 1
            }
        }
        return text
    }

    /// The `since` of the re-read (nil: from the start), and readies the skipping.
    mutating func rereading() -> String? {
        toSkip = framesAtLast
        return lastStamp.flatMap(Self.unixTime)
    }

    /// A frame of the re-read: its payload when it is new, nil when it was followed already.
    mutating func reread(_ payload: Data) -> Data? {
        let (stamp, text) = Self.split(payload)
        if toSkip > 0, let stamp, stamp == lastStamp {
            toSkip -= 1
            return nil
        }
        toSkip = 0
        return text
    }

    /// `2026-11-29T22:22:59.95466419Z text` as the stamp and the text.
    static func split(_ payload: Data) -> (stamp: String?, text: Data) {
        guard let space = payload.prefix(40).firstIndex(of: 0x20) else { return (nil, payload) }
        let stamp = String(decoding: payload[payload.startIndex..<space], as: UTF8.self)
        guard stamp.hasSuffix("Z"), stamp.contains("T") else { return (nil, payload) }
        return (stamp, Data(payload[(space + 1)...]))
    }

    /// `2026-11-29T22:22:59.95466419Z` as `1795990979.954664190` (what the engine's `since` takes).
    static func unixTime(_ stamp: String) -> String? {
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
        return "\(seconds).\(fraction)"
    }
}
