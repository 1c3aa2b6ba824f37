/// When `stepfleet load` sends its next change: the n-th change (from 0) at n / rate seconds
/// after the start, whatever the earlier ones took (an open loop, so that a slow dispatcher
/// shows as latency, not as a lower offered rate); without a rate, at once (the submitters then
/// go as fast as the dispatcher accepts). It stops at `count` changes or after `duration`.
struct LoadPacer: Sendable, Equatable {
    /// Changes per second; nil: as fast as accepted.
    var rate: Double?
    var count: Int?
    /// Seconds.
    var duration: Double?

    /// Seconds from the start at which change `index` is due.
    func due(_ index: Int) -> Double {
        guard let rate, rate > 0 else { return 0 }
        return Double(index) / rate
    }

    /// Whether change `index` is sent at all: within the count, and due within the duration.
    func sends(_ index: Int, elapsed: Double) -> Bool {
        if let count, index >= count { return false }
        if let duration {
            if rate != nil { return due(index) < duration }
            return elapsed < duration
        }
        return true
    }

    /// How long to wait before sending change `index`, `elapsed` seconds after the start.
    func wait(before index: Int, elapsed: Double) -> Double {
        max(0, due(index) - elapsed)
    }

    /// How many changes the run is to send, when that is known in advance.
    var planned: Int? {
        if let count {
            if let rate, let duration { return min(count, Int((duration * rate).rounded(.up))) }
            return count
        }
        if let rate, let duration { return Int((duration * rate).rounded(.up)) }
        return nil
    }
}
