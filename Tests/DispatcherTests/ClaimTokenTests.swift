import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

/// Issue 11, item 5: an attempt can be claimed (or its outcome sent before the claim was heard)
/// only with the claim token its job carried, which only the dispatcher and the readers of the
/// pool's queue see: a broker account of another pool cannot take over the attempt by knowing
/// its step id (which the API shows).
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct ClaimTokenTests {
        @Test func aClaimOrAnEarlyOutcomeWithoutTheJobsClaimTokenChangesNothing() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["k": 1])
            let change = try await fleet.createChange(repo, action: "a")
            let root = try #require(try await fleet.snapshot(change).1.step("a"))
            let token = try #require(root.claimToken, "a queued attempt has a claim token")
            #expect(token.count == 32 && token.allSatisfy(\.isHexDigit))
            // The job in the outbox carries it, for the pool's readers only.
            let jobs = try await fleet.store.read { db in try Store.outboxBodies(db, type: StepJob.messageType) }
            #expect(try jobs.map { try WireCodec.decode(StepJob.self, from: $0) }.contains { $0.stepId == root.id && $0.claimToken == token })

            let refused = fleet.engine.metrics.refusedWorkerMessages.count
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            // Another pool's worker knows the step id: it claims without, then with a wrong token.
            try await fleet.engine.handle(WorkerEvent(kind: .claimed, ref: root.ref, worker: "gpu-1", at: now), publishedBy: "gpu-1")
            try await fleet.engine.handle(WorkerEvent(kind: .claimed, ref: root.ref, worker: "gpu-1", at: now, claimToken: String(repeating: "0", count: 32)), publishedBy: "gpu-1")
            // And sends a forged success before any claim was heard.
            var forged = StepOutcome(ref: root.ref, worker: "gpu-1", status: .success, runStarted: true)
            forged.result = try JSONDecoder().decode(StepResult.self, from: Data(#"{"project": {"properties_diff": [{"op": "add", "path": "/forged", "value": true}]}, "environment": {"properties_diff": []}, "step": {"properties": {}}, "steps": {"children": [], "child_execution_strategy": null}}"#.utf8))
            try await fleet.engine.handle(forged, publishedBy: "gpu-1")
            #expect(fleet.engine.metrics.refusedWorkerMessages.count == refused + 3)
            let untouched = try #require(try await fleet.snapshot(change).1.step("a"))
            #expect(untouched.status == .queued && untouched.worker == nil)
            #expect(try await fleet.properties(repo).properties == ["k": 1])

            // The worker that took the job from the queue claims with its token.
            try await fleet.engine.handle(WorkerEvent(kind: .claimed, ref: root.ref, worker: "worker-1", at: now, claimToken: token), publishedBy: "worker-1")
            let claimed = try #require(try await fleet.snapshot(change).1.step("a"))
            #expect(claimed.status == .running && claimed.worker == "worker-1")
            try await fleet.dropQueuedJobs()
            await fleet.stop()
        }
    }
}

extension Store {
    /// The bodies of every outbox row of a message type, sent or not (opened, for a test to read).
    static func outboxBodies(_ db: Database, type: String) throws -> [Data] {
        try Row.fetchAll(db, sql: "SELECT body FROM outbox WHERE message_type = ? ORDER BY id", arguments: [type]).map { try opened($0["body"] as Data) }
    }
}
