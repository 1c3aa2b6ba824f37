import Foundation
import Protocol
import Testing
@testable import Dispatcher

/// README: after a dispatcher restart every running attempt gets a fresh lease, so that its
/// worker has time to be heard again. A real dispatcher (its service over the real broker, its
/// SQLite file) stops and starts; the worker is played by the test through the engine, so it
/// says nothing unless told: the lease runs out while the dispatcher is away, for certain.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct RestartLeaseTests {
        @Test func anAttemptWhoseLeaseRanOutWhileTheDispatcherWasAwayGetsAFreshOneAtItsRestart() async throws {
            let fleet = try await FleetHarness(workers: 0, leaseSeconds: 10)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }")
            let id = try await fleet.createChange(repo, action: "a")
            let queued = try #require(try await fleet.snapshot(id).1.step("a"))
            let token = try #require(queued.claimToken)
            let worker = "restart-worker"
            func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
            try await fleet.engine.handle(WorkerEvent(kind: .claimed, ref: queued.ref, worker: worker, at: now(), claimToken: token), publishedBy: worker)
            try await fleet.engine.handle(
                WorkerEvent(kind: .phase, ref: queued.ref, worker: worker, at: now(), phase: Phase(name: .run, state: .started)), publishedBy: worker)
            let running = try #require(try await fleet.snapshot(id).1.step("a"))
            #expect(running.status == .running && running.runStarted && running.worker == worker)
            let lease = try #require(running.leaseExpiresAt)

            // The dispatcher goes away; the lease runs out meanwhile.
            await fleet.stopDispatcher()
            try await fleet.waitUntil("the attempt's lease to run out", timeout: .seconds(60)) { Store.now() > lease + 1 }
            let restartedAt = Store.now()
            try await fleet.startDispatcher()
            // Renewed as the dispatcher started: a lease check finds nothing to expire, and the
            // run (which may not be re-run) is neither failed nor queued again.
            let renewed = try #require(try await fleet.snapshot(id).1.step("a"))
            #expect(
                (renewed.leaseExpiresAt ?? 0) >= restartedAt + fleet.leaseSeconds,
                "the lease ends at \(renewed.leaseExpiresAt ?? 0), before \(restartedAt) (the restart) + \(fleet.leaseSeconds) s")
            #expect(try await fleet.engine.checkDeadlines() == 0, "a lease check right after the restart expired an attempt")
            let checked = try #require(try await fleet.snapshot(id).1.step("a"))
            #expect(checked.status == .running && checked.attempt == 1 && checked.error == nil, "\(checked.status) attempt \(checked.attempt): \(checked.error ?? "")")

            // The worker is heard again and finishes: its outcome is the step's.
            try await fleet.engine.handle(WorkerEvent(kind: .heartbeat, ref: queued.ref, worker: worker, at: now()), publishedBy: worker)
            var outcome = StepOutcome(ref: queued.ref, worker: worker, status: .success, runStarted: true)
            outcome.claimToken = token
            outcome.result = try JSONDecoder().decode(StepResult.self, from: Data(#"""
                {"project": {"properties_diff": []}, "environment": {"properties_diff": []}, "step": {"properties": {}},
                 "steps": {"children": [], "child_execution_strategy": null}}
                """#.utf8))
            try await fleet.engine.handle(outcome, publishedBy: worker)
            let (change, tree) = try await fleet.waitForChange(id, timeout: .seconds(60))
            #expect(change.status == .success)
            #expect(tree.root?.status == .success && tree.root?.attempt == 1)
            try await fleet.dropQueuedJobs()
            await fleet.stop()
        }
    }
}
