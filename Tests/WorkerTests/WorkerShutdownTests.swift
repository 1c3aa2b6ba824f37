import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

extension WorkerEndToEndTests {
    @Suite struct WorkerShutdownTests {
        @Test func shutdownLetsShortStepsFinishAndKillsLongOnesAfterTheGracePeriod() async throws {
            let harness = try await WorkerHarness(slots: 2, grace: .seconds(3))
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  short: { run: 'sleep 1' }\n  long: { run: 'sleep 60' }"])
            let short = harness.job(repository, action: "short")
            let long = harness.job(repository, action: "long")
            try await harness.publish(short)
            try await harness.publish(long)
            for job in [short, long] {
                try await harness.waitForEvent(AttemptRef(stepId: job.stepId, attempt: 1)) { $0.phase == Phase(name: .run, state: .started) }
            }
            let clock = ContinuousClock()
            let start = clock.now
            await harness.worker.shutdown()
            let took = clock.now - start
            #expect(took >= .seconds(2) && took < .seconds(20))
            let shortOutcome = try await harness.outcome(for: AttemptRef(stepId: short.stepId, attempt: 1), timeout: .seconds(5))
            #expect(shortOutcome.status == .success)
            let longOutcome = try await harness.outcome(for: AttemptRef(stepId: long.stepId, attempt: 1), timeout: .seconds(5))
            #expect(longOutcome.status == .error)
            #expect(longOutcome.error?.hasPrefix("the worker shut down and its grace period of 3.0 seconds ran out") == true, "\(longOutcome.error ?? "")")
            #expect(longOutcome.runStarted)
            #expect(try await harness.leftoverContainers().isEmpty)

            // A job published now stays queued: the worker took no more.
            let late = harness.job(repository, action: "short")
            try await harness.publish(late)
            try await Task.sleep(for: .seconds(1))
            #expect(harness.events(for: AttemptRef(stepId: late.stepId, attempt: 1)).isEmpty)
            let connection = try await harness.client.connected()
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
            await harness.stop()
        }
    }
}
