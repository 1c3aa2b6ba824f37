import Foundation
import Protocol

/// One finished (or given-up-on) change as `stepfleet load` read it back from the API: the
/// dispatcher's own time stamps, in epoch seconds.
struct LoadChangeSample: Sendable, Equatable {
    var id: String
    var status: String
    var createdAt: Double
    var finishedAt: Double?
    var steps: [LoadStepSample]

    /// Change latency (create → final), seconds.
    var latency: Double? { finishedAt.map { $0 - createdAt } }

    /// The change's view (`GET /changes/ID`): its times and every step of its tree.
    init?(view: JSON) {
        guard let id = view["id"]?.stringValue, let status = view["status"]?.stringValue, let created = LoadTime.parse(view["created_at"]) else { return nil }
        self.id = id
        self.status = status
        createdAt = created
        finishedAt = LoadTime.parse(view["finished_at"])
        var steps: [LoadStepSample] = []
        func walk(_ step: JSON) {
            steps.append(LoadStepSample(
                status: step["status"]?.stringValue ?? "?", attempt: step["attempt"]?.intValue ?? 0, queuedAt: LoadTime.parse(step["queued_at"]),
                startedAt: LoadTime.parse(step["started_at"]), finishedAt: LoadTime.parse(step["finished_at"])))
            for child in step["children"]?.arrayValue ?? [] { walk(child) }
        }
        if let root = view["root"], root != .null { walk(root) }
        self.steps = steps
    }

    init(id: String, status: String, createdAt: Double, finishedAt: Double?, steps: [LoadStepSample]) {
        self.id = id
        self.status = status
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.steps = steps
    }
}

/// One step of a change: when its current attempt was queued, first claimed, and finished.
struct LoadStepSample: Sendable, Equatable {
    var status: String
    var attempt: Int
    var queuedAt: Double?
    var startedAt: Double?
    var finishedAt: Double?

    /// Finished after running (succeeded or failed), not aborted or cancelled.
    var ran: Bool { finishedAt != nil && (status == "success" || status == "error") }

    /// Queue latency (enqueue → claim), seconds: only for a step that ran one attempt, whose
    /// `queued_at` and `started_at` both belong to that attempt.
    var queueLatency: Double? {
        guard attempt == 1, let queuedAt, let startedAt, startedAt >= queuedAt else { return nil }
        return startedAt - queuedAt
    }
}

/// The API's time stamps: ISO 8601, with or without fractional seconds.
enum LoadTime {
    static func parse(_ value: JSON?) -> Double? {
        guard let text = value?.stringValue else { return nil }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = fractional.date(from: text) { return date.timeIntervalSince1970 }
        return ISO8601DateFormatter().date(from: text)?.timeIntervalSince1970
    }
}
