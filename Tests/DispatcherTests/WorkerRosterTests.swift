@testable import Dispatcher
import Protocol
import Testing

/// The roster of announced workers: bounded, and no broker account speaks for another's worker.
@Suite(.timeLimit(.minutes(1)))
struct WorkerRosterTests {
    private func presence(_ worker: String, slots: Int = 2) -> WorkerPresence {
        WorkerPresence(worker: worker, pool: "default", slots: slots, slotsInUse: 0, draining: false, at: 0)
    }

    @Test func aWorkerNameAnotherUserAnnouncedIsRefusedUntilItGoesStale() {
        let roster = WorkerRoster()
        #expect(roster.record(presence("w1"), brokerUser: "worker-a", now: 1_000))
        #expect(!roster.record(presence("w1", slots: 99), brokerUser: "worker-b", now: 1_001))
        #expect(roster.recent(now: 1_002).map(\.brokerUser) == ["worker-a"])
        #expect(roster.recent(now: 1_002).map(\.presence.slots) == [2])
        // Its own user updates it at any time; another may take the name once it has gone quiet.
        #expect(roster.record(presence("w1", slots: 3), brokerUser: "worker-a", now: 1_003))
        #expect(roster.record(presence("w1", slots: 4), brokerUser: "worker-b", now: 1_003 + FleetView.window + 1))
        #expect(roster.recent(now: 1_004 + FleetView.window).map(\.brokerUser) == ["worker-b"])
    }

    @Test func aFullRosterDropsStaleWorkersFirstThenRefusesNewNamesButUpdatesKnownOnes() {
        let roster = WorkerRoster(capacity: 2)
        #expect(roster.record(presence("old"), brokerUser: "u", now: 0))
        #expect(roster.record(presence("w1"), brokerUser: "u", now: FleetView.window))
        // "old" is past the window: it makes room.
        #expect(roster.record(presence("w2"), brokerUser: "u", now: FleetView.window + 1))
        #expect(Set(roster.recent(now: FleetView.window + 2).map(\.presence.worker)) == ["w1", "w2"])
        // Full of fresh workers: a new name is refused, a known one still updates.
        #expect(!roster.record(presence("w3"), brokerUser: "u", now: FleetView.window + 3))
        #expect(roster.record(presence("w2", slots: 5), brokerUser: "u", now: FleetView.window + 4))
        #expect(roster.recent(now: FleetView.window + 5).first { $0.presence.worker == "w2" }?.presence.slots == 5)
    }
}
