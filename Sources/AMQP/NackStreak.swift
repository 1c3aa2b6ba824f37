/// Tells a broken publish channel from a refused message. After a quorum queue's leader
/// changed, RabbitMQ 3.10 was seen nacking every publish on one channel for minutes while the
/// same publish on a fresh connection was acked at once: repeated nacks with no ack between them
/// mean the channel is broken. The first streak replaces the channel, a second one (no ack in
/// between) the connection, which reconnects with backoff.
struct NackStreak: Sendable, Equatable {
    enum Verdict: Sendable, Equatable {
        case carryOn
        /// Open a new publish channel; `nacks` in a row were refused on this one.
        case replaceChannel(nacks: Int)
        /// The replacement channel is refused too: fail the connection.
        case failConnection(nacks: Int)
    }

    /// Nacks in a row that make a channel broken.
    let limit: Int
    /// Nacks since the last ack (or the last verdict).
    private(set) var consecutive = 0
    /// Channels replaced since the last ack.
    private(set) var replaced = 0

    /// Few: a StepFleet publish is never refused on purpose (no queue has a length limit), and
    /// a publisher waits while its channel is broken.
    static let defaultLimit = 5

    init(limit: Int = defaultLimit) {
        self.limit = max(1, limit)
    }

    mutating func acked() {
        consecutive = 0
        replaced = 0
    }

    mutating func nacked(_ count: Int = 1) -> Verdict {
        consecutive += count
        guard consecutive >= limit else { return .carryOn }
        let nacks = consecutive
        consecutive = 0
        if replaced == 0 {
            replaced = 1
            return .replaceChannel(nacks: nacks)
        }
        replaced = 0
        return .failConnection(nacks: nacks)
    }
}
