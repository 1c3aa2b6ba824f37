import AMQP
import Foundation
import Protocol

/// Tells the dispatcher every `interval` that this worker is there (its pool, slots and slots
/// in use), so that an idle worker is listed too. A missed announcement is not retried: the
/// next one comes `interval` later.
struct PresenceAnnouncer: Sendable {
    static let interval = Duration.seconds(5)

    let client: AMQPClient
    /// The broker user the worker connects as (the broker checks `user_id` against it).
    let brokerUser: String

    func run(_ presence: @Sendable () async -> WorkerPresence) async {
        while !Task.isCancelled {
            let message = AMQPMessage(
                body: WireCodec.encode(await presence()),
                properties: AMQPProperties(
                    persistent: false, messageId: UUID().uuidString, type: WorkerPresence.messageType, appId: "stepfleet-worker", userId: brokerUser,
                    expiration: "\(Int(Self.interval.components.seconds) * 3 * 1000)"))
            try? await client.publish(message, exchange: Names.eventsExchange, routingKey: Names.presenceRoutingKey, timeout: Self.interval)
            try? await Task.sleep(for: Self.interval)
        }
    }
}
