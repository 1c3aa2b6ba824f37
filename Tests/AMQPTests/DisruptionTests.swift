@testable import AMQP
import Foundation
import Synchronization
import Testing

/// Broker restarts and dropped connections, on the disposable node so nothing else is disturbed.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DisruptionTests {
    private static func client(_ topology: AMQPTopology) throws -> AMQPClient {
        AMQPClient(
            endpoints: [try TestBroker.configuration(TestBroker.chaosURL)], topology: topology,
            backoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(500)), logger: TestBroker.logger)
    }

    /// Publishes numbered messages with confirms from 20 tasks until `disruption` has finished
    /// and at least `minimum` were sent, publishing again whatever was not confirmed. Returns
    /// the ids confirmed (every id, in the end) and the ids whose publish was reported
    /// unconfirmed or nacked at least once on the way (those may arrive twice).
    private static func publishDuring(
        _ prefix: String, via client: AMQPClient, queue: String, minimum: Int,
        disruption: @escaping @Sendable (_ publish: @escaping @Sendable (String) async throws -> Void) async throws -> Void
    ) async throws -> (confirmed: Set<String>, unconfirmed: Set<String>) {
        let finished = LockedValue(false)
        let counter = LockedValue(0)
        let confirmed = Collector<String>()
        let unconfirmed = Collector<String>()
        /// Publishes `id` until it is confirmed, noting each time it was not.
        @Sendable func publish(_ id: String) async throws {
            while true {
                do {
                    try await client.publish(AMQPMessage(body: Data(id.utf8), properties: AMQPProperties(messageId: id)), routingKey: queue, timeout: .seconds(60))
                    confirmed.add(id)
                    return
                } catch let error as AMQPError {
                    switch error {
                    case .publishUnconfirmed, .publishNacked: unconfirmed.add(id)
                    default: throw error
                    }
                }
            }
        }
        let disrupter = Task {
            defer { finished.value = true }
            try await disruption(publish)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    while let number = counter.withLock({ count -> Int? in
                        if finished.value && count >= minimum { return nil }
                        count += 1
                        return count
                    }) {
                        try await publish("\(prefix)\(number)")
                        try await Task.sleep(for: .milliseconds(2))
                    }
                }
            }
            try await group.waitForAll()
        }
        try await disrupter.value
        return (confirmed.set, unconfirmed.set)
    }

    /// What every publish came to, whatever the disruption hit: each id confirmed in the end
    /// arrives; one confirmed at its first publish was enqueued once, so it arrives once as a
    /// fresh delivery (a copy marked redelivered is the broker resending an unacked delivery,
    /// not a second publish); only an id reported unconfirmed (published again) may arrive as
    /// two fresh copies, and it arrives at least once.
    private static func checkDelivered(_ received: Received, confirmed: Set<String>, unconfirmed: Set<String>, sourceLocation: SourceLocation = #_sourceLocation) async {
        let arrived = await eventually(timeout: .seconds(30)) { received.ids.isSuperset(of: confirmed) }
        #expect(arrived, "confirmed but never delivered: \(confirmed.subtracting(received.ids).sorted().prefix(20))", sourceLocation: sourceLocation)
        #expect(unconfirmed.isSubset(of: confirmed), "reported unconfirmed and never confirmed: \(unconfirmed.subtracting(confirmed).sorted().prefix(20))", sourceLocation: sourceLocation)
        let doubled = received.fresh.filter { $0.value > 1 && !unconfirmed.contains($0.key) }.keys.sorted()
        #expect(doubled.isEmpty, "confirmed at their only publish, yet enqueued twice: \(doubled.prefix(20))", sourceLocation: sourceLocation)
        #expect(received.ids.isSubset(of: confirmed), "delivered but never published: \(received.ids.subtracting(confirmed).sorted().prefix(20))", sourceLocation: sourceLocation)
    }

    @Test func aBrokerRestartLosesNoConfirmedMessageAndTheConsumerResumes() async throws {
        let queue = TestBroker.uniqueName("restart")
        let client = try Self.client(AMQPTopology(queues: [.quorum(queue)]))
        await client.start()
        _ = try await client.connected()
        let received = Received()
        let subscription = await client.subscribe(queue: queue, prefetch: 50)
        let consumer = Task {
            for await delivery in subscription {
                received.add(delivery)
                try? await delivery.ack()
            }
        }
        let (confirmed, unconfirmed) = try await Self.publishDuring("r", via: client, queue: queue, minimum: 1000) { _ in
            try await Task.sleep(for: .milliseconds(400))
            try TestBroker.rabbitmqctl("stop_app")
            try await Task.sleep(for: .seconds(1))
            try TestBroker.rabbitmqctl("start_app")
        }
        // How many publishes were in flight when the broker went is timing; what became of
        // each is not: see `checkDelivered`.
        await Self.checkDelivered(received, confirmed: confirmed, unconfirmed: unconfirmed)
        #expect(await client.connectionCount >= 2)
        consumer.cancel()
        let connection = try await client.connected()
        try await connection.deleteQueue(queue)
        await client.stop()
    }

    /// Publishes that are certainly in flight when the connection drops: the broker's memory
    /// alarm blocks the connection, so the client holds what is published next unsent (it is
    /// seen holding some before the drop: no timing involved). Each must be reported
    /// unconfirmed — not dropped, not reported confirmed — and, published again, arrive.
    @Test func publishesHeldWhenTheConnectionDropsAreReportedUnconfirmedAndArriveRepublished() async throws {
        let queue = TestBroker.uniqueName("held")
        let client = try Self.client(AMQPTopology(queues: [.quorum(queue)]))
        _ = try await client.connected()
        let received = Received()
        let subscription = await client.subscribe(queue: queue, prefetch: 50)
        let reader = Task {
            for await delivery in subscription {
                received.add(delivery)
                try? await delivery.ack()
            }
        }
        let (confirmed, unconfirmed) = try await Self.publishDuring("h", via: client, queue: queue, minimum: 100) { publish in
            try TestBroker.rabbitmqctl("set_vm_memory_high_watermark", "0.0001")
            do {
                // The alarm blocks the connection at its next publish, and the broker says so.
                let connection = try await client.connected()
                let blocked = await eventually(timeout: .seconds(30)) { (try? await connection.thread.perform { $0.blocked }) == true }
                try #require(blocked, "the broker's memory alarm did not block the connection")
                // Published now, on a connection known to be blocked: the client holds it unsent
                // (the other publishers may all be waiting for confirms already).
                let late = Task { try await publish("h-late") }
                let holding = await eventually(timeout: .seconds(30)) {
                    (try? await connection.thread.perform { $0.blocked && $0.hasHeldPublishes }) == true
                }
                try #require(holding, "the client never held a publish on its blocked connection")
                try TestBroker.rabbitmqctl("close_all_connections", "test: dropping a blocked connection")
                try TestBroker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
                try await late.value
            } catch {
                _ = try? TestBroker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
                throw error
            }
        }
        // Held publishes never reached the broker: they had to be reported unconfirmed.
        #expect(!unconfirmed.isEmpty, "the client held publishes when the connection dropped, and reported none unconfirmed")
        await Self.checkDelivered(received, confirmed: confirmed, unconfirmed: unconfirmed)
        #expect(await client.connectionCount >= 2)
        reader.cancel()
        try await client.connected().deleteQueue(queue)
        await client.stop()
    }

    @Test func droppedConnectionsAreTypedErrorsAndTheClientComesBack() async throws {
        let queue = TestBroker.uniqueName("dropped")
        // A plain connection: loss surfaces as a typed error on its consumer and close reason.
        let plain = try await AMQPConnection.open(TestBroker.configuration(TestBroker.chaosURL))
        try await plain.declare(AMQPTopology(queues: [.quorum(queue)]))
        let consumer = try await plain.consume(queue: queue, prefetch: 1)
        try TestBroker.rabbitmqctl("close_all_connections", "test: dropping every client")
        await #expect {
            for try await _ in consumer {}
        } throws: { error in
            (error as? AMQPError)?.description.contains("CONNECTION_FORCED") == true
        }
        let reason = await plain.waitUntilClosed()
        #expect(reason.description.contains("test: dropping every client"))
        await #expect(throws: AMQPError.publishUnconfirmed(reason: reason.description)) {
            try await plain.publish(AMQPMessage(body: Data()), routingKey: queue)
        }

        // The reconnecting client: dropped three times, every confirmed message arrives.
        let client = try Self.client(AMQPTopology(queues: [.quorum(queue)]))
        let received = Received()
        let subscription = await client.subscribe(queue: queue, prefetch: 20)
        let reader = Task {
            for await delivery in subscription {
                received.add(delivery)
                try? await delivery.ack()
            }
        }
        let (confirmed, unconfirmed) = try await Self.publishDuring("d", via: client, queue: queue, minimum: 600) { _ in
            for _ in 0..<3 {
                try await Task.sleep(for: .milliseconds(250))
                try TestBroker.rabbitmqctl("close_all_connections", "test: again")
            }
        }
        await Self.checkDelivered(received, confirmed: confirmed, unconfirmed: unconfirmed)
        #expect(await client.connectionCount >= 2)
        reader.cancel()
        try await client.connected().deleteQueue(queue)
        await client.stop()
    }
}

/// Deliveries by message id: every id seen, and how often each came as a fresh delivery (not
/// marked redelivered).
final class Received: Sendable {
    private let state = Mutex<(ids: Set<String>, fresh: [String: Int])>(([], [:]))

    func add(_ delivery: AMQPDelivery) {
        let id = String(decoding: delivery.body, as: UTF8.self)
        state.withLock { state in
            state.ids.insert(id)
            if !delivery.redelivered { state.fresh[id, default: 0] += 1 }
        }
    }

    var ids: Set<String> { state.withLock { $0.ids } }
    var fresh: [String: Int] { state.withLock { $0.fresh } }
}
