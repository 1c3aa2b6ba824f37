import Foundation
import Protocol

/// Turns a step's output into the lines its log holds: split at newlines per stream, secrets
/// masked, then held to a line cap and a log cap, each cut marked in the log.
///
/// Masking comes before cutting, so a cut never splits a secret into halves that no longer
/// match it: a line is kept up to its cap plus the longest masked form, masked whole, and only
/// then cut. A line past the log cap is dropped whole (never half shipped), and so is all
/// output after it; the count of what was dropped ends the log. Memory stays bounded: an
/// endless line keeps only its cap (plus that margin) and counts the rest.
struct LogLimiter {
    /// The most bytes of output (lines with their newlines, as the step wrote them) a step's
    /// log holds.
    let logCap: Int
    /// The most bytes of one line the log holds; the rest of the line is counted, not kept.
    let lineCap: Int

    static let defaultLogCap = 16 << 20
    static let defaultLineCap = 16 << 10

    private var partial: [LogBatch.Stream: Data] = [:]
    /// Bytes of the current line of a stream past what `partial` keeps.
    private var overflow: [LogBatch.Stream: Int] = [:]
    /// Bytes of output shipped so far (as written, newlines included).
    private(set) var shipped = 0
    /// Bytes of output dropped because the log passed its cap.
    private(set) var cut = 0
    private var ended = false

    init(logCap: Int = LogLimiter.defaultLogCap, lineCap: Int = LogLimiter.defaultLineCap) {
        self.logCap = logCap
        self.lineCap = lineCap
    }

    /// True once the log has passed its cap: nothing more of the step's output is shipped.
    var capPassed: Bool { cut > 0 }

    /// Raw output of `stream`: the complete lines it finishes, masked and cut.
    mutating func feed(_ stream: LogBatch.Stream, _ data: Data, mask: SecretMask) -> [(LogBatch.Stream, String)] {
        var lines: [(LogBatch.Stream, String)] = []
        var rest = data[...]
        while let newline = rest.firstIndex(of: 0x0A) {
            keep(stream, rest[rest.startIndex..<newline], mask: mask)
            if let line = complete(stream, terminated: true, mask: mask) { lines.append(line) }
            rest = rest[(newline + 1)...]
        }
        if !rest.isEmpty { keep(stream, rest, mask: mask) }
        return lines
    }

    /// One whole line (build output arrives as lines).
    mutating func line(_ stream: LogBatch.Stream, _ text: String, mask: SecretMask) -> [(LogBatch.Stream, String)] {
        keep(stream, Data(text.utf8)[...], mask: mask)
        return complete(stream, terminated: true, mask: mask).map { [$0] } ?? []
    }

    /// The end of the output: the last lines of each stream, even without a newline, and the
    /// log cap's marker when output was cut. Once only.
    mutating func end(mask: SecretMask) -> [(LogBatch.Stream, String)] {
        guard !ended else { return [] }
        ended = true
        var lines: [(LogBatch.Stream, String)] = []
        for stream in [LogBatch.Stream.stdout, .stderr, .system] where !(partial[stream] ?? Data()).isEmpty || (overflow[stream] ?? 0) > 0 {
            if let line = complete(stream, terminated: false, mask: mask) { lines.append(line) }
        }
        if cut > 0 {
            lines.append((.system, "[… \(Self.bytes(cut)) bytes cut: the step's log passed its \(Self.size(logCap)) cap]"))
        }
        return lines
    }

    /// Keeps bytes of the current line up to the line cap plus the longest masked form (so that
    /// a secret that starts before the cap is whole when the line is masked); counts the rest.
    private mutating func keep(_ stream: LogBatch.Stream, _ bytes: Data.SubSequence, mask: SecretMask) {
        let limit = lineCap + Self.margin(mask)
        var buffer = partial[stream] ?? Data()
        let room = max(limit - buffer.count, 0)
        if room > 0 { buffer.append(contentsOf: bytes.prefix(room)) }
        partial[stream] = buffer
        if bytes.count > room { overflow[stream, default: 0] += bytes.count - room }
    }

    private mutating func complete(_ stream: LogBatch.Stream, terminated: Bool, mask: SecretMask) -> (LogBatch.Stream, String)? {
        let kept = partial.removeValue(forKey: stream) ?? Data()
        let length = kept.count + (overflow.removeValue(forKey: stream) ?? 0)
        let written = length + (terminated ? 1 : 0)
        guard cut == 0 else {
            cut += written
            return nil
        }
        let masked = mask.apply(to: String(decoding: kept, as: UTF8.self))
        var text = masked
        var shipping = written
        if length > lineCap {
            text = Self.prefix(masked, bytes: lineCap) + " [… \(Self.bytes(length - lineCap)) bytes cut: the line passed its \(Self.size(lineCap)) cap]"
            shipping = lineCap + (terminated ? 1 : 0)
        }
        guard shipped + shipping <= logCap else {
            cut += written
            return nil
        }
        shipped += shipping
        return (stream, text)
    }

    /// The longest form a masked value takes, in bytes.
    private static func margin(_ mask: SecretMask) -> Int {
        mask.forms.map(\.utf8.count).max() ?? 0
    }

    /// At most `bytes` bytes of `text`, never ending inside a character's encoding.
    static func prefix(_ text: String, bytes: Int) -> String {
        let utf8 = Array(text.utf8.prefix(bytes))
        var end = utf8.count
        var lead = end - 1
        while lead >= 0, utf8[lead] & 0xC0 == 0x80 { lead -= 1 }
        if lead >= 0 {
            let byte = utf8[lead]
            let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
            if end - lead < length { end = lead }
        }
        return String(decoding: utf8[..<end], as: UTF8.self)
    }

    /// `4812331` as `4,812,331`.
    static func bytes(_ count: Int) -> String {
        let digits = String(count)
        var out = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0, (digits.count - offset) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }

    /// `16777216` as `16 MiB`, `16384` as `16 KiB`.
    static func size(_ bytes: Int) -> String {
        if bytes >= 1 << 20, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes >= 1 << 10, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return "\(Self.bytes(bytes)) bytes"
    }
}
