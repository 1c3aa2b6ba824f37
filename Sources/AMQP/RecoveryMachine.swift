/// `AMQPClient`'s recovery as a pure value: events in, actions out; the client's one run loop
/// executes the actions and feeds their results back as events.
///
/// Recovery is ordered: a connection, then the topology, then every subscription's consumer;
/// callers get the connection only once it is `ready`. Each connection has an id, and every
/// result names the connection it came from, so a late result of a connection that is gone is
/// dropped here rather than re-checked after an await. A failed connection or topology phase
/// closes that connection and starts over after a backoff; a refused consume is retried on its
/// own, without holding up publishers.
struct RecoveryMachine: Sendable, Equatable {
    typealias ConnectionID = Int
    typealias SubscriptionID = Int

    enum State: Sendable, Equatable {
        case idle
        /// Opening connection `id` to endpoint `endpoint`; `tried` endpoints failed in this round.
        case connecting(id: ConnectionID, endpoint: Int, tried: Int)
        /// Every endpoint failed; waiting for the backoff timer.
        case backingOff(timer: Int)
        case declaring(ConnectionID)
        /// Consumers being started; `pending` have not answered yet.
        case attaching(ConnectionID, pending: Set<SubscriptionID>)
        case ready(ConnectionID)
        case stopped
    }

    enum Event: Sendable, Equatable {
        case start
        case opened(ConnectionID)
        case openFailed(ConnectionID)
        case declared(ConnectionID)
        case declareFailed(ConnectionID)
        case attached(ConnectionID, SubscriptionID)
        case attachFailed(ConnectionID, SubscriptionID)
        /// A subscription's channel was lost while its connection lives on.
        case detached(ConnectionID, SubscriptionID)
        /// A subscription's re-attach delay is over.
        case reattachDue(ConnectionID, SubscriptionID)
        /// The connection is gone; `backOff` when it failed soon or was failed for misbehaving
        /// (a nack streak), so the next attempt waits.
        case closed(ConnectionID, backOff: Bool)
        case timerFired(Int)
        case subscribed(SubscriptionID)
        case unsubscribed(SubscriptionID)
        case stop
    }

    enum Action: Sendable, Equatable {
        case open(ConnectionID, endpoint: Int)
        case declare(ConnectionID)
        /// Start the consumers of these subscriptions (sorted) on the connection.
        case attach(ConnectionID, [SubscriptionID])
        /// Stop a subscription's consumer (it was unsubscribed).
        case detach(ConnectionID, SubscriptionID)
        /// Fire `reattachDue` after a backoff for `failures` failures in a row.
        case reattachLater(ConnectionID, SubscriptionID, failures: Int)
        case close(ConnectionID)
        /// Fire `timerFired(timer)` after the backoff for `attempt`.
        case backOff(timer: Int, attempt: Int)
        /// Callers waiting for a connection get this one.
        case resumeWaiters(ConnectionID)
        /// Callers waiting for a connection are told the client stopped.
        case failWaiters
        /// Every subscription's stream ends (the client stopped).
        case finishSubscriptions
    }

    let endpointCount: Int
    private(set) var state: State = .idle
    private(set) var subscriptions: Set<SubscriptionID> = []
    /// Subscriptions with a running consumer on the current connection.
    private(set) var attached: Set<SubscriptionID> = []
    /// Re-attach failures in a row, per subscription.
    private(set) var attachFailures: [SubscriptionID: Int] = [:]
    /// Rounds of failed attempts since the last ready connection.
    private(set) var attempt = 0
    private var nextConnection: ConnectionID = 1
    private var nextTimer = 1
    /// The endpoint of the last connection opened (the next round starts after it).
    private var lastEndpoint = -1

    init(endpointCount: Int) {
        precondition(endpointCount > 0)
        self.endpointCount = endpointCount
    }

    /// The connection callers may use, if any.
    var readyConnection: ConnectionID? {
        if case .ready(let id) = state { return id }
        return nil
    }

    /// The connection being set up or in use, if any.
    var currentConnection: ConnectionID? {
        switch state {
        case .connecting(let id, _, _), .declaring(let id), .attaching(let id, _), .ready(let id): id
        case .idle, .backingOff, .stopped: nil
        }
    }

