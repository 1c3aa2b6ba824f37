import Foundation

/// A message delivered to a consumer. Settle it exactly once: `ack`, `nack` or `reject`.
public struct AMQPDelivery: Sendable {
    public let message: AMQPMessage
    public let deliveryTag: UInt64
    /// True when the broker delivered this message before (to this or another consumer).
    public let redelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let consumerTag: String
    let channel: UInt16
    let connection: ConnectionThread

    public var body: Data { message.body }
    public var properties: AMQPProperties { message.properties }

    /// Done with it: the broker forgets the message.
    public func ack() async throws(AMQPError) {
        try await settle(.ack)
    }

    /// Not done: with `requeue` the broker delivers it again (marked redelivered), otherwise it
    /// is dead-lettered if the queue has a dead-letter exchange.
    public func nack(requeue: Bool = true) async throws(AMQPError) {
        try await settle(.nack(requeue: requeue))
    }

    /// Refuses the message; without `requeue` it goes to the dead-letter exchange, if any.
    public func reject(requeue: Bool = false) async throws(AMQPError) {
        try await settle(.reject(requeue: requeue))
    }

    private func settle(_ settlement: ConnectionCore.Settlement) async throws(AMQPError) {
        let channel = channel
        let tag = deliveryTag
        do {
            try await connection.perform { try $0.settle(channel: channel, deliveryTag: tag, settlement) }
        } catch {
            switch error {
            case .connectionClosed, .channelClosed: throw .staleDelivery
            default: throw error
            }
        }
    }

    /// The reasons the broker recorded in `x-death` when the message was dead-lettered.
    public var deathReasons: [String] {
        guard case .array(let deaths)? = properties.headers["x-death"] else { return [] }
        return deaths.compactMap { death in
            if case .table(let fields) = death { return fields["reason"]?.stringValue }
            return nil
        }
    }
}

/// The deliveries of one consumer, as an async sequence. It ends with an error when the
/// connection or the consumer's channel is lost.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    let stream: AsyncThrowingStream<AMQPDelivery, any Error>
    public let tag: String
    let channel: UInt16
    let connection: ConnectionThread
    /// A credit consumer (`AMQPConnection.consume(queue:credit:)`): a channel of one-delivery consumers.
    var credited = false

    public func makeAsyncIterator() -> AsyncThrowingStream<AMQPDelivery, any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Stops the consumer and closes its channel; unacked deliveries go back to the queue.
    public func cancel() async {
        let tag = tag
        let channel = channel
        if credited {
            _ = try? await connection.perform { $0.cancelCredit(channel: channel) }
        } else {
            _ = try? await connection.perform { $0.cancel(consumerTag: tag) }
        }
    }
}
