import Testing
@testable import stepfleet

@Suite struct BenchDispatcherLatencyTests {
    @Test(.timeLimit(.minutes(1))) func childrenAreReadyAtTheirParentsOutcomeAndNextRootsAtTheLastOutcomeBefore() {
        let steps: [BenchDispatcherLatency.Step] = [
            .init(id: "r1", changeId: "c1", parentId: nil), .init(id: "a1", changeId: "c1", parentId: "r1"), .init(id: "b1", changeId: "c1", parentId: "r1"),
            .init(id: "r2", changeId: "c2", parentId: nil), .init(id: "r3", changeId: "c3", parentId: nil),
        ]
        let changes: [BenchDispatcherLatency.Change] = [.init(id: "c1", environment: "e", seq: 0), .init(id: "c2", environment: "e", seq: 1), .init(id: "c3", environment: "f", seq: 2)]
        let sent: [String: UInt64] = ["r1": 100, "a1": 300, "b1": 350, "r2": 900]
        let delivered: [String: UInt64] = ["r1": 50, "a1": 130, "b1": 160, "r2": 400, "r3": 10]
        let result = BenchDispatcherLatency.derive(steps: steps, changes: changes, outcomeSent: sent, delivered: delivered)
        // a1: 130 − 100; b1: 160 − 100; r2: 400 − max(100, 300, 350).
        #expect(result.samples.sorted() == [30, 50, 60])
        #expect(result.firstRoots == 2)
        #expect(result.missing == 0)
    }

    @Test(.timeLimit(.minutes(1))) func aStepWithoutARecordIsCountedApart() {
        let steps: [BenchDispatcherLatency.Step] = [.init(id: "r", changeId: "c", parentId: nil), .init(id: "x", changeId: "c", parentId: "r")]
        let result = BenchDispatcherLatency.derive(steps: steps, changes: [.init(id: "c", environment: "e", seq: 0)], outcomeSent: [:], delivered: ["x": 5])
        #expect(result.samples.isEmpty)
        #expect(result.missing == 1)
    }

    @Test(.timeLimit(.minutes(1))) func theSustainedRateLeavesOutRampUpAndTail() {
        // 101 outcomes 10 ms apart after a slow start and before a slow end.
        let times = [0] + (1...99).map { UInt64(1_000_000_000 + $0 * 10_000_000) } + [10_000_000_000]
        let rate = BenchDispatcherLatency.sustainedRate(times)
        #expect(rate != nil && abs(rate! - 100) < 1)
        #expect(BenchDispatcherLatency.sustainedRate([1, 2, 3]) == nil)
    }
}