    mutating func handle(_ event: Event) -> [Action] {
        if state == .stopped {
            // Whatever a stopped client still hears about: an opened connection is closed.
            if case .opened(let id) = event { return [.close(id)] }
            return []
        }
        switch event {
        case .start:
            guard state == .idle else { return [] }
            return connect(endpoint: 0, tried: 0)
        case .stop:
            let current = currentConnection
            state = .stopped
            attached.removeAll()
            return (current.map { [.close($0)] } ?? []) + [.failWaiters, .finishSubscriptions]
        case .opened(let id):
            guard case .connecting(id, _, _) = state else { return [.close(id)] }
            state = .declaring(id)
            return [.declare(id)]
        case .openFailed(let id):
            guard case .connecting(id, let endpoint, let tried) = state else { return [] }
            if tried + 1 < endpointCount { return connect(endpoint: (endpoint + 1) % endpointCount, tried: tried + 1) }
            return backOff()
        case .declared(let id):
            guard case .declaring(id) = state else { return [] }
            attached.removeAll()
            if subscriptions.isEmpty { return becomeReady(id) }
            state = .attaching(id, pending: subscriptions)
            return [.attach(id, subscriptions.sorted())]
        case .declareFailed(let id):
            guard case .declaring(id) = state else { return [] }
            return [.close(id)] + backOff()
        case .attached(let id, let subscription):
            guard currentConnection == id else { return [] }
            guard subscriptions.contains(subscription) else { return [.detach(id, subscription)] }
            attached.insert(subscription)
            attachFailures[subscription] = nil
            if case .attaching(id, var pending) = state {
                pending.remove(subscription)
                if pending.isEmpty { return becomeReady(id) }
                state = .attaching(id, pending: pending)
            }
            return []
        case .attachFailed(let id, let subscription):
            guard currentConnection == id, subscriptions.contains(subscription) else { return [] }
            attached.remove(subscription)
            let failures = (attachFailures[subscription] ?? 0) + 1
            attachFailures[subscription] = failures
            var actions: [Action] = [.reattachLater(id, subscription, failures: failures)]
            if case .attaching(id, var pending) = state {
                pending.remove(subscription)
                if pending.isEmpty {
                    actions += becomeReady(id)
                } else {
                    state = .attaching(id, pending: pending)
                }
            }
            return actions
        case .detached(let id, let subscription):
            guard currentConnection == id, subscriptions.contains(subscription), attached.remove(subscription) != nil else { return [] }
            let failures = (attachFailures[subscription] ?? 0) + 1
            attachFailures[subscription] = failures
            return [.reattachLater(id, subscription, failures: failures)]
        case .reattachDue(let id, let subscription):
            guard readyConnection == id, subscriptions.contains(subscription), !attached.contains(subscription) else { return [] }
            return [.attach(id, [subscription])]
        case .closed(let id, let backOff):
            guard currentConnection == id else { return [] }
            attached.removeAll()
            if case .connecting = state { return [] }
            // A connection lost before it was ready failed a phase: start over after a backoff.
            if backOff || readyConnection != id { return self.backOff() }
            return connect(endpoint: (lastEndpoint + 1) % endpointCount, tried: 0)
        case .timerFired(let timer):
            guard case .backingOff(timer) = state else { return [] }
            return connect(endpoint: (lastEndpoint + 1) % endpointCount, tried: 0)
        case .subscribed(let subscription):
            guard subscriptions.insert(subscription).inserted else { return [] }
            switch state {
            case .ready(let id):
                return [.attach(id, [subscription])]
            case .attaching(let id, var pending):
                pending.insert(subscription)
                state = .attaching(id, pending: pending)
                return [.attach(id, [subscription])]
            case .idle:
                return handle(.start)
            default:
                return []
            }
        case .unsubscribed(let subscription):
            guard subscriptions.remove(subscription) != nil else { return [] }
            attachFailures[subscription] = nil
            var actions: [Action] = []
            if let id = currentConnection, attached.remove(subscription) != nil { actions.append(.detach(id, subscription)) }
            if case .attaching(let id, var pending) = state, pending.remove(subscription) != nil {
                if pending.isEmpty { return actions + becomeReady(id) }
                state = .attaching(id, pending: pending)
            }
            return actions
        }
    }

    private mutating func connect(endpoint: Int, tried: Int) -> [Action] {
        let id = nextConnection
        nextConnection += 1
        lastEndpoint = endpoint
        state = .connecting(id: id, endpoint: endpoint, tried: tried)
        return [.open(id, endpoint: endpoint)]
    }

    private mutating func backOff() -> [Action] {
        attempt += 1
        let timer = nextTimer
        nextTimer += 1
        state = .backingOff(timer: timer)
        return [.backOff(timer: timer, attempt: attempt)]
    }

    private mutating func becomeReady(_ id: ConnectionID) -> [Action] {
        state = .ready(id)
        attempt = 0
        return [.resumeWaiters(id)]
    }
}
