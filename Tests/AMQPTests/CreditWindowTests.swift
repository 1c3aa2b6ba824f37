import Testing
@testable import AMQP

/// Every transition of a credit subscription's window, with plain values.
@Suite(.timeLimit(.minutes(1))) struct CreditWindowTests {
    @Test func attachingStartsOneConsumerPerFreeSlot() {
        var window = CreditWindow(capacity: 2)
        #expect(window.handle(.released, now: 0) == [])
        #expect(window.handle(.attached(prefix: "c3"), now: 0) == [.consume(tag: "c3.1"), .consume(tag: "c3.2")])
        #expect(window.consumers == 2)
        #expect(window.handle(.consumeOK(tag: "c3.1"), now: 1) == [])
        #expect(window.active == ["c3.1"])
        #expect(window.starting.map(\.tag) == ["c3.2"])
        #expect(window.handle(.consumeOK(tag: "unknown"), now: 1) == [])
    }

    @Test func aDeliveryCancelsItsConsumerAndTakesASlotUntilReleased() {
        var window = CreditWindow(capacity: 2)
        _ = window.handle(.attached(prefix: "c3"), now: 0)
        _ = window.handle(.consumeOK(tag: "c3.1"), now: 0)
        _ = window.handle(.consumeOK(tag: "c3.2"), now: 0)
        #expect(window.handle(.delivered(tag: "c3.1"), now: 5) == [.cancel(tag: "c3.1")])
        #expect(window.outstanding == 1)
        #expect(window.wanted == 1)
        #expect(window.active == ["c3.2"])
        #expect(window.handle(.delivered(tag: "c3.2"), now: 6) == [.cancel(tag: "c3.2")])
        #expect(window.wanted == 0)
        #expect(window.consumers == 0)
        #expect(window.handle(.released, now: 7) == [.consume(tag: "c3.3")])
        #expect(window.handle(.released, now: 7) == [.consume(tag: "c3.4")])
        // A release ahead of its delivery is kept, but never runs more consumers than the capacity.
        #expect(window.handle(.released, now: 8) == [])
        #expect(window.outstanding == -1)
        #expect(window.consumers == 2)
        _ = window.handle(.consumeOK(tag: "c3.3"), now: 9)
        #expect(window.handle(.delivered(tag: "c3.3"), now: 10) == [.cancel(tag: "c3.3"), .consume(tag: "c3.5")])
        #expect(window.outstanding == 0)
        #expect(window.handle(.delivered(tag: "c3.4"), now: 11) == [.cancel(tag: "c3.4")])
        #expect(window.wanted == 1)
    }

    @Test func aDeliveryForACancelledConsumerStillTakesASlot() {
        var window = CreditWindow(capacity: 1)
        _ = window.handle(.attached(prefix: "c4"), now: 0)
        _ = window.handle(.consumeOK(tag: "c4.1"), now: 0)
        #expect(window.handle(.paused(true), now: 1) == [.cancel(tag: "c4.1")])
        #expect(window.handle(.delivered(tag: "c4.1"), now: 2) == [])
        #expect(window.outstanding == 1)
        #expect(window.handle(.paused(false), now: 3) == [])
        #expect(window.handle(.released, now: 4) == [.consume(tag: "c4.2")])
    }

    @Test func pausingCancelsNewestFirstAndResumingStartsAgain() {
        var window = CreditWindow(capacity: 3)
        _ = window.handle(.attached(prefix: "c5"), now: 0)
        _ = window.handle(.consumeOK(tag: "c5.1"), now: 0)
        _ = window.handle(.consumeOK(tag: "c5.2"), now: 0)
        #expect(window.handle(.paused(true), now: 1) == [.cancel(tag: "c5.3"), .cancel(tag: "c5.2"), .cancel(tag: "c5.1")])
        #expect(window.consumers == 0)
        #expect(window.wanted == 0)
        #expect(window.handle(.paused(true), now: 1) == [])
        #expect(window.handle(.paused(false), now: 2) == [.consume(tag: "c5.4"), .consume(tag: "c5.5"), .consume(tag: "c5.6")])
    }

    @Test func aWindowStartedPausedStartsNothing() {
        var window = CreditWindow(capacity: 2, paused: true)
        #expect(window.handle(.attached(prefix: "c3"), now: 0) == [])
        #expect(window.handle(.paused(false), now: 0) == [.consume(tag: "c3.1"), .consume(tag: "c3.2")])
    }

    @Test func anUnansweredConsumeClosesTheChannel() {
        var window = CreditWindow(capacity: 2, consumeTimeout: 15_000)
        _ = window.handle(.attached(prefix: "c3"), now: 1_000)
        _ = window.handle(.consumeOK(tag: "c3.1"), now: 1_100)
        #expect(window.handle(.tick, now: 15_999) == [])
        #expect(window.handle(.tick, now: 16_000) == [.closeChannel(reason: "the broker did not answer a consume within 15 s")])
        #expect(!window.isAttached)
        #expect(window.consumers == 0)
        #expect(window.handle(.tick, now: 40_000) == [])
        // Without a channel, slots are still counted; a new channel starts what they want.
        #expect(window.handle(.delivered(tag: "c3.1"), now: 40_001) == [])
        #expect(window.outstanding == 1)
        #expect(window.handle(.attached(prefix: "c9"), now: 50_000) == [.consume(tag: "c9.3")])
    }

    @Test func aLostChannelStopsEveryConsumerButKeepsTheSlots() {
        var window = CreditWindow(capacity: 2)
        _ = window.handle(.attached(prefix: "c3"), now: 0)
        _ = window.handle(.consumeOK(tag: "c3.1"), now: 0)
        _ = window.handle(.delivered(tag: "c3.1"), now: 1)
        #expect(window.handle(.channelLost, now: 2) == [])
        #expect(window.consumers == 0)
        #expect(window.outstanding == 1)
        #expect(window.handle(.released, now: 3) == [])
        #expect(window.handle(.paused(true), now: 3) == [])
        #expect(window.handle(.paused(false), now: 3) == [])
        #expect(window.handle(.attached(prefix: "c7"), now: 4) == [.consume(tag: "c7.3"), .consume(tag: "c7.4")])
    }

    @Test func aQuietWindowWithFreeSlotsIsNoticed() {
        var window = CreditWindow(capacity: 1)
        #expect(!window.isQuiet(now: 100_000, for: 30_000))
        _ = window.handle(.attached(prefix: "c3"), now: 0)
        // Starting consumers are not yet running.
        #expect(!window.isQuiet(now: 30_000, for: 30_000))
        _ = window.handle(.consumeOK(tag: "c3.1"), now: 0)
        #expect(!window.isQuiet(now: 29_999, for: 30_000))
        #expect(window.isQuiet(now: 30_000, for: 30_000))
        _ = window.handle(.delivered(tag: "c3.1"), now: 30_001)
        // No free slot: nothing is expected to arrive.
        #expect(!window.isQuiet(now: 90_000, for: 30_000))
    }
}
