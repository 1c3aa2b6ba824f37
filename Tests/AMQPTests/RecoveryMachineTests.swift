import Testing
@testable import AMQP

/// Every transition of the client's recovery, with plain values.
@Suite(.timeLimit(.minutes(1))) struct RecoveryMachineTests {
    /// A machine taken through open → declare → attach to ready on connection 1.
    func ready(endpoints: Int = 1, subscriptions: [Int] = []) -> RecoveryMachine {
        var machine = RecoveryMachine(endpointCount: endpoints)
        for subscription in subscriptions { _ = machine.handle(.subscribed(subscription)) }
        if machine.state == .idle { _ = machine.handle(.start) }
        _ = machine.handle(.opened(1))
        _ = machine.handle(.declared(1))
        for subscription in subscriptions { _ = machine.handle(.attached(1, subscription)) }
        #expect(machine.state == .ready(1))
        return machine
    }

    @Test func recoveryIsOrderedConnectionTopologyConsumersThenReady() {
        var machine = RecoveryMachine(endpointCount: 2)
        #expect(machine.handle(.subscribed(7)) == [.open(1, endpoint: 0)])
        #expect(machine.state == .connecting(id: 1, endpoint: 0, tried: 0))
        #expect(machine.handle(.subscribed(3)) == [])
        #expect(machine.readyConnection == nil)
        #expect(machine.handle(.opened(1)) == [.declare(1)])
        #expect(machine.state == .declaring(1))
        #expect(machine.readyConnection == nil)
        #expect(machine.handle(.declared(1)) == [.attach(1, [3, 7])])
        #expect(machine.state == .attaching(1, pending: [3, 7]))
        #expect(machine.handle(.attached(1, 7)) == [])
        #expect(machine.readyConnection == nil)
        #expect(machine.handle(.attached(1, 3)) == [.resumeWaiters(1)])
        #expect(machine.readyConnection == 1)
        #expect(machine.attached == [3, 7])
    }

    @Test func withoutSubscriptionsTheConnectionIsReadyOnceDeclared() {
        var machine = RecoveryMachine(endpointCount: 1)
        #expect(machine.handle(.start) == [.open(1, endpoint: 0)])
        #expect(machine.handle(.start) == [])
        #expect(machine.handle(.opened(1)) == [.declare(1)])
        #expect(machine.handle(.declared(1)) == [.resumeWaiters(1)])
    }

    @Test func aFailedOpenTriesTheNextBrokerThenBacksOff() {
        var machine = RecoveryMachine(endpointCount: 3)
        _ = machine.handle(.start)
        #expect(machine.handle(.openFailed(1)) == [.open(2, endpoint: 1)])
        #expect(machine.handle(.openFailed(2)) == [.open(3, endpoint: 2)])
        #expect(machine.handle(.openFailed(3)) == [.backOff(timer: 1, attempt: 1)])
        #expect(machine.state == .backingOff(timer: 1))
        #expect(machine.handle(.timerFired(1)) == [.open(4, endpoint: 0)])
        #expect(machine.handle(.openFailed(4)) == [.open(5, endpoint: 1)])
        #expect(machine.handle(.openFailed(5)) == [.open(6, endpoint: 2)])
        #expect(machine.handle(.openFailed(6)) == [.backOff(timer: 2, attempt: 2)])
        // A timer of an earlier round changes nothing.
        #expect(machine.handle(.timerFired(1)) == [])
        #expect(machine.handle(.timerFired(2)) == [.open(7, endpoint: 0)])
        #expect(machine.handle(.opened(7)) == [.declare(7)])
        #expect(machine.handle(.declared(7)) == [.resumeWaiters(7)])
        #expect(machine.attempt == 0)
    }

    @Test func aFailedDeclarationClosesTheConnectionAndStartsOverAfterABackoff() {
        var machine = RecoveryMachine(endpointCount: 1)
        _ = machine.handle(.start)
        _ = machine.handle(.opened(1))
        #expect(machine.handle(.declareFailed(1)) == [.close(1), .backOff(timer: 1, attempt: 1)])
        // The close of that connection is already handled.
        #expect(machine.handle(.closed(1, backOff: false)) == [])
        #expect(machine.handle(.timerFired(1)) == [.open(2, endpoint: 0)])
    }

    @Test func aConnectionLostWhileAttachingStartsOverAfterABackoff() {
        var machine = RecoveryMachine(endpointCount: 1)
        _ = machine.handle(.subscribed(1))
        _ = machine.handle(.opened(1))
        _ = machine.handle(.declared(1))
        #expect(machine.handle(.closed(1, backOff: false)) == [.backOff(timer: 1, attempt: 1)])
        #expect(machine.attached == [])
        // The attach of the lost connection answers late: dropped by its connection id.
        #expect(machine.handle(.attached(1, 1)) == [])
        #expect(machine.handle(.attachFailed(1, 1)) == [])
        #expect(machine.handle(.timerFired(1)) == [.open(2, endpoint: 0)])
        #expect(machine.handle(.opened(2)) == [.declare(2)])
        #expect(machine.handle(.declared(2)) == [.attach(2, [1])])
    }

    @Test func aReadyConnectionLostReconnectsAtOnceToTheNextBroker() {
        var machine = ready(endpoints: 2, subscriptions: [1])
        #expect(machine.handle(.closed(1, backOff: false)) == [.open(2, endpoint: 1)])
        #expect(machine.readyConnection == nil)
        #expect(machine.attached == [])
        #expect(machine.handle(.opened(2)) == [.declare(2)])
        #expect(machine.handle(.declared(2)) == [.attach(2, [1])])
        #expect(machine.handle(.attached(2, 1)) == [.resumeWaiters(2)])
    }

    @Test func aConnectionThatMisbehavedIsReplacedAfterABackoff() {
        var machine = ready()
        #expect(machine.handle(.closed(1, backOff: true)) == [.backOff(timer: 1, attempt: 1)])
    }

    @Test func resultsOfOldConnectionsAreDropped() {
        var machine = ready(subscriptions: [1])
        _ = machine.handle(.closed(1, backOff: false))
        #expect(machine.handle(.declared(1)) == [])
        #expect(machine.handle(.declareFailed(1)) == [])
        #expect(machine.handle(.detached(1, 1)) == [])
        #expect(machine.handle(.reattachDue(1, 1)) == [])
        #expect(machine.handle(.closed(1, backOff: false)) == [])
        // A connection opened late for an abandoned attempt is closed.
        #expect(machine.handle(.opened(1)) == [.close(1)])
        #expect(machine.state == .connecting(id: 2, endpoint: 0, tried: 0))
    }

    @Test func aRefusedConsumeIsRetriedWithoutHoldingUpTheConnection() {
        var machine = RecoveryMachine(endpointCount: 1)
        _ = machine.handle(.subscribed(1))
        _ = machine.handle(.subscribed(2))
        _ = machine.handle(.opened(1))
        _ = machine.handle(.declared(1))
        #expect(machine.handle(.attached(1, 2)) == [])
        #expect(machine.handle(.attachFailed(1, 1)) == [.reattachLater(1, 1, failures: 1), .resumeWaiters(1)])
        #expect(machine.attached == [2])
        #expect(machine.handle(.reattachDue(1, 1)) == [.attach(1, [1])])
        #expect(machine.handle(.attachFailed(1, 1)) == [.reattachLater(1, 1, failures: 2)])
        #expect(machine.handle(.reattachDue(1, 1)) == [.attach(1, [1])])
        #expect(machine.handle(.attached(1, 1)) == [])
        #expect(machine.attached == [1, 2])
        #expect(machine.attachFailures[1] == nil)
        // Already attached: a late due changes nothing.
        #expect(machine.handle(.reattachDue(1, 1)) == [])
    }

    @Test func aLostChannelIsAttachedAgainLater() {
        var machine = ready(subscriptions: [1])
        #expect(machine.handle(.detached(1, 1)) == [.reattachLater(1, 1, failures: 1)])
        #expect(machine.handle(.detached(1, 1)) == [])
        #expect(machine.handle(.reattachDue(1, 1)) == [.attach(1, [1])])
        #expect(machine.handle(.attached(1, 1)) == [])
        #expect(machine.state == .ready(1))
    }

    @Test func subscriptionsComeAndGo() {
        var machine = ready()
        #expect(machine.handle(.subscribed(4)) == [.attach(1, [4])])
        #expect(machine.handle(.subscribed(4)) == [])
        #expect(machine.handle(.attached(1, 4)) == [])
        #expect(machine.handle(.unsubscribed(4)) == [.detach(1, 4)])
        #expect(machine.handle(.unsubscribed(4)) == [])
        // An attach that finishes after the unsubscribe is undone.
        _ = machine.handle(.subscribed(5))
        _ = machine.handle(.unsubscribed(5))
        #expect(machine.handle(.attached(1, 5)) == [.detach(1, 5)])
        #expect(machine.attached == [])
    }

    @Test func anUnsubscribeWhileAttachingCanCompleteTheAttachPhase() {
        var machine = RecoveryMachine(endpointCount: 1)
        _ = machine.handle(.subscribed(1))
        _ = machine.handle(.subscribed(2))
        _ = machine.handle(.opened(1))
        _ = machine.handle(.declared(1))
        _ = machine.handle(.attached(1, 1))
        #expect(machine.handle(.unsubscribed(2)) == [.resumeWaiters(1)])
        #expect(machine.state == .ready(1))
    }

    @Test func aSubscriptionAddedWhileAttachingJoinsThePhase() {
        var machine = RecoveryMachine(endpointCount: 1)
        _ = machine.handle(.subscribed(1))
        _ = machine.handle(.opened(1))
        _ = machine.handle(.declared(1))
        #expect(machine.handle(.subscribed(2)) == [.attach(1, [2])])
        #expect(machine.handle(.attached(1, 1)) == [])
        #expect(machine.handle(.attached(1, 2)) == [.resumeWaiters(1)])
    }

    @Test func stopClosesTheConnectionFailsWaitersAndEndsSubscriptions() {
        var machine = ready(subscriptions: [1])
        #expect(machine.handle(.stop) == [.close(1), .failWaiters, .finishSubscriptions])
        #expect(machine.state == .stopped)
        #expect(machine.handle(.start) == [])
        #expect(machine.handle(.closed(1, backOff: false)) == [])
        #expect(machine.handle(.opened(2)) == [.close(2)])
        var idle = RecoveryMachine(endpointCount: 1)
        #expect(idle.handle(.stop) == [.failWaiters, .finishSubscriptions])
    }

    @Test func stopWhileBackingOffIgnoresTheTimer() {
        var machine = RecoveryMachine(endpointCount: 1)
        _ = machine.handle(.start)
        _ = machine.handle(.openFailed(1))
        #expect(machine.handle(.stop) == [.failWaiters, .finishSubscriptions])
        #expect(machine.handle(.timerFired(1)) == [])
    }
}
