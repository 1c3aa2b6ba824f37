import Protocol

/// The exchanges and queues of a StepFleet, declared the same way by the dispatcher and every
/// worker (declaring is idempotent), so nothing is unroutable whoever starts first.
public enum FleetTopology {
    /// A job redelivered this many times is dead-lettered instead of looping.
    public static let jobDeliveryLimit = 10

    /// Exchanges, the dispatcher's queues and the dead-letter queues.
    public static let common = AMQPTopology(
        exchanges: [
            .init(name: Names.jobsExchange, kind: .direct),
            .init(name: Names.eventsExchange, kind: .direct),
            .init(name: Names.controlExchange, kind: .fanout),
            .init(name: Names.deadExchange, kind: .fanout),
        ],
        queues: [
            .quorum(Names.eventsQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
            .quorum(Names.logsQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
            .quorum(Names.outcomesQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
            // Quorum like the rest: a classic queue lives on one node and, with that node down,
            // cannot even be declared, which would keep every client of a cluster off the broker.
            .quorum(Names.deadQueue),
            .quorum(Names.deadJobsQueue),
        ],
        bindings: [
            .init(queue: Names.eventsQueue, exchange: Names.eventsExchange, routingKey: Names.eventsRoutingKey),
            .init(queue: Names.logsQueue, exchange: Names.eventsExchange, routingKey: Names.logsRoutingKey),
            .init(queue: Names.deadQueue, exchange: Names.deadExchange),
            .init(queue: Names.deadJobsQueue, exchange: Names.deadExchange),
        ])

    /// A pool's job queue and its binding.
    public static func pool(_ pool: String) -> AMQPTopology {
        AMQPTopology(
            queues: [.quorum(Names.stepsQueue(pool: pool), deliveryLimit: jobDeliveryLimit, deadLetterExchange: Names.deadExchange)],
            bindings: [.init(queue: Names.stepsQueue(pool: pool), exchange: Names.jobsExchange, routingKey: pool)])
    }

    /// Everything a worker of `pool` needs, with its own exclusive control queue.
    public static func worker(pool: String, controlQueue: String) -> AMQPTopology {
        common + self.pool(pool) + AMQPTopology(
            queues: [.init(name: controlQueue, durable: false, exclusive: true, autoDelete: true)],
            bindings: [.init(queue: controlQueue, exchange: Names.controlExchange)])
    }
}
