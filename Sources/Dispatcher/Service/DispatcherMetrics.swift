import CoreMetrics
import Foundation
import Prometheus
import Protocol
import Synchronization

/// The dispatcher's metrics, recorded through swift-metrics into a swift-prometheus registry;
/// `exposition` renders that registry for `/metrics`.
///
/// The `stepfleet dispatcher` process passes the factory it bootstrapped `MetricsSystem` with,
/// so `/metrics` also shows what other libraries record (the AMQP client's counters). Made with
/// no factory (tests running several dispatchers in one process), each has a registry of its own.
public final class DispatcherMetrics: Sendable {
    public let factory: PrometheusMetricsFactory

    public let patchConflicts: Count
    /// Messages that can never be processed (bad content, a patch making invalid properties,
    /// a document the store refuses): each failed its step at once instead of being retried.
    public let unprocessableMessages: Count
    /// Worker messages refused: no `user_id`, or not from the identity holding the attempt.
    public let refusedWorkerMessages: Count
    /// Seconds from a job's creation to its claim.
    public let queueLatency: Seconds
    /// Seconds a step's run phase took.
    public let stepDuration: Seconds
    /// Where the dispatcher's own time goes: store transactions, handling each kind of worker
    /// message, outbox rounds (read, publish with confirms, mark sent).
    public let timings = PhaseTimings()

    public static let phaseLabel = "stepfleet_step_phase_seconds"
    static let buckets: [String: [Double]] = [
        "stepfleet_queue_latency_seconds": [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
        "stepfleet_step_run_seconds": [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
        phaseLabel: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
    ]

    /// The histogram buckets of the dispatcher's timers, by label, for a factory to use.
    public static func withBuckets(_ factory: PrometheusMetricsFactory) -> PrometheusMetricsFactory {
        var factory = factory
        for (label, bounds) in buckets { factory.durationHistogramBuckets[label] = bounds.map { Duration.milliseconds(Int64(($0 * 1000).rounded())) } }
        return factory
    }

    public init(factory: PrometheusMetricsFactory = PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())) {
        let factory = Self.withBuckets(factory)
        self.factory = factory
        patchConflicts = Count("stepfleet_patch_conflicts_total", factory)
        unprocessableMessages = Count("stepfleet_unprocessable_messages_total", factory)
        refusedWorkerMessages = Count("stepfleet_refused_worker_messages_total", factory)
        queueLatency = Seconds("stepfleet_queue_latency_seconds", factory)
        stepDuration = Seconds("stepfleet_step_run_seconds", factory)
        // Present (at 0) from the start, so a scrape sees every series before the first event.
        for part in PhaseDurations().allPartNames { _ = Timer(label: Self.phaseLabel, dimensions: [("phase", part)], factory: factory) }
    }

    /// Records the parts of an attempt's phases (`stepfleet_step_phase_seconds{phase}`).
    public func record(_ phases: PhaseDurations) {
        for (name, ms) in phases.parts {
            Timer(label: Self.phaseLabel, dimensions: [("phase", name)], factory: factory).recordMilliseconds(ms)
        }
    }

    /// `stepfleet_steps{status}`: steps by status, as the store counts them at scrape time.
    public func setSteps(_ counts: [String: Int]) {
        for (status, count) in counts { Gauge(label: "stepfleet_steps", dimensions: [("status", status)], factory: factory).record(count) }
    }

    /// The Prometheus text of every metric in the registry.
    public func exposition() -> String {
        factory.registry.emitToString()
    }

    /// A counter that also keeps its count for the dispatcher's own checks.
    public final class Count: Sendable {
        private let counter: CoreMetrics.Counter
        private let value = Mutex(0)

        init(_ label: String, _ factory: PrometheusMetricsFactory) {
            counter = CoreMetrics.Counter(label: label, factory: factory)
        }

        public func increment() {
            value.withLock { $0 += 1 }
            counter.increment()
        }

        public var count: Int { value.withLock { $0 } }
    }

    /// A histogram of seconds.
    public final class Seconds: Sendable {
        private let timer: CoreMetrics.Timer

        init(_ label: String, _ factory: PrometheusMetricsFactory) {
            timer = CoreMetrics.Timer(label: label, factory: factory)
        }

        public func record(_ seconds: Double) {
            timer.recordNanoseconds(Int64((max(seconds, 0) * 1e9).rounded()))
        }
    }
}
