import AMQP
import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// An outcome the dispatcher can never apply fails its step at once, with the reason, and
    /// is not retried until the lease blames the worker.
    @Suite struct UnprocessableOutcomeTests {
        @Test(.timeLimit(.minutes(4))) func aStepWritingPropertiesThatAreNotAnObjectFailsAtOnceSayingWhy() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("""
                actions:
                  both: { run: 'true', steps: [list, number], strategy: parallel }
                  list: { run: 'echo "[1,2]" > "$OPSCHAIN_ENVIRONMENT_PROPERTIES"' }
                  number: { run: 'echo 42 > "$OPSCHAIN_PROJECT_PROPERTIES"' }
                  fine: { run: 'jq ".ok = true" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES"' }
                """, project: ["keep": 1], environment: ["keep": 2])
            let before = (try await fleet.properties(repo), try await fleet.properties(repo, environment: true))
            let started = ContinuousClock.now
            let id = try await fleet.createChange(repo, action: "both")
            let (change, tree) = try await fleet.waitForChange(id, timeout: .seconds(120))
            let elapsed = ContinuousClock.now - started
            #expect(change.status == .error)
            let list = try #require(tree.step("list"))
            let number = try #require(tree.step("number"))
            #expect(list.status == .error && number.status == .error)
            #expect(list.error == "Updates made to the environment properties in step \"[\(list.id)] list\" could not be applied: the patched properties would be an array, and properties must be a JSON object", "\(list.error ?? "")")
            #expect(number.error?.hasSuffix("the patched properties would be a number, and properties must be a JSON object") == true, "\(number.error ?? "")")
            #expect(list.attempt == 1 && number.attempt == 1)
            #expect(!(list.error ?? "").contains("worker lost"))
            // At once: not after a lease expiry and twenty redeliveries.
            #expect(elapsed < .seconds(60), "took \(elapsed)")
            let log = try await fleet.logs(id).filter { $0.stepId == list.id }.map(\.text)
            #expect(log.contains { $0.contains("must be a JSON object") }, "\(log)")
            // Nothing written.
            #expect(try await fleet.properties(repo) == before.0)
            #expect(try await fleet.properties(repo, environment: true) == before.1)
            let metrics = try await fleet.raw("GET", "/metrics", nil).1.stringValue ?? ""
            #expect(metrics.contains("stepfleet_unprocessable_messages_total 2"), "\(metrics)")

            // The fleet carries on.
            let next = try await fleet.createChange(repo, action: "fine")
            #expect(try await fleet.waitForChange(next).0.status == .success)
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(4))) func anOutcomeThatDoesNotDecodeFailsItsStepAtOnceInReadableWords() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 1)
            let repo = try await fleet.project("actions:\n  slow: { run: 'sleep 8' }")
            let id = try await fleet.createChange(repo, action: "slow")
            let deadline = ContinuousClock.now + .seconds(90)
            while ContinuousClock.now < deadline, try await fleet.snapshot(id).1.root?.worker == nil {
                try await Task.sleep(for: .milliseconds(100))
            }
            let root = try #require(try await fleet.snapshot(id).1.root)
            let worker = try #require(root.worker)
            #expect(root.status == .running)

            // What a worker with a bug might send: the lease holder's outcome with a strategy
            // no dispatcher knows.
            let outcome = StepOutcome(
                ref: AttemptRef(stepId: root.id, attempt: root.attempt), worker: worker, status: .success,
                result: StepResult(steps: .init(children: [], childExecutionStrategy: .parallel)), runStarted: true)
            let text = String(decoding: WireCodec.encode(outcome), as: UTF8.self)
            let poisoned = text.replacingOccurrences(of: #""child_execution_strategy":"parallel""#, with: #""child_execution_strategy":"sideways""#)
            #expect(poisoned != text)
            let connection = try await AMQPConnection.open(FleetHarness.broker)
            try await connection.publish(
                AMQPMessage(body: Data(poisoned.utf8), properties: AMQPProperties(type: StepOutcome.messageType, userId: FleetHarness.broker.user)),
                exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)
            await connection.close()

            let failedDeadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < failedDeadline, try await fleet.snapshot(id).0.status == .running {
                try await Task.sleep(for: .milliseconds(50))
            }
            let (change, tree) = try await fleet.snapshot(id)
            #expect(change.status == .error, "the step did not fail at once: \(change.status)")
            let error = tree.root?.error ?? ""
            #expect(error.contains("the dispatcher cannot process the outcome from worker \(worker)"), "\(error)")
            #expect(error.contains(#"/result/steps/child_execution_strategy is "sideways"; allowed: serial, parallel"#), "\(error)")
            #expect(fleet.engine.metrics.unprocessableMessages.count == 1)
            await fleet.stop()
        }
    }
}
