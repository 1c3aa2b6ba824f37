import Protocol
import Testing

@testable import Dispatcher

/// A queued job nobody claims is published again (the tree's part: which attempts, and what
/// a re-send changes). After a broker node dies, RabbitMQ keeps a delivery it had made to a
/// consumer on that node checked out until the node returns: seen in `ops/chaos
/// cluster-node-loss`, one step queued for good, its queue showing 1 unacked message and no
/// live channel holding it.
@Suite struct UnclaimedJobTests {
    func tree() -> ChangeTree {
        ChangeTree(changeId: "ch", steps: [StepRecord(id: "root", changeId: "ch", parentId: nil, position: 0, action: "deploy")], leaseSeconds: 10)
    }

    let root = AttemptRef(stepId: "root", attempt: 1)

    @Test(.timeLimit(.minutes(1))) func aQueuedJobIsUnclaimedOnlyOnceItsTimeHasPassed() {
        var tree = tree()
        _ = tree.start(now: 100)
        #expect(tree.unclaimed(now: 129, after: 30) == [])
        #expect(tree.unclaimed(now: 130, after: 30) == [root])
    }

    @Test(.timeLimit(.minutes(1))) func aResendPublishesTheSameAttemptAndRestartsTheClock() {
        var tree = tree()
        _ = tree.start(now: 100)
        #expect(tree.resend(root, now: 130) == [.enqueue(stepId: "root", attempt: 1)])
        #expect(tree.steps["root"]?.attempt == 1)
        #expect(tree.steps["root"]?.queuedAt == 100, "queue latency still counts from the first publish")
        #expect(tree.unclaimed(now: 159, after: 30) == [])
        #expect(tree.unclaimed(now: 160, after: 30) == [root])
    }

    @Test(.timeLimit(.minutes(1))) func aClaimedOrFinishedStepIsNeverSentAgain() {
        var tree = tree()
        _ = tree.start(now: 100)
        _ = tree.claimed(root, by: "w1", now: 101)
        #expect(tree.unclaimed(now: 1000, after: 30) == [])
        #expect(tree.resend(root, now: 1000) == [])
        #expect(tree.resend(AttemptRef(stepId: "root", attempt: 2), now: 1000) == [])
    }

    @Test(.timeLimit(.minutes(1))) func aResendGetsANewClaimTokenSoTheOldDeliveryCannotClaim() {
        var tree = tree()
        var effects = tree.start(now: 100)
        var counter = 0
        tree.issueClaimTokens(for: effects) { counter += 1; return "token\(counter)" }
        #expect(tree.steps["root"]?.claimToken == "token1")
        effects = tree.resend(root, now: 130)
        tree.issueClaimTokens(for: effects) { counter += 1; return "token\(counter)" }
        #expect(tree.steps["root"]?.claimToken == "token2")
    }

    @Test(.timeLimit(.minutes(1))) func aNewAttemptStartsWithoutTheLastOnesResend() {
        var tree = tree()
        _ = tree.start(now: 100)
        _ = tree.resend(root, now: 130)
        _ = tree.claimed(root, by: "w1", now: 131)
        // The worker goes silent before its run starts: the attempt is queued again.
        _ = tree.leaseExpired(root, now: 200)
        #expect(tree.steps["root"]?.attempt == 2)
        #expect(tree.steps["root"]?.resentAt == nil)
        #expect(tree.unclaimed(now: 229, after: 30) == [])
    }
}
