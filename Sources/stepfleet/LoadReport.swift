import Foundation
import Protocol

/// What a `stepfleet load` run measured, aggregated from the changes it read back: sustained
/// rates, latency percentiles from HDR histograms, errors, and the same figures over time.
struct LoadReport: Sendable {
    struct Settings: Sendable {
        var server: String
        var via: String
        var project: String
        var action: String
        var environments: Int
        /// Changes per second asked for; nil: as fast as accepted.
        var rate: Double?
        var concurrency: Int
        var count: Int?
        var durationSeconds: Double?
    }

    /// One point of the time series: a window of `seconds` starting `start` seconds after the first change's creation.
    struct Bucket: Sendable, Equatable {
        var start: Double
        var seconds: Double
        var submitted = 0
        var changesFinished = 0
        var stepsFinished = 0
        var changeLatency = LoadHistogram.Summary()
        var queueLatency = LoadHistogram.Summary()
    }

    var settings: Settings
    var startedAt: Date
    var wallSeconds: Double
    var submitted: Int
    var accepted: Int
    /// Refusals and failures of submission, by message.
    var submitErrors: [String: Int]
    /// Changes by final status, plus `unfinished` for those still open when the wait ran out.
    var changes: [String: Int]
    var steps: Int
    /// From the first change's creation to the last one's end, on the dispatcher's clock.
    var windowSeconds: Double
    var changesPerSecond: Double
    var stepsPerSecond: Double
    var queueLatency: LatencySummary
    var changeLatency: LatencySummary
    var submitLatency: LatencySummary
    var buckets: [Bucket]

    /// Aggregates the changes read back. `submitLatencies` are the HTTP round trips of the
    /// accepted submissions (milliseconds); `unfinished` counts changes still open at the end.
    static func make(
        settings: Settings, startedAt: Date, wallSeconds: Double, submitted: Int, submitErrors: [String: Int], samples: [LoadChangeSample],
        unfinished: Int, submitLatencies: [Double], bucketSeconds: Double? = nil
    ) -> LoadReport {
        var queue = LoadHistogram()
        var change = LoadHistogram()
        var byStatus: [String: Int] = [:]
        var steps = 0
        for sample in samples {
            byStatus[sample.status, default: 0] += 1
            if let latency = sample.latency { change.record(milliseconds: latency * 1000) }
            for step in sample.steps {
                if let latency = step.queueLatency { queue.record(milliseconds: latency * 1000) }
                if step.ran { steps += 1 }
            }
        }
        if unfinished > 0 { byStatus["unfinished"] = unfinished }
        let start = samples.map(\.createdAt).min() ?? 0
        let end = samples.compactMap(\.finishedAt).max() ?? start
        let window = max(end - start, 0)
        let finished = samples.filter { $0.finishedAt != nil }.count
        return LoadReport(
            settings: settings, startedAt: startedAt, wallSeconds: wallSeconds, submitted: submitted, accepted: samples.count + unfinished,
            submitErrors: submitErrors, changes: byStatus, steps: steps, windowSeconds: window,
            changesPerSecond: window > 0 ? Double(finished) / window : 0, stepsPerSecond: window > 0 ? Double(steps) / window : 0,
            queueLatency: queue.summary, changeLatency: change.summary, submitLatency: LoadHistogram(milliseconds: submitLatencies).summary,
            buckets: series(samples, start: start, window: window, bucketSeconds: bucketSeconds))
    }

