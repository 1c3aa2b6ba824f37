import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

@Suite(.timeLimit(.minutes(2))) struct BuildTimeoutResolveTests {
    @Test func thePropertyMayAskForLessNeverForMore() throws {
        let maximum = Duration.seconds(1800)
        let unset = try BuildTimeout.resolve([:], maximum: maximum)
        #expect(unset.timeout == maximum && unset.note == nil)
        #expect(try BuildTimeout.resolve(["opschain": ["config": ["build_timeout": 30]]], maximum: maximum).timeout == .seconds(30))
        let capped = try BuildTimeout.resolve(["opschain": ["config": ["build_timeout": 99999]]], maximum: maximum)
        #expect(capped.timeout == maximum)
        #expect(capped.note == "build: opschain.config.build_timeout asks for 99999 s; this worker allows at most 1800 s (--build-timeout)")
        #expect(throws: StepFailure("opschain.config.build_timeout must be a positive whole number of seconds, not \"soon\"")) {
            try BuildTimeout.resolve(["opschain": ["config": ["build_timeout": "soon"]]], maximum: maximum)
        }
        #expect(throws: StepFailure("opschain.config.build_timeout must be a positive whole number of seconds, not 0")) {
            try BuildTimeout.resolve(["opschain": ["config": ["build_timeout": 0]]], maximum: maximum)
        }
    }
}

/// A build that blocks cannot hold a slot for ever: it has a timeout, a cancel stops it, and
/// one step giving up does not stop a build another step still waits for. Real engine.
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(10))) struct BuildTimeoutTests {
        static func blockingRepository(_ marker: String, seconds: Int = 600) throws -> TestRepository {
            try TestRepository.make([
                ".opschain/actions.yml": "actions:\n  ok: { run: 'true' }",
                ".opschain/Dockerfile": """
                    ARG OPSCHAIN_BASE_RUNNER
                    FROM ${OPSCHAIN_BASE_RUNNER}
                    ARG OPSCHAIN_BUILD_SECRETS_URL
                    ADD repo.tar ./
                    COPY step_context_env.json .opschain/step_context_env.json
                    RUN opschain-exec sh -c 'echo "blocking \(marker)"; sleep \(seconds)'
                    """,
            ])
        }

        /// Waits until the build's RUN container is gone (the engine stops it asynchronously).
        static func expectNoRunContainer(_ marker: String, within limit: Duration = .seconds(10)) async throws {
            let deadline = ContinuousClock.now + limit
            var left = try WorkerHarness.containers(running: marker)
            while !left.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                left = try WorkerHarness.containers(running: marker)
            }
            #expect(left.isEmpty, "the build's RUN container is still there: \(left)")
        }

        @Test(.timeLimit(.minutes(4))) func aBlockingBuildPassesItsTimeoutAndIsStopped() async throws {
            // With build secrets: the secrets container must go too.
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString.prefix(6))").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try "TOKEN_A=t-\(UInt32.random(in: 100_000...999_999))\n".write(toFile: folder + "/opschain-build-env", atomically: true, encoding: .utf8)
            let harness = try await WorkerHarness(slots: 1, secretsDirectory: folder)
            let marker = "t\(UUID().uuidString.prefix(8).lowercased())"
            let job = harness.job(try Self.blockingRepository(marker), action: "ok", project: ["opschain": ["config": ["build_timeout": 3]]])
            // The build blocks 600 s: an outcome within run's 120 s means it was stopped.
            let outcome = try await harness.run(job, timeout: .seconds(120))
            #expect(outcome.status == .error)
            #expect(outcome.error == "the step image build passed its timeout of 3 s and was stopped", "\(outcome.error ?? "")")
            #expect(!outcome.runStarted)
            try await Self.expectNoRunContainer(marker)
            #expect(try await harness.leftoverContainers().isEmpty)
            // The slot is free: the next job runs.
            let next = try await harness.run(harness.job(try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"]), action: "ok"))
            #expect(next.status == .success, "\(next.error ?? "")")
            await harness.stop()
        }

        @Test(.timeLimit(.minutes(4))) func aCancelDuringTheBuildStopsIt() async throws {
            let harness = try await WorkerHarness(slots: 1)
            let marker = "c\(UUID().uuidString.prefix(8).lowercased())"
            let job = harness.job(try Self.blockingRepository(marker), action: "ok")
            let ref = AttemptRef(stepId: job.stepId, attempt: 1)
            try await harness.publish(job)
            let deadline = ContinuousClock.now + .seconds(120)
            while !(await harness.logLines(for: ref).contains { $0.text.contains("blocking \(marker)") }) {
                guard ContinuousClock.now < deadline else { throw TestSetupError("the build never reached its RUN") }
            }
            // The build blocks 600 s: an outcome within 60 s means the cancel stopped it.
            try await harness.cancel(ref)
            let outcome = try await harness.outcome(for: ref, timeout: .seconds(60))
            #expect(outcome.status == .cancelled)
            #expect(outcome.error == "cancelled during the image build", "\(outcome.error ?? "")")
            try await Self.expectNoRunContainer(marker)
            let next = try await harness.run(harness.job(try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"]), action: "ok"))
            #expect(next.status == .success, "\(next.error ?? "")")
            await harness.stop()
        }

        /// Two identical steps share one build: cancelling one leaves the other's build running
        /// to its end.
        @Test(.timeLimit(.minutes(4))) func cancellingOneOfTwoWaitersKeepsTheSharedBuild() async throws {
            let harness = try await WorkerHarness(slots: 2)
            let marker = "s\(UUID().uuidString.prefix(8).lowercased())"
            let repository = try Self.blockingRepository(marker, seconds: 10)
            let first = harness.job(repository, action: "ok")
            let second = harness.job(repository, action: "ok")
            let refs = [AttemptRef(stepId: first.stepId, attempt: 1), AttemptRef(stepId: second.stepId, attempt: 1)]
            try await harness.publish(first)
            try await harness.publish(second)
            // The step that started the build has its output; the other waits for it.
            let deadline = ContinuousClock.now + .seconds(120)
            var starter: AttemptRef?
            while starter == nil {
                guard ContinuousClock.now < deadline else { throw TestSetupError("the build never reached its RUN") }
                for ref in refs where await harness.logLines(for: ref).contains(where: { $0.text.contains("blocking \(marker)") }) { starter = ref }
            }
            let waiter = refs.first { $0 != starter }!
            #expect(await harness.logLines(for: waiter).contains { $0.text.contains("an identical build is running") })
            try await harness.cancel(starter!)
            let cancelled = try await harness.outcome(for: starter!, timeout: .seconds(30))
            #expect(cancelled.status == .cancelled)
            #expect(try WorkerHarness.containers(running: marker).count == 1, "the shared build still runs for the other step")
            let finished = try await harness.outcome(for: waiter, timeout: .seconds(120))
            #expect(finished.status == .success, "\(finished.error ?? "")")
            try await Self.expectNoRunContainer(marker)
            await harness.stop()
        }
    }
}
