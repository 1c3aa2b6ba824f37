import CRabbitMQ
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The one thread that owns a `ConnectionCore`. Swift code hands it commands; it runs them
/// between reading frames, and sleeps in `poll` on the socket and a wake-up eventfd, never
/// longer than a quarter of the heartbeat interval, so heartbeats keep flowing while idle.
final class ConnectionThread: Sendable {
    typealias Command = @Sendable (ConnectionCore?) -> Void

    let configuration: AMQPConfiguration
    /// Bounds every librabbitmq call this thread makes (see `CallWatch`).
    let watch: CallWatch
    let notify: @Sendable (ConnectionNotice) -> Void
    private let wakeDescriptor: Int32
    private let shared = Mutex(Shared())

    private struct Shared {
        var commands: [Command] = []
        var closeRequested = false
        var closed: AMQPError?
        var closeWaiters: [CheckedContinuation<AMQPError, Never>] = []
    }

    init(configuration: AMQPConfiguration, notify: @escaping @Sendable (ConnectionNotice) -> Void = { _ in }) {
        self.configuration = configuration
        self.notify = notify
        // Longer than librabbitmq's own RPC timeout, which fails a call that waits for a reply;
        // this catches what that timeout does not bound: writes to a broker that stopped reading.
        let limit = UInt64(ConnectionCore.rpcTimeoutSeconds(configuration) + 5) * 1000
        watch = CallWatch(limitMilliseconds: limit) { operation, seconds in notify(.callOverdue(operation: operation, seconds: seconds)) }
        wakeDescriptor = stepfleet_wake_fd()
    }

    deinit {
        close(wakeDescriptor)
    }

    /// Starts the thread, which connects and reports the result before serving commands.
    func start(opened: @escaping @Sendable (Result<Void, AMQPError>) -> Void) {
        let thread = Thread { [self] in run(opened: opened) }
        thread.name = "amqp \(configuration.host):\(configuration.port)"
        thread.start()
    }

    /// Runs `command` on the connection's thread; with nil once the connection is closed.
    func submit(_ command: @escaping Command) {
        let closed = shared.withLock { shared -> Bool in
            if shared.closed != nil { return true }
            shared.commands.append(command)
            return false
        }
        if closed { command(nil) } else { wake() }
    }

    /// Runs `body` with the live connection and returns its result.
    func perform<T: Sendable>(_ body: @escaping @Sendable (ConnectionCore) throws -> T) async throws(AMQPError) -> T {
        let result: Result<T, AMQPError> = await withCheckedContinuation { continuation in
            submit { core in
                guard let core, core.failure == nil else {
                    continuation.resume(returning: .failure(self.closeReason ?? core?.failure ?? .connectionClosed(reason: "closed")))
                    return
                }
                do {
                    continuation.resume(returning: .success(try body(core)))
                } catch let error as AMQPError {
                    continuation.resume(returning: .failure(error))
                } catch {
                    continuation.resume(returning: .failure(.operationFailed(operation: "AMQP", reason: "\(error)")))
                }
            }
        }
        return try result.get()
    }

    /// Why the connection closed; nil while it is open.
    var closeReason: AMQPError? { shared.withLock { $0.closed } }

    func requestClose() {
        shared.withLock { $0.closeRequested = true }
        wake()
    }

    func waitUntilClosed() async -> AMQPError {
        await withCheckedContinuation { continuation in
            let reason = shared.withLock { shared -> AMQPError? in
                if let closed = shared.closed { return closed }
                shared.closeWaiters.append(continuation)
                return nil
            }
            if let reason { continuation.resume(returning: reason) }
        }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    private func drainWake() {
        var value: UInt64 = 0
        _ = read(wakeDescriptor, &value, 8)
    }

    private func run(opened: @Sendable (Result<Void, AMQPError>) -> Void) {
        CallWatchdog.shared.register(watch)
        defer { CallWatchdog.shared.unregister(watch) }
        let core: ConnectionCore
        do {
            core = try ConnectionCore.connect(configuration, connection: self, notify: notify)
        } catch {
            finish(error, core: nil)
            opened(.failure(error))
            return
        }
        watch.idle()
        opened(.success(()))
        let heartbeat = core.heartbeatSeconds
        let pollMilliseconds = Int32(heartbeat == 0 ? 500 : max(50, min(500, heartbeat * 250)))
        while true {
            let (batch, closeRequested) = shared.withLock { shared in
                defer { shared.commands.removeAll() }
                return (shared.commands, shared.closeRequested)
            }
            for command in batch { command(core) }
            if core.failure != nil { break }
            if closeRequested {
                core.close()
                break
            }
            if core.socketDescriptor < 0 {
                // librabbitmq closed the socket without reporting it to us; polling a negative
                // descriptor would wait for ever on nothing.
                core.fail(.connectionClosed(reason: "the connection's socket was closed"))
                break
            }
            var handled = 0
            while handled < 256, core.failure == nil, core.pumpOne() { handled += 1 }
            if core.failure != nil { break }
            core.flushHeld()
            core.creditTick()
            if core.failure != nil { break }
            if handled == 0, !core.hasBufferedFrames {
                watch.idle()
                // Held publishes are retried soon: the broker may read again without a frame.
                let timeout = core.hasHeldPublishes && !core.blocked ? min(pollMilliseconds, 20) : pollMilliseconds
                let ready = stepfleet_poll2(core.socketDescriptor, wakeDescriptor, timeout)
                if ready > 0, ready & 2 != 0 { drainWake() }
            }
            core.expireConfirms()
            core.releaseBuffers()
        }
        finish(core.failure ?? .connectionClosed(reason: "closed"), core: core)
    }

    private func finish(_ error: AMQPError, core: ConnectionCore?) {
        core?.fail(error)
        watch.idle()
        watch.setDescriptor(-1)
        let (remaining, waiters) = shared.withLock { shared in
            shared.closed = error
            defer {
                shared.commands.removeAll()
                shared.closeWaiters.removeAll()
            }
            return (shared.commands, shared.closeWaiters)
        }
        for command in remaining { command(nil) }
        for waiter in waiters { waiter.resume(returning: error) }
    }
}
