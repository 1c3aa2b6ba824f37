import CRabbitMQ
import Foundation

/// A message to publish or a delivered message's body and properties.
public struct AMQPMessage: Sendable, Hashable {
    public var body: Data
    public var properties: AMQPProperties

    public init(body: Data, properties: AMQPProperties = AMQPProperties()) {
        self.body = body
        self.properties = properties
    }
}

/// The basic properties StepFleet uses. Messages are persistent unless said otherwise.
public struct AMQPProperties: Sendable, Hashable {
    public var persistent: Bool
    public var contentType: String?
    public var messageId: String?
    public var correlationId: String?
    public var replyTo: String?
    public var type: String?
    public var appId: String?
    /// The broker user that published the message. RabbitMQ refuses a publish whose `user_id`
    /// is not the connection's user, so on a delivery it names the publisher's account.
    public var userId: String?
    /// Per-message TTL in milliseconds, as text (AMQP's `expiration`).
    public var expiration: String?
    /// Seconds since 1970.
    public var timestamp: UInt64?
    public var headers: [String: AMQPValue]

    public init(
        persistent: Bool = true, contentType: String? = "application/json", messageId: String? = nil, correlationId: String? = nil,
        replyTo: String? = nil, type: String? = nil, appId: String? = nil, userId: String? = nil, expiration: String? = nil, timestamp: UInt64? = nil,
        headers: [String: AMQPValue] = [:]
    ) {
        self.persistent = persistent
        self.contentType = contentType
        self.messageId = messageId
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.type = type
        self.appId = appId
        self.userId = userId
        self.expiration = expiration
        self.timestamp = timestamp
        self.headers = headers
    }

    func cValue(in arena: CArena) -> amqp_basic_properties_t {
        var properties = amqp_basic_properties_t()
        var flags: amqp_flags_t = stepfleet_flag_delivery_mode
        properties.delivery_mode = persistent ? 2 : 1
        func set(_ value: String?, _ flag: amqp_flags_t, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            properties[keyPath: field] = arena.bytes(value)
            flags |= flag
        }
        set(contentType, stepfleet_flag_content_type, \.content_type)
        set(messageId, stepfleet_flag_message_id, \.message_id)
        set(correlationId, stepfleet_flag_correlation_id, \.correlation_id)
        set(replyTo, stepfleet_flag_reply_to, \.reply_to)
        set(type, stepfleet_flag_type, \.type)
        set(appId, stepfleet_flag_app_id, \.app_id)
        set(userId, stepfleet_flag_user_id, \.user_id)
        set(expiration, stepfleet_flag_expiration, \.expiration)
        if let timestamp {
            properties.timestamp = timestamp
            flags |= stepfleet_flag_timestamp
        }
        if !headers.isEmpty {
            properties.headers = arena.table(headers)
            flags |= stepfleet_flag_headers
        }
        properties._flags = flags
        return properties
    }

    init(_ properties: amqp_basic_properties_t) {
        let flags = properties._flags
        func get(_ flag: amqp_flags_t, _ value: amqp_bytes_t) -> String? {
            flags & flag != 0 ? CCopy.string(value) : nil
        }
        self.init(
            persistent: flags & stepfleet_flag_delivery_mode != 0 && properties.delivery_mode == 2,
            contentType: get(stepfleet_flag_content_type, properties.content_type),
            messageId: get(stepfleet_flag_message_id, properties.message_id),
            correlationId: get(stepfleet_flag_correlation_id, properties.correlation_id),
            replyTo: get(stepfleet_flag_reply_to, properties.reply_to),
            type: get(stepfleet_flag_type, properties.type),
            appId: get(stepfleet_flag_app_id, properties.app_id),
            userId: get(stepfleet_flag_user_id, properties.user_id),
            expiration: get(stepfleet_flag_expiration, properties.expiration),
            timestamp: flags & stepfleet_flag_timestamp != 0 ? properties.timestamp : nil,
            headers: flags & stepfleet_flag_headers != 0 ? CCopy.table(properties.headers) : [:])
    }
}
