@testable import AMQP
import Foundation
import Testing

/// Brokers that refuse, block or stop reading: every publisher hears back within a deadline.
/// Part of `DisruptionTests`, so they never run while another test stops the disposable node.
extension DisruptionTests {
    /// A queue that refuses every message (max length 0, overflow reject-publish): each publish
    /// to it is nacked, like the channel RabbitMQ left refusing everything after a leader change.
    private static func refusingQueue(_ name: String) -> AMQPTopology {
        AMQPTopology(queues: [AMQPTopology.Queue(name: name, durable: false, autoDelete: false, arguments: ["x-max-length": .int(0), "x-overflow": .string("reject-publish")])])
    }

    @Test(.timeLimit(.minutes(3))) func aChannelTheBrokerKeepsRefusingIsReplacedThenTheConnection() async throws {
        let refusing = TestBroker.uniqueName("refusing")
        let plain = TestBroker.uniqueName("plain")
        let connection = try await AMQPConnection.open(TestBroker.configuration(TestBroker.chaosURL))
        try await connection.declare(Self.refusingQueue(refusing) + AMQPTopology(queues: [AMQPTopology.Queue(name: plain, durable: false)]))
        // A streak of refusals replaces the publish channel: the connection carries on.
        for _ in 0..<NackStreak.defaultLimit {
            await #expect(throws: AMQPError.publishNacked) { try await connection.publish(AMQPMessage(body: Data("x".utf8)), routingKey: refusing) }
        }
        #expect(connection.isOpen)
        try await connection.publish(AMQPMessage(body: Data("ok".utf8)), routingKey: plain)
        #expect(try await connection.messageCount(queue: plain) == 1)
        // An ack for another destination does not make this one work: a second streak on the
        // replacement channel closes the connection, which a client makes again.
        for _ in 0..<(4 * NackStreak.defaultLimit) {
            do {
                try await connection.publish(AMQPMessage(body: Data("x".utf8)), routingKey: refusing)
            } catch {
                #expect(error == .publishNacked || error.description.contains("refused"))
            }
            if !connection.isOpen { break }
        }
        let closed = await eventually(timeout: .seconds(10)) { !connection.isOpen }
        #expect(closed, "a destination refused on a channel and on its replacement must close the connection")
        if closed {
            #expect(await connection.waitUntilClosed().description.contains("publishes in a row on two channels"))
        } else {
            await connection.close()
        }
        let cleanup = try await AMQPConnection.open(TestBroker.configuration(TestBroker.chaosURL))
        try await cleanup.deleteQueue(refusing)
        try await cleanup.deleteQueue(plain)
        await cleanup.close()
    }

    @Test(.timeLimit(.minutes(3))) func aBrokerThatStopsReadingNeverHoldsPublishersForEver() async throws {
        let queue = TestBroker.uniqueName("frozen")
        let connection = try await AMQPConnection.open(TestBroker.configuration(TestBroker.chaosURL))
        try await connection.declare(AMQPTopology(queues: [AMQPTopology.Queue(name: queue, durable: false)]))
        let pid = try TestBroker.chaosNodePID()
        // The broker's VM stops: it reads nothing more, and the socket buffers fill.
        #expect(kill(pid, SIGSTOP) == 0, "SIGSTOP to the disposable node's VM (pid \(pid)) failed: errno \(errno)")
        defer { kill(pid, SIGCONT) }
        let stopped = await eventually(timeout: .seconds(5)) { TestBroker.processState(pid) == "T" }
        try #require(stopped, "the disposable node's VM (pid \(pid)) is not stopped: state \(TestBroker.processState(pid) ?? "gone")")
        let clock = ContinuousClock()
        let start = clock.now
        let body = Data(repeating: 0x61, count: 512 << 10)
        let outcomes = Collector<String>()
        let publishing = Task {
            await withTaskGroup(of: Void.self) { group in
                for number in 0..<40 {
                    group.addTask {
                        do {
                            try await connection.publish(AMQPMessage(body: body), routingKey: queue)
                            // A confirm from a stopped broker is impossible: say when and how stopped it was.
                            outcomes.add("confirmed #\(number) after \(clock.now - start), broker state \(TestBroker.processState(pid) ?? "gone")")
                        } catch {
                            outcomes.add("failed")
                        }
                    }
                }
            }
        }
        let answered = await eventually(timeout: .seconds(45)) { outcomes.count == 40 }
        let waited = clock.now - start
        // Thawed: whatever still waits (on a client that bounds nothing) can finish.
        kill(pid, SIGCONT)
        await publishing.value
        #expect(answered, "publishers still waiting \(waited) after the broker stopped reading")
        #expect(outcomes.all.allSatisfy { $0 == "failed" }, "\(outcomes.all.filter { $0 != "failed" })")
        let reason = await connection.waitUntilClosed()
        #expect(!connection.isOpen, "closed: \(reason)")
        try await Task.sleep(for: .seconds(2))
        let cleanup = try await AMQPConnection.open(TestBroker.configuration(TestBroker.chaosURL))
        try await cleanup.deleteQueue(queue)
        await cleanup.close()
    }

    @Test(.timeLimit(.minutes(3))) func publishesHeldDuringAMemoryAlarmAreAllConfirmedAfterIt() async throws {
        let queue = TestBroker.uniqueName("alarm")
        let client = AMQPClient(
            endpoints: [try TestBroker.configuration(TestBroker.chaosURL)], topology: AMQPTopology(queues: [.quorum(queue)]),
            backoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(500)), logger: TestBroker.logger)
        _ = try await client.connected()
        try TestBroker.rabbitmqctl("set_vm_memory_high_watermark", "0.0001")
        let cleared = Task {
            try await Task.sleep(for: .seconds(5))
            try TestBroker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
        }
        let confirmed = Collector<Int>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for number in 0..<200 {
                group.addTask {
                    while true {
                        do throws(AMQPError) {
                            try await client.publish(AMQPMessage(body: Data("\(number)".utf8)), routingKey: queue, timeout: .seconds(60))
                            confirmed.add(number)
                            return
                        } catch {
                            // Unconfirmed or refused while blocked: publish again.
                            guard case .publishUnconfirmed = error else { if error == .publishNacked { continue }; throw error }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        try await cleared.value
        #expect(confirmed.set == Set(0..<200))
        let connection = try await client.connected()
        #expect(try await connection.messageCount(queue: queue) >= 200)
        try await connection.deleteQueue(queue)
        await client.stop()
    }
}
