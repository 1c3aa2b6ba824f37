import Foundation
import Logging

/// A connection that comes back by itself. On loss it reconnects with backoff, trying each
/// configured broker in turn, declares the topology again and resumes every subscription.
///
/// Publishes in flight when the connection drops fail with `.publishUnconfirmed`: they are
/// reported, never silently dropped; the caller decides to publish again.
public actor AMQPClient {
    public let endpoints: [AMQPConfiguration]
    public let topology: AMQPTopology
    private let backoff: Backoff
    private let logger: Logger
    private var connection: AMQPConnection?
    private var connectionWaiters: [UUID: CheckedContinuation<AMQPConnection, any Error>] = [:]
    private var subscriptions: [UUID: Subscription] = [:]
    private var maintainer: Task<Void, Never>?
    private var stopped = false
    /// How many times a connection was established (1 after the first).
    public private(set) var connectionCount = 0

    private final class Subscription: Sendable {
        let queue: String
        let prefetch: UInt16
        let continuation: AsyncStream<AMQPDelivery>.Continuation
        let consumer = LockedValue<AMQPConsumer?>(nil)
        let desiredPrefetch: LockedValue<UInt16>

        init(queue: String, prefetch: UInt16, continuation: AsyncStream<AMQPDelivery>.Continuation) {
            self.queue = queue
            self.prefetch = prefetch
            self.continuation = continuation
            desiredPrefetch = LockedValue(prefetch)
        }
    }

    public init(endpoints: [AMQPConfiguration], topology: AMQPTopology = AMQPTopology(), backoff: Backoff = Backoff(), logger: Logger) {
        precondition(!endpoints.isEmpty, "AMQPClient needs at least one broker")
        self.endpoints = endpoints
        self.topology = topology
        self.backoff = backoff
        self.logger = logger
    }

    /// Starts connecting in the background; returns at once.
    public func start() {
        guard maintainer == nil, !stopped else { return }
        maintainer = Task { await self.maintain() }
    }

    /// Closes the connection and ends every subscription stream.
    public func stop() async {
        stopped = true
        maintainer?.cancel()
        for waiter in connectionWaiters.values { waiter.resume(throwing: AMQPError.connectionClosed(reason: "client stopped")) }
        connectionWaiters.removeAll()
        for subscription in subscriptions.values { subscription.continuation.finish() }
        subscriptions.removeAll()
        await connection?.close()
        connection = nil
        await maintainer?.value
    }

    public var isConnected: Bool { connection?.isOpen ?? false }

    /// The live connection, waiting up to `timeout` for one.
    public func connected(timeout: Duration = .seconds(30)) async throws(AMQPError) -> AMQPConnection {
        if let connection, connection.isOpen { return connection }
        if stopped { throw .connectionClosed(reason: "client stopped") }
        start()
        let id = UUID()
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.expireWaiter(id, after: timeout)
        }
        defer { timer.cancel() }
        do {
            return try await withCheckedThrowingContinuation { connectionWaiters[id] = $0 }
        } catch let error as AMQPError {
            throw error
        } catch {
            throw .connectionClosed(reason: "\(error)")
        }
    }

    private func expireWaiter(_ id: UUID, after timeout: Duration) {
        connectionWaiters.removeValue(forKey: id)?.resume(
            throwing: AMQPError.timedOut("no broker reachable within \(timeout) (tried \(endpoints.map(\.description).joined(separator: ", ")))"))
    }

    /// Publishes with a confirm over the current connection (waiting up to `timeout` for one).
    public func publish(_ message: AMQPMessage, exchange: String = "", routingKey: String, timeout: Duration = .seconds(30)) async throws(AMQPError) {
        let connection = try await connected(timeout: timeout)
        try await connection.publish(message, exchange: exchange, routingKey: routingKey)
    }

    /// Deliveries from `queue` across reconnects. After a reconnect the broker redelivers what
    /// was not acked (marked redelivered); acking a delivery of a lost connection throws
    /// `.staleDelivery`.
    public func subscribe(queue: String, prefetch: UInt16) -> AMQPSubscription {
        let (stream, continuation) = AsyncStream<AMQPDelivery>.makeStream()
        let id = UUID()
        let subscription = Subscription(queue: queue, prefetch: prefetch, continuation: continuation)
        subscriptions[id] = subscription
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        if let connection, connection.isOpen {
            Task { await self.attach(subscription, to: connection) }
        } else {
            start()
        }
        return AMQPSubscription(stream: stream, client: self, id: id)
    }

    func unsubscribe(_ id: UUID) async {
        guard let subscription = subscriptions.removeValue(forKey: id) else { return }
        subscription.continuation.finish()
        await subscription.consumer.value?.cancel()
    }

    /// Changes the prefetch of a subscription; 0 pauses it. RabbitMQ applies a prefetch only
    /// to consumers started after it (and quorum queues have no channel-wide prefetch), so
    /// this starts a new consumer: deliveries not yet acked go back to the queue and are
    /// delivered again, and acking them here throws `.staleDelivery`.
    func setPrefetch(_ id: UUID, _ count: UInt16) async {
        guard let subscription = subscriptions[id], subscription.desiredPrefetch.value != count else { return }
        subscription.desiredPrefetch.value = count
        await subscription.consumer.value?.cancel()
        subscription.consumer.value = nil
        if count > 0, let connection, connection.isOpen { await attach(subscription, to: connection) }
    }

    private func maintain() async {
        var attempt = 0
        while !stopped && !Task.isCancelled {
            guard let opened = await openAny(startingAt: attempt) else {
                attempt += 1
                try? await Task.sleep(for: backoff.delay(attempt: attempt))
                continue
            }
            do {
                try await opened.declare(topology)
            } catch {
                logger.error("declaring the topology failed", metadata: ["broker": "\(opened.endpoint)", "error": "\(error)"])
                await opened.close()
                attempt += 1
                try? await Task.sleep(for: backoff.delay(attempt: attempt))
                continue
            }
            if stopped {
                await opened.close()
                return
            }
            connection = opened
            connectionCount += 1
            logger.info("connected to the broker", metadata: ["broker": "\(opened.endpoint)", "connection": "\(connectionCount)"])
            for subscription in subscriptions.values where subscription.desiredPrefetch.value > 0 {
                await attach(subscription, to: opened)
            }
            for waiter in connectionWaiters.values { waiter.resume(returning: opened) }
            connectionWaiters.removeAll()
            attempt = 0
            let reason = await opened.waitUntilClosed()
            if connection === opened { connection = nil }
            if stopped { return }
            logger.warning("broker connection lost; reconnecting", metadata: ["broker": "\(opened.endpoint)", "reason": "\(reason)"])
        }
    }

    private func openAny(startingAt attempt: Int) async -> AMQPConnection? {
        for offset in 0..<endpoints.count {
            let endpoint = endpoints[(attempt + offset) % endpoints.count]
            do {
                return try await AMQPConnection.open(endpoint)
            } catch {
                logger.debug("cannot connect", metadata: ["broker": "\(endpoint)", "error": "\(error)"])
                if case .invalidConfiguration = error { logger.error("\(error)") }
            }
        }
        return nil
    }

    private func attach(_ subscription: Subscription, to connection: AMQPConnection) async {
        do {
            let consumer = try await connection.consume(queue: subscription.queue, prefetch: subscription.desiredPrefetch.value)
            subscription.consumer.value = consumer
            Task {
                do {
                    for try await delivery in consumer { subscription.continuation.yield(delivery) }
                } catch {
                    logger.debug("consumer ended", metadata: ["queue": "\(subscription.queue)", "error": "\(error)"])
                }
            }
        } catch {
            logger.error("cannot resume consuming", metadata: ["queue": "\(subscription.queue)", "error": "\(error)"])
            // A refused consume (e.g. a missing queue) leaves the connection usable; retry later.
            Task {
                try? await Task.sleep(for: self.backoff.delay(attempt: 3))
                if let current = self.connection, current === connection, self.has(subscription) {
                    await self.attach(subscription, to: connection)
                }
            }
        }
    }

    private func has(_ subscription: Subscription) -> Bool {
        subscriptions.values.contains { $0 === subscription }
    }
}

/// A subscription's deliveries; survives reconnects. Ends when the client stops.
public struct AMQPSubscription: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery
    let stream: AsyncStream<AMQPDelivery>
    let client: AMQPClient
    let id: UUID

    public func makeAsyncIterator() -> AsyncStream<AMQPDelivery>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Changes how many unacked deliveries the broker may hand over; 0 pauses consuming.
    /// Deliveries not yet acked go back to the queue (see `AMQPClient.setPrefetch`).
    public func setPrefetch(_ count: UInt16) async {
        await client.setPrefetch(id, count)
    }

    /// Stops consuming; unacked deliveries go back to the queue.
    public func cancel() async {
        await client.unsubscribe(id)
    }
}
