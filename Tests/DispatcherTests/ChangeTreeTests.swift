import Protocol
import Testing
@testable import Dispatcher

/// Every transition of the state machine, with plain values.
@Suite(.timeLimit(.minutes(2))) struct ChangeTreeTests {
    /// Deterministic ids: c1, c2, …
    final class IDs {
        var next = 0
        func make() -> String {
            next += 1
            return "c\(next)"
        }
    }

    func tree() -> ChangeTree {
        ChangeTree(changeId: "ch", steps: [StepRecord(id: "root", changeId: "ch", parentId: nil, position: 0, action: "deploy")], leaseSeconds: 10)
    }

    func ref(_ id: String, _ attempt: Int = 1) -> AttemptRef { AttemptRef(stepId: id, attempt: attempt) }

    /// Runs a step through claim and a successful outcome.
    func succeed(_ tree: inout ChangeTree, _ id: String, children: [String] = [], strategy: ExecutionStrategy? = nil, ids: IDs, attempt: Int = 1, worker: String = "w1") -> [Effect] {
        _ = tree.claimed(ref(id, attempt), by: worker, now: 1)
        return tree.outcome(ref(id, attempt), from: worker, .success(children: children.map(ChildStep.init(action:)), strategy: strategy, policy: nil), now: 2, makeID: ids.make)
    }

    @Test func startQueuesTheRootAndAClaimMakesItRun() {
        var tree = tree()
        #expect(tree.changeStatus == .pending)
        #expect(tree.start(now: 0) == [.enqueue(stepId: "root", attempt: 1)])
        #expect(tree.steps["root"]?.status == .queued)
        #expect(tree.changeStatus == .running)
        #expect(tree.claimed(ref("root"), by: "w1", now: 5) == [])
        #expect(tree.steps["root"]?.status == .running)
        #expect(tree.steps["root"]?.worker == "w1")
        #expect(tree.steps["root"]?.leaseExpiresAt == 15)
    }

    @Test func aLeafSuccessFinishesTheChange() {
        var tree = tree()
        _ = tree.start(now: 0)
        #expect(succeed(&tree, "root", ids: IDs()) == [.changeFinished(.success)])
        #expect(tree.steps["root"]?.status == .success)
    }

    @Test func serialChildrenRunOneAtATimeInOrder() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        #expect(succeed(&tree, "root", children: ["a", "b", "c"], strategy: .serial, ids: ids) == [.enqueue(stepId: "c1", attempt: 1)])
        #expect(tree.children(of: "root").map(\.status) == [.queued, .pending, .pending])
        #expect(tree.steps["root"]?.status == .running)
        #expect(succeed(&tree, "c1", ids: ids) == [.enqueue(stepId: "c2", attempt: 1)])
        #expect(succeed(&tree, "c2", ids: ids) == [.enqueue(stepId: "c3", attempt: 1)])
        #expect(succeed(&tree, "c3", ids: ids) == [.changeFinished(.success)])
        #expect(tree.steps["root"]?.status == .success)
    }

    @Test func aFailingSerialChildAbortsItsLaterSiblingsAndFailsTheChange() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b", "c"], ids: ids)
        _ = tree.claimed(ref("c1"), by: "w1", now: 3)
        let effects = tree.outcome(ref("c1"), from: "w1", .failure(error: "boom", policy: nil), now: 4, makeID: ids.make)
        #expect(effects == [.changeFinished(.error)])
        #expect(tree.children(of: "root").map(\.status) == [.error, .aborted, .aborted])
        #expect(tree.steps["root"]?.error == "child step \"a\" failed")
    }

    @Test func parallelChildrenAllStartAndTheParentWaitsForAllBeforeFailing() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        #expect(succeed(&tree, "root", children: ["a", "b"], strategy: .parallel, ids: ids) == [.enqueue(stepId: "c1", attempt: 1), .enqueue(stepId: "c2", attempt: 1)])
        _ = tree.claimed(ref("c1"), by: "w1", now: 3)
        #expect(tree.outcome(ref("c1"), from: "w1", .failure(error: "boom", policy: nil), now: 4, makeID: ids.make) == [])
        #expect(tree.steps["c2"]?.status == .queued)
        #expect(tree.steps["root"]?.status == .running)
        #expect(succeed(&tree, "c2", ids: ids) == [.changeFinished(.error)])
        #expect(tree.steps["c2"]?.status == .success)
    }

    @Test func ignoreFailureDoesNotFailTheParent() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b"], ids: ids)
        _ = tree.claimed(ref("c1"), by: "w1", now: 3)
        let policy = ActionPolicy(ignoreFailure: true)
        #expect(tree.outcome(ref("c1"), from: "w1", .failure(error: "meh", policy: policy), now: 4, makeID: ids.make) == [.enqueue(stepId: "c2", attempt: 1)])
        #expect(succeed(&tree, "c2", ids: ids) == [.changeFinished(.success)])
    }

    @Test func nestedTreesPropagateUpwards() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["group", "last"], strategy: .serial, ids: ids)
        #expect(succeed(&tree, "c1", children: ["x", "y"], strategy: .parallel, ids: ids) == [.enqueue(stepId: "c3", attempt: 1), .enqueue(stepId: "c4", attempt: 1)])
        #expect(succeed(&tree, "c3", ids: ids) == [])
        #expect(succeed(&tree, "c4", ids: ids) == [.enqueue(stepId: "c2", attempt: 1)])
        #expect(tree.steps["c1"]?.status == .success)
        #expect(succeed(&tree, "c2", ids: ids) == [.changeFinished(.success)])
    }

    @Test func retriesQueueANewAttemptUntilTheyRunOut() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        let policy = ActionPolicy(retries: 1)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        #expect(tree.outcome(ref("root"), from: "w1", .failure(error: "flaky", policy: policy), now: 2, makeID: ids.make) == [.enqueue(stepId: "root", attempt: 2)])
        #expect(tree.steps["root"]?.status == .queued)
        _ = tree.claimed(ref("root", 2), by: "w2", now: 3)
        #expect(tree.outcome(ref("root", 2), from: "w2", .failure(error: "still", policy: policy), now: 4, makeID: ids.make) == [.changeFinished(.error)])
        #expect(tree.steps["root"]?.error == "still")
    }

    // MARK: The odd ones

    @Test func anOutcomeForAnOldAttemptIsDropped() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        _ = tree.leaseExpired(ref("root"), now: 20)
        #expect(tree.steps["root"]?.attempt == 2)
        #expect(tree.outcome(ref("root", 1), from: "w1", .success(children: [], strategy: nil, policy: nil), now: 21, makeID: ids.make) == [])
        #expect(tree.steps["root"]?.status == .queued)
    }

    @Test func aDuplicateOutcomeIsDropped() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        #expect(succeed(&tree, "root", children: ["a"], ids: ids) == [.enqueue(stepId: "c1", attempt: 1)])
        let again = tree.outcome(ref("root"), from: "w1", .success(children: [ChildStep(action: "a")], strategy: nil, policy: nil), now: 3, makeID: ids.make)
        #expect(again == [])
        #expect(tree.children(of: "root").count == 1)
    }

    @Test func anOutcomeAfterCancelIsDropped() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        #expect(tree.cancel(now: 2) == [.cancelAttempt(ref("root"), worker: nil), .changeFinished(.cancelled)])
        #expect(tree.outcome(ref("root"), from: "w1", .success(children: [], strategy: nil, policy: nil), now: 3, makeID: ids.make) == [])
        #expect(tree.steps["root"]?.status == .cancelled)
    }

    @Test func aClaimForAFinishedStepStopsThatWorker() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", ids: IDs())
        #expect(tree.claimed(ref("root"), by: "w9", now: 5) == [.cancelAttempt(ref("root"), worker: "w9")])
        #expect(tree.steps["root"]?.status == .success)
    }

    @Test func aSecondClaimOfTheSameAttemptIsCancelledAndTheFirstKeepsTheLease() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        #expect(tree.claimed(ref("root"), by: "w2", now: 2) == [.cancelAttempt(ref("root"), worker: "w2")])
        #expect(tree.steps["root"]?.worker == "w1")
        // Heartbeats from the duplicate do not renew the lease.
        _ = tree.heard(ref("root"), from: "w2", runStarted: true, policy: nil, now: 5)
        #expect(tree.steps["root"]?.leaseExpiresAt == 11)
        #expect(tree.steps["root"]?.runStarted == false)
    }

    @Test func anOutcomeMayOvertakeItsClaim() {
        var tree = tree()
        _ = tree.start(now: 0)
        #expect(tree.outcome(ref("root"), from: "w1", .success(children: [], strategy: nil, policy: nil), now: 1, makeID: IDs().make) == [.changeFinished(.success)])
        #expect(tree.claimed(ref("root"), by: "w1", now: 2) == [.cancelAttempt(ref("root"), worker: "w1")])
    }

    @Test func heartbeatsRenewTheLease() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        _ = tree.heard(ref("root"), from: "w1", runStarted: false, policy: nil, now: 9)
        #expect(tree.expiredLeases(now: 15) == [])
        #expect(tree.expiredLeases(now: 19.5) == [ref("root")])
    }

    @Test func aLostWorkerBeforeTheRunRequeuesANewAttempt() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        #expect(tree.leaseExpired(ref("root"), now: 12) == [.cancelAttempt(ref("root"), worker: "w1"), .enqueue(stepId: "root", attempt: 2)])
        #expect(tree.steps["root"]?.status == .queued)
        #expect(tree.steps["root"]?.worker == nil)
    }

    @Test func aLostWorkerDuringTheRunFailsTheStep() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        _ = tree.heard(ref("root"), from: "w1", runStarted: true, policy: nil, now: 2)
        #expect(tree.leaseExpired(ref("root"), now: 13) == [.cancelAttempt(ref("root"), worker: "w1"), .changeFinished(.error)])
        #expect(tree.steps["root"]?.error == "worker lost during run (w1 went silent)")
    }

    @Test func aLostWorkerDuringTheRunIsRetriedWhenThePolicyAllows() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        _ = tree.heard(ref("root"), from: "w1", runStarted: true, policy: ActionPolicy(retries: 1), now: 2)
        #expect(tree.leaseExpired(ref("root"), now: 13) == [.cancelAttempt(ref("root"), worker: "w1"), .enqueue(stepId: "root", attempt: 2)])
    }

    @Test func anExpiredLeaseForAnOldAttemptDoesNothing() {
        var tree = tree()
        _ = tree.start(now: 0)
        #expect(tree.leaseExpired(ref("root", 7), now: 100) == [])
    }

    @Test func cancelKeepsFinishedStepsAndCancelsTheRest() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b", "c"], strategy: .parallel, ids: ids)
        _ = succeed(&tree, "c1", ids: ids)
        _ = tree.claimed(ref("c2"), by: "w1", now: 3)
        _ = tree.claimed(ref("c3"), by: "w2", now: 3)
        _ = tree.outcome(ref("c3"), from: "w2", .failure(error: "x", policy: nil), now: 4, makeID: ids.make)
        let effects = tree.cancel(now: 5)
        #expect(effects == [.cancelAttempt(ref("c2"), worker: nil), .changeFinished(.cancelled)])
        #expect(tree.children(of: "root").map(\.status) == [.success, .cancelled, .error])
        #expect(tree.steps["root"]?.status == .cancelled)
        #expect(tree.changeStatus == .cancelled)
    }

    @Test func aRetriedChangeKeepsSuccessesAndRunsTheRest() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b", "c"], strategy: .serial, ids: ids)
        _ = succeed(&tree, "c1", ids: ids)
        _ = tree.claimed(ref("c2"), by: "w1", now: 3)
        _ = tree.outcome(ref("c2"), from: "w1", .failure(error: "x", policy: nil), now: 4, makeID: ids.make)
        #expect(tree.changeStatus == .error)

        let retryIDs = IDs()
        retryIDs.next = 100
        let copied = tree.retried(as: "ch2", makeID: retryIDs.make)
        var retry = ChangeTree(changeId: "ch2", steps: copied)
        let root = try! #require(retry.root)
        #expect(root.ownDone)
        #expect(retry.children(of: root.id).map(\.status) == [.success, .pending, .pending])
        let effects = retry.start(now: 10)
        let b = retry.children(of: root.id)[1]
        #expect(effects == [.enqueue(stepId: b.id, attempt: 1)])
        #expect(succeed(&retry, b.id, ids: retryIDs) == [.enqueue(stepId: retry.children(of: root.id)[2].id, attempt: 1)])
    }
}

