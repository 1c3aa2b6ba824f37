/// Publisher-confirm bookkeeping for one confirm-mode channel: delivery tags count up from 1 in
/// publish order; the broker acks or nacks a tag, or every tag up to it when `multiple` is set.
struct ConfirmTracker<Waiter> {
    private var pending: [UInt64: (waiter: Waiter, deadline: ContinuousClock.Instant)] = [:]
    /// The tag the next publish gets.
    private(set) var nextTag: UInt64 = 1
    /// Every tag below this is settled.
    private var lowestUnsettled: UInt64 = 1

    var outstanding: Int { pending.count }

    /// Records a publish; returns its delivery tag.
    mutating func register(_ waiter: Waiter, deadline: ContinuousClock.Instant = .now + .seconds(30)) -> UInt64 {
        let tag = nextTag
        pending[tag] = (waiter, deadline)
        nextTag += 1
        return tag
    }

    /// Settles `tag`, or every outstanding tag up to it when `multiple`. Returns the waiters
    /// to resume (an ack or nack for tags already settled or never issued returns none).
    mutating func settle(tag: UInt64, multiple: Bool) -> [Waiter] {
        guard multiple else {
            guard let entry = pending.removeValue(forKey: tag) else { return [] }
            advanceLowest()
            return [entry.waiter]
        }
        var settled: [Waiter] = []
        let upper = min(tag, nextTag - 1)
        if lowestUnsettled <= upper {
            for current in lowestUnsettled...upper {
                if let entry = pending.removeValue(forKey: current) { settled.append(entry.waiter) }
            }
        }
        advanceLowest()
        return settled
    }

    /// Every outstanding waiter, for when the channel or connection is gone.
    mutating func removeAll() -> [Waiter] {
        let waiters = pending.keys.sorted().map { pending[$0]!.waiter }
        pending.removeAll()
        lowestUnsettled = nextTag
        return waiters
    }

    /// Waiters whose confirm is overdue at `now` (publishes are registered in deadline order, so
    /// this looks only at the oldest ones). A late ack for them is ignored.
    mutating func expire(now: ContinuousClock.Instant) -> [Waiter] {
        var expired: [Waiter] = []
        var tag = lowestUnsettled
        while tag < nextTag {
            if let entry = pending[tag] {
                guard entry.deadline <= now else { break }
                pending.removeValue(forKey: tag)
                expired.append(entry.waiter)
            }
            tag += 1
        }
        advanceLowest()
        return expired
    }

    /// Moves every outstanding deadline `by` later (the broker blocked the connection that
    /// long: confirms could not come, and that says nothing about the channel).
    mutating func postpone(by duration: Duration) {
        for tag in pending.keys { pending[tag]!.deadline += duration }
    }

    private mutating func advanceLowest() {
        while lowestUnsettled < nextTag, pending[lowestUnsettled] == nil { lowestUnsettled += 1 }
    }
}
