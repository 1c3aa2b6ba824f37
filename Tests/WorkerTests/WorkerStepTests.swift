import AMQP
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// Steps end to end: a real worker, the real broker and the real Docker engine.
extension WorkerEndToEndTests {
@Suite(.timeLimit(.minutes(6))) struct WorkerStepTests {
    static let actions = """
        actions:
          edit:
            run: |
              jq '.counter += 1 | .tags += ["new"] | del(.obsolete)' "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES"
              jq '.app.replicas = 3' "$OPSCHAIN_ENVIRONMENT_PROPERTIES" > /tmp/e && mv /tmp/e "$OPSCHAIN_ENVIRONMENT_PROPERTIES"
              echo "edited properties"
              echo "a warning" >&2
          check_inputs:
            run: |
              test "$GREETING" = "from environment" || { echo "GREETING=$GREETING"; exit 10; }
              test "$(cat ~/.config/stepfleet-test/config.txt)" = "file contents" || exit 11
              test "$(stat -c %a ~/.config/stepfleet-test/config.txt)" = 640 || exit 12
              test -d /opt/opschain/.git || exit 13
          parent:
            run: echo '["grandchild"]' > "$OPSCHAIN_CHILD_STEPS"
            steps: [child_a, child_b]
            strategy: parallel
          child_a: { run: "true" }
          child_b: { run: "true" }
          grandchild: { run: "true" }
          fail: { run: "echo failing; exit 3" }
          slow: { run: "sleep 60", timeout: 2 }
          sleepy: { run: "sleep 60" }
          show_built: { run: "jq --arg v \\"$(cat /home/opschain/built.txt)\\" '.built = $v' \\"$OPSCHAIN_PROJECT_PROPERTIES\\" > /tmp/p && mv /tmp/p \\"$OPSCHAIN_PROJECT_PROPERTIES\\"" }
        """

    @Test func propertyChangesComeBackAsDiffsWithPhasesAndLogs() async throws {
        let harness = try await WorkerHarness()
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        let job = harness.job(
            repository, action: "edit", project: ["counter": 1, "tags": ["a"], "obsolete": true, "keep": "x"],
            environment: ["app": ["replicas": 1, "image": "web:1"]])
        let outcome = try await harness.run(job)
        #expect(outcome.status == .success, "\(outcome.error ?? "")")
        let result = try #require(outcome.result)
        #expect(result.project.propertiesDiff.json == (try JSON.parse(#"[{"op":"remove","path":"/obsolete"},{"op":"replace","path":"/counter","value":2},{"op":"add","path":"/tags/-","value":"new"}]"#)))
        #expect(result.environment.propertiesDiff.json == (try JSON.parse(#"[{"op":"replace","path":"/app/replicas","value":3}]"#)))
        #expect(result.step.properties["app"]?["image"] == "web:1")
        #expect(outcome.runStarted && outcome.exitCode == 0)

        let ref = outcome.ref
        let kinds = harness.events(for: ref).map { event -> String in
            event.phase.map { "\($0.name.rawValue) \($0.state.rawValue)" } ?? event.kind.rawValue
        }
        #expect(Array(kinds.filter { $0 != "heartbeat" }) == ["claimed", "build started", "build finished", "run started", "run finished"])
        let lines = await harness.logLines(for: ref)
        #expect(lines.map(\.seq) == Array(0..<lines.count))
        #expect(lines.contains { $0.stream == .system && $0.text == "build: started" })
        #expect(lines.contains { $0.stream == .system && $0.text.hasPrefix("build: finished in ") })
        #expect(lines.contains { $0.stream == .system && $0.text.hasPrefix("run: finished in ") })
        #expect(lines.contains { $0.stream == .stdout && $0.text == "edited properties" })
        #expect(lines.contains { $0.stream == .stderr && $0.text == "a warning" })
        #expect(try await harness.leftoverContainers().isEmpty)
        await harness.stop()
    }

    @Test func filesAndEnvPropertiesReachTheAction() async throws {
        let harness = try await WorkerHarness()
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        let outcome = try await harness.run(harness.job(
            repository, action: "check_inputs",
            project: ["env": ["GREETING": "from project"], "files": ["~/.config/stepfleet-test/config.txt": ["mode": "0640", "content": "file contents"]]],
            environment: ["env": ["GREETING": "from environment"]]))
        #expect(outcome.status == .success, "\(outcome.error ?? "")")
        await harness.stop()
    }

    @Test func aCustomDockerfileWithOpschainExecAndBuildArgsIsHonouredAndReused() async throws {
        let harness = try await WorkerHarness()
        let dockerfile = """
            ARG OPSCHAIN_BASE_RUNNER
            FROM ${OPSCHAIN_BASE_RUNNER}
            ARG GIT_SHA
            ARG GIT_REV
            WORKDIR /opt/opschain
            ADD repo.tar ./
            COPY step_context_env.json .opschain/step_context_env.json
            RUN opschain-exec sh -c 'echo "$GREETING $GIT_REV $GIT_SHA $OPSCHAIN_PROJECT_CODE" > /home/opschain/built.txt'
            """
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions, ".opschain/Dockerfile": dockerfile])
        let project: JSON = ["env": ["GREETING": "hello"]]
        let first = try await harness.run(harness.job(repository, action: "show_built", project: project))
        #expect(first.status == .success, "\(first.error ?? "")")
        let built = try #require(first.result?.project.propertiesDiff.operations.first)
        #expect(built == .add(path: try JSONPointer("/built"), value: .string("hello main \(repository.sha) demo")))
        let firstLog = await harness.logLines(for: first.ref)
        #expect(firstLog.contains { $0.text.contains("(image built:") })

