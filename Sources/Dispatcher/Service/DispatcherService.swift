import AMQP
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
    private var sleeper: CheckedContinuation<Void, Never>?
    private var wakePending = false

    public init(engine: DispatcherEngine, brokers: [AMQPConfiguration], logger: Logger) {
        self.engine = engine
        self.logger = logger
        brokerUser = brokers[0].user
        client = AMQPClient(endpoints: brokers, topology: FleetTopology.common + FleetTopology.pool(Names.defaultPool), logger: logger)
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
        tasks = [
            Task { await self.consume(events, WorkerEvent.self) { try await engine.handle($0, publishedBy: $1) } },
            Task { await self.consume(logs, LogBatch.self) { try await engine.handle($0, publishedBy: $1) } },
            Task { await self.consume(outcomes, StepOutcome.self) { try await engine.handle($0, publishedBy: $1); self.outboxChanged() } },
            Task { await self.watchDeadLetters(deadLettered) },
            Task { await self.publishOutbox() },
            Task { await self.watchLeases() },
        ]
        let requests = await client.subscribe(queue: Names.requestsQueue, prefetch: 20)
        let requestQueue = RequestQueue(submitter: Submitter(engine: engine), client: client, brokerUser: brokerUser, logger: logger) { self.outboxChanged() }
        tasks.append(Task { await requestQueue.serve(requests) })
        outboxChanged()
    }

    public func stop() async {
        for task in tasks { task.cancel() }
        await client.stop()
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
            let userId = delivery.properties.userId
            let message: Message
            do {
                message = try WireCodec.decode(Message.self, from: delivery.body)
            } catch {
                engine.metrics.unprocessableMessages.increment()
                logger.warning("dead-lettering a message that does not decode", metadata: ["queue": "\(Message.messageType)", "reason": "\(error)"])
                if let about = AttemptPeek.read(delivery.body) {
                    _ = await failStep(about.ref, worker: about.worker, userId: userId, what: Message.described, reason: "\(error)", policy: nil)
                }
                try? await delivery.reject(requeue: false)
                continue
            }
            do {
                try await handle(message, userId)
                outboxChanged()
                try? await delivery.ack()
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
                        continue
                    }
                    outboxChanged()
                    try? await delivery.ack()
                }
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
        while !Task.isCancelled {
            let rows: [Store.OutboxRow]
            do {
                rows = try await engine.store.read { db in try Store.unsentOutbox(db, limit: 200) }
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
            do {
                let ids = sent
                try await engine.store.write { db in try Store.markSent(db, ids) }
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

    /// Checks leases every second, but only while connected: a dispatcher that cannot hear its
    /// workers must not declare them lost. After a reconnect every running attempt gets a fresh
    /// lease, so a broker outage never fails a step by itself.
    private func watchLeases() async {
        var seenConnection = await client.connectionCount
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard await client.isConnected else { continue }
            do {
                let connection = await client.connectionCount
                if connection != seenConnection {
                    seenConnection = connection
                    try await engine.renewLeasesAfterRestart()
                    continue
                }
                if try await engine.checkDeadlines() > 0 { outboxChanged() }
            } catch {
                logger.error("cannot check leases", metadata: ["error": "\(error)"])
            }
        }
    }
}
