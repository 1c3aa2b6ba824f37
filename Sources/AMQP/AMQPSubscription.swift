/// A subscription's deliveries; survives reconnects. Ends when the client stops.
public struct AMQPSubscription: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery
    let stream: AsyncStream<AMQPDelivery>
    let client: AMQPClient
    let id: Int

    public func makeAsyncIterator() -> AsyncStream<AMQPDelivery>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// For a credit subscription: the slot of one delivery is free again (call exactly once per
    /// delivery, after it is settled and its work is done).
    public func release() async {
        await client.release(id)
    }

    /// For a credit subscription: stop taking deliveries (`true`) or take them again.
    public func setPaused(_ paused: Bool) async {
        await client.setPaused(id, paused)
    }

    /// Stops consuming; unacked deliveries go back to the queue.
    public func cancel() async {
        await client.unsubscribe(id)
    }
}
