import AMQP
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// Every bad input ends its step with an outcome that says what went wrong, and the worker
/// carries on.
extension WorkerEndToEndTests {
@Suite struct WorkerBadInputTests {
    private func expectError(_ harness: WorkerHarness, _ job: StepJob, startsWith prefix: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> StepOutcome {
        let outcome = try await harness.run(job)
        #expect(outcome.status == .error, sourceLocation: sourceLocation)
        #expect(outcome.error?.hasPrefix(prefix) == true, "\(outcome.error ?? "nil")", sourceLocation: sourceLocation)
        return outcome
    }

    @Test func eachBadInputGivesItsPreciseErrorAndTheWorkerCarriesOn() async throws {
        let harness = try await WorkerHarness()
        let actions = "actions:\n  ok: { run: 'true' }\n  fail: { run: 'echo failing; exit 3' }"
        let good = try TestRepository.make([".opschain/actions.yml": actions])

        // A job that does not decode is dead-lettered; the worker goes on.
        try await harness.publish(raw: Data("{\"schema\":1,\"type\":\"step_job\",\"stepId\":\"broken\"}".utf8))
        try await harness.publish(raw: Data("not even json".utf8))

        // A repository that cannot be fetched; a SHA that is not there.
        var missingRepo = harness.job(good, action: "ok")
        // Under the harness's local root (the temporary directory), so git itself is asked.
        missingRepo.git.remote = FileManager.default.temporaryDirectory.appendingPathComponent("nonexistent-\(UUID().uuidString.prefix(6))/repository.git").path
        _ = try await expectError(harness, missingRepo, startsWith: "checkout failed: cannot fetch \(missingRepo.git.remote)")
        var missingSha = harness.job(good, action: "ok")
        missingSha.git.sha = String(repeating: "ab", count: 20)
        _ = try await expectError(harness, missingSha, startsWith: "checkout failed: commit \(missingSha.git.sha) is not in \(good.path)")

        // A Dockerfile that does not build: the error carries the build log's tail.
        let badBuild = try TestRepository.make([
            ".opschain/actions.yml": actions,
            ".opschain/Dockerfile": "ARG OPSCHAIN_BASE_RUNNER\nFROM ${OPSCHAIN_BASE_RUNNER}\nRUN echo about to fail && false\n",
        ])
        let build = try await expectError(harness, harness.job(badBuild, action: "ok"), startsWith: "the step image did not build:")
        #expect(build.error?.contains("returned a non-zero code: 1") == true)
        #expect(build.error?.contains("about to fail") == true)
        #expect(!build.runStarted)

        // A command that exits non-zero; an unknown action.
        let failed = try await expectError(harness, harness.job(good, action: "fail"), startsWith: "the command exited with status 3")
        #expect(failed.exitCode == 3 && failed.runStarted)
        _ = try await expectError(harness, harness.job(good, action: "nope"), startsWith: "unknown action \"nope\" (defined: fail, ok)")

        // No step_result.json, and an invalid one.
        let silent = try TestRepository.make([
            ".opschain/actions.yml": actions,
            ".opschain/Dockerfile": "ARG OPSCHAIN_BASE_RUNNER\nFROM ${OPSCHAIN_BASE_RUNNER}\nUSER root\nRUN printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/opschain-action\n",
        ])
        _ = try await expectError(harness, harness.job(silent, action: "ok"), startsWith: "the action exited with code 0 and wrote no /opt/opschain/.opschain/step_result.json")
        let garbage = try TestRepository.make([
            ".opschain/actions.yml": actions,
            ".opschain/Dockerfile": "ARG OPSCHAIN_BASE_RUNNER\nFROM ${OPSCHAIN_BASE_RUNNER}\nUSER root\nRUN printf '#!/bin/sh\\necho {oops > /opt/opschain/.opschain/step_result.json\\n' > /usr/local/bin/opschain-action\n",
        ])
        _ = try await expectError(harness, harness.job(garbage, action: "ok"), startsWith: "step_result.json is invalid:")

        // Still serving.
        let outcome = try await harness.run(harness.job(good, action: "ok"))
        #expect(outcome.status == .success)

        // The undecodable jobs were dead-lettered, with the reason on the worker's log.
        let connection = try await harness.client.connected()
        #expect(try await connection.messageCount(queue: Names.deadQueue) >= 2)
        #expect(try await harness.leftoverContainers().isEmpty)
        _ = try await connection.deleteQueue(Names.deadQueue)
        await harness.stop()
    }

    @Test func aWorkerWhoseEngineIsDownTakesNoJobs() async throws {
        let harness = try await WorkerHarness(docker: "unix:///tmp/no-docker-here-\(UUID().uuidString.prefix(6)).sock")
        let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"])
        let job = harness.job(repository, action: "ok")
        try await harness.publish(job)
        try await Task.sleep(for: .seconds(3))
        #expect(harness.events(for: AttemptRef(stepId: job.stepId, attempt: 1)).isEmpty)
        let connection = try await harness.client.connected()
        #expect(try await connection.messageCount(queue: Names.stepsQueue(pool: harness.pool)) == 1)
        _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
        await harness.stop()
    }
}
}
