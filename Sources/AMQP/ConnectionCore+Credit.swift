import CRabbitMQ

/// Credit consumers: one channel per subscription with a per-consumer prefetch of 1, on which
/// the subscription's `CreditWindow` runs one single-delivery consumer per free slot. The
/// window decides; this runs its actions: consumes are sent without waiting (their consume-ok is
/// matched by tag as frames arrive), so an unanswered consume never holds the connection's
/// thread, and the window closes the channel when one stays unanswered too long.
extension ConnectionCore {
    struct CreditChannel {
        let queue: String
        let slots: CreditSlots
        let continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation
    }

    func consume(queue: String, credit slots: CreditSlots, continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation) throws(AMQPError)
        -> UInt16
    {
        let channel = try openConsumerChannel(prefetch: 1, queue: queue)
        creditChannels[channel] = CreditChannel(queue: queue, slots: slots, continuation: continuation)
        run(slots.attach(to: connection, prefix: "c\(channel)"), on: channel)
        return channel
    }

    /// An application event (a release, a pause) for a credit subscription of this connection.
    func creditEvent(_ event: CreditWindow.Event, for slots: CreditSlots) {
        let actions = slots.handle(event)
        guard let channel = creditChannels.first(where: { $0.value.slots === slots })?.key else { return }
        run(actions, on: channel)
    }

    /// A delivery on a credit channel: its consumer is done, and it takes a slot. A delivery
    /// for a consumer cancelled a moment ago (a pause) still arrives and still takes a slot.
    func creditDelivered(_ delivery: AMQPDelivery) -> Bool {
        guard let entry = creditChannels[delivery.channel] else { return false }
        // The cancel goes out before the application can ack, so the broker sends this
        // consumer nothing more.
        run(entry.slots.handle(.delivered(tag: delivery.consumerTag)), on: delivery.channel)
        entry.continuation.yield(delivery)
        return true
    }

    func creditConsumeOK(channel: UInt16, tag: String) {
        guard let entry = creditChannels[channel] else { return }
        run(entry.slots.handle(.consumeOK(tag: tag)), on: channel)
    }

    /// Every loop turn: consumes unanswered too long close their channel.
    func creditTick() {
        for (channel, entry) in creditChannels {
            run(entry.slots.handle(.tick), on: channel)
        }
    }

    /// Credit channels whose subscription has free slots but heard nothing for `quiet`.
    func quietCreditQueues(quietMilliseconds: UInt64) -> [String] {
        let now = Monotonic.milliseconds
        return creditChannels.values.filter { $0.slots.window.isQuiet(now: now, for: quietMilliseconds) }.map(\.queue)
    }

    func creditChannelClosed(_ channel: UInt16, _ error: AMQPError) {
        guard let entry = creditChannels.removeValue(forKey: channel) else { return }
        entry.slots.lost()
        for (tag, sink) in consumers where sink.channel == channel { consumers.removeValue(forKey: tag) }
        entry.continuation.finish(throwing: error)
    }

    /// Ends a credit subscription: its channel closes and unacked deliveries go back.
    func cancelCredit(channel: UInt16) {
        guard let entry = creditChannels.removeValue(forKey: channel) else { return }
        entry.slots.lost()
        for (tag, sink) in consumers where sink.channel == channel { consumers.removeValue(forKey: tag) }
        entry.continuation.finish()
        closeChannel(channel)
    }

    private func run(_ actions: [CreditWindow.Action], on channel: UInt16) {
        for action in actions {
            guard failure == nil, let entry = creditChannels[channel] else { return }
            switch action {
            case .consume(let tag):
                let arena = CArena()
                connection.watch.enter("consume")
                let status = stepfleet_amqp_consume_send(state, channel, arena.bytes(entry.queue), arena.bytes(tag))
                if status != AMQP_STATUS_OK.rawValue {
                    fail(.connectionClosed(reason: "basic.consume failed: \(Self.statusText(status))"))
                    return
                }
                consumers[tag] = ConsumerSink(channel: channel, continuation: entry.continuation, credited: true)
            case .cancel(let tag):
                consumers.removeValue(forKey: tag)
                sendCancel(channel: channel, tag: tag)
            case .closeChannel(let reason):
                notify(.consumeUnanswered(queue: entry.queue, reason: reason))
                creditChannelClosed(channel, .timedOut("consume from queue \(entry.queue): \(reason); the channel was closed"))
                closeChannelNowait(channel)
            }
        }
    }

    private func sendCancel(channel: UInt16, tag: String) {
        let arena = CArena()
        connection.watch.enter("basic.cancel")
        let status = stepfleet_amqp_cancel_nowait(state, channel, arena.bytes(tag))
        if status != AMQP_STATUS_OK.rawValue { fail(.connectionClosed(reason: "basic.cancel failed: \(Self.statusText(status))")) }
    }
}
