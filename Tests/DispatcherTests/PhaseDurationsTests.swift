import Foundation
import Protocol
import Testing
@testable import Dispatcher

/// The phase durations a worker reports: kept on the step's current attempt, shown by the
/// API's step view and counted in one histogram per part on /metrics.
@Suite(.timeLimit(.minutes(1))) struct PhaseDurationsTests {
    static let phases = PhaseDurations(buildInitialiseMs: 120, buildMs: 900, runInitialiseMs: 200, runningMs: 3000, runCompletingMs: 40, runMs: 3300)

    @Test func theTreeKeepsTheCurrentAttemptsDurationsOnly() {
        var tree = ChangeTree(changeId: "ch", steps: [StepRecord(id: "root", changeId: "ch", parentId: nil, position: 0, action: "deploy")], leaseSeconds: 10)
        _ = tree.start(now: 0)
        tree.recordDurations(Self.phases, for: AttemptRef(stepId: "root", attempt: 2))
        #expect(tree.steps["root"]?.phaseDurations == nil)
        tree.recordDurations(Self.phases, for: AttemptRef(stepId: "root", attempt: 1))
        #expect(tree.steps["root"]?.phaseDurations == Self.phases)
        let view = Views.step(tree, tree.steps["root"]!, [:])
        #expect(view["phase_durations_ms"]?["build.initialise"] == 120)
        #expect(view["phase_durations_ms"]?["run.completing"] == 40)
        #expect(Views.phaseDurations(nil) == .null)
    }

    @Test func eachPartHasAHistogramOnMetrics() {
        let metrics = DispatcherMetrics()
        metrics.record(Self.phases)
        metrics.record(PhaseDurations(buildMs: 50))
        let text = metrics.exposition()
        #expect(text.contains("# TYPE stepfleet_step_phase_seconds histogram"))
        #expect(text.contains(#"stepfleet_step_phase_seconds_count{phase="build"} 2"#))
        #expect(text.contains(#"stepfleet_step_phase_seconds_count{phase="run.running"} 1"#))
        #expect(text.contains(#"stepfleet_step_phase_seconds_bucket{phase="run.completing",le="0.05"} 1"#))
        #expect(text.contains(#"stepfleet_step_phase_seconds_sum{phase="run"} 3.3"#))
    }

    @Test func aStepRecordWrittenBeforeDurationsStillDecodes() throws {
        let record = StepRecord(id: "s", changeId: "c", parentId: nil, position: 0, action: "a")
        var json = try JSON.parse(bytes: JSONEncoder().encode(record))
        if case .object(var members) = json { members["phaseDurations"] = nil; json = .object(members) }
        #expect(try JSONDecoder().decode(StepRecord.self, from: Data(json.serialized().utf8)).phaseDurations == nil)
    }
}