    /// The run cut into windows (about 60 of them, at least a second each): what was
    /// created, finished and how long it took, per window.
    static func series(_ samples: [LoadChangeSample], start: Double, window: Double, bucketSeconds: Double?) -> [Bucket] {
        guard !samples.isEmpty else { return [] }
        let width = bucketSeconds ?? max(1, (window / 60).rounded(.up))
        let count = max(1, Int((window / width).rounded(.down)) + 1)
        var buckets = (0..<count).map { Bucket(start: Double($0) * width, seconds: width) }
        var changeLatency = Array(repeating: LoadHistogram(), count: count)
        var queueLatency = Array(repeating: LoadHistogram(), count: count)
        func index(_ time: Double) -> Int { min(max(Int(((time - start) / width).rounded(.down)), 0), count - 1) }
        for sample in samples {
            buckets[index(sample.createdAt)].submitted += 1
            if let finished = sample.finishedAt, let latency = sample.latency {
                buckets[index(finished)].changesFinished += 1
                changeLatency[index(finished)].record(milliseconds: latency * 1000)
            }
            for step in sample.steps {
                if step.ran, let finished = step.finishedAt { buckets[index(finished)].stepsFinished += 1 }
                if let latency = step.queueLatency, let claimed = step.startedAt { queueLatency[index(claimed)].record(milliseconds: latency * 1000) }
            }
        }
        for position in buckets.indices {
            buckets[position].changeLatency = .init(changeLatency[position])
            buckets[position].queueLatency = .init(queueLatency[position])
        }
        return buckets
    }

    var json: JSON {
        func number(_ value: Double?, _ decimals: Int = 3) -> JSON { value.map { loadJSONNumber($0, decimals: decimals) } ?? .null }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return [
            "settings": [
                "server": .string(settings.server), "via": .string(settings.via), "project": .string(settings.project), "action": .string(settings.action),
                "environments": JSON(settings.environments), "rate_per_s": number(settings.rate), "concurrency": JSON(settings.concurrency),
                "count": settings.count.map { JSON($0) } ?? .null, "duration_s": number(settings.durationSeconds),
            ],
            "started_at": .string(formatter.string(from: startedAt)), "wall_s": number(wallSeconds), "submitted": JSON(submitted), "accepted": JSON(accepted),
            "submit_errors": .object(submitErrors.mapValues { JSON($0) }), "changes": .object(changes.mapValues { JSON($0) }), "steps": JSON(steps),
            "window_s": number(windowSeconds), "changes_per_s": number(changesPerSecond), "steps_per_s": number(stepsPerSecond),
            "queue_latency": queueLatency.json, "change_latency": changeLatency.json, "submit_latency": submitLatency.json,
            "series": .array(buckets.map { bucket in
                [
                    "t_s": number(bucket.start), "width_s": number(bucket.seconds), "submitted": JSON(bucket.submitted),
                    "changes_finished": JSON(bucket.changesFinished), "steps_finished": JSON(bucket.stepsFinished),
                    "change_latency_p50_ms": number(bucket.changeLatency.p50), "change_latency_p99_ms": number(bucket.changeLatency.p99),
                    "queue_latency_p50_ms": number(bucket.queueLatency.p50), "queue_latency_p99_ms": number(bucket.queueLatency.p99),
                ]
            }),
        ]
    }

    /// The figures an operator reads first, one per line.
    var text: String {
        let errors = submitErrors.values.reduce(0, +)
        var lines = [
            "submitted \(submitted), accepted \(accepted), refused or failed \(errors); changes \(LoadReport.counts(changes)); \(steps) steps",
            String(format: "sustained over %.1f s: %.2f changes/s, %.2f steps/s", windowSeconds, changesPerSecond, stepsPerSecond),
            "queue latency (enqueue → claim):  \(queueLatency.line)",
            "change latency (create → final):  \(changeLatency.line)",
            "submit latency (\(settings.via == "queue" ? "publish → answer" : "HTTP round trip")): \(submitLatency.line)",
        ]
        for (message, count) in submitErrors.sorted(by: { $0.value > $1.value }).prefix(5) { lines.append("  error ×\(count): \(message)") }
        return lines.joined(separator: "\n")
    }

    static func counts(_ byStatus: [String: Int]) -> String {
        byStatus.isEmpty ? "none" : byStatus.keys.sorted().map { "\($0) \(byStatus[$0]!)" }.joined(separator: ", ")
    }
}

extension LoadHistogram {
    /// The two percentiles a time series point shows.
    struct Summary: Sendable, Equatable {
        var count = 0
        var p50: Double?
        var p99: Double?

        init() {}

        init(_ histogram: LoadHistogram) {
            count = histogram.count
            p50 = histogram.milliseconds(at: 50)
            p99 = histogram.milliseconds(at: 99)
        }
    }
}
