/// Exponential backoff with full jitter between reconnect attempts.
public struct Backoff: Sendable, Hashable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before attempt `attempt` (0-based): random in [0, min(maximum, initial·2^attempt)].
    public func delay(attempt: Int) -> Duration {
        let cap = min(maximum, initial * (1 << min(attempt, 20)))
        let milliseconds = cap.components.seconds * 1000 + cap.components.attoseconds / 1_000_000_000_000_000
        return .milliseconds(Int64.random(in: milliseconds / 2...max(milliseconds, 1)))
    }
}