        // Same inputs, another step: the image is reused, nothing is built.
        let second = try await harness.run(harness.job(repository, action: "show_built", project: project))
        #expect(second.status == .success)
        let secondLog = await harness.logLines(for: second.ref)
        #expect(secondLog.contains { $0.text.contains("(existing image reused:") })
        #expect(!secondLog.contains { $0.text.hasPrefix("build: Step ") })

        // A changed env property changes step_context_env.json: a new image.
        let third = try await harness.run(harness.job(repository, action: "show_built", project: ["env": ["GREETING": "bonjour"]]))
        #expect(third.result?.project.propertiesDiff.operations.first == .add(path: try JSONPointer("/built"), value: .string("bonjour main \(repository.sha) demo")))
        await harness.stop()
    }

    @Test func childrenAndTheirStrategyComeBack() async throws {
        let harness = try await WorkerHarness()
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        let outcome = try await harness.run(harness.job(repository, action: "parent"))
        #expect(outcome.status == .success, "\(outcome.error ?? "")")
        #expect(outcome.result?.steps.children.map(\.action) == ["child_a", "child_b", "grandchild"])
        #expect(outcome.result?.steps.childExecutionStrategy == .parallel)
        await harness.stop()
    }

    @Test func aTimeoutKillsTheContainer() async throws {
        let harness = try await WorkerHarness()
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        // The outcome's words prove the kill; run's own deadline bounds the wait.
        let outcome = try await harness.run(harness.job(repository, action: "slow"))
        #expect(outcome.status == .error)
        #expect(outcome.error == "the step ran longer than its timeout of 2 s and was killed")
        #expect(outcome.policy?.timeoutSeconds == 2)
        #expect(try await harness.leftoverContainers().isEmpty)
        await harness.stop()
    }

    @Test func cancellingARunningStepKillsItsContainer() async throws {
        let harness = try await WorkerHarness()
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        let job = harness.job(repository, action: "sleepy")
        let ref = AttemptRef(stepId: job.stepId, attempt: job.attempt)
        try await harness.publish(job)
        try await harness.waitForEvent(ref) { $0.phase == Phase(name: .run, state: .started) }
        try await Task.sleep(for: .milliseconds(500))
        try await harness.cancel(ref)
        let outcome = try await harness.outcome(for: ref, timeout: .seconds(30))
        #expect(outcome.status == .cancelled)
        #expect(try await harness.leftoverContainers().isEmpty)
        await harness.stop()
    }

    /// The engine's start request is held (a proxy in front of the engine) after "run started"
    /// went out: the cancel comes in then, the worker's kill finds nothing running, the start
    /// goes through afterwards, and the step must still end cancelled with its container gone.
    /// On the Docker runtime whatever `STEPFLEET_TEST_RUNTIME` says: the held request is the
    /// engine's container start, which the oci runtime does not make.
    @Test func aCancelArrivingWhileTheContainerStartsStillStopsIt() async throws {
        let proxy = try StartHoldingProxy()
        defer { proxy.stop() }
        let harness = try await WorkerHarness(docker: "unix://\(proxy.socket)", runtime: .docker)
        let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
        let job = harness.job(repository, action: "sleepy")
        let ref = AttemptRef(stepId: job.stepId, attempt: job.attempt)
        try await harness.publish(job)
        try await harness.waitForEvent(ref, timeout: .seconds(120)) { $0.phase == Phase(name: .run, state: .started) }
        let held = try await Self.waitForNote(proxy) { $0.hasPrefix("start-held ") }
        let container = String(held.dropFirst("start-held ".count))
        try await harness.cancel(ref)
        // The cancel reached the worker while its container was not started: it tried a kill.
        _ = try await Self.waitForNote(proxy) { $0 == "kill \(container)" }
        #expect(harness.outcomes(for: job.stepId).isEmpty)
        proxy.release()
        let outcome = try await harness.outcome(for: ref, timeout: .seconds(30))
        #expect(outcome.status == .cancelled, "\(outcome.status) \(outcome.error ?? "")")
        let seen = proxy.seen.filter { $0.hasSuffix(container) }
        #expect(seen.prefix(3) == ["start-held \(container)", "kill \(container)", "start-released \(container)"], "\(seen)")
        #expect(try await harness.leftoverContainers().isEmpty)
        await harness.stop()
    }

    private static func waitForNote(_ proxy: StartHoldingProxy, timeout: Duration = .seconds(60), _ matches: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let note = proxy.seen.first(where: matches) { return note }
            guard ContinuousClock.now < deadline else { throw TestSetupError("the engine proxy saw no matching request within \(timeout); it saw \(proxy.seen)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test func aHeartbeatFlowsWhileAStepRuns() async throws {
        let harness = try await WorkerHarness()
        let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  wait: { run: 'sleep 3' }"])
        let outcome = try await harness.run(harness.job(repository, action: "wait"))
        #expect(outcome.status == .success)
        #expect(harness.events(for: outcome.ref).filter { $0.kind == .heartbeat }.count >= 2)
        await harness.stop()
    }
}
}
