/// The one owner of a credit subscription's slots and consumers, as a pure value: events in,
/// actions out (the connection thread runs the actions).
///
/// At most `capacity` deliveries are held by the application at once, acked or not: each takes
/// a slot until it is released. One single-delivery consumer runs per free slot on the
/// subscription's channel; a consumer is cancelled as soon as its delivery arrives, and a new
/// one starts when a slot is free again, so nothing is ever returned to the queue to resize
/// the window. A consume the broker does not answer within `consumeTimeout` closes the channel
/// (the broker then drops whatever it registered) and the subscription is attached again: a
/// consumer the broker holds and the client does not know of would wedge the slot for good.
struct CreditWindow: Sendable, Equatable {
    /// Monotonic time in milliseconds.
    typealias Milliseconds = UInt64

    enum Event: Sendable, Equatable {
        /// A fresh channel is open for the subscription; consumer tags start with `prefix`.
        case attached(prefix: String)
        /// The broker answered the consume for `tag`.
        case consumeOK(tag: String)
        /// A delivery for `tag` arrived (also for a consumer cancelled a moment ago).
        case delivered(tag: String)
        /// The application released one slot.
        case released
        case paused(Bool)
        /// Time passed: consumes unanswered for too long fail the channel.
        case tick
        /// The channel or its connection is gone: no consumer runs any more.
        case channelLost
    }

    enum Action: Sendable, Equatable {
        /// Send `basic.consume` with this consumer tag.
        case consume(tag: String)
        /// Send `basic.cancel` (no wait) for this tag.
        case cancel(tag: String)
        /// The channel is of no more use (an unanswered consume): close it; the owner attaches again.
        case closeChannel(reason: String)
    }

    let capacity: Int
    let consumeTimeout: Milliseconds
    /// Deliveries handed to the application and not released yet. Below zero when the
    /// application released slots ahead of their deliveries: those releases are kept (each lets
    /// one more delivery in), but never more than `capacity` consumers run at once.
    private(set) var outstanding = 0
    private(set) var paused: Bool
    /// The tag prefix of the channel consumers run on; nil without a channel.
    private(set) var prefix: String?
    /// Consumes sent and not answered yet, oldest first, with when they were sent.
    private(set) var starting: [(tag: String, since: Milliseconds)] = []
    /// Consumers the broker confirmed, oldest first.
    private(set) var active: [String] = []
    /// When the subscription last got a delivery, or was attached.
    private(set) var lastActivity: Milliseconds = 0
    private var nextTag = 1

    init(capacity: Int, paused: Bool = false, consumeTimeout: Milliseconds = 15_000) {
        self.capacity = max(0, capacity)
        self.paused = paused
        self.consumeTimeout = consumeTimeout
    }

    /// How many more deliveries the application can take right now (0 while paused).
    var wanted: Int { paused ? 0 : max(0, min(capacity, capacity - outstanding)) }

    /// Consumers running or starting.
    var consumers: Int { starting.count + active.count }

    var isAttached: Bool { prefix != nil }

    /// True when the subscription has free slots and running consumers but received nothing
    /// for `quiet`: worth asking whether its queue holds ready messages.
    func isQuiet(now: Milliseconds, for quiet: Milliseconds) -> Bool {
        prefix != nil && wanted > 0 && !active.isEmpty && now >= lastActivity + quiet
    }

    mutating func handle(_ event: Event, now: Milliseconds) -> [Action] {
        switch event {
        case .attached(let prefix):
            self.prefix = prefix
            starting.removeAll()
            active.removeAll()
            lastActivity = now
            return balance(now: now)
        case .consumeOK(let tag):
            guard let index = starting.firstIndex(where: { $0.tag == tag }) else { return [] }
            starting.remove(at: index)
            active.append(tag)
            return []
        case .delivered(let tag):
            outstanding += 1
            lastActivity = now
            var actions: [Action] = []
            if let index = active.firstIndex(of: tag) {
                active.remove(at: index)
                actions.append(.cancel(tag: tag))
            } else if let index = starting.firstIndex(where: { $0.tag == tag }) {
                starting.remove(at: index)
                actions.append(.cancel(tag: tag))
            }
            return actions + balance(now: now)
        case .released:
            outstanding -= 1
            return balance(now: now)
        case .paused(let paused):
            self.paused = paused
            return balance(now: now)
        case .tick:
            guard prefix != nil, let oldest = starting.first, now >= oldest.since + consumeTimeout else { return [] }
            let reason = "the broker did not answer a consume within \(consumeTimeout / 1000) s"
            detach()
            return [.closeChannel(reason: reason)]
        case .channelLost:
            detach()
            return []
        }
    }

    private mutating func detach() {
        prefix = nil
        starting.removeAll()
        active.removeAll()
    }

    /// Starts or cancels consumers until one runs per wanted delivery (newest cancelled first).
    private mutating func balance(now: Milliseconds) -> [Action] {
        guard let prefix else { return [] }
        var actions: [Action] = []
        while consumers > wanted {
            if let newest = starting.popLast() {
                actions.append(.cancel(tag: newest.tag))
            } else {
                actions.append(.cancel(tag: active.removeLast()))
            }
        }
        while consumers < wanted {
            let tag = "\(prefix).\(nextTag)"
            nextTag += 1
            starting.append((tag, now))
            actions.append(.consume(tag: tag))
        }
        return actions
    }

    static func == (left: CreditWindow, right: CreditWindow) -> Bool {
        left.capacity == right.capacity && left.outstanding == right.outstanding && left.paused == right.paused && left.prefix == right.prefix
            && left.starting.map(\.tag) == right.starting.map(\.tag) && left.active == right.active
    }
}
