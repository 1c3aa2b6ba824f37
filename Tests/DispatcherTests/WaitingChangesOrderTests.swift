import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// Changes on one project environment run one at a time, the waiting ones in the order
    /// they were created.
    @Suite(.timeLimit(.minutes(8))) struct WaitingChangesOrderTests {
        @Test func fourChangesOnOneEnvironmentRunOneAtATimeInCreationOrder() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 4)
            let repo = try await fleet.project("actions:\n  slow: { run: 'sleep 1' }")
            var ids: [String] = []
            for _ in 0..<4 { ids.append(try await fleet.createChange(repo, action: "slow")) }
            // The three later ones wait together (the first builds its image, then sleeps).
            for id in ids.dropFirst() { #expect(try await fleet.snapshot(id).0.status == .pending, "\(id)") }
            var changes: [ChangeRecord] = []
            for id in ids { changes.append(try await fleet.waitForChange(id).0) }
            #expect(changes.allSatisfy { $0.status == .success })
            for (earlier, later) in zip(changes, changes.dropFirst()) {
                let laterStart = try #require(later.startedAt)
                let earlierEnd = try #require(earlier.finishedAt)
                #expect(laterStart >= earlierEnd, "change \(later.id) started before \(earlier.id), created before it, had finished")
            }
            await fleet.stop()
        }
    }
}
