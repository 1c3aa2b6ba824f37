import AMQP
import Foundation
import Protocol

/// Counters and histograms the dispatcher exposes on /metrics (Prometheus text format).
public final class DispatcherMetrics: Sendable {
    public let patchConflicts = Counter()
    /// Messages that can never be processed (bad content, a patch making invalid properties,
    /// a document the store refuses): each failed its step at once instead of being retried.
    public let unprocessableMessages = Counter()
    /// Worker messages refused: no `user_id`, or not from the identity holding the attempt.
    public let refusedWorkerMessages = Counter()
    /// Seconds from a job's creation to its claim.
    public let queueLatency = Histogram(buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
    /// Seconds a step's run phase took.
    public let stepDuration = Histogram(buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800])
    /// Seconds each part of a step's phases took (`PhaseDurations.parts`), by part.
    /// Where the dispatcher's own time goes: handling each kind of worker message, outbox
    /// rounds (read, publish with confirms, mark sent).
    public let timings = PhaseTimings()
    public let phaseDurations: [String: Histogram] = Dictionary(
        uniqueKeysWithValues: PhaseDurations().allPartNames.map { ($0, Histogram(buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800])) })

    /// Records the parts of an attempt's phases.
    public func record(_ phases: PhaseDurations) {
        for (name, ms) in phases.parts { phaseDurations[name]?.record(Double(ms) / 1000) }
    }

    /// `stepfleet_step_phase_seconds{phase="…"}`: one histogram per part of the phases.
    public func phaseExposition() -> String {
        let name = "stepfleet_step_phase_seconds"
        var lines = [
            "# HELP \(name) Seconds each part of a step's phases took (build.initialise: checkout and repository files; build: the whole build phase; run.initialise: container created with its context; run.running: the container ran; run.completing: output and result read; run: the whole run phase).",
            "# TYPE \(name) histogram",
        ]
        for part in PhaseDurations().allPartNames {
            guard let histogram = phaseDurations[part] else { continue }
            lines += histogram.samples(name, labels: "phase=\"\(part)\"")
        }
        return lines.joined(separator: "\n")
    }

    public init() {}

    public final class Counter: Sendable {
        private let value = LockedValue(0)
        public func increment() { value.withLock { $0 += 1 } }
        public var count: Int { value.value }
    }

    public final class Histogram: Sendable {
        let buckets: [Double]
        private let state: LockedValue<(counts: [Int], sum: Double, count: Int)>

        init(buckets: [Double]) {
            self.buckets = buckets
            state = LockedValue((Array(repeating: 0, count: buckets.count), 0, 0))
        }

        public func record(_ value: Double) {
            state.withLock { state in
                for (index, bound) in buckets.enumerated() where value <= bound { state.counts[index] += 1 }
                state.sum += value
                state.count += 1
            }
        }

        /// The bucket, sum and count lines, each with `labels` (`key="value"`).
        func samples(_ name: String, labels: String) -> [String] {
            let snapshot = state.value
            var lines: [String] = []
            for (index, bound) in buckets.enumerated() { lines.append("\(name)_bucket{\(labels),le=\"\(bound)\"} \(snapshot.counts[index])") }
            lines.append("\(name)_bucket{\(labels),le=\"+Inf\"} \(snapshot.count)")
            lines.append("\(name)_sum{\(labels)} \(snapshot.sum)")
            lines.append("\(name)_count{\(labels)} \(snapshot.count)")
            return lines
        }

        func exposition(_ name: String, help: String) -> String {
            let snapshot = state.value
            var lines = ["# HELP \(name) \(help)", "# TYPE \(name) histogram"]
            for (index, bound) in buckets.enumerated() { lines.append("\(name)_bucket{le=\"\(bound)\"} \(snapshot.counts[index])") }
            lines.append("\(name)_bucket{le=\"+Inf\"} \(snapshot.count)")
            lines.append("\(name)_sum \(snapshot.sum)")
            lines.append("\(name)_count \(snapshot.count)")
            return lines.joined(separator: "\n")
        }
    }
}
