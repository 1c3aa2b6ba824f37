import Testing
@testable import Dispatcher

/// Every transition of a batch's plan, with plain values.
@Suite(.timeLimit(.minutes(1))) struct BatchPlanTests {
    /// Change ids c1, c2, … in the order the plan asks for them.
    final class IDs {
        var next = 0
        func make() -> String {
            next += 1
            return "c\(next)"
        }
    }

    static func plan(_ count: Int, parallel: Int, failures: Int = 0, canary: Int = 0) -> BatchPlan {
        BatchPlan(
            batchId: "b", maxParallel: parallel, maxFailures: failures, canary: canary,
            members: (0..<count).map { BatchMember(position: $0, environment: "e\($0)") })
    }

    static func created(_ actions: [BatchPlan.Action]) -> [String] {
        actions.compactMap { action -> String? in
            guard case .createChange(_, let environment, _) = action else { return nil }
            return environment
        }
    }

    @Test func startRunsTheFirstWaveUpToMaxParallel() {
        var plan = Self.plan(5, parallel: 2)
        let ids = IDs()
        let actions = plan.start(now: 1, makeID: ids.make)
        #expect(actions == [.createChange(position: 0, environment: "e0", changeId: "c1"), .createChange(position: 1, environment: "e1", changeId: "c2")])
        #expect(plan.running == 2 && plan.count(.waiting) == 3)
        #expect(plan.members[0].changeId == "c1" && plan.members[0].startedAt == 1)
    }

    @Test func aFinishedChangeLetsTheNextEnvironmentStartInOrder() {
        var plan = Self.plan(3, parallel: 2)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        #expect(plan.changeFinished("c2", .success, now: 2, makeID: ids.make) == [.createChange(position: 2, environment: "e2", changeId: "c3")])
        #expect(plan.members[1].status == .success && plan.members[1].finishedAt == 2)
        #expect(plan.changeFinished("c1", .success, now: 3, makeID: ids.make) == [])
        #expect(plan.changeFinished("c3", .success, now: 4, makeID: ids.make) == [.finished(.success)])
        #expect(plan.status == .success && plan.finishedAt == 4)
    }

    @Test func failuresUpToTheLimitCarryOnAndOnePastItSkipsTheRest() {
        var plan = Self.plan(6, parallel: 2, failures: 1)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        // One failure is within the limit: the next environment starts.
        #expect(Self.created(plan.changeFinished("c1", .error, now: 2, makeID: ids.make)) == ["e2"])
        // The second passes it: nothing more starts, the waiting ones are skipped with the reason.
        #expect(plan.changeFinished("c2", .error, now: 3, makeID: ids.make) == [])
        #expect(plan.stopReason == "2 changes failed, more than max_failures (1); the rest did not start")
        #expect(plan.members.filter { $0.status == .skipped }.map(\.environment) == ["e3", "e4", "e5"])
        #expect(plan.members.filter { $0.status == .skipped }.allSatisfy { $0.reason == plan.stopReason })
        #expect(plan.status == .running)
        // The change still running finishes; then the batch ends in error.
        #expect(plan.changeFinished("c3", .success, now: 4, makeID: ids.make) == [.finished(.error)])
    }

    @Test func aCancelledChangeCountsAsAFailure() {
        var plan = Self.plan(3, parallel: 1, failures: 0)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        #expect(plan.changeFinished("c1", .cancelled, now: 2, makeID: ids.make) == [.finished(.error)])
        #expect(plan.members.map(\.status) == [.cancelled, .skipped, .skipped])
    }

    @Test func theCanaryWaveRunsAloneAndTheRestStartOnlyWhenItAllSucceeded() {
        var plan = Self.plan(5, parallel: 3, canary: 2)
        let ids = IDs()
        #expect(Self.created(plan.start(now: 1, makeID: ids.make)) == ["e0", "e1"])
        #expect(plan.changeFinished("c1", .success, now: 2, makeID: ids.make) == [])
        #expect(Self.created(plan.changeFinished("c2", .success, now: 3, makeID: ids.make)) == ["e2", "e3", "e4"])
    }

    @Test func aFailedCanaryStopsTheBatchWhateverMaxFailuresSays() {
        var plan = Self.plan(4, parallel: 4, failures: 10, canary: 1)
        let ids = IDs()
        #expect(Self.created(plan.start(now: 1, makeID: ids.make)) == ["e0"])
        #expect(plan.changeFinished("c1", .error, now: 2, makeID: ids.make) == [.finished(.error)])
        #expect(plan.stopReason == "the canary environment e0 did not succeed (error); the rest did not start")
        #expect(plan.members.dropFirst().allSatisfy { $0.status == .skipped && $0.changeId == nil })
    }

    @Test func aCanaryWaveWiderThanMaxParallelRunsInTurn() {
        var plan = Self.plan(4, parallel: 1, canary: 2)
        let ids = IDs()
        #expect(Self.created(plan.start(now: 1, makeID: ids.make)) == ["e0"])
        #expect(Self.created(plan.changeFinished("c1", .success, now: 2, makeID: ids.make)) == ["e1"])
        #expect(Self.created(plan.changeFinished("c2", .success, now: 3, makeID: ids.make)) == ["e2"])
    }

    @Test func cancelCancelsWhatRunsSkipsTheRestAndEndsCancelledWhenTheChangesHaveEnded() {
        var plan = Self.plan(4, parallel: 2)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        #expect(plan.cancel(now: 2) == [.cancelChange(changeId: "c1"), .cancelChange(changeId: "c2")])
        #expect(plan.members.map(\.status) == [.running, .running, .skipped, .skipped])
        #expect(plan.members[2].reason == "the batch was cancelled")
        #expect(plan.changeFinished("c1", .cancelled, now: 3, makeID: ids.make) == [])
        // A change that succeeded before its cancel arrived keeps its success; nothing new starts.
        #expect(plan.changeFinished("c2", .success, now: 3, makeID: ids.make) == [.finished(.cancelled)])
        #expect(plan.status == .cancelled)
        #expect(plan.cancel(now: 4) == nil)
    }

    @Test func cancellingABatchWithNothingRunningEndsItAtOnce() {
        var plan = Self.plan(2, parallel: 1, failures: 0)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        _ = plan.changeFinished("c1", .success, now: 2, makeID: ids.make)
        #expect(plan.running == 1)
        _ = plan.changeFinished("c2", .error, now: 3, makeID: ids.make)
        #expect(plan.cancel(now: 4) == nil)
        var waiting = Self.plan(2, parallel: 1, canary: 0)
        #expect(waiting.cancel(now: 1) == [.finished(.cancelled)])
        #expect(waiting.members.allSatisfy { $0.status == .skipped })
    }

    @Test func eventsAboutUnknownOrFinishedChangesChangeNothing() {
        var plan = Self.plan(2, parallel: 1)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        let before = plan
        #expect(plan.changeFinished("nope", .success, now: 2, makeID: ids.make) == [])
        #expect(plan.changeFinished("c1", .running, now: 2, makeID: ids.make) == [])
        #expect(plan == before)
        _ = plan.changeFinished("c1", .success, now: 2, makeID: ids.make)
        let after = plan
        // The same end twice (a second delivery) does nothing more.
        #expect(plan.changeFinished("c1", .error, now: 3, makeID: ids.make) == [])
        #expect(plan == after)
    }

    @Test func aChangeThatCannotBeCreatedFailsItsEnvironmentAndTheNextStarts() {
        var plan = Self.plan(3, parallel: 1, failures: 1)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        #expect(Self.created(plan.changeNotCreated(position: 0, reason: "environment deleted", now: 2, makeID: ids.make)) == ["e1"])
        #expect(plan.members[0].status == .error && plan.members[0].reason == "environment deleted" && plan.members[0].changeId == nil)
    }

    @Test func resumeSettlesChangesThatEndedUnseenAndNeverStartsAMemberTwice() {
        var plan = Self.plan(4, parallel: 2)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        // c1 ended while the dispatcher was down; c2 still runs.
        let actions = plan.resume(changes: ["c1": .success, "c2": .running], now: 5, makeID: ids.make)
        #expect(actions == [.createChange(position: 2, environment: "e2", changeId: "c3")])
        // Nothing moved since: resuming again starts nothing.
        #expect(plan.resume(changes: ["c1": .success, "c2": .running, "c3": .pending], now: 6, makeID: ids.make) == [])
        #expect(plan.members.compactMap(\.changeId) == ["c1", "c2", "c3"])
    }

    @Test func resumeFailsAMemberWhoseChangeIsMissing() {
        var plan = Self.plan(2, parallel: 1, failures: 5)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        #expect(Self.created(plan.resume(changes: [:], now: 2, makeID: ids.make)) == ["e1"])
        #expect(plan.members[0].status == .error && plan.members[0].reason?.contains("missing") == true)
    }

    @Test func aFinishedBatchIgnoresEverything() {
        var plan = Self.plan(1, parallel: 1)
        let ids = IDs()
        _ = plan.start(now: 1, makeID: ids.make)
        #expect(plan.changeFinished("c1", .success, now: 2, makeID: ids.make) == [.finished(.success)])
        let done = plan
        #expect(plan.start(now: 3, makeID: ids.make) == [])
        #expect(plan.resume(changes: [:], now: 3, makeID: ids.make) == [])
        #expect(plan == done)
    }

    @Test func globsMatchWholeCodesWithStarAndQuestionMark() {
        #expect(Glob.matches("prod-*", "prod-eu1"))
        #expect(Glob.matches("prod-*", "prod-"))
        #expect(!Glob.matches("prod-*", "preprod-eu1"))
        #expect(Glob.matches("*-eu?", "prod-eu1"))
        #expect(!Glob.matches("*-eu?", "prod-eu12"))
        #expect(Glob.matches("*", ""))
        #expect(!Glob.matches("a", ""))
        #expect(Glob.matches("a*b*c", "axxbyyc"))
        // A hostile pattern does not blow up.
        #expect(!Glob.matches(String(repeating: "*a", count: 30) + "b", String(repeating: "a", count: 64)))
    }
}
