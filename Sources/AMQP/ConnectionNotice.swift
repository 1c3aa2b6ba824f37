/// What a connection reports about itself as it happens, for its client's log and metrics.
enum ConnectionNotice: Sendable {
    /// The broker stopped reading publishes (a memory or disk alarm).
    case blocked(reason: String)
    case unblocked(seconds: Double)
    /// Publishes were held (blocked, or too many bytes unsent) past their deadline and failed.
    case heldPublishesExpired(count: Int, seconds: Int)
    /// Unsent bytes went over the limit: publishes wait until the broker reads again.
    case sendBacklog(bytes: Int)
    /// The broker refused `nacks` publishes in a row to `destination` (exchange/routing key) on
    /// `channel`; `verdict` says what was done.
    case nackStreak(channel: UInt16, destination: String, nacks: Int, seconds: Double, verdict: String)
    /// The thread stayed inside one librabbitmq call too long; the socket was shut down.
    case callOverdue(operation: String, seconds: Double)
    /// A consume went unanswered; its channel was closed.
    case consumeUnanswered(queue: String, reason: String)
}
