import AMQP
import Fleet
import Foundation
import Logging
import Protocol

/// The dispatcher's broker side: publishes the outbox (marking rows sent only once the broker
/// confirmed them), consumes claims, phases, heartbeats, logs and outcomes, and expires leases.
public actor DispatcherService {
    public let engine: DispatcherEngine
    private let client: AMQPClient
    private let logger: Logger
    /// The broker user the dispatcher connects as: stamped on every job and control message
    /// (workers run jobs from this account only) and required of dead-lettered jobs.
    private let brokerUser: String
    private var declaredPools: Set<String> = []
    private var tasks: [Task<Void, Never>] = []
    private var subscriptions: [AMQPSubscription] = []
    /// Set by `stop()`: the outbox publisher and the lease watcher end their current round.
    private var stopping = false
    private var sleeper: CheckedContinuation<Void, Never>?
    private var wakePending = false
    /// The workers that announced themselves, idle ones included (the dashboard's workers page).
    public nonisolated let roster = WorkerRoster()
    /// This dispatcher's own queue of workers' presence messages.
    private let presenceQueue: String

    public init(engine: DispatcherEngine, brokers: [AMQPConfiguration], logger: Logger) {
        self.engine = engine
        self.logger = logger
        brokerUser = brokers[0].user
        let presenceQueue = Names.presenceQueue(dispatcher: UUID().uuidString.prefix(8).lowercased())
        self.presenceQueue = presenceQueue
        client = AMQPClient(
            endpoints: brokers, topology: FleetTopology.common + FleetTopology.pool(Names.defaultPool) + FleetTopology.presence(queue: presenceQueue), logger: logger)
    }

    /// Starts publishing and consuming; returns at once.
    public func start() async throws {
        try await engine.renewLeasesAfterRestart()
        try await engine.resumeBatches()
        await client.start()
        let events = await client.subscribe(queue: Names.eventsQueue, prefetch: 200)
        let logs = await client.subscribe(queue: Names.logsQueue, prefetch: 200)
        let outcomes = await client.subscribe(queue: Names.outcomesQueue, prefetch: 50)
        let deadLettered = await client.subscribe(queue: Names.deadJobsQueue, prefetch: 50)
        let engine = engine
        let presence = await client.subscribe(queue: presenceQueue, prefetch: 50)
        subscriptions = [events, logs, outcomes, deadLettered, presence]
        tasks = [
            Task { await self.consumeInBatches(events, { try await engine.handle(events: $0) }) { try await engine.handle($0, publishedBy: $1) } },
            Task { await self.consumeInBatches(logs, { try await engine.handle(logs: $0) }) { try await engine.handle($0, publishedBy: $1) } },
            Task { await self.consume(outcomes, StepOutcome.self) { try await engine.handle($0, publishedBy: $1); self.outboxChanged() } },
            Task { await self.watchDeadLetters(deadLettered) },
            Task { [roster, logger] in await Self.recordPresence(presence, in: roster, logger: logger) },
            Task { await self.publishOutbox() },
            Task { await self.watchLeases() },
        ]
        let requests = await client.subscribe(queue: Names.requestsQueue, prefetch: 20)
        let requestQueue = RequestQueue(submitter: Submitter(engine: engine), client: client, brokerUser: brokerUser, logger: logger) { self.outboxChanged() }
        tasks.append(Task { await requestQueue.serve(requests) })
        outboxChanged()
    }

    /// Stops taking work and finishes what is in hand: the subscriptions end (deliveries
    /// already received are handled, their transactions written, and acked), the outbox round
    /// in progress is published and marked sent, then the broker connection closes. Whatever
    /// has not ended 10 s after the stop began is cancelled (an unacked delivery comes back to
    /// the next dispatcher; an unmarked outbox row is sent again).
    public func stop() async {
        stopping = true
        for subscription in subscriptions { await subscription.cancel() }
        wake()
        let running = tasks
        let deadline = Task {
            try? await Task.sleep(for: .seconds(10))
            for task in running { task.cancel() }
        }
        for task in running { await task.value }
        deadline.cancel()
        await client.stop()
    }

    /// Records workers' presence messages; one that does not decode or is refused is dropped
    /// (it is not about any step, and the next one comes seconds later).
    private static func recordPresence(_ subscription: AMQPSubscription, in roster: WorkerRoster, logger: Logger) async {
        for await delivery in subscription {
            do {
                let presence = try WireCodec.decode(WorkerPresence.self, from: delivery.body)
                if let refusal = presence.refusal {
                    logger.warning("dropping a worker presence message", metadata: ["reason": "\(refusal)", "published_by": "\(delivery.properties.userId ?? "?")"])
                } else if let user = delivery.properties.userId, !user.isEmpty {
                    if !roster.record(presence, brokerUser: user, now: Date().timeIntervalSince1970) {
                        logger.warning(
                            "dropping a worker presence message: its worker name was announced by another broker user, or the roster is full",
                            metadata: ["worker": "\(presence.worker)", "published_by": "\(user)"])
                    }
                } else {
                    logger.warning("dropping a worker presence message without a user_id: every worker stamps its broker user", metadata: ["worker": "\(presence.worker)"])
                }
            } catch {
                logger.warning("dropping a worker presence message that does not decode", metadata: ["reason": "\(error)"])
            }
            try? await delivery.ack()
        }
    }

    /// The broker connection as the dashboard shows it: up or not, and how many connections
    /// have been made (the first one and each reconnect).
    public func brokerConnection() async -> (connected: Bool, connections: Int) {
        (await client.isConnected, await client.connectionCount)
    }

    /// Wakes the outbox publisher (after a write that may have added rows).
    public nonisolated func outboxChanged() {
        Task { await self.wake() }
    }

    private func wake() {
        if let sleeper {
            self.sleeper = nil
            sleeper.resume()
        } else {
            wakePending = true
        }
    }

    /// Returns when woken, or after half a second in any case.
    private func sleepUntilWoken() async {
        if wakePending {
            wakePending = false
            return
        }
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(500))
            await self.wake()
        }
        await withCheckedContinuation { sleeper = $0 }
        timer.cancel()
    }

    /// Hands each message to `handle` with its publisher's broker user (`user_id`, which the
    /// broker verified): the engine decides whether that identity may say what it says.
    ///
    /// A failure is sorted by `MessageFailure.classify`: a transient one (database busy,
    /// broker gone) delivers the message again after a pause; one that can never succeed fails
    /// the message's step at once (with the reason in its error and log), is counted and is
    /// acked. A message that does not decode is counted, fails its step when its step and
    /// attempt can still be read from it, and is dead-lettered for operators to see.
    private func consume<Message: AttemptMessage>(_ subscription: AMQPSubscription, _ type: Message.Type, _ handle: @escaping @Sendable (Message, String?) async throws -> Void) async {
        for await delivery in subscription {
            guard let message = await decode(delivery, Message.self) else { continue }
            await handleOne(delivery, message, handle)
        }
    }

    /// As `consume`, but what waits is applied in one store transaction (`handleBatch`, at most
    /// `messageBatchLimit` messages); a message that fails in its batch is handled alone.
    private func consumeInBatches<Message: AttemptMessage>(
        _ subscription: AMQPSubscription, _ handleBatch: @escaping @Sendable ([(Message, String?)]) async throws -> [Int],
        _ handle: @escaping @Sendable (Message, String?) async throws -> Void
    ) async {
        let limit = engine.configuration.messageBatchLimit
        guard limit > 1 else { return await consume(subscription, Message.self, handle) }
        let batches = DeliveryBatches()
        let reader = Task {
            for await delivery in subscription { batches.append(delivery) }
            batches.finish()
        }
        defer { reader.cancel() }
        while true {
            let deliveries = await batches.next(limit: limit)
            if deliveries.isEmpty { return }
            var messages: [(delivery: AMQPDelivery, message: Message)] = []
            for delivery in deliveries {
                if let message = await decode(delivery, Message.self) { messages.append((delivery, message)) }
            }
            guard !messages.isEmpty else { continue }
            let started = PhaseTimings.now
            let failed: [Int]
            do {
                failed = try await handleBatch(messages.map { ($0.message, $0.delivery.properties.userId) })
            } catch {
                // The transaction itself failed: each message on its own, with its own verdict.
                for (delivery, message) in messages { await handleOne(delivery, message, handle) }
                continue
            }
            engine.metrics.timings.record("handle.\(Message.messageType) batch", since: started)
            engine.metrics.timings.record("batch size \(Message.messageType)", seconds: Double(messages.count))
            outboxChanged()
            let acking = PhaseTimings.now
            for (index, entry) in messages.enumerated() where !failed.contains(index) { try? await entry.delivery.ack() }
            engine.metrics.timings.record("ack", since: acking)
            for index in failed { await handleOne(messages[index].delivery, messages[index].message, handle) }
        }
    }

    /// The message, or nil when it does not decode: then it is counted, its step failed when
    /// its step and attempt can still be read, and it is dead-lettered.
    private func decode<Message: AttemptMessage>(_ delivery: AMQPDelivery, _ type: Message.Type) async -> Message? {
        do {
            return try WireCodec.decode(Message.self, from: delivery.body)
        } catch {
            engine.metrics.unprocessableMessages.increment()
            logger.warning("dead-lettering a message that does not decode", metadata: ["queue": "\(Message.messageType)", "reason": "\(error)"])
            if let about = AttemptPeek.read(delivery.body) {
                _ = await failStep(about.ref, worker: about.worker, userId: delivery.properties.userId, what: Message.described, reason: "\(error)", policy: nil)
            }
            try? await delivery.reject(requeue: false)
            return nil
        }
    }

    private func handleOne<Message: AttemptMessage>(_ delivery: AMQPDelivery, _ message: Message, _ handle: @escaping @Sendable (Message, String?) async throws -> Void) async {
        let userId = delivery.properties.userId
        do {
            let started = PhaseTimings.now
            try await handle(message, userId)
            engine.metrics.timings.record("handle.\(Message.messageType)", since: started)
            outboxChanged()
            let acking = PhaseTimings.now
            try? await delivery.ack()
            engine.metrics.timings.record("ack", since: acking)
        } catch {
            switch MessageFailure.classify(error) {
            case .transient(let reason):
                logger.error("cannot handle a message for now; it will be delivered again", metadata: ["type": "\(Message.messageType)", "error": "\(reason)"])
                try? await Task.sleep(for: .milliseconds(500))
                try? await delivery.nack(requeue: true)
            case .unprocessable(let reason):
                engine.metrics.unprocessableMessages.increment()
                logger.error(
                    "a message can never be processed; its step fails", metadata: ["type": "\(Message.messageType)", "step": "\(message.ref)", "error": "\(reason)"])
                guard await failStep(message.ref, worker: message.worker, userId: userId, what: message.what, reason: reason, policy: message.policy) else {
                    try? await Task.sleep(for: .milliseconds(500))
                    try? await delivery.nack(requeue: true)
                    return
                }
                outboxChanged()
                try? await delivery.ack()
            }
        }
    }

    /// Fails the step a message that cannot be processed is about; false only when that could
    /// not be written for now (transient: the message is delivered again).
    private func failStep(_ ref: AttemptRef, worker: String, userId: String?, what: String, reason: String, policy: ActionPolicy?) async -> Bool {
        do {
            try await engine.failUnprocessable(ref, worker: worker, publishedBy: userId, what: what, reason: reason, policy: policy)
            return true
        } catch {
            switch MessageFailure.classify(error) {
            case .transient(let why):
                logger.error("cannot fail the step of an unprocessable message for now", metadata: ["step": "\(ref)", "error": "\(why)"])
                return false
            case .unprocessable(let why):
                logger.error("cannot fail the step of an unprocessable message; dropping the message", metadata: ["step": "\(ref)", "error": "\(why)"])
                return true
            }
        }
    }

    /// Step jobs among the dead-lettered messages go back to the engine; the rest (poison) is
    /// dropped from this copy and stays in `stepfleet.dead` for operators.
    private func watchDeadLetters(_ subscription: AMQPSubscription) async {
        for await delivery in subscription {
            if WireCodec.peekType(delivery.body) == StepJob.messageType, delivery.properties.userId != brokerUser {
                // Not a job of ours (a forged one a worker refused): it must not fail a real step.
                logger.warning("ignoring a dead-lettered step job not published by the dispatcher's account", metadata: ["published_by": "\(delivery.properties.userId ?? "no user_id")"])
            } else if WireCodec.peekType(delivery.body) == StepJob.messageType, let job = try? WireCodec.decode(StepJob.self, from: delivery.body) {
                let reason = delivery.deathReasons.first.map { "\($0) on \(delivery.properties.headers["x-first-death-queue"]?.stringValue ?? "a queue")" } ?? "dead-lettered"
                logger.warning("a step job was dead-lettered", metadata: ["step": "\(job.stepId)", "attempt": "\(job.attempt)", "reason": "\(reason)"])
                do {
                    try await engine.handleDeadLettered(job, reason: reason)
                    outboxChanged()
                } catch {
                    switch MessageFailure.classify(error) {
                    case .transient(let why):
                        logger.error("cannot handle a dead-lettered job for now; it will be delivered again", metadata: ["error": "\(why)"])
                        try? await Task.sleep(for: .milliseconds(500))
                        try? await delivery.nack(requeue: true)
                        continue
                    case .unprocessable(let why):
                        engine.metrics.unprocessableMessages.increment()
                        logger.error("a dead-lettered job can never be processed; dropping this copy", metadata: ["step": "\(job.stepId)", "error": "\(why)"])
                    }
                }
            }
            try? await delivery.ack()
        }
    }

    /// Sends unsent outbox rows, many at once, each marked sent after its confirm.
    private func publishOutbox() async {
        while !Task.isCancelled && !stopping {
            let rows: [Store.OutboxRow]
            let timings = engine.metrics.timings
            var started = PhaseTimings.now
            do {
                rows = try await engine.store.read { db in try Store.unsentOutbox(db, limit: 200) }
                timings.record("outbox.read", since: started)
            } catch {
                logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            if rows.isEmpty {
                await sleepUntilWoken()
                continue
            }
            var sent: [Int64] = []
            var failed: [(row: Int64, error: String)] = []
            started = PhaseTimings.now
            await withTaskGroup(of: (Int64, String?).self) { group in
                for row in rows {
                    group.addTask { (row.id, await self.publish(row)) }
                }
                for await (id, error) in group {
                    if let error { failed.append((id, error)) } else { sent.append(id) }
                }
            }
            if let first = failed.min(by: { $0.row < $1.row }) {
                // One line per round, not one per refused row (a broker nacking every publish
                // would otherwise flood the log).
                logger.warning(
                    "outbox publishes failed; will retry",
                    metadata: ["failed": "\(failed.count)", "of": "\(rows.count)", "first row": "\(first.row)", "error": "\(first.error)"])
            }
            timings.record("outbox.publish", since: started)
            timings.record("outbox.rows", seconds: Double(rows.count))
            do {
                let ids = sent
                started = PhaseTimings.now
                try await engine.store.write { db in try Store.markSent(db, ids) }
                timings.record("outbox.markSent", since: started)
            } catch {
                logger.error("cannot mark outbox rows sent; they will be sent again", metadata: ["error": "\(error)"])
            }
            if sent.count < rows.count { try? await Task.sleep(for: .milliseconds(200)) }
        }
    }

    /// Nil when the broker confirmed the row, else why not.
    private func publish(_ row: Store.OutboxRow) async -> String? {
        do {
            if row.messageType == StepJob.messageType, !declaredPools.contains(row.routingKey) {
                try await client.connected().declare(FleetTopology.pool(row.routingKey))
                declaredPools.insert(row.routingKey)
            }
            try await client.publish(
                AMQPMessage(body: row.body, properties: AMQPProperties(
                    messageId: "outbox-\(row.id)", replyTo: row.replyTo, type: row.messageType, appId: "stepfleet-dispatcher", userId: brokerUser)),
                exchange: row.exchange, routingKey: row.routingKey, timeout: .seconds(5))
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Publishes again the jobs nobody claimed in time, pool by pool, when the pool's queue has
    /// no ready message: then the job is neither waiting its turn nor with a live consumer
    /// (RabbitMQ keeps a delivery to a consumer on a node that died checked out until that node
    /// returns). The new claim token voids the old delivery.
    private func resendUnclaimedJobs() async {
        do {
            // Pools whose queue holds ready jobs are waiting their turn: nothing to look for
            // there (a backlog never costs a tree load per queued change every 10 s).
            let connection = try await client.connected()
            var idle: Set<String> = []
            for pool in declaredPools.union([Names.defaultPool]) {
                if try await connection.messageCount(queue: Names.stepsQueue(pool: pool)) == 0 { idle.insert(pool) }
            }
            guard !idle.isEmpty else { return }
            let unclaimed = try await engine.unclaimedJobs()
            for (pool, jobs) in Dictionary(grouping: unclaimed, by: \.pool) where idle.contains(pool) {
                let sent = try await engine.resend(jobs)
                guard sent > 0 else { continue }
                logger.warning(
                    "publishing queued jobs again: nobody claimed them and their pool's queue has no ready message (a broker node that died may hold their deliveries)",
                    metadata: ["pool": "\(pool)", "jobs": "\(sent)", "steps": "\(jobs.map(\.ref.description).joined(separator: ", "))"])
                outboxChanged()
            }
        } catch {
            logger.warning("cannot check for unclaimed jobs", metadata: ["error": "\(error)"])
        }
    }

    /// Checks leases every second, but only while connected: a dispatcher that cannot hear its
    /// workers must not declare them lost. After a reconnect every running attempt gets a fresh
    /// lease, so a broker outage never fails a step by itself.
    private func watchLeases() async {
        var seenConnection = await client.connectionCount
        var seconds = 0
        while !Task.isCancelled && !stopping {
            try? await Task.sleep(for: .seconds(1))
            seconds += 1
            guard await client.isConnected else { continue }
            do {
                let connection = await client.connectionCount
                if connection != seenConnection {
                    seenConnection = connection
                    try await engine.renewLeasesAfterRestart()
                    continue
                }
                if try await engine.checkDeadlines() > 0 { outboxChanged() }
                if seconds % 10 == 0 { await resendUnclaimedJobs() }
            } catch {
                logger.error("cannot check leases", metadata: ["error": "\(error)"])
            }
        }
    }
}
