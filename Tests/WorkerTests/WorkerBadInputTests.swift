import AMQP
import HostCommand
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// Every bad input ends its step with an outcome that says what went wrong, and the worker
/// carries on.
extension WorkerEndToEndTests {
@Suite(.timeLimit(.minutes(6))) struct WorkerBadInputTests {
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

    /// The engine behind a unix-socket proxy this test starts and stops: while it is away the
    /// worker says so and its job waits in the queue; when it answers, the worker says so and
    /// runs the job; away again mid-life, the next job waits until it is back.
    @Test func aWorkerSaysWhenItsEngineIsDownTakesNoJobsAndResumesWhenItReturns() async throws {
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent("engine-\(UUID().uuidString.prefix(6)).sock").path
        let proxy = EngineProxy(socket: socket)
        defer { proxy.stop() }
        let log = CapturedLog()
        let harness = try await WorkerHarness(docker: "unix://\(socket)", grace: .seconds(2), logger: log.logger)
        let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"])
        let down = "the Docker engine at \(socket) does not answer: not taking jobs until it does"
        let back = "the Docker engine answers again: taking jobs"
        try await Self.waitForLog(log, down, count: 1)

        let first = harness.job(repository, action: "ok")
        try await harness.publish(first)
        // Three engine checks (2 s apart) with the job in the queue and a free slot: no claim.
        try await Self.waitForLog(log, "", count: 0, settle: .seconds(7))
        #expect(harness.events(for: AttemptRef(stepId: first.stepId, attempt: 1)).isEmpty)
        #expect(try await harness.queuedJobs() == 1)

        try proxy.start()
        try await Self.waitForLog(log, back, count: 1)
        let outcome = try await harness.outcome(for: AttemptRef(stepId: first.stepId, attempt: 1), timeout: .seconds(120))
        #expect(outcome.status == .success, "\(outcome.error ?? "")")

        // Mid-life: the engine goes away again, then comes back.
        proxy.stop()
        try await Self.waitForLog(log, down, count: 2)
        let second = harness.job(repository, action: "ok")
        try await harness.publish(second)
        try await Self.waitForLog(log, "", count: 0, settle: .seconds(5))
        #expect(harness.events(for: AttemptRef(stepId: second.stepId, attempt: 1)).isEmpty)
        #expect(try await harness.queuedJobs() == 1)
        try proxy.start()
        try await Self.waitForLog(log, back, count: 2)
        let again = try await harness.outcome(for: AttemptRef(stepId: second.stepId, attempt: 1), timeout: .seconds(120))
        #expect(again.status == .success, "\(again.error ?? "")")
        #expect(try await harness.leftoverContainers().isEmpty)
        await harness.stop()
    }

    /// Waits until `message` is on the worker's log `count` times; with `settle`, waits that
    /// long first (a span in which nothing must happen, measured in engine checks).
    private static func waitForLog(_ log: CapturedLog, _ message: String, count: Int, settle: Duration? = nil, timeout: Duration = .seconds(30)) async throws {
        if let settle { try await Task.sleep(for: settle) }
        guard count > 0 else { return }
        let deadline = ContinuousClock.now + timeout
        while log.text.components(separatedBy: message).count - 1 < count {
            try #require(ContinuousClock.now < deadline, "the worker did not log \"\(message)\" \(count) time(s) within \(timeout); its log:\n\(log.text)")
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
}

/// A unix socket forwarding to the real Docker engine, which a test starts and stops to take
/// the engine away from a worker and give it back.
final class EngineProxy: Sendable {
    let socket: String
    private let proxy = LockedValue<StartHoldingProxy?>(nil)

    init(socket: String) { self.socket = socket }

    func start() throws {
        proxy.value = try StartHoldingProxy(socket: socket, holdingStarts: false)
    }

    func stop() {
        proxy.withLock { current in
            current?.stop()
            current = nil
        }
    }
}
