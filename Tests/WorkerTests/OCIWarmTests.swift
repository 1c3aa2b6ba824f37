import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

extension WorkerEndToEndTests {
    /// The oci runtime's warm containers: after a step, the next step of the same image finds
    /// its container started (file system mounted, runc running `opschain-action --wait`). It
    /// runs its own action as a container started for it would, a cancel and a timeout still
    /// stop it, an image that cannot wait gets none, and nothing is left once the worker stops.
    @Suite(.timeLimit(.minutes(10))) struct OCIWarmTests {
        static let warmLine = "run: in a container started before the step (warm: file system mounted, runc running, waiting for the action)"
        static let actions = """
            actions:
              first: { run: 'echo "FIRST $OPSCHAIN_ACTION"' }
              second: { run: 'echo "SECOND $OPSCHAIN_ACTION $(cat /etc/hostname)"; echo "to stderr" >&2; exit 3' }
              slow: { run: 'echo SLOW; sleep 60' }
              timed: { run: 'sleep 60', timeout: 2 }
            """

        func warm(_ harness: WorkerHarness, _ outcome: StepOutcome) async -> Bool {
            await harness.logLines(for: outcome.ref).map(\.text).contains(Self.warmLine)
        }

        @Test(.timeLimit(.minutes(5))) func theNextStepOfAnImageFindsItsContainerWaiting() async throws {
            let harness = try await WorkerHarness(slots: 1, runtime: .oci)
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            let first = try await harness.run(harness.job(repository, action: "first"))
            #expect(first.status == .success, "\(first.error ?? "")")
            #expect(await !warm(harness, first), "the first step of an image has no container waiting")
            #expect(await harness.logLines(for: first.ref).map(\.text).contains("FIRST first"))

            // Its own action, output, exit code and result, in a container of its own.
            let second = try await harness.run(harness.job(repository, action: "second"))
            let lines = await harness.logLines(for: second.ref)
            #expect(lines.map(\.text).contains(Self.warmLine), "\(lines.map(\.text))")
            #expect(lines.contains { $0.stream == .stdout && $0.text.hasPrefix("SECOND second ") }, "\(lines.map(\.text))")
            #expect(lines.contains { $0.stream == .stderr && $0.text == "to stderr" })
            #expect(second.status == .error && second.exitCode == 3, "\(second.status) \(second.exitCode ?? -1) \(second.error ?? "")")
            #expect(second.error == "the command exited with status 3")
            #expect(second.runStarted)

            // A cancel stops a step running in a warm container.
            let slow = harness.job(repository, action: "slow")
            let slowRef = AttemptRef(stepId: slow.stepId, attempt: slow.attempt)
            try await harness.publish(slow)
            try await harness.waitForEvent(slowRef) { $0.phase == Phase(name: .run, state: .started) }
            try await Task.sleep(for: .milliseconds(500))
            try await harness.cancel(slowRef)
            let cancelled = try await harness.outcome(for: slowRef, timeout: .seconds(30))
            #expect(cancelled.status == .cancelled)
            #expect(await warm(harness, cancelled))

            // So does its timeout.
            let timed = try await harness.run(harness.job(repository, action: "timed"))
            #expect(timed.error == "the step ran longer than its timeout of 2 s and was killed", "\(timed.error ?? "")")
            #expect(await warm(harness, timed))

            // Nothing of a finished step is left while the worker runs; the waiting container
            // goes with the worker.
            #expect(try await harness.leftoverContainers().isEmpty)
            #expect(!OCIContainerRuntime.warmIDsUsed(in: harness.workDirectory + "/oci").isEmpty)
            await harness.worker.shutdown()
            OCILeftovers.expectNone(in: harness.workDirectory)
            await harness.stop()
        }

        /// An image whose `opschain-action` cannot wait (no label), or with an entrypoint of its
        /// own (it would run before the step is known), gets no container started ahead.
        @Test(.timeLimit(.minutes(5))) func anImageThatCannotWaitGetsNone() async throws {
            let harness = try await WorkerHarness(slots: 1, runtime: .oci)
            for extra in ["LABEL org.stepfleet.opschain-action-wait=0\n", "ENTRYPOINT [\"/usr/bin/env\"]\n"] {
                let dockerfile = "ARG OPSCHAIN_BASE_RUNNER\nFROM ${OPSCHAIN_BASE_RUNNER}\nWORKDIR /opt/opschain\nADD repo.tar ./\n" + extra
                let repository = try TestRepository.make([".opschain/actions.yml": Self.actions, ".opschain/Dockerfile": dockerfile])
                for action in ["first", "first"] {
                    let outcome = try await harness.run(harness.job(repository, action: action))
                    #expect(outcome.status == .success, "\(dockerfile): \(outcome.error ?? "")")
                    #expect(await !warm(harness, outcome), "\(dockerfile)")
                }
            }
            await harness.worker.shutdown()
            OCILeftovers.expectNone(in: harness.workDirectory)
            await harness.stop()
        }
    }
}
