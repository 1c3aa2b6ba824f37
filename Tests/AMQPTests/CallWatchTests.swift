import Foundation
import Testing
@testable import AMQP

/// The watchdog that bounds every librabbitmq call, on a real socket pair.
@Suite(.timeLimit(.minutes(1))) struct CallWatchTests {
    @Test func aCallThatOverrunsShutsTheSocketDownOnce() throws {
        var ends: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        let fired = LockedValue<[String]>([])
        let watch = CallWatch(limitMilliseconds: 1_000) { operation, _ in fired.withLock { $0.append(operation) } }
        watch.setDescriptor(ends[0])
        watch.enter("publish")
        let entered = Monotonic.milliseconds
        #expect(!watch.check(now: entered + 999))
        #expect(fired.value.isEmpty)
        #expect(watch.check(now: entered + 1_000))
        #expect(fired.value == ["publish"])
        #expect(!watch.check(now: entered + 5_000))
        // The peer sees the end of the stream: a call blocked on this socket returns.
        var byte: UInt8 = 0
        #expect(read(ends[1], &byte, 1) == 0)
    }

    @Test func anIdleThreadOrAClosedConnectionIsNeverShutDown() throws {
        let watch = CallWatch(limitMilliseconds: 10) { _, _ in Issue.record("fired") }
        watch.enter("read frame")
        watch.idle()
        #expect(!watch.check(now: Monotonic.milliseconds + 60_000))
        watch.enter("publish")
        watch.setDescriptor(-1)
        #expect(!watch.check(now: Monotonic.milliseconds + 60_000))
    }

    @Test func eachCallGetsItsOwnDeadline() {
        var ends: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        let watch = CallWatch(limitMilliseconds: 1_000) { _, _ in }
        watch.setDescriptor(ends[0])
        watch.enter("declare queue")
        usleep(50_000)
        // A new call starts its own clock: the thread is busy, not stuck.
        watch.enter("bind queue")
        let entered = Monotonic.milliseconds
        #expect(!watch.check(now: entered + 990))
        #expect(watch.check(now: entered + 1_100))
    }
}
