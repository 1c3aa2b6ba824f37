import AMQP
import Logging
import Foundation
import HostCommand
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

            try await within(.seconds(60), "the worker's shutdown") { await shutdown.value }
            let longOutcome = try await harness.outcome(for: longRef, timeout: .seconds(30))
            #expect(longOutcome.status == .error)
            #expect(longOutcome.error?.hasPrefix("the worker shut down and its grace period of 12.0 seconds ran out") == true, "\(longOutcome.error ?? "")")
            #expect(longOutcome.runStarted)
            #expect(try await harness.leftoverContainers().isEmpty)
            // The service ended: its run() returns.
            try await within(.seconds(30), "the worker's run() after its shutdown") { await harness.workerRun.value }
            // Nothing of the late job ran here, and it waits in the queue for another worker.
            #expect(harness.events(for: AttemptRef(stepId: late.stepId, attempt: 1)).isEmpty)
            #expect(harness.outcomes(for: late.stepId).isEmpty)
            #expect(try await harness.queuedJobs() == 1)
            let connection = try await harness.client.connected()
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
            await harness.stop()
        }

        /// README: "On SIGTERM a worker takes no more jobs, lets running steps finish within
        /// `--grace` seconds, then kills them (their outcome says so)". A real `stepfleet worker`
        /// process with one step running and one building its image gets SIGTERM: a job that
        /// comes in the window is not claimed (a slot is free), both steps get an outcome, no
        /// container of either is left, and the process exits 0.
        @Test func sigtermToAWorkerProcessWithAStepRunningAndOneBuilding() async throws {
            // The harness plays dispatcher only: its own in-process worker is stopped first.
            let harness = try await WorkerHarness(slots: 1)
            await harness.worker.shutdown()
            let name = "proc-\(harness.pool)"
            let workDirectory = harness.workDirectory + "-process"
            let logPath = workDirectory + ".log"
            let worker = try WorkerProcess(arguments: [
                "worker", "--amqp", WorkerHarness.brokerURL, "--pool", harness.pool, "--slots", "3", "--grace", "10", "--heartbeat", "1",
                "--name", name, "--work-dir", workDirectory, "--dispatcher-user", "guest", "--min-free-disk", "0",
                "--git-local-roots", FileManager.default.temporaryDirectory.path, "--keep-images", "0", "--log-level", "info", "--runtime", testRuntimeName,
            ], logPath: logPath)
            defer { worker.kill() }
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  long: { run: 'sleep 120' }\n  quick: { run: 'true' }"])
            let marker = "sigterm\(UUID().uuidString.prefix(8).lowercased())"
            let building = harness.job(try BuildTimeoutTests.blockingRepository(marker, seconds: 600), action: "ok")
            let running = harness.job(repository, action: "long")
            let runningRef = AttemptRef(stepId: running.stepId, attempt: 1)
            let buildingRef = AttemptRef(stepId: building.stepId, attempt: 1)
            try await harness.publish(running)
            try await harness.waitForEvent(runningRef, timeout: .seconds(180)) { $0.phase == Phase(name: .run, state: .started) }
            try await harness.publish(building)
            try await waitUntil("the build of the second step to run its RUN line", timeout: .seconds(120)) {
                try !WorkerHarness.containers(running: marker).isEmpty
            }

            worker.terminate()
            try await waitUntil("the worker process to log that it shuts down", timeout: .seconds(30)) {
                worker.log.contains("shutting down: taking no more jobs")
            }
            let late = harness.job(repository, action: "quick")
            try await harness.publish(late)
            let status = try await waitFor("the worker process to exit", timeout: .seconds(120)) { worker.exitStatus() }
            #expect(status == 0, "exit status \(status); its log:\n\(worker.log)")

            let runningOutcome = try await harness.outcome(for: runningRef, timeout: .seconds(30))
            #expect(runningOutcome.status == .error && runningOutcome.runStarted)
            #expect(runningOutcome.error?.hasPrefix("the worker shut down and its grace period of 10.0 seconds ran out") == true, "\(runningOutcome.error ?? "")")
            let buildingOutcome = try await harness.outcome(for: buildingRef, timeout: .seconds(30))
            #expect(buildingOutcome.status == .error && !buildingOutcome.runStarted, "\(buildingOutcome.status) \(buildingOutcome.error ?? "")")
            // No claim in the window: the late job has no event and is still queued.
            #expect(harness.events(for: AttemptRef(stepId: late.stepId, attempt: 1)).isEmpty, "the late job was claimed during the grace window")
            #expect(try await harness.queuedJobs() == 1)
            #expect(try await harness.engine.containers(label: "\(ContainerLabels.worker)=\(name)").isEmpty)
            let ociLeft = OCIContainerRuntime.leftovers(workDirectory: workDirectory) { OCIContainerRuntime.owner(ofStep: $0) == worker.pid }
            #expect(ociLeft.isEmpty, "\(ociLeft)")
            try await waitUntil("the build container to be gone", timeout: .seconds(30)) {
                try WorkerHarness.containers(running: marker).isEmpty
            }
            let connection = try await harness.client.connected()
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
            try? FileManager.default.removeItem(atPath: workDirectory)
            await harness.stop()
        }
    }
}
