import Foundation
import Logging

/// A connection that comes back by itself. On loss it reconnects with backoff, trying each
/// configured broker in turn, declares the topology again and resumes every subscription, in
/// that order; callers get a connection only once all of that is done.
///
/// The recovery logic is the pure `RecoveryMachine`; this actor is its executor: it feeds the
/// machine events (a connection opened, a topology declared, a consumer attached, a connection
/// lost, a timer fired) and runs the actions it returns. Every phase is logged at info, and a
/// client that is not making progress says so at least every 30 s.
///
/// Publishes in flight when the connection drops fail with `.publishUnconfirmed`: they are
/// reported, never silently dropped; the caller decides to publish again.
public actor AMQPClient {
    public let endpoints: [AMQPConfiguration]
    public let topology: AMQPTopology
    private let backoff: Backoff
    /// The logger the client reports to (callers retrying through it log there too).
    public nonisolated let logger: Logger
    private var machine: RecoveryMachine
    private var connections: [RecoveryMachine.ConnectionID: AMQPConnection] = [:]
    private var waiters: [UUID: CheckedContinuation<AMQPConnection, any Error>] = [:]
    private var subscriptions: [RecoveryMachine.SubscriptionID: Subscription] = [:]
    private var nextSubscription = 1
    private var started = false
    private var watcher: Task<Void, Never>?
    /// When the current connection attempt began, and when its current phase began.
    private var recoveryStarted: ContinuousClock.Instant?
    private var phaseStarted = ContinuousClock.now
    private var readySince: ContinuousClock.Instant?
    private var notReadySince: ContinuousClock.Instant? = .now
    private var lastFailure: String?
    /// How many times a connection became ready (1 after the first).
    public private(set) var connectionCount = 0

    /// How long a subscription with free credit may hear nothing while its queue has ready
    /// messages before it is attached again.
    static let quietLimit: Duration = .seconds(20)

    private final class Subscription: Sendable {
        let queue: String
        let prefetch: UInt16
        /// Set for a credit subscription (`subscribe(queue:capacity:)`).
        let credit: CreditSlots?
        let continuation: AsyncStream<AMQPDelivery>.Continuation
        let consumer = LockedValue<AMQPConsumer?>(nil)

        init(queue: String, prefetch: UInt16, credit: CreditSlots?, continuation: AsyncStream<AMQPDelivery>.Continuation) {
            self.queue = queue
            self.prefetch = prefetch
            self.credit = credit
            self.continuation = continuation
        }

        var kind: String { credit.map { "credit \($0.window.capacity)" } ?? "prefetch \(prefetch)" }
    }

    public init(endpoints: [AMQPConfiguration], topology: AMQPTopology = AMQPTopology(), backoff: Backoff = Backoff(), logger: Logger) {
        precondition(!endpoints.isEmpty, "AMQPClient needs at least one broker")
        self.endpoints = endpoints
        self.topology = topology
        self.backoff = backoff
        self.logger = logger
        machine = RecoveryMachine(endpointCount: endpoints.count)
    }

    /// Starts connecting in the background; returns at once.
    public func start() {
        guard !started, machine.state != .stopped else { return }
        started = true
        watcher = Task { await self.watch() }
        apply(.start)
    }

    /// Closes the connection and ends every subscription stream.
    public func stop() async {
        apply(.stop)
        watcher?.cancel()
        for connection in connections.values { await connection.close() }
        connections.removeAll()
    }

    public var isConnected: Bool {
        guard let id = machine.readyConnection, let connection = connections[id] else { return false }
        return connection.isOpen
    }

    /// The ready connection, waiting up to `timeout` for one.
    public func connected(timeout: Duration = .seconds(30)) async throws(AMQPError) -> AMQPConnection {
        if let id = machine.readyConnection, let connection = connections[id], connection.isOpen { return connection }
        if machine.state == .stopped { throw .connectionClosed(reason: "client stopped") }
        start()
        let id = UUID()
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.expireWaiter(id, after: timeout)
        }
        defer { timer.cancel() }
        do {
            return try await withCheckedThrowingContinuation { waiters[id] = $0 }
        } catch let error as AMQPError {
            throw error
        } catch {
            throw .connectionClosed(reason: "\(error)")
        }
    }

    private func expireWaiter(_ id: UUID, after timeout: Duration) {
        let tried = endpoints.map(\.description).joined(separator: ", ")
        let last = lastFailure.map { "; last error: \($0)" } ?? ""
        waiters.removeValue(forKey: id)?.resume(throwing: AMQPError.timedOut("no ready broker connection within \(timeout) (tried \(tried)\(last))"))
    }

    /// Publishes with a confirm over the ready connection (waiting up to `timeout` for one).
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
        let rpcTimeout = UInt64(ConnectionCore.rpcTimeoutSeconds(endpoints[0])) * 1000
        return add(queue: queue, prefetch: 1, credit: CreditSlots(capacity: capacity, paused: paused, consumeTimeoutMilliseconds: rpcTimeout))
    }

    private func add(queue: String, prefetch: UInt16, credit: CreditSlots?) -> AMQPSubscription {
        let (stream, continuation) = AsyncStream<AMQPDelivery>.makeStream()
        let id = nextSubscription
        nextSubscription += 1
        subscriptions[id] = Subscription(queue: queue, prefetch: prefetch, credit: credit, continuation: continuation)
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        start()
        apply(.subscribed(id))
        return AMQPSubscription(stream: stream, client: self, id: id)
    }

    func unsubscribe(_ id: RecoveryMachine.SubscriptionID) async {
        guard let subscription = subscriptions[id] else { return }
        apply(.unsubscribed(id))
        subscriptions[id] = nil
        subscription.continuation.finish()
    }

    /// A credit subscription's delivery no longer takes a slot.
    func release(_ id: RecoveryMachine.SubscriptionID) {
        subscriptions[id]?.credit?.fromApplication(.released)
    }

    /// Pauses or resumes a credit subscription. While paused no delivery is taken; one the broker
    /// sent just before still arrives (and takes a slot).
    func setPaused(_ id: RecoveryMachine.SubscriptionID, _ paused: Bool) {
        subscriptions[id]?.credit?.fromApplication(.paused(paused))
    }

    // MARK: The executor

    /// Feeds one event to the machine and runs the actions it returns. Long operations run in
    /// tasks of their own and come back here as events naming their connection.
    private func apply(_ event: RecoveryMachine.Event) {
        for action in machine.handle(event) { run(action) }
    }

    private func run(_ action: RecoveryMachine.Action) {
        switch action {
        case .open(let id, let endpoint):
            if recoveryStarted == nil { recoveryStarted = .now }
            phaseStarted = .now
            let configuration = endpoints[endpoint]
            let logger = logger
            Task {
                do throws(AMQPError) {
                    let connection = try await AMQPConnection.open(configuration) { notice in Self.log(notice, broker: configuration.description, logger: logger) }
                    self.opened(id, connection)
                } catch {
                    self.openFailed(id, configuration, error)
                }
            }
        case .declare(let id):
            guard let connection = connections[id] else { return apply(.declareFailed(id)) }
            phaseStarted = .now
            let topology = topology
            Task {
                do throws(AMQPError) {
                    try await connection.declare(topology)
                    self.declared(id)
                } catch {
                    self.declareFailed(id, connection, error)
                }
            }
        case .attach(let id, let subscriptionIDs):
            guard let connection = connections[id] else { return }
            if case .attaching = machine.state { phaseStarted = .now }
            for subscriptionID in subscriptionIDs {
                guard let subscription = subscriptions[subscriptionID] else { continue }
                Task { await self.attach(subscription, subscriptionID, on: connection, id) }
            }
        case .detach(_, let subscriptionID):
            let consumer = subscriptions[subscriptionID]?.consumer.value
            Task { await consumer?.cancel() }
        case .reattachLater(let id, let subscriptionID, let failures):
            let delay = backoff.delay(attempt: min(failures + 2, 8))
            Task {
                try? await Task.sleep(for: delay)
                await self.apply(.reattachDue(id, subscriptionID))
            }
        case .close(let id):
            guard let connection = connections[id] else { return }
            Task { await connection.close() }
        case .backOff(let timer, let attempt):
            let delay = backoff.delay(attempt: attempt)
            if attempt == 1 || attempt % 10 == 0 {
                logger.warning(
                    "no broker connection; retrying with backoff",
                    metadata: ["attempt": "\(attempt)", "brokers": "\(endpoints.map(\.description).joined(separator: ", "))", "error": "\(lastFailure ?? "?")"])
            }
            Task {
                try? await Task.sleep(for: delay)
                self.apply(.timerFired(timer))
            }
        case .resumeWaiters(let id):
            guard let connection = connections[id] else { return }
            connectionCount += 1
            if connectionCount > 1 { AMQPMetrics.reconnects.increment() }
            AMQPMetrics.phase("attach").recordInterval(since: phaseStarted)
            let total = recoveryStarted.map { (ContinuousClock.now - $0).seconds } ?? 0
            recoveryStarted = nil
            readySince = .now
            notReadySince = nil
            logger.info(
                "broker connection ready",
                metadata: [
                    "broker": "\(connection.endpoint)", "connection": "\(connectionCount)", "subscriptions": "\(machine.attached.count)/\(machine.subscriptions.count)",
                    "seconds": "\(String(format: "%.2f", total))",
                ])
            for waiter in waiters.values { waiter.resume(returning: connection) }
            waiters.removeAll()
        case .failWaiters:
            for waiter in waiters.values { waiter.resume(throwing: AMQPError.connectionClosed(reason: "client stopped")) }
            waiters.removeAll()
        case .finishSubscriptions:
            for subscription in subscriptions.values { subscription.continuation.finish() }
            subscriptions.removeAll()
        }
    }

    private func opened(_ id: RecoveryMachine.ConnectionID, _ connection: AMQPConnection) {
        connections[id] = connection
        AMQPMetrics.phase("connect").recordInterval(since: phaseStarted)
        logger.info("connected to the broker; declaring the topology", metadata: ["broker": "\(connection.endpoint)", "seconds": "\(phaseSeconds)"])
        Task {
            let reason = await connection.waitUntilClosed()
            self.lost(id, connection, reason)
        }
        apply(.opened(id))
    }

    private func openFailed(_ id: RecoveryMachine.ConnectionID, _ configuration: AMQPConfiguration, _ error: AMQPError) {
        lastFailure = error.description
        logger.debug("cannot connect", metadata: ["broker": "\(configuration)", "error": "\(error)"])
        if case .invalidConfiguration = error { logger.error("\(error)") }
        apply(.openFailed(id))
    }

    private func declared(_ id: RecoveryMachine.ConnectionID) {
        AMQPMetrics.phase("declare").recordInterval(since: phaseStarted)
        logger.info(
            "declared the topology; attaching consumers",
            metadata: [
                "exchanges": "\(topology.exchanges.count)", "queues": "\(topology.queues.count)", "bindings": "\(topology.bindings.count)",
                "subscriptions": "\(subscriptions.count)", "seconds": "\(phaseSeconds)",
            ])
        apply(.declared(id))
    }

    private func declareFailed(_ id: RecoveryMachine.ConnectionID, _ connection: AMQPConnection, _ error: AMQPError) {
        lastFailure = error.description
        logger.error("declaring the topology failed; reconnecting", metadata: ["broker": "\(connection.endpoint)", "error": "\(error)"])
        apply(.declareFailed(id))
    }

    private func lost(_ id: RecoveryMachine.ConnectionID, _ connection: AMQPConnection, _ reason: AMQPError) {
        connections[id] = nil
        guard machine.currentConnection == id else { return }
        lastFailure = reason.description
        let wasReady = machine.readyConnection == id
        let lived = readySince.map { ContinuousClock.now - $0 } ?? .zero
        readySince = nil
        if wasReady {
            notReadySince = .now
            logger.warning("broker connection lost; reconnecting", metadata: ["broker": "\(connection.endpoint)", "reason": "\(reason)"])
        } else {
            logger.warning("broker connection lost during recovery; starting over", metadata: ["broker": "\(connection.endpoint)", "reason": "\(reason)"])
        }
        // A connection that failed at once, or was failed for refusing publishes, is not
        // tried again at once: that would spin.
        let refused = reason.description.contains("refused") && reason.description.contains("publishes in a row")
        apply(.closed(id, backOff: !wasReady || lived < .seconds(5) || refused))
    }

    private func attach(_ subscription: Subscription, _ subscriptionID: RecoveryMachine.SubscriptionID, on connection: AMQPConnection, _ id: RecoveryMachine.ConnectionID) async {
        let consumer: AMQPConsumer
        do {
            if let credit = subscription.credit {
                consumer = try await connection.consume(queue: subscription.queue, credit: credit)
            } else {
                consumer = try await connection.consume(queue: subscription.queue, prefetch: subscription.prefetch)
            }
        } catch {
            logger.error("cannot consume; trying again", metadata: ["queue": "\(subscription.queue)", "error": "\(error)"])
            apply(.attachFailed(id, subscriptionID))
            return
        }
        subscription.consumer.value = consumer
        logger.info("attached consumer", metadata: ["queue": "\(subscription.queue)", "window": "\(subscription.kind)", "channel": "\(consumer.channel)"])
        apply(.attached(id, subscriptionID))
        let logger = logger
        // Deliveries go straight to the subscription's stream, not through this actor.
        Task.detached {
            do {
                for try await delivery in consumer { subscription.continuation.yield(delivery) }
            } catch {
                // A lost connection is the machine's to resume, on the next connection.
                if case .connectionClosed? = error as? AMQPError { return }
                guard connection.isOpen else { return }
                logger.warning("consumer's channel closed; consuming again", metadata: ["queue": "\(subscription.queue)", "error": "\(error)"])
                await self.apply(.detached(id, subscriptionID))
            }
        }
    }

    private var phaseSeconds: String { String(format: "%.2f", (ContinuousClock.now - phaseStarted).seconds) }

    // MARK: Liveness

    /// Every 5 s: a client without a ready connection for 20 s says so (and again every 30 s);
    /// a credit subscription with free slots that heard nothing for `quietLimit` although its
    /// queue has ready messages is attached again, and says so.
    private func watch() async {
        var lastComplaint = ContinuousClock.now - .seconds(60)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            if machine.state == .stopped { return }
            if let since = notReadySince {
                if ContinuousClock.now - since >= .seconds(20), ContinuousClock.now - lastComplaint >= .seconds(29) {
                    lastComplaint = .now
                    logger.warning(
                        "still no ready broker connection",
                        metadata: ["seconds": "\(Int((ContinuousClock.now - since).seconds))", "state": "\(machine.state)", "error": "\(lastFailure ?? "none")"])
                }
                continue
            }
            guard let id = machine.readyConnection, let connection = connections[id] else { continue }
            await checkQuietSubscriptions(connection, id)
        }
    }

    private func checkQuietSubscriptions(_ connection: AMQPConnection, _ id: RecoveryMachine.ConnectionID) async {
        guard let quiet = try? await connection.quietCreditQueues(quiet: Self.quietLimit), !quiet.isEmpty else { return }
        for queue in Set(quiet) {
            guard let ready = try? await connection.messageCount(queue: queue), ready > 0 else { continue }
            for (subscriptionID, subscription) in subscriptions where subscription.queue == queue && subscription.credit != nil {
                guard machine.readyConnection == id, machine.attached.contains(subscriptionID) else { continue }
                let free = subscription.credit?.window.wanted ?? 0
                logger.warning(
                    "subscription with free slots received nothing although its queue has ready messages; consuming again",
                    metadata: ["queue": "\(queue)", "ready": "\(ready)", "free slots": "\(free)", "quiet seconds": "\(Int(Self.quietLimit.seconds))"])
                AMQPMetrics.livenessReattaches.increment()
                await subscription.consumer.value?.cancel()
                apply(.detached(id, subscriptionID))
            }
        }
    }

    // MARK: Notices

    /// A connection's notices, logged as they happen (on its thread, without waiting).
    private static func log(_ notice: ConnectionNotice, broker: String, logger: Logger) {
        switch notice {
        case .blocked(let reason):
            AMQPMetrics.blocks.increment()
            logger.warning("the broker blocked publishing on this connection; publishes wait", metadata: ["broker": "\(broker)", "reason": "\(reason)"])
        case .unblocked(let seconds):
            AMQPMetrics.blockedSeconds.increment(by: seconds)
            logger.warning("the broker unblocked publishing", metadata: ["broker": "\(broker)", "blocked seconds": "\(String(format: "%.1f", seconds))"])
        case .heldPublishesExpired(let count, let seconds):
            logger.warning("publishes held too long were failed; their callers publish again", metadata: ["broker": "\(broker)", "publishes": "\(count)", "held seconds": "\(seconds)"])
        case .sendBacklog(let bytes):
            logger.warning("the broker is not reading this connection; publishes wait", metadata: ["broker": "\(broker)", "unsent bytes": "\(bytes)"])
        case .nackStreak(let channel, let destination, let nacks, let seconds, let verdict):
            AMQPMetrics.nackStreaks.increment()
            logger.warning(
                "the broker refused every publish to one destination on a channel",
                metadata: [
                    "broker": "\(broker)", "channel": "\(channel)", "destination": "\(destination)", "nacks": "\(nacks)",
                    "seconds": "\(String(format: "%.1f", seconds))", "action": "\(verdict)",
                ])
        case .callOverdue(let operation, let seconds):
            AMQPMetrics.overdueCalls.increment()
            logger.error(
                "the connection was stuck inside one broker call; its socket was shut down and it reconnects",
                metadata: ["broker": "\(broker)", "call": "\(operation)", "seconds": "\(String(format: "%.1f", seconds))"])
        case .consumeUnanswered(let queue, let reason):
            logger.warning("a consume was not answered; its channel was closed and it is retried", metadata: ["broker": "\(broker)", "queue": "\(queue)", "reason": "\(reason)"])
        }
    }
}
