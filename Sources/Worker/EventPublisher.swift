import AMQP
import Foundation
import Protocol

/// Publishes what a worker sends back, each with a confirm, all through `stepfleet.events`
/// and each stamped with the worker's broker user (`user_id`, which the broker verifies): the
/// dispatcher takes a claim, event, log batch or outcome only from the account holding the lease.
struct EventPublisher: Sendable {
    let client: AMQPClient
    let worker: String
    /// The broker user this worker connects as (all of its broker URLs name the same user).
    let brokerUser: String

    func event(
        _ kind: WorkerEvent.Kind, _ ref: AttemptRef, phase: Phase? = nil, policy: ActionPolicy? = nil, claimToken: String? = nil,
        at: EpochMilliseconds = Clock.epochMilliseconds()
    ) async throws(AMQPError) {
        let event = WorkerEvent(kind: kind, ref: ref, worker: worker, at: at, phase: phase, policy: policy, claimToken: claimToken)
        try await client.publish(message(event, ref), exchange: Names.eventsExchange, routingKey: Names.eventsRoutingKey)
    }

    func logs(_ batch: LogBatch) async throws(AMQPError) {
        try await client.publish(message(batch, batch.ref), exchange: Names.eventsExchange, routingKey: Names.logsRoutingKey)
    }

    /// Never through the default exchange (a job's reply-to is not followed): a worker's
    /// account has no write right on it, and must not have.
    func outcome(_ outcome: StepOutcome) async throws(AMQPError) {
        try await client.publish(message(outcome, outcome.ref), exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)
    }

    /// Keeps publishing until the broker confirms (across reconnects) or the task is cancelled.
    /// Retries are logged (the first, then every 30 s, and the confirm that ends them), never silent.
    func untilConfirmed(_ what: String, _ publish: @Sendable () async throws(AMQPError) -> Void) async -> Bool {
        var attempt = 0
        var lastLogged = ContinuousClock.now
        while !Task.isCancelled {
            do {
                try await publish()
                if attempt > 0 { client.logger.warning("publish confirmed after retries", metadata: ["what": "\(what)", "attempts": "\(attempt + 1)"]) }
                return true
            } catch {
                attempt += 1
                if attempt == 1 || ContinuousClock.now - lastLogged >= .seconds(30) {
                    lastLogged = .now
                    client.logger.warning("publish not confirmed; retrying", metadata: ["what": "\(what)", "attempt": "\(attempt)", "error": "\(error)"])
                }
                try? await Task.sleep(for: Backoff(initial: .milliseconds(100), maximum: .seconds(5)).delay(attempt: attempt))
            }
        }
        if attempt > 0 { client.logger.warning("publish abandoned (task cancelled)", metadata: ["what": "\(what)", "attempts": "\(attempt)"]) }
        return false
    }

    private func message<Message: WireMessage>(_ body: Message, _ ref: AttemptRef) -> AMQPMessage {
        AMQPMessage(
            body: WireCodec.encode(body),
            properties: AMQPProperties(messageId: UUID().uuidString, correlationId: ref.description, type: Message.messageType, appId: "stepfleet-worker",
                userId: brokerUser))
    }
}

enum Clock {
    static func epochMilliseconds() -> EpochMilliseconds {
        EpochMilliseconds(Date().timeIntervalSince1970 * 1000)
    }

    static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}
