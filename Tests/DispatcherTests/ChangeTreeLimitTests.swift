import Foundation
import Protocol
import Testing
@testable import Dispatcher

/// The cap on a change's steps in flight, and leases bound to verified identities.
extension ChangeTreeTests {
    func capped(_ maxInFlight: Int) -> ChangeTree {
        var tree = tree()
        tree.maxInFlight = maxInFlight
        return tree
    }

    func fail(_ tree: inout ChangeTree, _ id: String, policy: ActionPolicy? = nil, attempt: Int = 1, ids: IDs) -> [Effect] {
        _ = tree.claimed(ref(id, attempt), by: "w1", now: 1)
        return tree.outcome(ref(id, attempt), from: "w1", .failure(error: "boom", policy: policy), now: 2, makeID: ids.make)
    }

    @Test func parallelChildrenBeyondTheCapWaitAndStartAsOthersFinish() {
        var tree = capped(2)
        let ids = IDs()
        _ = tree.start(now: 0)
        let effects = succeed(&tree, "root", children: ["a", "b", "c", "d", "e"], strategy: .parallel, ids: ids)
        #expect(effects == [.enqueue(stepId: "c1", attempt: 1), .enqueue(stepId: "c2", attempt: 1)])
        #expect(tree.children(of: "root").map(\.status) == [.queued, .queued, .pending, .pending, .pending])
        #expect(tree.children(of: "root").map { $0.waitingTurn != nil } == [false, false, true, true, true])
        #expect(tree.inFlightCount == 2)
        // Each finished child lets the oldest waiting one start, whatever its result.
        #expect(succeed(&tree, "c1", ids: ids) == [.enqueue(stepId: "c3", attempt: 1)])
        #expect(fail(&tree, "c2", ids: ids) == [.enqueue(stepId: "c4", attempt: 1)])
        #expect(tree.steps["c3"]?.waitingTurn == nil && tree.steps["c3"]?.status == .queued)
        #expect(succeed(&tree, "c3", ids: ids) == [.enqueue(stepId: "c5", attempt: 1)])
        #expect(succeed(&tree, "c4", ids: ids) == [])
        #expect(tree.steps["root"]?.status == .running)
        // The last one settles the parent: a parallel parent fails if any child failed.
        #expect(succeed(&tree, "c5", ids: ids) == [.changeFinished(.error)])
        #expect(tree.steps["root"]?.error == "child step \"b\" failed")
    }

    @Test func aStepRetriedAtTheCapIsQueuedAgainAheadOfWaitingOnes() {
        var tree = capped(1)
        let ids = IDs()
        _ = tree.start(now: 0)
        #expect(succeed(&tree, "root", children: ["a", "b"], strategy: .parallel, ids: ids) == [.enqueue(stepId: "c1", attempt: 1)])
        #expect(fail(&tree, "c1", policy: ActionPolicy(retries: 1), ids: ids) == [.enqueue(stepId: "c1", attempt: 2)])
        #expect(tree.steps["c2"]?.status == .pending && tree.steps["c2"]?.waitingTurn != nil)
        #expect(succeed(&tree, "c1", ids: ids, attempt: 2) == [.enqueue(stepId: "c2", attempt: 1)])
    }

    @Test func aLostWorkerOrADeadLetteredJobFreesItsPlace() {
        var tree = capped(1)
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b", "c"], strategy: .parallel, ids: ids)
        _ = tree.claimed(ref("c1"), by: "w1", now: 3)
        _ = tree.heard(ref("c1"), from: "w1", runStarted: true, policy: nil, now: 3)
        #expect(tree.leaseExpired(ref("c1"), now: 20) == [.cancelAttempt(ref("c1"), worker: "w1"), .enqueue(stepId: "c2", attempt: 1)])
        #expect(tree.jobDeadLettered(ref("c2"), reason: "rejected", now: 21, limit: 1) == [.enqueue(stepId: "c3", attempt: 1)])
        #expect(tree.steps["c2"]?.status == .error)
    }

    @Test func cancelCancelsStepsWaitingForAPlace() {
        var tree = capped(1)
        let ids = IDs()
        _ = tree.start(now: 0)
        _ = succeed(&tree, "root", children: ["a", "b", "c"], strategy: .parallel, ids: ids)
        let effects = tree.cancel(now: 5)
        #expect(effects == [.cancelAttempt(ref("c1"), worker: nil), .changeFinished(.cancelled)])
        #expect(tree.steps.values.allSatisfy { $0.status == .cancelled })
        #expect(tree.inFlightCount == 0)
    }

