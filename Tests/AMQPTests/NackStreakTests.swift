import Testing
@testable import AMQP

/// A broken publish channel told from refused messages, with plain values.
@Suite(.timeLimit(.minutes(1))) struct NackStreakTests {
    @Test func nacksInARowReplaceTheChannelThenTheConnection() {
        var streak = NackStreak(limit: 3)
        #expect(streak.nacked() == .carryOn)
        #expect(streak.nacked() == .carryOn)
        #expect(streak.nacked() == .replaceChannel(nacks: 3))
        #expect(streak.nacked(2) == .carryOn)
        #expect(streak.nacked(5) == .failConnection(nacks: 7))
        // The new connection starts afresh.
        #expect(streak.nacked() == .carryOn)
        #expect(streak.replaced == 0)
    }

    @Test func anAckBetweenNacksMeansTheChannelWorks() {
        var streak = NackStreak(limit: 3)
        _ = streak.nacked(2)
        streak.acked()
        #expect(streak.nacked(2) == .carryOn)
        #expect(streak.nacked() == .replaceChannel(nacks: 3))
        streak.acked()
        // After an ack on the new channel, a streak replaces the channel again, not the connection.
        #expect(streak.nacked(3) == .replaceChannel(nacks: 3))
    }
}