extension ChangeTreeTests {
    @Test func anAttemptFarPastItsTimeoutIsFailedByTheDispatcher() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        _ = tree.heard(ref("root"), from: "w1", runStarted: true, policy: ActionPolicy(timeoutSeconds: 30), now: 2)
        #expect(tree.overdue(now: 40, grace: 20) == [])
        #expect(tree.overdue(now: 53, grace: 20) == [ref("root")])
        #expect(tree.timedOut(ref("root"), now: 53) == [.cancelAttempt(ref("root"), worker: "w1"), .changeFinished(.error)])
        #expect(tree.steps["root"]?.error == "the step ran past its timeout of 30 s and its worker did not stop it; the dispatcher failed it")
        #expect(tree.timedOut(ref("root"), now: 54) == [])
    }

    @Test func withoutATimeoutNothingIsOverdue() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        _ = tree.heard(ref("root"), from: "w1", runStarted: true, policy: nil, now: 2)
        #expect(tree.overdue(now: 1_000_000, grace: 20) == [])
    }
}

extension ChangeTreeTests {
    @Test func aDeadLetteredJobIsQueuedAgainThenGivenUp() {
        var tree = tree()
        _ = tree.start(now: 0)
        #expect(tree.jobDeadLettered(ref("root"), reason: "delivery_limit", now: 1, limit: 2) == [.enqueue(stepId: "root", attempt: 2)])
        #expect(tree.steps["root"]?.error == "the broker dead-lettered the job (delivery_limit); queued again")
        // An old attempt's dead letter changes nothing.
        #expect(tree.jobDeadLettered(ref("root", 1), reason: "delivery_limit", now: 2, limit: 2) == [])
        #expect(tree.jobDeadLettered(ref("root", 2), reason: "rejected", now: 3, limit: 2) == [.changeFinished(.error)])
        #expect(tree.steps["root"]?.error == "the broker dead-lettered this step's job 2 times (last: rejected)")
    }

