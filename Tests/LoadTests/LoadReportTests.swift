import Foundation
import Protocol
import Testing
@testable import stepfleet

/// Within the HDR histogram's precision (three significant digits).
func near(_ value: Double?, _ expected: Double) -> Bool {
    guard let value else { return false }
    return abs(value - expected) <= expected * 0.001 + 0.001
}

@Suite struct LoadReportTests {
    static let settings = LoadReport.Settings(
        server: "http://127.0.0.1:1", via: "http", project: "p", action: "deploy", environments: 2, rate: nil, concurrency: 1, count: 4, durationSeconds: nil)

    /// Four changes created a second apart, each taking (index + 1) seconds, with two steps
    /// each: one queued 10·(index+1) ms before its claim, one aborted.
    static var samples: [LoadChangeSample] {
        (0..<4).map { index in
            let created = 1000.0 + Double(index)
            let finished = created + Double(index + 1)
            return LoadChangeSample(
                id: "c\(index)", status: index == 3 ? "error" : "success", createdAt: created, finishedAt: finished,
                steps: [
                    LoadStepSample(status: index == 3 ? "error" : "success", attempt: 1, queuedAt: created, startedAt: created + 0.01 * Double(index + 1), finishedAt: finished),
                    LoadStepSample(status: "aborted", attempt: 0, queuedAt: nil, startedAt: nil, finishedAt: finished),
                ])
        }
    }

    @Test(.timeLimit(.minutes(1))) func percentilesCountsAndRatesComeFromTheSamples() throws {
        let report = LoadReport.make(
            settings: Self.settings, startedAt: Date(), wallSeconds: 9, submitted: 5, submitErrors: ["400: no": 1], samples: Self.samples, unfinished: 0,
            submitLatencies: [5, 7])
        #expect(report.accepted == 4)
        #expect(report.changes == ["success": 3, "error": 1])
        // Aborted steps never ran: not counted.
        #expect(report.steps == 4)
        // From the first creation (1000) to the last end (1003 + 4 = 1007).
        #expect(report.windowSeconds == 7)
        #expect(abs(report.changesPerSecond - 4.0 / 7) < 1e-9)
        #expect(report.changeLatency.count == 4)
        // HDR histograms keep three significant digits.
        #expect(near(report.changeLatency.p50, 2000))
        #expect(near(report.changeLatency.max, 4000))
        #expect(near(report.changeLatency.p99, 4000))
        #expect(report.queueLatency.count == 4)
        #expect(abs((report.queueLatency.p50 ?? 0) - 20) < 0.05)
        #expect(abs((report.queueLatency.max ?? 0) - 40) < 0.05)
        #expect(report.submitLatency.count == 2)
    }

    @Test(.timeLimit(.minutes(1))) func theSeriesPutsEachEventInItsWindow() {
        let report = LoadReport.make(
            settings: Self.settings, startedAt: Date(), wallSeconds: 9, submitted: 4, submitErrors: [:], samples: Self.samples, unfinished: 1,
            submitLatencies: [], bucketSeconds: 2)
        #expect(report.changes["unfinished"] == 1)
        #expect(report.buckets.map(\.start) == [0, 2, 4, 6])
        #expect(report.buckets.map(\.submitted) == [2, 2, 0, 0])
        // Ends at 1001, 1003, 1005, 1007 → windows 0, 1, 2, 3.
        #expect(report.buckets.map(\.changesFinished) == [1, 1, 1, 1])
        #expect(report.buckets.map(\.stepsFinished) == [1, 1, 1, 1])
        #expect(near(report.buckets[3].changeLatency.p50, 4000))
        #expect(report.buckets.map(\.submitted).reduce(0, +) == 4)
    }

    @Test(.timeLimit(.minutes(1))) func aRetriedStepHasNoQueueLatency() {
        #expect(LoadStepSample(status: "success", attempt: 2, queuedAt: 5, startedAt: 1, finishedAt: 6).queueLatency == nil)
        #expect(LoadStepSample(status: "success", attempt: 1, queuedAt: 5, startedAt: 5.5, finishedAt: 6).queueLatency == 0.5)
    }

    @Test(.timeLimit(.minutes(1))) func aChangeViewIsReadWithItsTreeAndMillisecondStamps() throws {
        let view = try JSON.parse("""
            {"id": "c1", "status": "success", "created_at": "2026-11-30T00:00:00.250Z", "finished_at": "2026-11-30T00:00:02Z",
             "root": {"status": "success", "attempt": 1, "queued_at": "2026-11-30T00:00:00.300Z", "started_at": "2026-11-30T00:00:00.450Z",
                      "finished_at": "2026-11-30T00:00:01.900Z",
                      "children": [{"status": "success", "attempt": 1, "queued_at": null, "started_at": null, "finished_at": null, "children": []}]}}
            """)
        let sample = try #require(LoadChangeSample(view: view))
        #expect(sample.steps.count == 2)
        #expect(abs((sample.latency ?? 0) - 1.75) < 1e-6)
        #expect(abs((sample.steps[0].queueLatency ?? 0) - 0.15) < 1e-6)
        #expect(LoadChangeSample(view: ["status": "success"]) == nil)
    }

    @Test(.timeLimit(.minutes(1))) func theJSONReportCarriesTheFigures() throws {
        let report = LoadReport.make(
            settings: Self.settings, startedAt: Date(timeIntervalSince1970: 0), wallSeconds: 9, submitted: 4, submitErrors: [:], samples: Self.samples,
            unfinished: 0, submitLatencies: [3])
        let json = try JSON.parse(report.json.serialized())
        #expect(json["changes"]?["success"]?.intValue == 3)
        guard case .number(let p50) = json["change_latency"]?["p50_ms"] else { Issue.record("no change p50 in \(json)"); return }
        #expect(near(p50.doubleValue, 2000))
        #expect(json["series"]?.arrayValue?.count == report.buckets.count)
        #expect(json["settings"]?["via"]?.stringValue == "http")
    }
}
