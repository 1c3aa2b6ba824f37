import Foundation
import Protocol

/// Where a bench change's time per step goes, from what the dispatcher recorded: when each
/// step was queued, claimed (the claim handled) and finished (the outcome handled), and the
/// phase parts its worker reported. Parts are medians over every measured step.
struct ChainBreakdown {
    /// Milliseconds per named part, one sample per step.
    private var samples: [String: [Double]] = [:]

    /// The parts, in the order a step goes through them, with what each covers.
    static let parts: [(name: String, covers: String)] = [
        ("queued → claimed", "the job published from the outbox, delivered, claimed, the claim confirmed and handled"),
        ("build", "worker: the mirror, the repository's files, the build key looked up (a cache hit)"),
        ("run.initialise", "worker: the container prepared (mount, config, step_context.json)"),
        ("run.running", "worker: the container's process, start to exit"),
        ("run.completing", "worker: output and step_result.json read, the container removed"),
        ("outcome → handled", "the outcome published, delivered and applied (claim-to-outcome less build and run)"),
        ("handled → next queued", "the dispatcher: from one step's outcome applied to the next step queued"),
    ]

    /// Adds the steps of one finished change (`GET /changes/ID`): the root's children, in order.
    mutating func add(change: JSON) {
        let children = change["root"]?["children"]?.arrayValue ?? []
        var previousFinished: Double?
        for step in children {
            guard let queued = Self.seconds(step["queued_at"]), let claimed = Self.seconds(step["started_at"]),
                let finished = Self.seconds(step["finished_at"])
            else { continue }
            let parts = step["phase_durations_ms"]
            let build = Double(parts?["build"]?.intValue ?? 0)
            let run = Double(parts?["run"]?.intValue ?? 0)
            record("queued → claimed", (claimed - queued) * 1000)
            record("build", build)
            for name in ["run.initialise", "run.running", "run.completing"] {
                if let ms = parts?[name]?.intValue { record(name, Double(ms)) }
            }
            record("outcome → handled", max(0, (finished - claimed) * 1000 - build - run))
            if let previousFinished { record("handled → next queued", max(0, (queued - previousFinished) * 1000)) }
            previousFinished = finished
        }
    }

    /// One line per part: its median and what it covers (for a fan, the gap between one step
    /// and the next is not a cost).
    func lines(serial: Bool) -> [String] {
        Self.parts.compactMap { part in
            guard serial || part.name != "handled → next queued", let values = samples[part.name], !values.isEmpty else { return nil }
            return "  " + part.name.padding(toLength: 22, withPad: " ", startingAt: 0) + String(format: "%8.1f ms  ", Percentiles(values).median) + part.covers
        }
    }

    private mutating func record(_ name: String, _ ms: Double) {
        samples[name, default: []].append(ms)
    }

    private static func seconds(_ value: JSON?) -> Double? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return value?.stringValue.flatMap { formatter.date(from: $0)?.timeIntervalSince1970 }
    }
}
