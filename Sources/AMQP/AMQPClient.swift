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
        /// Set for a credit subscription (`subscribe(queue:capacity:)`).
        let credit: CreditState?
        let continuation: AsyncStream<AMQPDelivery>.Continuation
        let consumer = LockedValue<AMQPConsumer?>(nil)

        init(queue: String, prefetch: UInt16, credit: CreditState?, continuation: AsyncStream<AMQPDelivery>.Continuation) {
            self.queue = queue
            self.prefetch = prefetch
            self.credit = credit
            self.continuation = continuation
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
        add(queue: queue, prefetch: prefetch, credit: nil)
    }

    /// Deliveries from `queue`, at most `capacity` held by the application at once whether acked
    /// or not: each takes a slot until `AMQPSubscription.release()`. For work that is acked when
    /// claimed but runs long after. Starts paused when `paused` (see `setPaused`).
    public func subscribe(queue: String, capacity: Int, paused: Bool = false) -> AMQPSubscription {
        let credit = CreditState(capacity: capacity, paused: paused)
        return add(queue: queue, prefetch: 1, credit: credit)
    }

    private func add(queue: String, prefetch: UInt16, credit: CreditState?) -> AMQPSubscription {
        let (stream, continuation) = AsyncStream<AMQPDelivery>.makeStream()
        let id = UUID()
        let subscription = Subscription(queue: queue, prefetch: prefetch, credit: credit, continuation: continuation)
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

    /// A credit subscription's delivery no longer takes a slot.
    func release(_ id: UUID) async {
        guard let subscription = subscriptions[id], let credit = subscription.credit else { return }
        credit.release()
        await replenish(subscription)
    }

    /// Pauses or resumes a credit subscription. While paused no delivery is taken; one the broker
    /// sent just before still arrives (and takes a slot).
    func setPaused(_ id: UUID, _ paused: Bool) async {
        guard let subscription = subscriptions[id], let credit = subscription.credit else { return }
        credit.setPaused(paused)
        await replenish(subscription)
    }

    private func replenish(_ subscription: Subscription) async {
        do {
            try await subscription.consumer.value?.replenish()
        } catch {
            // A lost channel or connection: the next attach starts what the credit wants.
            logger.debug("cannot start consumers", metadata: ["queue": "\(subscription.queue)", "error": "\(error)"])
        }
    }

    /// Every few seconds, each credit subscription's consumers are matched to its free slots
    /// again: a consume refused in a broker failover is retried without waiting for the next
    /// release.
    private func topUpCreditSubscriptions() async {
        while !stopped && !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3))
            guard let connection, connection.isOpen else { continue }
            for subscription in subscriptions.values where subscription.credit != nil { await replenish(subscription) }
        }
    }

    private func maintain() async {
        let topUp = Task { await self.topUpCreditSubscriptions() }
        defer { topUp.cancel() }
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
            for subscription in subscriptions.values {
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
            let consumer: AMQPConsumer
            if let credit = subscription.credit {
                consumer = try await connection.consume(queue: subscription.queue, credit: credit)
            } else {
                consumer = try await connection.consume(queue: subscription.queue, prefetch: subscription.prefetch)
            }
            subscription.consumer.value = consumer
            Task {
                do {
                    for try await delivery in consumer { subscription.continuation.yield(delivery) }
                } catch {
                    // A lost connection is the maintainer's to resume, on the next connection.
                    if case .connectionClosed? = error as? AMQPError { return }
                    guard connection.isOpen else { return }
                    logger.warning("consumer's channel closed; consuming again", metadata: ["queue": "\(subscription.queue)", "error": "\(error)"])
                    await self.resumeAfterChannelLoss(subscription, consumer: consumer, connection: connection)
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

    /// A consumer's channel closed while the connection lives on (a consumer timeout, a queue
    /// deleted and declared again): consume again after a pause. A lost connection is the
    /// maintainer's to resume.
    private func resumeAfterChannelLoss(_ subscription: Subscription, consumer: AMQPConsumer, connection: AMQPConnection) async {
        try? await Task.sleep(for: backoff.delay(attempt: 2))
        guard connection.isOpen, let current = self.connection, current === connection, has(subscription),
            let attached = subscription.consumer.value, attached.channel == consumer.channel
        else { return }
        await attach(subscription, to: connection)
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

    /// For a credit subscription: the slot of one delivery is free again (call exactly once per
    /// delivery, after it is settled and its work is done).
    public func release() async {
        await client.release(id)
    }

    /// For a credit subscription: stop taking deliveries (`true`) or take them again.
    public func setPaused(_ paused: Bool) async {
        await client.setPaused(id, paused)
    }

    /// Stops consuming; unacked deliveries go back to the queue.
    public func cancel() async {
        await client.unsubscribe(id)
    }
}