    @Test func stepsWaitInTurnWhateverBranchTheyAreOn() {
        var tree = capped(2)
        let ids = IDs()
        _ = tree.start(now: 0)
        // root → parallel [a, b, z]; a → serial [x, y].
        #expect(succeed(&tree, "root", children: ["a", "b", "z"], strategy: .parallel, ids: ids).count == 2)
        #expect(tree.steps["c3"]?.waitingTurn == 1)
        // a's own action is done: its place goes to z, which waited first; x waits behind it.
        #expect(succeed(&tree, "c1", children: ["x", "y"], strategy: .serial, ids: ids) == [.enqueue(stepId: "c3", attempt: 1)])
        #expect(tree.steps["c4"]?.status == .pending && tree.steps["c4"]?.waitingTurn == 2)
        #expect(succeed(&tree, "c2", ids: ids) == [.enqueue(stepId: "c4", attempt: 1)])
        #expect(succeed(&tree, "c3", ids: ids) == [])
        // y's turn comes after x, and nothing waits any more: it is queued at once.
        #expect(succeed(&tree, "c4", ids: ids) == [.enqueue(stepId: "c5", attempt: 1)])
        #expect(succeed(&tree, "c5", ids: ids) == [.changeFinished(.success)])
    }

    // MARK: Identities

    @Test func onlyTheClaimingIdentityMovesAnAttempt() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        let holder = WorkerIdentity(user: "worker-1", worker: "worker-1")
        let forger = WorkerIdentity(user: "worker-2", worker: "worker-1")
        #expect(tree.claimed(ref("root"), by: holder, now: 1) == [])
        #expect(tree.steps["root"]?.holder(of: 1) == holder)
        // The holder's name from another account: no effect, and no cancel sent to the holder.
        #expect(tree.claimed(ref("root"), by: forger, now: 2) == [])
        _ = tree.heard(ref("root"), from: forger, runStarted: true, policy: nil, now: 5)
        #expect(tree.steps["root"]?.leaseExpiresAt == 11 && tree.steps["root"]?.runStarted == false)
        #expect(tree.outcome(ref("root"), from: forger, .success(children: [], strategy: nil, policy: nil), now: 6, makeID: ids.make) == [])
        #expect(tree.steps["root"]?.status == .running)
        // Another worker claiming the same attempt (a duplicate delivery) is told to stop.
        let other = WorkerIdentity(user: "worker-2", worker: "worker-2")
        #expect(tree.claimed(ref("root"), by: other, now: 7) == [.cancelAttempt(ref("root"), worker: "worker-2")])
        #expect(tree.outcome(ref("root"), from: holder, .success(children: [], strategy: nil, policy: nil), now: 8, makeID: ids.make) == [.changeFinished(.success)])
    }

    @Test func aSharedAccountTellsWorkersApartByName() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        #expect(tree.claimed(ref("root"), by: WorkerIdentity(user: "guest", worker: "a"), now: 1) == [])
        #expect(tree.outcome(ref("root"), from: WorkerIdentity(user: "guest", worker: "b"), .cancelled, now: 2, makeID: ids.make) == [])
        #expect(tree.outcome(ref("root"), from: WorkerIdentity(user: "guest", worker: "a"), .cancelled, now: 3, makeID: ids.make) == [.changeFinished(.cancelled)])
    }

    @Test func anOutcomeBeforeItsClaimBindsTheAttemptToItsSender() {
        var tree = tree()
        let ids = IDs()
        _ = tree.start(now: 0)
        let sender = WorkerIdentity(user: "worker-1", worker: "worker-1")
        #expect(tree.outcome(ref("root"), from: sender, .failure(error: "boom", policy: ActionPolicy(retries: 1)), now: 1, makeID: ids.make) == [.enqueue(stepId: "root", attempt: 2)])
        #expect(tree.steps["root"]?.holder(of: 1) == sender)
        #expect(tree.steps["root"]?.holder(of: 2) == nil)
    }

    @Test func aStepRecordFromBeforeIdentitiesStillDecodes() throws {
        let old = #"{"action":"a","attempt":1,"changeId":"ch","id":"s","ignoreFailure":false,"ownDone":false,"position":0,"retries":0,"runStarted":false,"status":"running","worker":"w1"}"#
        let step = try JSONDecoder().decode(StepRecord.self, from: Data(old.utf8))
        #expect(step.holders == nil && step.waitingTurn == nil)
        var tree = ChangeTree(changeId: "ch", steps: [step])
        // Claimed before identities were kept: the holder's name is all there is to go by.
        #expect(tree.heard(ref("s"), from: "w1", runStarted: true, policy: nil, now: 1) == [])
        #expect(tree.steps["s"]?.runStarted == true)
    }
}
