import Dispatcher
import Foundation
import Protocol

/// What one `stepfleet bench dispatcher` run measured.
struct BenchDispatcherFigures: Sendable {
    var variant: String
    /// From the dispatcher's start until it had handled every message of the run.
    var wallSeconds: Double
    /// From the dispatcher's start until every change had finished.
    var changesFinishedSeconds: Double
    /// Outcomes the simulated workers published.
    var outcomes: Int
    /// Over the middle 80% of the run.
    var stepsPerSecond: Double?
    /// All steps over the wall time: what the dispatcher sustains with every message handled.
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
        ("handle.worker_event", "a claim or phase event alone, end to end"),
        ("handle.worker_event batch", "a batch of claims and phase events, end to end"),
        ("handle.step_outcome", "an outcome, end to end"),
        ("handle.log_batch", "a log batch alone, end to end"),
        ("handle.log_batch batch", "a batch of log batches, end to end"),
        ("ack", "acking a handled message"),
        ("outbox.read", "reading unsent outbox rows"),
        ("outbox.publish", "publishing a round of rows until all confirmed"),
        ("outbox.markSent", "marking a round's rows sent"),
    ]

    var text: String {
        var lines: [String] = []
        let rate = stepsPerSecond.map { String(format: "%.0f", $0) } ?? "-"
        lines.append(String(
            format: "  steps/s sustained, every message handled: %.0f (%d steps in %.2f s; changes all finished after %.2f s); outcomes/s over the middle 80%%: %@",
            overallStepsPerSecond, outcomes, wallSeconds, changesFinishedSeconds, rate as NSString))
        lines.append("  dispatch latency (outcome published → next job at a worker): \(latency.line)")
        lines.append("  left out: \(firstRoots) first roots (no ready moment), \(missing) without a record; redeliveries \(redeliveries), failed publishes \(publishFailures)")
        lines.append("  store: changes \(Self.counts(storedChanges)); steps \(Self.counts(storedSteps)); outcomes sent \(outcomes)")
        lines.append("  where the time went (\(String(format: "%.1f", wallSeconds)) s of wall time):")
        lines.append("    " + "part".padding(toLength: 28, withPad: " ", startingAt: 0) + "   count    total s   mean ms    max ms  of wall")
        for (key, meaning) in Self.parts {
            guard let total = timings[key] else { continue }
            lines.append("    " + key.padding(toLength: 28, withPad: " ", startingAt: 0) + String(
                format: "%8d %10.2f %9.3f %9.1f %7.1f%%  %@", total.count, total.seconds, total.mean * 1000, total.longest * 1000,
                100 * total.seconds / wallSeconds.nonZero, meaning as NSString))
        }
        for kind in ["worker_event", "log_batch"] {
            guard let sizes = timings["batch size \(kind)"], sizes.count > 0 else { continue }
            lines.append(String(format: "    %@ batches: %d, %.1f messages each on average, %.0f at most", kind as NSString, sizes.count, sizes.mean, sizes.longest))
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
            ("steps/s, all handled", runs.map { cell($0.overallStepsPerSecond, "%.0f") }),
            ("outcomes/s (middle 80%)", runs.map { cell($0.stepsPerSecond, "%.0f") }),
            ("wall s", runs.map { cell($0.wallSeconds, "%.2f") }),
            ("dispatch p50 ms", runs.map { cell($0.latency.p50) }),
            ("dispatch p95 ms", runs.map { cell($0.latency.p95) }),
            ("dispatch p99 ms", runs.map { cell($0.latency.p99) }),
            ("dispatch max ms", runs.map { cell($0.latency.max) }),
        ]
        for (key, _) in parts {
            rows.append(("\(key) mean ms", runs.map { cell($0.timings[key].map { $0.mean * 1000 }, "%.3f") }))
        }
        rows.append(("outbox rows/round", runs.map { cell($0.timings["outbox.rows"]?.mean) }))
        rows.append(("store writer busy %", runs.map { run in
            cell(100 * ((run.timings["store.body"]?.seconds ?? 0) + (run.timings["store.commit"]?.seconds ?? 0)) / run.wallSeconds.nonZero, "%.0f")
        }))
        rows.append(("store transactions", runs.map { cell(Double($0.timings["store.commit"]?.count ?? 0), "%.0f") }))
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
            "variant": .string(variant), "wall_s": loadJSONNumber(wallSeconds), "changes_finished_s": loadJSONNumber(changesFinishedSeconds), "outcomes": JSON(outcomes),
            "steps_per_second": stepsPerSecond.map { loadJSONNumber($0, decimals: 1) } ?? .null,
            "steps_per_second_overall": loadJSONNumber(overallStepsPerSecond, decimals: 1), "dispatch_latency": latency.json,
            "left_out_first_roots": JSON(firstRoots), "left_out_missing": JSON(missing), "redeliveries": JSON(redeliveries), "failed_publishes": JSON(publishFailures),
            "store_changes": .object(storedChanges.mapValues { JSON($0) }), "store_steps": .object(storedSteps.mapValues { JSON($0) }), "timings": .object(parts),
        ]
    }
}
