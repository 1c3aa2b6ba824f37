import AMQP
import Protocol

/// What a worker declares. It declares the dispatcher-side queues too, so that nothing it
/// sends is dropped as unroutable when it starts before the dispatcher.
public enum WorkerTopology {
    /// A job redelivered this many times is dead-lettered instead of looping.
    public static let jobDeliveryLimit = 10

    public static func topology(pool: String, controlQueue: String) -> AMQPTopology {
        AMQPTopology(
            exchanges: [
                .init(name: Names.jobsExchange, kind: .direct),
                .init(name: Names.eventsExchange, kind: .direct),
                .init(name: Names.controlExchange, kind: .fanout),
                .init(name: Names.deadExchange, kind: .fanout),
            ],
            queues: [
                .quorum(Names.stepsQueue(pool: pool), deliveryLimit: jobDeliveryLimit, deadLetterExchange: Names.deadExchange),
                .quorum(Names.eventsQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
                .quorum(Names.logsQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
                .quorum(Names.outcomesQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
                .init(name: Names.deadQueue),
                .init(name: controlQueue, durable: false, exclusive: true, autoDelete: true),
            ],
            bindings: [
                .init(queue: Names.stepsQueue(pool: pool), exchange: Names.jobsExchange, routingKey: pool),
                .init(queue: Names.eventsQueue, exchange: Names.eventsExchange, routingKey: Names.eventsRoutingKey),
                .init(queue: Names.logsQueue, exchange: Names.eventsExchange, routingKey: Names.logsRoutingKey),
                .init(queue: Names.deadQueue, exchange: Names.deadExchange),
                .init(queue: controlQueue, exchange: Names.controlExchange),
            ])
    }
}
