import Synchronization

/// A credit subscription's `CreditWindow`, shared by the application (release, pause) and the
/// connection thread that runs its consumers. Events that can start or cancel consumers run on
/// that thread (the window's actions are sends on its channel); without a connection they only
/// update the counts.
final class CreditSlots: Sendable {
    private struct Shared {
        var window: CreditWindow
        /// The connection whose thread runs the window's consumers now.
        var owner: ConnectionThread?
    }

    private let shared: Mutex<Shared>

    init(capacity: Int, paused: Bool = false, consumeTimeoutMilliseconds: UInt64 = 15_000) {
        shared = Mutex(Shared(window: CreditWindow(capacity: capacity, paused: paused, consumeTimeout: consumeTimeoutMilliseconds)))
    }

    var window: CreditWindow { shared.withLock { $0.window } }

    /// On the connection thread: the window's channel opened there.
    func attach(to owner: ConnectionThread, prefix: String) -> [CreditWindow.Action] {
        shared.withLock { shared in
            shared.owner = owner
            return shared.window.handle(.attached(prefix: prefix), now: Monotonic.milliseconds)
        }
    }

    /// On the connection thread: an event of its channel.
    func handle(_ event: CreditWindow.Event) -> [CreditWindow.Action] {
        shared.withLock { $0.window.handle(event, now: Monotonic.milliseconds) }
    }

    /// The channel or its connection is gone.
    func lost() {
        shared.withLock { shared in
            shared.owner = nil
            _ = shared.window.handle(.channelLost, now: Monotonic.milliseconds)
        }
    }

    /// From the application: a released slot or a pause.
    func fromApplication(_ event: CreditWindow.Event) {
        let owner = shared.withLock { shared -> ConnectionThread? in
            if let owner = shared.owner { return owner }
            _ = shared.window.handle(event, now: Monotonic.milliseconds)
            return nil
        }
        owner?.submit { core in
            if let core, core.failure == nil {
                core.creditEvent(event, for: self)
            } else {
                self.lost()
                _ = self.handle(event)
            }
        }
    }
}
