import CoreMetrics
import Protocol

// Made on each use, through the factory the process bootstrapped (swift-prometheus in
// `stepfleet worker`, served on --metrics-listen); nothing is recorded anywhere without one.

/// The worker's metrics (for any swift-metrics backend the program bootstraps).
public enum WorkerMetrics {
    /// Timer labels with the histogram buckets (seconds) the backend should give them.
    public static let buckets: [String: [Double]] = [
        "stepfleet_worker_step_phase_seconds": [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
        "stepfleet_worker_image_build_seconds": [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800],
    ]

    /// A step this worker ran to its end, by status; and the parts of its phases.
    static func finished(_ outcome: StepOutcome) {
        Counter(label: "stepfleet_worker_steps_total", dimensions: [("status", outcome.status.rawValue)]).increment()
        for (name, ms) in outcome.phases?.parts ?? [] {
            Timer(label: "stepfleet_worker_step_phase_seconds", dimensions: [("phase", name)]).recordMilliseconds(ms)
        }
    }

    /// A step's image: reused (a hit: an image with the build key existed) or not (a miss:
    /// built, or waited for an identical build).
    static func buildCache(hit: Bool) {
        Counter(label: "stepfleet_worker_build_cache_total", dimensions: [("result", hit ? "hit" : "miss")]).increment()
    }

    /// One image build that ran, by result, with how long it took.
    static func imageBuild(succeeded: Bool, took duration: Duration) {
        Counter(label: "stepfleet_worker_image_builds_total", dimensions: [("result", succeeded ? "success" : "error")]).increment()
        let (seconds, attoseconds) = duration.components
        Timer(label: "stepfleet_worker_image_build_seconds").recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Bytes of step log lines shipped to the dispatcher, by stream.
    static func shipped(_ lines: [LogBatch.Line]) {
        var bytes: [LogBatch.Stream: Int] = [:]
        for line in lines { bytes[line.stream, default: 0] += line.text.utf8.count }
        for (stream, count) in bytes {
            Counter(label: "stepfleet_worker_step_log_bytes_total", dimensions: [("stream", stream.rawValue)]).increment(by: count)
        }
    }
}
