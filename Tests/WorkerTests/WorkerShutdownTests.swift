import AMQP
import Logging
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(4))) struct WorkerShutdownTests {
        /// Inside the grace window: a free slot takes no job, a short step runs to its own end,
        /// a long one is killed when the window closes (not before), and then `run()` returns
        /// and the job that came during the window is still queued for another worker.
        @Test func duringTheGraceWindowNoClaimShortStepsFinishLongOnesAreKilledAtItsEnd() async throws {
            let grace = Duration.seconds(12)
            // Three slots, two busy: a job arriving in the window would have a slot to run in.
            let log = CapturedLog()
            let harness = try await WorkerHarness(slots: 3, grace: grace, logger: log.logger)
            let repository = try TestRepository.make([
                ".opschain/actions.yml": "actions:\n  short: { run: 'sleep 3' }\n  long: { run: 'sleep 120' }\n  late: { run: 'true' }"
            ])
            let short = harness.job(repository, action: "short")
            let long = harness.job(repository, action: "long")
            try await harness.publish(short)
            try await harness.publish(long)
            for job in [short, long] {
                try await harness.waitForEvent(AttemptRef(stepId: job.stepId, attempt: 1), timeout: .seconds(120)) { $0.phase == Phase(name: .run, state: .started) }
            }
            let shutdownDone = LockedValue(false)
            let shutdown = Task { [worker = harness.worker] in
                await worker.shutdown()
                shutdownDone.value = true
            }
            // The window is open once the worker says it drains; a job published now has a slot.
            let deadline = ContinuousClock.now + .seconds(10)
            while !log.text.contains("shutting down: taking no more jobs") {
                try #require(ContinuousClock.now < deadline, "the worker never said it was shutting down")
                try await Task.sleep(for: .milliseconds(20))
            }
            let late = harness.job(repository, action: "late")
            try await harness.publish(late)
            let shortRef = AttemptRef(stepId: short.stepId, attempt: 1)
            let longRef = AttemptRef(stepId: long.stepId, attempt: 1)
            let shortOutcome = try await harness.outcome(for: shortRef, timeout: .seconds(60))
            // The short step ended on its own, inside the window, while the long one still ran.
            #expect(shortOutcome.status == .success, "\(shortOutcome.error ?? "")")
            #expect(!shutdownDone.value, "shutdown returned before the short step's outcome")
            #expect(harness.outcomes(for: long.stepId).isEmpty, "the long step ended before the window closed")
            #expect(harness.events(for: AttemptRef(stepId: late.stepId, attempt: 1)).isEmpty, "a job was claimed during the grace window")

            await shutdown.value
            let longOutcome = try await harness.outcome(for: longRef, timeout: .seconds(30))
            #expect(longOutcome.status == .error)
            #expect(longOutcome.error?.hasPrefix("the worker shut down and its grace period of 12.0 seconds ran out") == true, "\(longOutcome.error ?? "")")
            #expect(longOutcome.runStarted)
            #expect(try await harness.leftoverContainers().isEmpty)
            // The service ended: its run() returns (bounded by the suite's time limit).
            await harness.workerRun.value
            // Nothing of the late job ran here, and it waits in the queue for another worker.
            #expect(harness.events(for: AttemptRef(stepId: late.stepId, attempt: 1)).isEmpty)
            #expect(harness.outcomes(for: late.stepId).isEmpty)
            #expect(try await harness.queuedJobs() == 1)
            let connection = try await harness.client.connected()
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
            await harness.stop()
        }
    }
}
