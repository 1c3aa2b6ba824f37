import CRabbitMQ
import Foundation

/// One librabbitmq connection. Not thread-safe, like the library: only its `ConnectionThread`
/// touches it. Channel 1 publishes in confirm mode, channel 2 carries declarations, every
/// subscription has a channel of its own. Channel numbers are never reused on a connection, so
/// an ack for a delivery of a closed channel can never land on another consumer's channel.
final class ConnectionCore {
    typealias ConfirmWaiter = @Sendable (Result<Void, AMQPError>) -> Void

    let state: amqp_connection_state_t
    let endpoint: String
    private let confirmTimeoutSeconds: Int
    /// Set when the connection can no longer be used; the thread then tears it down.
    private(set) var failure: AMQPError?
    private(set) var blocked = false
    private var blockedSince: UInt64 = 0
    private var confirms = ConfirmTracker<PendingConfirm>()
    /// Nack streaks per destination (exchange and routing key): RabbitMQ 3.10 keeps a channel's
    /// quorum-queue state per queue, so a channel can refuse every publish to one queue while
    /// publishes to others on it are confirmed.
    private var nacks: [String: NackStreak] = [:]
    private var nackStreakStarted: [String: UInt64] = [:]
    /// Publishes waiting while the broker blocks this connection or too many bytes are unsent,
    /// oldest first. Every one is published or failed: none is ever dropped.
    private var held: [HeldPublish] = []
    private var backlogReported = false
    var consumers: [String: ConsumerSink] = [:]
    var creditChannels: [amqp_channel_t: CreditChannel] = [:]
    private var openChannels: Set<amqp_channel_t> = []
    private var nextChannel: amqp_channel_t = 3
    /// The confirm-mode channel publishes go to (replaced when the broker keeps nacking on it).
    private(set) var publishChannel: amqp_channel_t = 1
    let connection: AMQPConnection.Handle
    let notify: @Sendable (ConnectionNotice) -> Void

    private static let declareChannel: amqp_channel_t = 2
    /// Publishes wait (back-pressure) while more than this many bytes sit unsent in the socket.
    static let maximumUnsentBytes = 1 << 20

    /// A publish waiting for its confirm, and where it went.
    struct PendingConfirm {
        let waiter: ConfirmWaiter
        let destination: String
    }

    /// A publish waiting while the broker blocks this connection (memory or disk alarm).
    private struct HeldPublish {
        let message: AMQPMessage
        let exchange: String
        let routingKey: String
        let waiter: ConfirmWaiter
        let since: UInt64
    }

    struct ConsumerSink {
        let channel: amqp_channel_t
        let continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation
        /// One of a credit channel's one-delivery consumers.
        var credited = false
    }

    private init(
        state: amqp_connection_state_t, endpoint: String, confirmTimeoutSeconds: Int, connection: AMQPConnection.Handle,
        notify: @escaping @Sendable (ConnectionNotice) -> Void
    ) {
        self.state = state
        self.confirmTimeoutSeconds = confirmTimeoutSeconds
        self.endpoint = endpoint
        self.connection = connection
        self.notify = notify
    }

    deinit {
        amqp_destroy_connection(state)
    }

    // MARK: Connecting

    static func connect(
        _ configuration: AMQPConfiguration, connection: AMQPConnection.Handle, notify: @escaping @Sendable (ConnectionNotice) -> Void
    ) throws(AMQPError) -> ConnectionCore {
        let endpoint = configuration.description
        guard let state = amqp_new_connection() else { throw .connectFailed(endpoint: endpoint, reason: "out of memory") }
        let core = ConnectionCore(
            state: state, endpoint: endpoint, confirmTimeoutSeconds: configuration.confirmTimeoutSeconds, connection: connection, notify: notify)
        try core.open(configuration)
        return core
    }

