import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The one thread that checks every live connection's `CallWatch` twice a second.
final class CallWatchdog: Sendable {
    static let shared = CallWatchdog()

    private let watches = Mutex<[ObjectIdentifier: CallWatch]>([:])
    private let started = Mutex(false)

    func register(_ watch: CallWatch) {
        watches.withLock { $0[ObjectIdentifier(watch)] = watch }
        let start = started.withLock { started -> Bool in
            defer { started = true }
            return !started
        }
        if start {
            let thread = Thread { [self] in loop() }
            thread.name = "amqp watchdog"
            thread.start()
        }
    }

    func unregister(_ watch: CallWatch) {
        watches.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(watch)) }
    }

    private func loop() {
        while true {
            usleep(500_000)
            let now = Monotonic.milliseconds
            for watch in watches.withLock({ Array($0.values) }) { watch.check(now: now) }
        }
    }
}
