/// Exchanges, queues and bindings to declare (again after every reconnect).
public struct AMQPTopology: Sendable, Hashable {
    public var exchanges: [Exchange]
    public var queues: [Queue]
    public var bindings: [Binding]

    public init(exchanges: [Exchange] = [], queues: [Queue] = [], bindings: [Binding] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    public static func + (lhs: AMQPTopology, rhs: AMQPTopology) -> AMQPTopology {
        AMQPTopology(exchanges: lhs.exchanges + rhs.exchanges, queues: lhs.queues + rhs.queues, bindings: lhs.bindings + rhs.bindings)
    }

    public struct Exchange: Sendable, Hashable {
        public enum Kind: String, Sendable {
            case direct, fanout, topic, headers
        }

        public var name: String
        public var kind: Kind
        public var durable: Bool

        public init(name: String, kind: Kind, durable: Bool = true) {
            self.name = name
            self.kind = kind
            self.durable = durable
        }
    }

    public struct Queue: Sendable, Hashable {
        public var name: String
        public var durable: Bool
        public var exclusive: Bool
        public var autoDelete: Bool
        public var arguments: [String: AMQPValue]

        public init(name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false, arguments: [String: AMQPValue] = [:]) {
            self.name = name
            self.durable = durable
            self.exclusive = exclusive
            self.autoDelete = autoDelete
            self.arguments = arguments
        }

        /// A durable quorum queue. `deliveryLimit`: after that many redeliveries a message is
        /// dead-lettered instead of looping (RabbitMQ 3.10 sets no limit by itself).
        public static func quorum(
            _ name: String, deliveryLimit: Int? = 20, deadLetterExchange: String? = nil, deadLetterRoutingKey: String? = nil
        ) -> Queue {
            var arguments: [String: AMQPValue] = ["x-queue-type": .string("quorum")]
            if let deliveryLimit { arguments["x-delivery-limit"] = .int(Int64(deliveryLimit)) }
            if let deadLetterExchange { arguments["x-dead-letter-exchange"] = .string(deadLetterExchange) }
            if let deadLetterRoutingKey { arguments["x-dead-letter-routing-key"] = .string(deadLetterRoutingKey) }
            return Queue(name: name, arguments: arguments)
        }
    }

    public struct Binding: Sendable, Hashable {
        public var queue: String
        public var exchange: String
        public var routingKey: String

        public init(queue: String, exchange: String, routingKey: String = "") {
            self.queue = queue
            self.exchange = exchange
            self.routingKey = routingKey
        }
    }
}