    @Test func aClaimedStepIgnoresItsDeadLetteredJob() {
        var tree = tree()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        #expect(tree.jobDeadLettered(ref("root"), reason: "delivery_limit", now: 2) == [])
        #expect(tree.steps["root"]?.status == .running)
    }
}

/// README: "An outcome counts only for the step's current attempt, from the lease holder, once"
/// and "After a restart the dispatcher gives running attempts a fresh lease first".
extension ChangeTreeTests {
    @Test func onlyTheLeaseHoldersOutcomeCountsAndOnlyOnce() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = tree.claimed(ref("root"), by: "w1", now: 1)
        // The job was delivered twice: the second claimer is told to cancel, and its outcome
        // (success or failure) changes nothing.
        #expect(tree.claimed(ref("root"), by: "w2", now: 2) == [.cancelAttempt(ref("root"), worker: "w2")])
        #expect(tree.outcome(ref("root"), from: "w2", .success(children: [ChildStep(action: "x")], strategy: nil, policy: nil), now: 3, makeID: ids.make) == [])
        #expect(tree.outcome(ref("root"), from: "w2", .failure(error: "duplicate", policy: nil), now: 3, makeID: ids.make) == [])
        #expect(tree.steps["root"]?.status == .running && tree.steps["root"]?.worker == "w1")
        #expect(tree.steps.count == 1, "the duplicate's children were not added")
        // The holder's outcome counts; a second one (a redelivered outcome) does not.
        #expect(tree.outcome(ref("root"), from: "w1", .failure(error: "real", policy: nil), now: 4, makeID: ids.make) == [.changeFinished(.error)])
        #expect(tree.outcome(ref("root"), from: "w1", .success(children: [], strategy: nil, policy: nil), now: 5, makeID: ids.make) == [])
        #expect(tree.steps["root"]?.status == .error && tree.steps["root"]?.error == "real")
    }

    @Test func aRestartGivesRunningAttemptsAFreshLeaseAndShortensNone() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b"], strategy: .parallel, ids: ids)
        _ = tree.claimed(ref("c1"), by: "w1", now: 3)  // lease until 13
        _ = tree.claimed(ref("c2"), by: "w1", now: 30)  // lease until 40
        // The dispatcher was away until 100: both leases ran out meanwhile; renewed, neither is
        // expired, and a lease already longer is kept.
        #expect(Set(tree.expiredLeases(now: 100)) == [ref("c1"), ref("c2")])
        tree.renewLeases(until: 110)
        #expect(tree.steps["c1"]?.leaseExpiresAt == 110 && tree.steps["c2"]?.leaseExpiresAt == 110)
        #expect(tree.expiredLeases(now: 100) == [])
        tree.renewLeases(until: 50)
        #expect(tree.steps["c1"]?.leaseExpiresAt == 110)
    }
}
