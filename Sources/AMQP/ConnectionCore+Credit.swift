import CRabbitMQ

/// Credit consumers: one channel per subscription with a per-consumer prefetch of 1, on which
/// one short-lived consumer is started per free slot. A consumer is cancelled as soon as its one
/// delivery arrives (before the application can ack it, so the broker sends it nothing more),
/// and a new one starts when the application releases a slot. Nothing is returned to the queue
/// to resize the window, and no channel is opened or closed per job.
extension ConnectionCore {
    struct CreditChannel {
        let queue: String
        let credit: CreditState
        let continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation
        var active: [String] = []
    }

    func consume(queue: String, credit: CreditState, continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation) throws(AMQPError)
        -> UInt16
    {
        let channel = try openConsumerChannel(prefetch: 1, queue: queue)
        creditChannels[channel] = CreditChannel(queue: queue, credit: credit, continuation: continuation)
        try replenish(channel: channel)
        return channel
    }

    /// Starts or cancels consumers on a credit channel until one runs per wanted delivery.
    func replenish(channel: UInt16) throws(AMQPError) {
        guard var entry = creditChannels[channel] else { return }
        let wanted = entry.credit.wanted
        while entry.active.count > wanted {
            let tag = entry.active.removeLast()
            consumers.removeValue(forKey: tag)
            sendCancel(channel: channel, tag: tag)
        }
        creditChannels[channel] = entry
        while entry.active.count < wanted {
            let arena = CArena()
            let ok = amqp_basic_consume(state, channel, arena.bytes(entry.queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
            do throws(AMQPError) {
                try checkOn(channel, amqp_get_rpc_reply(state), "consume from queue \(entry.queue)")
            } catch {
                creditChannelClosed(channel, error)
                throw error
            }
            guard let ok else { throw .operationFailed(operation: "consume from queue \(entry.queue)", reason: "no consume-ok") }
            let tag = CCopy.string(ok.pointee.consumer_tag)
            consumers[tag] = ConsumerSink(channel: channel, continuation: entry.continuation, credited: true)
            entry.active.append(tag)
            creditChannels[channel] = entry
        }
    }

    /// A delivery on a credit channel: its consumer is done, and it takes a slot. A delivery
    /// for a consumer cancelled a moment ago (a pause) still arrives and still takes a slot.
    func creditDelivered(_ delivery: AMQPDelivery) -> Bool {
        guard var entry = creditChannels[delivery.channel] else { return false }
        if let index = entry.active.firstIndex(of: delivery.consumerTag) {
            entry.active.remove(at: index)
            consumers.removeValue(forKey: delivery.consumerTag)
            sendCancel(channel: delivery.channel, tag: delivery.consumerTag)
            creditChannels[delivery.channel] = entry
        }
        entry.credit.took()
        entry.continuation.yield(delivery)
        return true
    }

    func creditChannelClosed(_ channel: UInt16, _ error: AMQPError) {
        guard let entry = creditChannels.removeValue(forKey: channel) else { return }
        for tag in entry.active { consumers.removeValue(forKey: tag) }
        entry.continuation.finish(throwing: error)
    }

    /// Ends a credit subscription: its channel closes and unacked deliveries go back.
    func cancelCredit(channel: UInt16) {
        guard let entry = creditChannels.removeValue(forKey: channel) else { return }
        for tag in entry.active { consumers.removeValue(forKey: tag) }
        entry.continuation.finish()
        closeChannel(channel)
    }

    private func sendCancel(channel: UInt16, tag: String) {
        let arena = CArena()
        let status = stepfleet_amqp_cancel_nowait(state, channel, arena.bytes(tag))
        if status != AMQP_STATUS_OK.rawValue { fail(.connectionClosed(reason: "basic.cancel failed: \(Self.statusText(status))")) }
    }
}
