import AMQP
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

extension WorkerEndToEndTests {
    /// The `drain` control message: the named worker finishes what it runs and takes nothing
    /// more; a drain naming another worker changes nothing.
    @Suite(.timeLimit(.minutes(6))) struct WorkerDrainTests {
        @Test func aDrainedWorkerFinishesItsStepAndTakesNoMoreJobs() async throws {
            let log = CapturedLog()
            let harness = try await WorkerHarness(slots: 2, logger: log.logger)
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  wait: { run: 'sleep 4' }\n  ok: { run: 'true' }"])
            // A drain for another worker: this one still takes jobs.
            try await Self.drain(harness, worker: "some-other-worker")
            let before = try await harness.run(harness.job(repository, action: "ok"), timeout: .seconds(180))
            #expect(before.status == .success)

            let running = harness.job(repository, action: "wait")
            let runningRef = AttemptRef(stepId: running.stepId, attempt: 1)
            try await harness.publish(running)
            try await harness.waitForEvent(runningRef) { $0.phase == Phase(name: .run, state: .started) }
            try await Self.drain(harness, worker: "test-\(harness.pool)")
            let deadline = ContinuousClock.now + .seconds(20)
            while !log.text.contains("draining: taking no more jobs") {
                try #require(ContinuousClock.now < deadline, "the worker did not take the drain")
                try await Task.sleep(for: .milliseconds(20))
            }
            // One control queue, in order: the drain for the other worker came first, and was
            // passed over.
            #expect(log.text.components(separatedBy: "draining: taking no more jobs").count == 2, "\(log.text)")
            let late = harness.job(repository, action: "ok")
            let lateRef = AttemptRef(stepId: late.stepId, attempt: 1)
            try await harness.publish(late)
            // The running step ends as it would have.
            let outcome = try await harness.outcome(for: runningRef, timeout: .seconds(60))
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            // Then both slots are free: a span in which a worker taking jobs would claim it.
            try await Task.sleep(for: .seconds(3))
            #expect(harness.events(for: lateRef).isEmpty, "a drained worker claimed a job")
            #expect(try await harness.queuedJobs() == 1)
            let connection = try await harness.client.connected()
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
            await harness.stop()
        }

        private static func drain(_ harness: WorkerHarness, worker: String) async throws {
            try await harness.client.publish(
                AMQPMessage(body: WireCodec.encode(ControlMessage(kind: .drain, worker: worker)), properties: AMQPProperties(userId: await harness.client.endpoints[0].user)),
                exchange: Names.controlExchange, routingKey: "")
        }
    }
}