    private func open(_ configuration: AMQPConfiguration) throws(AMQPError) {
        let socket: OpaquePointer?
        if let tls = configuration.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw .tlsFailed(endpoint: endpoint, reason: "cannot create a TLS socket") }
            let caPath = tls.caCertificatePath ?? (tls.verifyPeer ? "/etc/ssl/certs/ca-certificates.crt" : nil)
            if let caPath {
                let status = amqp_ssl_socket_set_cacert(socket, caPath)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw .tlsFailed(endpoint: endpoint, reason: "cannot read CA certificates from \(caPath): \(Self.statusText(status))")
                }
            }
            if let certificate = tls.clientCertificatePath {
                guard let key = tls.clientKeyPath else {
                    throw .invalidConfiguration("a client certificate (certfile) needs its key (keyfile)")
                }
                let status = amqp_ssl_socket_set_key(socket, certificate, key)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw .tlsFailed(endpoint: endpoint, reason: "cannot load client certificate \(certificate) / key \(key): \(Self.statusText(status))")
                }
            }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyPeer ? 1 : 0)
        } else {
            socket = amqp_tcp_socket_new(state)
            guard socket != nil else { throw .connectFailed(endpoint: endpoint, reason: "cannot create a socket") }
        }
        var timeout = timeval(
            tv_sec: configuration.connectTimeoutMilliseconds / 1000,
            tv_usec: (configuration.connectTimeoutMilliseconds % 1000) * 1000)
        let status = amqp_socket_open_noblock(socket, configuration.host, Int32(configuration.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            let reason = Self.statusText(status)
            if status <= AMQP_STATUS_SSL_ERROR.rawValue && status > _AMQP_STATUS_SSL_NEXT_VALUE.rawValue {
                throw .tlsFailed(endpoint: endpoint, reason: reason + Self.tlsHint(status))
            }
            throw .connectFailed(endpoint: endpoint, reason: reason)
        }
        connection.watch.setDescriptor(amqp_get_sockfd(state))
        connection.watch.enter("login")
        let login = stepfleet_amqp_login_plain(
            state, configuration.vhost, 0, 131_072, Int32(configuration.heartbeatSeconds), configuration.user, configuration.password)
        guard login.reply_type == AMQP_RESPONSE_NORMAL else {
            throw .loginFailed(endpoint: endpoint, reason: describe(login))
        }
        // A synchronous method (declare, consume, qos, channel open/close) that the broker never
        // answers must not hold the connection's thread for ever (seen with a quorum queue whose
        // leader had just died): after this long it fails the connection, which is made again.
        var rpcTimeout = timeval(tv_sec: Self.rpcTimeoutSeconds(configuration), tv_usec: 0)
        amqp_set_rpc_timeout(state, &rpcTimeout)
        try openChannel(publishChannel)
        connection.watch.enter("confirm.select")
        amqp_confirm_select(state, publishChannel)
        try check(amqp_get_rpc_reply(state), "confirm.select")
        try openChannel(Self.declareChannel)
    }

    /// The RPC timeout set on the connection (a synchronous method waits this long for its reply).
    static func rpcTimeoutSeconds(_ configuration: AMQPConfiguration) -> Int { max(15, configuration.confirmTimeoutSeconds) }

    var socketDescriptor: Int32 { amqp_get_sockfd(state) }

    /// The negotiated heartbeat interval in seconds (0: none).
    var heartbeatSeconds: Int { Int(amqp_get_heartbeat(state)) }

    // MARK: Declaring

    func declare(_ topology: AMQPTopology) throws(AMQPError) {
        for exchange in topology.exchanges {
            let arena = CArena()
            connection.watch.enter("declare exchange")
            amqp_exchange_declare(
                state, Self.declareChannel, arena.bytes(exchange.name), arena.bytes(exchange.kind.rawValue), 0,
                exchange.durable ? 1 : 0, 0, 0, amqp_empty_table)
            try checkDeclare(amqp_get_rpc_reply(state), "declare exchange \(exchange.name)")
        }
        for queue in topology.queues {
            let arena = CArena()
            connection.watch.enter("declare queue")
            amqp_queue_declare(
                state, Self.declareChannel, arena.bytes(queue.name), 0, queue.durable ? 1 : 0, queue.exclusive ? 1 : 0,
                queue.autoDelete ? 1 : 0, arena.table(queue.arguments))
            try checkDeclare(amqp_get_rpc_reply(state), "declare queue \(queue.name)")
        }
        for binding in topology.bindings {
            let arena = CArena()
            connection.watch.enter("bind queue")
            amqp_queue_bind(
                state, Self.declareChannel, arena.bytes(binding.queue), arena.bytes(binding.exchange), arena.bytes(binding.routingKey),
                amqp_empty_table)
            try checkDeclare(amqp_get_rpc_reply(state), "bind queue \(binding.queue) to \(binding.exchange)")
        }
    }

    /// Deletes a queue; returns how many messages it held.
    func deleteQueue(_ name: String) throws(AMQPError) -> Int {
        let arena = CArena()
        connection.watch.enter("delete queue")
        let reply = amqp_queue_delete(state, Self.declareChannel, arena.bytes(name), 0, 0)
        try checkDeclare(amqp_get_rpc_reply(state), "delete queue \(name)")
        return Int(reply?.pointee.message_count ?? 0)
    }

    /// Counts the ready messages of an existing queue.
    func messageCount(_ name: String) throws(AMQPError) -> Int {
        let arena = CArena()
        connection.watch.enter("look up queue")
        let reply = amqp_queue_declare(state, Self.declareChannel, arena.bytes(name), 1, 0, 0, 0, amqp_empty_table)
        try checkDeclare(amqp_get_rpc_reply(state), "look up queue \(name)")
        return Int(reply?.pointee.message_count ?? 0)
    }

    // MARK: Publishing

    func publish(_ message: AMQPMessage, exchange: String, routingKey: String, waiter: @escaping ConfirmWaiter) {
        if blocked || !held.isEmpty || backlogged {
            held.append(HeldPublish(message: message, exchange: exchange, routingKey: routingKey, waiter: waiter, since: Monotonic.milliseconds))
            return
        }
        send(message, exchange: exchange, routingKey: routingKey, waiter: waiter)
    }

    private func send(_ message: AMQPMessage, exchange: String, routingKey: String, waiter: @escaping ConfirmWaiter) {
        let arena = CArena()
        var properties = message.properties.cValue(in: arena)
        _ = confirms.register(PendingConfirm(waiter: waiter, destination: exchange + "/" + routingKey), deadline: .now + .seconds(confirmTimeoutSeconds))
        publishedSinceCheck += message.body.count + 256
        connection.watch.enter("publish")
        let status = amqp_basic_publish(
            state, publishChannel, arena.bytes(exchange), arena.bytes(routingKey), 0, 0, &properties, arena.bytes(message.body))
        if status != AMQP_STATUS_OK.rawValue {
            fail(.connectionClosed(reason: "publish failed: \(Self.statusText(status))"))
        }
    }

    /// Bytes written to the socket that the broker has not taken yet.
    private var unsentBytes: Int { Int(stepfleet_unsent_bytes(socketDescriptor)) }

    /// Bytes published since the socket's unsent bytes were last looked at.
    private var publishedSinceCheck = 0

    /// True when too many bytes sit unsent. The socket is asked (a system call) once per
    /// 64 KiB published, so the bound is the limit plus that much.
    private var backlogged: Bool {
        guard publishedSinceCheck >= 64 << 10 else { return false }
        publishedSinceCheck = 0
        return unsentBytes > Self.maximumUnsentBytes
    }

    var outstandingConfirms: Int { confirms.outstanding }

    /// Sends held publishes while the broker reads, and fails those held past their deadline
    /// (the caller publishes again), so no publish waits for ever. Called every loop turn.
    func flushHeld() {
        guard !held.isEmpty, failure == nil else { return }
        let deadline = UInt64(max(confirmTimeoutSeconds, 1)) * 3000
        let now = Monotonic.milliseconds
        var expired = 0
        while let first = held.first, now >= first.since + deadline {
            held.removeFirst()
            expired += 1
            let reason = blocked ? "the broker blocks publishes on this connection (resource alarm)" : "the broker is not reading this connection"
            first.waiter(.failure(.publishUnconfirmed(reason: "held \(deadline / 1000) s: \(reason)")))
        }
        if expired > 0 { notify(.heldPublishesExpired(count: expired, seconds: Int(deadline / 1000))) }
        guard !blocked else { return }
        while !held.isEmpty, failure == nil {
            let unsent = unsentBytes
            if unsent > Self.maximumUnsentBytes {
                if !backlogReported {
                    backlogReported = true
                    notify(.sendBacklog(bytes: unsent))
                }
                return
            }
            let next = held.removeFirst()
            send(next.message, exchange: next.exchange, routingKey: next.routingKey, waiter: next.waiter)
        }
        backlogReported = false
    }

    var hasHeldPublishes: Bool { !held.isEmpty }

    /// A confirm overdue on a live connection means the broker's side of the channel is stuck
    /// (seen on RabbitMQ 3.10 after a quorum queue's leader died: a channel kept sending to the
    /// dead leader and confirmed nothing more). The connection is failed, so every waiting
    /// publish is reported unconfirmed and the client reconnects with fresh channels.
    func expireConfirms() {
        // While the broker blocks the connection it confirms nothing; the wait is its block's.
        guard confirms.outstanding > 0, !blocked else { return }
        let overdue = confirms.expire(now: .now)
        guard !overdue.isEmpty else { return }
        let error = AMQPError.connectionClosed(reason: "no publish confirm from the broker within \(confirmTimeoutSeconds) s; reconnecting")
        for pending in overdue { pending.waiter(.failure(.publishUnconfirmed(reason: error.description))) }
        fail(error)
    }

    private func confirmed(tag: UInt64, multiple: Bool) {
        for pending in confirms.settle(tag: tag, multiple: multiple) {
            nacks[pending.destination]?.acked()
            pending.waiter(.success(()))
        }
    }

    /// Nacks in a row mean a broken channel: replace it, then the connection (see `NackStreak`).
    private func refused(tag: UInt64, multiple: Bool) {
        let refused = confirms.settle(tag: tag, multiple: multiple)
        guard let destination = refused.first?.destination else { return }
        var verdict = NackStreak.Verdict.carryOn
        for pending in refused {
            var streak = nacks[pending.destination] ?? NackStreak()
            if streak.consecutive == 0 { nackStreakStarted[pending.destination] = Monotonic.milliseconds }
            let outcome = streak.nacked()
            nacks[pending.destination] = streak
            if outcome != .carryOn { verdict = outcome }
            pending.waiter(.failure(.publishNacked))
        }
        let seconds = Double(Monotonic.milliseconds - (nackStreakStarted[destination] ?? Monotonic.milliseconds)) / 1000
        switch verdict {
        case .carryOn:
            return
        case .replaceChannel(let count):
            notify(.nackStreak(channel: publishChannel, destination: destination, nacks: count, seconds: seconds, verdict: "publishing on a new channel"))
            do {
                try replacePublishChannel()
            } catch {
                fail(.connectionClosed(reason: "cannot replace publish channel \(publishChannel): \(error)"))
            }
        case .failConnection(let count):
            notify(.nackStreak(channel: publishChannel, destination: destination, nacks: count, seconds: seconds, verdict: "closing the connection"))
            fail(.connectionClosed(reason: "the broker refused \(count) publishes in a row on two channels; reconnecting"))
        }
    }

    /// Publishes go to a new confirm-mode channel; the old one closes, and publishes it had not
    /// confirmed are reported unconfirmed (the caller publishes again).
    private func replacePublishChannel() throws(AMQPError) {
        let old = publishChannel
        let reason = "the broker refused every publish on channel \(old); publish again"
        for pending in confirms.removeAll() { pending.waiter(.failure(.publishUnconfirmed(reason: reason))) }
        closeChannelNowait(old)
        let channel = try allocateChannel()
        try openChannel(channel)
        connection.watch.enter("confirm.select")
        amqp_confirm_select(state, channel)
        try check(amqp_get_rpc_reply(state), "confirm.select")
        confirms = ConfirmTracker()
        publishChannel = channel
    }

    // MARK: Consuming

    func consume(queue: String, prefetch: UInt16, continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation) throws(AMQPError)
        -> (tag: String, channel: UInt16)
    {
        let channel = try openConsumerChannel(prefetch: prefetch, queue: queue)
        do throws(AMQPError) {
            let arena = CArena()
            connection.watch.enter("consume")
            let ok = amqp_basic_consume(state, channel, arena.bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
            try checkReply(channel, amqp_get_rpc_reply(state), "consume from queue \(queue)")
            guard let ok else { throw .operationFailed(operation: "consume from queue \(queue)", reason: "no consume-ok") }
            let tag = CCopy.string(ok.pointee.consumer_tag)
            consumers[tag] = ConsumerSink(channel: channel, continuation: continuation)
            return (tag, channel)
        } catch {
            closeChannelNowait(channel)
            throw error
        }
    }

    /// Opens a channel for one subscription, with a per-consumer prefetch.
    func openConsumerChannel(prefetch: UInt16, queue: String) throws(AMQPError) -> amqp_channel_t {
        let channel = try allocateChannel()
        try openChannel(channel)
        connection.watch.enter("basic.qos")
        amqp_basic_qos(state, channel, 0, prefetch, 0)
        do throws(AMQPError) {
            try checkReply(channel, amqp_get_rpc_reply(state), "set prefetch on \(queue)")
        } catch {
            closeChannelNowait(channel)
            throw error
        }
        return channel
    }

    /// Stops a consumer and closes its channel: the broker requeues what it had not acked.
    func cancel(consumerTag: String) {
        guard let sink = consumers.removeValue(forKey: consumerTag) else { return }
        sink.continuation.finish()
        closeChannel(sink.channel)
    }

    enum Settlement: Sendable {
        case ack
        case nack(requeue: Bool)
        case reject(requeue: Bool)
    }

    func settle(channel: UInt16, deliveryTag: UInt64, _ settlement: Settlement) throws(AMQPError) {
        guard openChannels.contains(channel) else { throw .staleDelivery }
        let status: Int32
        connection.watch.enter("ack")
        switch settlement {
        case .ack: status = amqp_basic_ack(state, channel, deliveryTag, 0)
        case .nack(let requeue): status = amqp_basic_nack(state, channel, deliveryTag, 0, requeue ? 1 : 0)
        case .reject(let requeue): status = amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0)
        }
        if status != AMQP_STATUS_OK.rawValue {
            let error = AMQPError.connectionClosed(reason: "ack/nack failed: \(Self.statusText(status))")
            fail(error)
            throw error
        }
    }

    // MARK: Reading frames

    /// Handles one waiting frame, if any; false when none was ready.
    func pumpOne() -> Bool {
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        connection.watch.enter("read frame")
        let status = amqp_simple_wait_frame_noblock(state, &frame, &zero)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return false }
        guard status == AMQP_STATUS_OK.rawValue else {
            fail(.connectionClosed(reason: Self.statusText(status)))
            return false
        }
        if frame.frame_type == stepfleet_frame_method { handleMethod(frame) }
        return true
    }

    /// True when frames are already read and waiting (no need to poll the socket).
    var hasBufferedFrames: Bool { amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 }

    func releaseBuffers() { amqp_maybe_release_buffers(state) }

    private func handleMethod(_ frame: amqp_frame_t) {
        let method = frame.payload.method
        switch method.id {
        case stepfleet_basic_deliver:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let consumerTag = CCopy.string(deliver.consumer_tag)
            let exchange = CCopy.string(deliver.exchange)
            let routingKey = CCopy.string(deliver.routing_key)
            var message = amqp_message_t()
            connection.watch.enter("read delivery")
            let reply = amqp_read_message(state, frame.channel, &message, 0)
            guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
                fail(.connectionClosed(reason: "reading a delivery: \(describe(reply))"))
                return
            }
            let delivered = AMQPMessage(body: CCopy.data(message.body), properties: AMQPProperties(message.properties))
            amqp_destroy_message(&message)
            let delivery = AMQPDelivery(
                message: delivered, deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0, exchange: exchange,
                routingKey: routingKey, consumerTag: consumerTag, channel: frame.channel, connection: connection)
            if creditDelivered(delivery) {
                break
            } else if let sink = consumers[consumerTag] {
                sink.continuation.yield(delivery)
            } else if openChannels.contains(frame.channel) {
                // A consumer we no longer know of: give the message back.
                amqp_basic_reject(state, frame.channel, deliver.delivery_tag, 1)
            }
        case stepfleet_basic_ack:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            guard frame.channel == publishChannel else { break }
            confirmed(tag: ack.delivery_tag, multiple: ack.multiple != 0)
        case stepfleet_basic_nack:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            guard frame.channel == publishChannel else { break }
            refused(tag: nack.delivery_tag, multiple: nack.multiple != 0)
        case stepfleet_basic_consume_ok:
            let ok = method.decoded.assumingMemoryBound(to: amqp_basic_consume_ok_t.self).pointee
            creditConsumeOK(channel: frame.channel, tag: CCopy.string(ok.consumer_tag))
        case stepfleet_basic_return:
            // Not published as mandatory, so not expected; read and drop the returned content.
            var message = amqp_message_t()
            if amqp_read_message(state, frame.channel, &message, 0).reply_type == AMQP_RESPONSE_NORMAL { amqp_destroy_message(&message) }
        case stepfleet_basic_cancel:
            let cancel = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            let tag = CCopy.string(cancel.consumer_tag)
            let error = AMQPError.operationFailed(operation: "consume", reason: "the broker cancelled consumer \(tag) (queue deleted?)")
            guard let sink = consumers.removeValue(forKey: tag) else { break }
            if sink.credited {
                creditChannelClosed(sink.channel, error)
                closeChannelNowait(sink.channel)
            } else {
                sink.continuation.finish(throwing: error)
            }
        case stepfleet_channel_close:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let error = AMQPError.channelClosed(code: Int(close.reply_code), reason: CCopy.string(close.reply_text))
            stepfleet_amqp_send_channel_close_ok(state, frame.channel)
            channelClosedByBroker(frame.channel, error)
        case stepfleet_connection_close:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            stepfleet_amqp_send_connection_close_ok(state)
            fail(.connectionClosed(reason: "the broker closed the connection (\(close.reply_code) \(CCopy.string(close.reply_text)))"))
        case stepfleet_connection_blocked:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            if !self.blocked { blockedSince = Monotonic.milliseconds }
            self.blocked = true
            notify(.blocked(reason: CCopy.string(blocked.reason)))
        case stepfleet_connection_unblocked:
            if blocked {
                let milliseconds = Monotonic.milliseconds - blockedSince
                confirms.postpone(by: .milliseconds(milliseconds))
                notify(.unblocked(seconds: Double(milliseconds) / 1000))
            }
            blocked = false
            flushHeld()
        default:
            break
        }
    }

    private func channelClosedByBroker(_ channel: amqp_channel_t, _ error: AMQPError) {
        openChannels.remove(channel)
        switch channel {
        case publishChannel:
            // Confirms for this channel will never come: the connection is of no more use.
            fail(error)
        case Self.declareChannel:
            try? openChannel(Self.declareChannel)
        default:
            creditChannelClosed(channel, error)
            for (tag, sink) in consumers where sink.channel == channel {
                consumers.removeValue(forKey: tag)
                sink.continuation.finish(throwing: error)
            }
        }
    }

    // MARK: Closing

    /// Marks the connection failed: every waiting publish is reported unconfirmed and every
    /// consumer's stream ends with the error.
    func fail(_ error: AMQPError) {
        if failure == nil { failure = error }
        let reason = failure!.description
        for pending in confirms.removeAll() { pending.waiter(.failure(.publishUnconfirmed(reason: reason))) }
        let waiting = held
        held.removeAll()
        for publish in waiting { publish.waiter(.failure(.publishUnconfirmed(reason: reason))) }
        for sink in consumers.values { sink.continuation.finish(throwing: failure!) }
        consumers.removeAll()
        for entry in creditChannels.values {
            entry.slots.lost()
            entry.continuation.finish(throwing: failure!)
        }
        creditChannels.removeAll()
        openChannels.removeAll()
    }

    /// Closes politely (connection.close handshake) and fails what is left.
    func close() {
        if failure == nil {
            connection.watch.enter("close")
            amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        }
        fail(.connectionClosed(reason: "closed by the application"))
    }

    // MARK: Channels and replies

    /// The next unused channel number. When the connection's channels run out it is failed, and
    /// the reconnect starts numbering afresh.
    private func allocateChannel() throws(AMQPError) -> amqp_channel_t {
        let maximum = amqp_get_channel_max(state)
        guard maximum == 0 || Int(nextChannel) <= Int(maximum), nextChannel < amqp_channel_t.max else {
            let error = AMQPError.connectionClosed(reason: "all \(maximum) channels of the connection were used; reconnecting")
            fail(error)
            throw error
        }
        defer { nextChannel += 1 }
        return nextChannel
    }

    /// Closes a channel we opened (waiting for close-ok); its number is not used again.
    func closeChannel(_ channel: amqp_channel_t) {
        guard openChannels.remove(channel) != nil, failure == nil else { return }
        connection.watch.enter("channel.close")
        let reply = amqp_channel_close(state, channel, Int32(AMQP_REPLY_SUCCESS))
        if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, reply.reply.id == stepfleet_channel_close {
            // The broker closed it at the same moment: answer its close too.
            stepfleet_amqp_send_channel_close_ok(state, channel)
        } else if reply.reply_type != AMQP_RESPONSE_NORMAL, reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION {
            fail(.connectionClosed(reason: "closing channel \(channel): \(describe(reply))"))
        }
    }

    /// Closes a channel without waiting for close-ok (which is ignored when it comes): for a
    /// channel that may be stuck. Its number is not used again, so nothing can land on it.
    func closeChannelNowait(_ channel: amqp_channel_t) {
        guard openChannels.remove(channel) != nil, failure == nil else { return }
        connection.watch.enter("channel.close")
        let status = stepfleet_amqp_send_channel_close(state, channel)
        if status != AMQP_STATUS_OK.rawValue { fail(.connectionClosed(reason: "closing channel \(channel): \(Self.statusText(status))")) }
    }

    private func openChannel(_ channel: amqp_channel_t) throws(AMQPError) {
        connection.watch.enter("channel.open")
        amqp_channel_open(state, channel)
        try check(amqp_get_rpc_reply(state), "open channel \(channel)")
        openChannels.insert(channel)
    }

    /// Fails the whole connection on any error.
    private func check(_ reply: amqp_rpc_reply_t, _ operation: String) throws(AMQPError) {
        guard reply.reply_type != AMQP_RESPONSE_NORMAL else { return }
        let error = AMQPError.operationFailed(operation: operation, reason: describe(reply))
        fail(error)
        throw error
    }

    /// A refused declaration closes only the declare channel; it is reopened.
    private func checkDeclare(_ reply: amqp_rpc_reply_t, _ operation: String) throws(AMQPError) {
        try checkOn(Self.declareChannel, reply, operation)
        if !openChannels.contains(Self.declareChannel) { try openChannel(Self.declareChannel) }
    }

    /// Like `checkOn`, but a reply that did not come in time closes only the channel (the broker
    /// then drops whatever the late method registered) and fails the operation: the caller
    /// retries on a new channel.
    func checkReply(_ channel: amqp_channel_t, _ reply: amqp_rpc_reply_t, _ operation: String) throws(AMQPError) {
        if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION, reply.library_error == AMQP_STATUS_TIMEOUT.rawValue {
            closeChannelNowait(channel)
            throw .timedOut("\(operation): no reply from the broker; the channel was closed")
        }
        try checkOn(channel, reply, operation)
    }

    func checkOn(_ channel: amqp_channel_t, _ reply: amqp_rpc_reply_t, _ operation: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == stepfleet_channel_close:
            let error = AMQPError.operationFailed(operation: operation, reason: describe(reply))
            stepfleet_amqp_send_channel_close_ok(state, channel)
            openChannels.remove(channel)
            if channel == Self.declareChannel { try openChannel(Self.declareChannel) }
            throw error
        default:
            try check(reply, operation)
        }
    }

    func describe(_ reply: amqp_rpc_reply_t) -> String {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return "ok"
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return Self.statusText(reply.library_error)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            switch reply.reply.id {
            case stepfleet_connection_close:
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                stepfleet_amqp_send_connection_close_ok(state)
                let error = AMQPError.connectionClosed(reason: "\(close.reply_code) \(CCopy.string(close.reply_text))")
                if failure == nil { failure = error }
                return "\(close.reply_code) \(CCopy.string(close.reply_text))"
            case stepfleet_channel_close:
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                return "\(close.reply_code) \(CCopy.string(close.reply_text))"
            default:
                return "unexpected broker method \(reply.reply.id)"
            }
        default:
            return "no reply from the broker"
        }
    }

    static func statusText(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    private static func tlsHint(_ status: Int32) -> String {
        switch status {
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue:
            " (the broker's certificate is not signed by the configured CA: check cacertfile)"
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue:
            " (the broker's certificate does not name this host)"
        default:
            ""
        }
    }
}
