import AMQP
import Fleet
import Foundation
import Protocol
import Testing

@testable import Dispatcher

/// A job whose delivery the broker holds for good (a consumer on a node that died) is
/// published again when nobody has claimed it in time and its pool's queue has no ready
/// message; the step then runs once, and a claim with the old delivery's token is refused.
extension FleetTests {
    @Suite(.timeLimit(.minutes(4))) struct UnclaimedJobResendTests {
        @Test func aJobLostFromItsQueueIsPublishedAgainWithANewTokenAndRunsOnce() async throws {
            var settings = DispatcherConfiguration()
            settings.unclaimedResendSeconds = 2
            let fleet = try await FleetHarness(workers: 0, settings: settings)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["k": 1])
            let change = try await fleet.createChange(repo, action: "a")
            let queued = try #require(try await fleet.snapshot(change).1.step("a"))
            let firstToken = try #require(queued.claimToken)
            // The job leaves the queue without anyone claiming it (as a delivery held by a
            // consumer on a dead node does): the queue is emptied and made again.
            let published = await waitUntil(timeout: .seconds(30)) {
                (try? await fleet.store.read { db in try Store.unsentOutbox(db, limit: 1).isEmpty }) ?? false
            }
            try #require(published, "the first job was never published")
            try await fleet.dropQueuedJobs()
            let client = AMQPClient(endpoints: [fleet.broker], topology: FleetTopology.pool(Names.defaultPool), logger: FleetHarness.logger)
            _ = try await client.connected()
            await client.stop()

            // Published again, same attempt, a new claim token.
            let resent = await waitUntil(timeout: .seconds(60)) {
                guard let step = try? await fleet.snapshot(change).1.step("a") else { return false }
                return step.claimToken != firstToken && step.resentAt != nil
            }
            #expect(resent, "the unclaimed job was not published again")
            let step = try #require(try await fleet.snapshot(change).1.step("a"))
            #expect(step.attempt == 1 && step.status == .queued)

            // The old delivery, should it come back, cannot claim the attempt.
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try await fleet.engine.handle(WorkerEvent(kind: .claimed, ref: step.ref, worker: "ghost", at: now, claimToken: firstToken), publishedBy: "ghost")
            #expect(try #require(try await fleet.snapshot(change).1.step("a")).status == .queued)

            // A worker takes the new job: the step runs once and the change succeeds.
            try await fleet.startWorker(0, slots: 1)
            let (record, tree) = try await fleet.waitForChange(change)
            #expect(record.status == .success)
            #expect(tree.step("a")?.attempt == 1)
            await fleet.stop()
        }
    }
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
private func waitUntil(timeout: Duration, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return await condition()
}
