import Foundation

/// One connection to a broker, with async/await on top of librabbitmq. The C library runs on
/// a thread of its own per connection; nothing here blocks Swift's cooperative pool.
///
/// For a connection that comes back by itself after failures, use `AMQPClient`.
public final class AMQPConnection: Sendable {
    typealias Handle = ConnectionThread

    let thread: ConnectionThread

    private init(thread: ConnectionThread) {
        self.thread = thread
    }

    /// Connects, logs in and opens the publishing (confirm mode) and declaring channels.
    public static func open(_ configuration: AMQPConfiguration) async throws(AMQPError) -> AMQPConnection {
        try await open(configuration, notify: { _ in })
    }

    /// Opens a connection that reports blocks, nack streaks and overdue calls to `notify`
    /// (called on the connection's thread or the watchdog's; it must not block).
    static func open(_ configuration: AMQPConfiguration, notify: @escaping @Sendable (ConnectionNotice) -> Void) async throws(AMQPError) -> AMQPConnection {
        let thread = ConnectionThread(configuration: configuration, notify: notify)
        let result: Result<Void, AMQPError> = await withCheckedContinuation { continuation in
            thread.start { continuation.resume(returning: $0) }
        }
        try result.get()
        return AMQPConnection(thread: thread)
    }

    /// The broker this connection talks to (no password).
    public var endpoint: String { thread.configuration.description }

    public var isOpen: Bool { thread.closeReason == nil }

    /// Declares exchanges, queues and bindings. Declaring what exists with the same settings
    /// is a no-op; with different settings it fails with the broker's reason.
    public func declare(_ topology: AMQPTopology) async throws(AMQPError) {
        try await thread.perform { try $0.declare(topology) }
    }

    /// Publishes and waits for the broker's confirm. Many publishes may be outstanding at once
    /// (call from many tasks): confirms are matched by delivery tag, so throughput is not one
    /// round trip per message.
    /// - Throws: `.publishNacked`, or `.publishUnconfirmed` when the connection was lost first.
    public func publish(_ message: AMQPMessage, exchange: String = "", routingKey: String) async throws(AMQPError) {
        let result: Result<Void, AMQPError> = await withCheckedContinuation { continuation in
            thread.submit { core in
                guard let core, core.failure == nil else {
                    let reason = self.thread.closeReason?.description ?? core?.failure?.description ?? "connection closed"
                    continuation.resume(returning: .failure(.publishUnconfirmed(reason: reason)))
                    return
                }
                core.publish(message, exchange: exchange, routingKey: routingKey) { continuation.resume(returning: $0) }
            }
        }
        try result.get()
    }

    /// Starts a consumer with manual acks; at most `prefetch` deliveries are unacked at once.
    public func consume(queue: String, prefetch: UInt16) async throws(AMQPError) -> AMQPConsumer {
        let (stream, continuation) = AsyncThrowingStream<AMQPDelivery, any Error>.makeStream()
        let (tag, channel) = try await thread.perform { try $0.consume(queue: queue, prefetch: prefetch, continuation: continuation) }
        return AMQPConsumer(stream: stream, tag: tag, channel: channel, connection: thread)
    }

    /// Starts a credit consumer: the slots' `CreditWindow` decides how many single-delivery
    /// consumers run; releases and pauses go to `slots.fromApplication`.
    func consume(queue: String, credit: CreditSlots) async throws(AMQPError) -> AMQPConsumer {
        let (stream, continuation) = AsyncThrowingStream<AMQPDelivery, any Error>.makeStream()
        let channel = try await thread.perform { try $0.consume(queue: queue, credit: credit, continuation: continuation) }
        return AMQPConsumer(stream: stream, tag: "", channel: channel, connection: thread, credited: true)
    }

    /// Deletes a queue and returns how many messages it held.
    @discardableResult
    public func deleteQueue(_ name: String) async throws(AMQPError) -> Int {
        try await thread.perform { try $0.deleteQueue(name) }
    }

    /// The number of ready (not yet delivered) messages in a queue.
    public func messageCount(queue: String) async throws(AMQPError) -> Int {
        try await thread.perform { try $0.messageCount(queue) }
    }

    /// The queues of this connection's credit subscriptions that have free slots and running
    /// consumers but received nothing for `quiet`.
    func quietCreditQueues(quiet: Duration) async throws(AMQPError) -> [String] {
        let milliseconds = UInt64(quiet.components.seconds * 1000)
        return try await thread.perform { $0.quietCreditQueues(quietMilliseconds: milliseconds) }
    }

    /// Waits until the connection is closed or lost, and returns why.
    public func waitUntilClosed() async -> AMQPError {
        await thread.waitUntilClosed()
    }

    /// Closes the connection; waiting publishes are reported unconfirmed.
    public func close() async {
        thread.requestClose()
        _ = await thread.waitUntilClosed()
    }
}
