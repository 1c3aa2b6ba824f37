import AMQP
import Protocol

/// The exchanges and queues of a StepFleet. The dispatcher declares them all (its broker account
/// may configure `stepfleet.*`); a worker's account may configure nothing but its own control
/// queue, so a worker declares only that queue and its binding, and checks the rest passively.
public enum FleetTopology {
    /// A job redelivered this many times is dead-lettered instead of looping.
    public static let jobDeliveryLimit = 10

    /// Exchanges, the dispatcher's queues and the dead-letter queues (declared by the dispatcher).
    public static let common = AMQPTopology(
        exchanges: [
            .init(name: Names.jobsExchange, kind: .direct),
            .init(name: Names.eventsExchange, kind: .direct),
            .init(name: Names.controlExchange, kind: .fanout),
            .init(name: Names.deadExchange, kind: .fanout),
            .init(name: Names.requestsExchange, kind: .fanout),
            .init(name: Names.repliesExchange, kind: .direct),
            .init(name: Names.notificationsExchange, kind: .topic),
        ],
        queues: [
            .quorum(Names.eventsQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
            .quorum(Names.logsQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
            .quorum(Names.outcomesQueue, deliveryLimit: 20, deadLetterExchange: Names.deadExchange),
            // Quorum like the rest: a classic queue lives on one node and, with that node down,
            // cannot even be declared, which would keep every client of a cluster off the broker.
            .quorum(Names.deadQueue),
            .quorum(Names.deadJobsQueue),
            .quorum(Names.requestsQueue, deliveryLimit: Names.requestDeliveryLimit, deadLetterExchange: Names.deadExchange),
        ],
        bindings: [
            .init(queue: Names.eventsQueue, exchange: Names.eventsExchange, routingKey: Names.eventsRoutingKey),
            .init(queue: Names.logsQueue, exchange: Names.eventsExchange, routingKey: Names.logsRoutingKey),
            .init(queue: Names.outcomesQueue, exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey),
            .init(queue: Names.deadQueue, exchange: Names.deadExchange),
            .init(queue: Names.deadJobsQueue, exchange: Names.deadExchange),
            .init(queue: Names.requestsQueue, exchange: Names.requestsExchange),
        ])

    /// A pool's job queue and its binding (declared by the dispatcher: at start for the default
    /// pool, before a pool's first job for the others).
    public static func pool(_ pool: String) -> AMQPTopology {
        AMQPTopology(
            queues: [.quorum(Names.stepsQueue(pool: pool), deliveryLimit: jobDeliveryLimit, deadLetterExchange: Names.deadExchange)],
            bindings: [.init(queue: Names.stepsQueue(pool: pool), exchange: Names.jobsExchange, routingKey: pool)])
    }

    /// A dispatcher's own presence queue, bound to the events exchange for workers' presence
    /// messages; exclusive, so it goes (and so do the messages in it) when the dispatcher does.
    public static func presence(queue: String) -> AMQPTopology {
        AMQPTopology(
            queues: [.init(name: queue, durable: false, exclusive: true, autoDelete: true)],
            bindings: [.init(queue: queue, exchange: Names.eventsExchange, routingKey: Names.presenceRoutingKey)])
    }

    /// What a worker declares: its own exclusive control queue, bound to the control exchange.
    /// Its pool's queue and the exchanges are the dispatcher's to declare.
    public static func worker(controlQueue: String) -> AMQPTopology {
        AMQPTopology(
            queues: [.init(name: controlQueue, durable: false, exclusive: true, autoDelete: true)],
            bindings: [.init(queue: controlQueue, exchange: Names.controlExchange)])
    }
}
