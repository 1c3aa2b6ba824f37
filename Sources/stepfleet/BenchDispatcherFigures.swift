import Dispatcher
import Foundation
import Protocol

/// What one `stepfleet bench dispatcher` run measured.
struct BenchDispatcherFigures: Sendable {
    var variant: String
    var wallSeconds: Double
    /// Outcomes the simulated workers published.
    var outcomes: Int
    /// Over the middle 80% of the run.
    var stepsPerSecond: Double?
    /// All outcomes over the time from the dispatcher's start to the last outcome.
    var overallStepsPerSecond: Double
    var latency: LatencySummary
    var firstRoots: Int
    var missing: Int
    var redeliveries: Int
    var publishFailures: Int
    /// What the store says at the end, by status.
    var storedChanges: [String: Int]
    var storedSteps: [String: Int]
    var timings: [String: PhaseTimings.Total]

    /// The parts in the order the table shows them, with what each means.
    static let parts: [(key: String, meaning: String)] = [
        ("store.wait", "waiting for the store's single writer"),
        ("store.body", "write transaction bodies (reads, tree, JSON, inserts)"),
        ("store.commit", "commits (WAL, synchronous=NORMAL)"),
        ("handle.worker_event", "claims and phase events, end to end"),
        ("handle.step_outcome", "outcomes, end to end"),
        ("handle.log_batch", "log batches, end to end"),
        ("ack", "acking a handled message"),
        ("outbox.read", "reading unsent outbox rows"),
        ("outbox.publish", "publishing a round of rows until all confirmed"),
        ("outbox.markSent", "marking a round's rows sent"),
    ]

    var text: String {
        var lines: [String] = []
        let rate = stepsPerSecond.map { String(format: "%.0f", $0) } ?? "-"
        lines.append("  steps/s sustained (middle 80%): \(rate)   overall: \(String(format: "%.0f", overallStepsPerSecond))   wall \(String(format: "%.1f", wallSeconds)) s")
        lines.append("  dispatch latency (outcome published → next job at a worker): \(latency.line)")
        lines.append("  left out: \(firstRoots) first roots (no ready moment), \(missing) without a record; redeliveries \(redeliveries), failed publishes \(publishFailures)")
        lines.append("  store: changes \(Self.counts(storedChanges)); steps \(Self.counts(storedSteps)); outcomes sent \(outcomes)")
        lines.append("  where the time went (\(String(format: "%.1f", wallSeconds)) s of wall time):")
        lines.append("    part                    count     total s   mean ms    max ms   share of wall")
        for (key, meaning) in Self.parts {
            guard let total = timings[key] else { continue }
            lines.append(String(
                format: "    %-20@ %8d %11.2f %9.3f %9.1f   %5.1f%%   %@", key as NSString, total.count, total.seconds, total.mean * 1000, total.longest * 1000,
                100 * total.seconds / wallSeconds.nonZero, meaning as NSString))
        }
        if let rows = timings["outbox.rows"], rows.count > 0 {
            lines.append(String(format: "    outbox rounds: %d, %.1f rows per round on average, %.0f at most", rows.count, rows.mean, rows.longest))
        }
        let writer = (timings["store.body"]?.seconds ?? 0) + (timings["store.commit"]?.seconds ?? 0)
        lines.append(String(format: "    the store's writer was busy %.0f%% of the wall time (bodies + commits)", 100 * writer / wallSeconds.nonZero))
        return lines.joined(separator: "\n")
    }

    static func counts(_ byStatus: [String: Int]) -> String {
        byStatus.keys.sorted().map { "\($0) \(byStatus[$0]!)" }.joined(separator: ", ")
    }

    /// Two or more runs, one column each.
    static func sideBySide(_ runs: [BenchDispatcherFigures]) -> String {
        func cell(_ value: Double?, _ format: String = "%.1f") -> String { value.map { String(format: format, $0) } ?? "-" }
        var rows: [(String, [String])] = [
            ("steps/s (middle 80%)", runs.map { cell($0.stepsPerSecond, "%.0f") }),
            ("steps/s (overall)", runs.map { cell($0.overallStepsPerSecond, "%.0f") }),
            ("dispatch p50 ms", runs.map { cell($0.latency.p50) }),
            ("dispatch p95 ms", runs.map { cell($0.latency.p95) }),
            ("dispatch p99 ms", runs.map { cell($0.latency.p99) }),
            ("dispatch max ms", runs.map { cell($0.latency.max) }),
        ]
        for (key, _) in parts {
            rows.append(("\(key) mean ms", runs.map { cell($0.timings[key].map { $0.mean * 1000 }, "%.3f") }))
        }
        rows.append(("outbox rows/round", runs.map { cell($0.timings["outbox.rows"]?.mean) }))
        var lines = ["side by side:", "  " + "".padding(toLength: 28, withPad: " ", startingAt: 0) + runs.indices.map { "run \($0 + 1)".padding(toLength: 14, withPad: " ", startingAt: 0) }.joined()]
        for (name, values) in rows {
            lines.append("  " + name.padding(toLength: 28, withPad: " ", startingAt: 0) + values.map { $0.padding(toLength: 14, withPad: " ", startingAt: 0) }.joined())
        }
        for (index, run) in runs.enumerated() { lines.append("  run \(index + 1): \(run.variant)") }
        return lines.joined(separator: "\n")
    }

    var json: JSON {
        var parts: [String: JSON] = [:]
        for (key, total) in timings {
            parts[key] = ["count": JSON(total.count), "total_s": loadJSONNumber(total.seconds), "mean_ms": loadJSONNumber(total.mean * 1000), "max_ms": loadJSONNumber(total.longest * 1000)]
        }
        return [
            "variant": .string(variant), "wall_s": loadJSONNumber(wallSeconds), "outcomes": JSON(outcomes),
            "steps_per_second": stepsPerSecond.map { loadJSONNumber($0, decimals: 1) } ?? .null,
            "steps_per_second_overall": loadJSONNumber(overallStepsPerSecond, decimals: 1), "dispatch_latency": latency.json,
            "left_out_first_roots": JSON(firstRoots), "left_out_missing": JSON(missing), "redeliveries": JSON(redeliveries), "failed_publishes": JSON(publishFailures),
            "store_changes": .object(storedChanges.mapValues { JSON($0) }), "store_steps": .object(storedSteps.mapValues { JSON($0) }), "timings": .object(parts),
        ]
    }
}
