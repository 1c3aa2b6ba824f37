import AMQP
import Fleet
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

extension WorkerEndToEndTests {
    /// A worker declares only its own control queue: its pool's queue is the dispatcher's to
    /// declare (a worker's broker account may not), and the worker waits for it.
    @Suite(.timeLimit(.minutes(10))) struct WorkerTopologyTests {
        @Test(.timeLimit(.minutes(3))) func aWorkerWaitsForItsPoolsQueueAndDoesNotDeclareIt() async throws {
            let harness = try await WorkerHarness(declarePool: false)
            let queue = Names.stepsQueue(pool: harness.pool)
            let connection = try await harness.client.connected()
            // The worker is up: its exclusive control queue exists (locked to its connection).
            let control = Names.controlQueue(worker: await harness.worker.configuration.name)
            func controlQueueAnswer() async -> String {
                do {
                    _ = try await connection.messageCount(queue: control)
                    return "not exclusive"
                } catch {
                    return "\(error)"
                }
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, !(await controlQueueAnswer()).contains("RESOURCE_LOCKED") {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(await controlQueueAnswer().contains("RESOURCE_LOCKED"))
            try await Task.sleep(for: .seconds(3))
            await #expect(throws: AMQPError.self) { _ = try await connection.messageCount(queue: queue) }

            // Once the dispatcher declares it, the worker takes the pool's jobs.
            try await connection.declare(FleetTopology.pool(harness.pool))
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  hello: { run: 'echo hello' }"])
            let outcome = try await harness.run(harness.job(repository, action: "hello"), timeout: .seconds(90))
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            _ = try? await connection.deleteQueue(queue)
            await harness.stop()
        }
    }
}
