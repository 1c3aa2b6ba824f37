import AMQP
import Fleet
import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    @Suite(.timeLimit(.minutes(6))) struct ChangeControlTests {
        @Test func cancellingMidChangeStopsTheContainerAndEndsEveryStep() async throws {
            let fleet = try await FleetHarness()
            let repo = try await fleet.project("""
                actions:
                  main: { run: 'true', steps: [first, sleepy, after] }
                  first: { run: 'true' }
                  sleepy: { run: 'sleep 60' }
                  after: { run: 'true' }
                """)
            let id = try await fleet.createChange(repo, action: "main")
            try await fleet.waitUntil("the step sleepy to start its run", timeout: .seconds(120)) {
                try await fleet.snapshot(id).1.step("sleepy")?.runStarted == true
            }
            // Its container runs now: the cancel has a container to stop.
            let sleepy = try #require(try await fleet.snapshot(id).1.step("sleepy"))
            #expect(sleepy.status == .running)
            #expect(try await !fleet.leftoverContainers().isEmpty)
            _ = try await fleet.post("/changes/\(id)/cancel", nil)
            let (change, tree) = try await fleet.snapshot(id)
            #expect(change.status == .cancelled)
            #expect(tree.steps.values.allSatisfy { $0.status.isFinal })
            #expect(tree.step("first")?.status == .success)
            #expect(tree.step("sleepy")?.status == .cancelled)
            #expect(tree.children(of: tree.root!.id).map(\.status) == [.success, .cancelled, .cancelled])
            // The container is killed through the control exchange.
            let stopped = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < stopped, try await !fleet.leftoverContainers().isEmpty { try await Task.sleep(for: .milliseconds(200)) }
            #expect(try await fleet.leftoverContainers().isEmpty)
            let (status, body) = try await fleet.raw("POST", "/changes/\(id)/cancel", nil)
            #expect(status == 409 && body["error"]?.stringValue?.contains("has finished") == true)
            await fleet.stop()
        }

        @Test func retryRunsOnlyWhatDidNotSucceed() async throws {
            let fleet = try await FleetHarness()
            let bump = #"jq ".runs[\"$OPSCHAIN_ACTION\"] = ((.runs[\"$OPSCHAIN_ACTION\"] // 0) + 1)" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES""#
            let repo = try await fleet.project("""
                actions:
                  main: { run: '\(bump)', steps: [a, b, c] }
                  a: { run: '\(bump)' }
                  b: { run: 'jq -e .fixed "$OPSCHAIN_PROJECT_PROPERTIES" >/dev/null && \(bump)' }
                  c: { run: '\(bump)' }
                """, project: ["runs": [:]])
            let id = try await fleet.createChange(repo, action: "main")
            let (failed, failedTree) = try await fleet.waitForChange(id)
            #expect(failed.status == .error)
            #expect(failedTree.children(of: failedTree.root!.id).map(\.status) == [.success, .error, .aborted])

            _ = try await fleet.send("PATCH", "/projects/\(repo.project)/properties", [["op": "add", "path": "/fixed", "value": true]])
            let retried = try await fleet.post("/changes/\(id)/retry", nil)
            let newId = try #require(retried["id"]?.stringValue)
            #expect(retried["retry_of"]?.stringValue == id)
            let (change, tree) = try await fleet.waitForChange(newId)
            #expect(change.status == .success)
            #expect(change.gitSha == failed.gitSha)
            #expect(tree.steps.values.allSatisfy { $0.status == .success })
            // main and a ran once (in the first change); b and c once (in the retry).
            #expect(try await fleet.properties(repo).properties["runs"] == ["main": 1, "a": 1, "b": 1, "c": 1])
            let (status, _) = try await fleet.raw("POST", "/changes/\(newId)/retry", nil)
            #expect(status == 409)
            await fleet.stop()
        }

        @Test func aDispatcherRestartedMidChangeFinishesItWithNothingLostOrRunTwice() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("""
                actions:
                  main: { run: 'sleep 1', steps: [p1, p2, s1], strategy: serial }
                  p1: { run: 'sleep 1', steps: [x, y], strategy: parallel }
                  p2: { run: 'sleep 1' }
                  s1: { run: 'sleep 1' }
                  x: { run: 'sleep 2' }
                  y: { run: 'sleep 2' }
                """)
            let id = try await fleet.createChange(repo, action: "main")
            // Stop it while x and y run: two attempts in flight on the worker.
            try await fleet.waitUntil("x and y to run", timeout: .seconds(120)) {
                let tree = try await fleet.snapshot(id).1
                return tree.step("x")?.runStarted == true && tree.step("y")?.runStarted == true
            }
            await fleet.stopDispatcher()
            let atStop = try await fleet.snapshot(id).1
            let inFlight = ["x", "y"].filter { atStop.step($0).map { !$0.status.isFinal } == true }
            #expect(inFlight == ["x", "y"], "not in flight when the dispatcher stopped: \(atStop.steps.values.map { "\($0.action) \($0.status)" })")
            // They end while it is away: their outcomes wait on the broker, unrecorded.
            try await fleet.waitUntil("the worker to finish x and y", timeout: .seconds(60)) { await fleet.runningSteps().isEmpty }
            let whileAway = try await fleet.snapshot(id).1
            #expect(["x", "y"].allSatisfy { whileAway.step($0).map { !$0.status.isFinal } == true }, "recorded with no dispatcher running")
            let broker = AMQPClient(endpoints: [fleet.broker], logger: FleetHarness.logger)
            let waiting = try await broker.connected().messageCount(queue: Names.outcomesQueue)
            await broker.stop()
            #expect(waiting >= 2, "x's and y's outcomes are not waiting on the broker: \(waiting) in \(Names.outcomesQueue)")
            try await fleet.startDispatcher()
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .success)
            #expect(tree.steps.count == 6)
            #expect(tree.steps.values.allSatisfy { $0.status == .success && $0.attempt == 1 })
            let runs = try await fleet.logs(id).filter { $0.text == "run: started" }
            #expect(runs.count == 6)
            #expect(Set(runs.map(\.stepId)).count == 6)
            await fleet.stop()
        }

        @Test func freeingWorkerSlotsNeverQueuesTheSameStepTwice() async throws {
            let fleet = try await FleetHarness(workers: 2, slots: 1)
            let repo = try await fleet.project("""
                actions:
                  fan: { run: 'true', steps: [s, s, s, s, s, s, s, s], strategy: parallel }
                  s: { run: 'sleep 0.3' }
                """)
            let id = try await fleet.createChange(repo, action: "fan")
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .success)
            #expect(tree.steps.count == 9)
            #expect(tree.steps.values.allSatisfy { $0.attempt == 1 })
            let runs = try await fleet.logs(id).filter { $0.text == "run: started" }
            #expect(runs.count == 9)
            #expect(Set(runs.map(\.stepId)).count == 9)
            await fleet.stop()
        }
    }
}

extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct DeadLetterTests {
        @Test func aDeadLetteredJobIsQueuedAgainAsANewAttempt() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }")
            let id = try await fleet.createChange(repo, action: "a")
            // No worker: take the job off the queue and reject it, as a broker giving up would.
            let client = AMQPClient(endpoints: [FleetHarness.broker], topology: FleetTopology.pool(Names.defaultPool), logger: FleetHarness.logger)
            let connection = try await client.connected()
            let consumer = try await connection.consume(queue: Names.stepsQueue(pool: Names.defaultPool), prefetch: 1)
            for try await delivery in consumer {
                let job = try WireCodec.decode(StepJob.self, from: delivery.body)
                #expect(job.attempt == 1)
                try await delivery.reject(requeue: false)
                break
            }
            await consumer.cancel()
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline, try await fleet.snapshot(id).1.root?.attempt != 2 { try await Task.sleep(for: .milliseconds(100)) }
            let root = try #require(try await fleet.snapshot(id).1.root)
            #expect(root.attempt == 2 && root.status == .queued)
            #expect(root.error?.hasPrefix("the broker dead-lettered the job (rejected on stepfleet.steps.default)") == true, "\(root.error ?? "")")

            // README: queued again five times at most, then the step fails saying so.
            let again = try await connection.consume(queue: Names.stepsQueue(pool: Names.defaultPool), prefetch: 1)
            var rejected: [Int] = []
            var iterator = again.makeAsyncIterator()
            while rejected.count < 4, let delivery = try await iterator.next() {
                let job = try WireCodec.decode(StepJob.self, from: delivery.body)
                guard job.stepId == root.id else { continue }
                rejected.append(job.attempt)
                try await delivery.reject(requeue: false)
            }
            await again.cancel()
            #expect(rejected == [2, 3, 4, 5])
            let (change, tree) = try await fleet.waitForChange(id, timeout: .seconds(30))
            #expect(change.status == .error)
            #expect(tree.root?.attempt == 5)
            #expect(tree.root?.error?.hasPrefix("the broker dead-lettered this step's job 5 times (last: rejected") == true, "\(tree.root?.error ?? "")")
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: Names.defaultPool))
            await client.stop()
            await fleet.stop()
        }
    }
}
