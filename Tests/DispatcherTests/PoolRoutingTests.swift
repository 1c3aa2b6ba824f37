import AMQP
import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// `opschain.config.pool` sends a step's job to that pool's queue, which the dispatcher
    /// declares before the pool's first job (a worker of the pool waits for it).
    @Suite(.timeLimit(.minutes(6))) struct PoolRoutingTests {
        @Test func aStepRunsOnAWorkerOfItsPoolWhoseQueueTheDispatcherDeclared() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let pool = "pool\(UUID().uuidString.prefix(6).lowercased())"
            let queue = Names.stepsQueue(pool: pool)
            let probe = AMQPClient(endpoints: [fleet.broker], topology: AMQPTopology(), logger: FleetHarness.logger)
            // The pool's queue does not exist yet.
            do {
                let count = try await probe.connected().messageCount(queue: queue)
                Issue.record("the queue \(queue) exists before the pool's first job, with \(count) message(s)")
            } catch {}
            // Only a worker of that pool: the default pool has none.
            try await fleet.startWorker(0, slots: 1, name: "worker-of-\(pool)", pool: pool)
            let repo = try await fleet.project(
                "actions:\n  a: { run: 'true' }", environment: ["opschain": ["config": ["pool": .string(pool)]]])
            let id = try await fleet.createChange(repo, action: "a")
            let (change, tree) = try await fleet.waitForChange(id, timeout: .seconds(120))
            #expect(change.status == .success)
            let root = try #require(tree.root)
            #expect(root.holder(of: root.attempt)?.worker == "worker-of-\(pool)", "\(String(describing: root.holder(of: root.attempt)))")
            _ = try? await probe.connected().deleteQueue(queue)
            await probe.stop()
            await fleet.stop()
        }
    }
}
