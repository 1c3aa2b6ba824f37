import CoreMetrics

// Made on each use: swift-metrics handles are not Sendable; backends cache them by label.

/// The AMQP client's metrics (for any swift-metrics backend the program bootstraps).
enum AMQPMetrics {
    /// Connections that became ready again after the first.
    static var reconnects: Counter { Counter(label: "stepfleet_amqp_reconnects_total") }
    /// How long each recovery phase took: connect, declare, attach.
    static func phase(_ name: String) -> Timer { Timer(label: "stepfleet_amqp_recovery_phase_seconds", dimensions: [("phase", name)]) }
    /// Times the broker blocked a connection, and the seconds it stayed blocked.
    static var blocks: Counter { Counter(label: "stepfleet_amqp_blocked_total") }
    static var blockedSeconds: FloatingPointCounter { FloatingPointCounter(label: "stepfleet_amqp_blocked_seconds_total") }
    /// Publish channels the broker kept refusing.
    static var nackStreaks: Counter { Counter(label: "stepfleet_amqp_nack_streaks_total") }
    /// librabbitmq calls that overran their deadline (the socket was shut down).
    static var overdueCalls: Counter { Counter(label: "stepfleet_amqp_overdue_calls_total") }
    /// Quiet credit subscriptions attached again by the liveness check.
    static var livenessReattaches: Counter { Counter(label: "stepfleet_amqp_liveness_reattaches_total") }
}

extension Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
