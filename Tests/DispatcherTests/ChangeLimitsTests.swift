import Foundation
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

extension FleetTests {
    /// One change cannot take the whole fleet: a cap on a step's children and on a change's
    /// steps in flight, end to end.
    @Suite(.timeLimit(.minutes(10))) struct ChangeLimitsTests {
        @Test(.timeLimit(.minutes(4))) func aStepReturningMoreChildrenThanAllowedFailsAndCreatesNone() async throws {
            let fleet = try await FleetHarness(settings: DispatcherConfiguration(maxChildrenPerStep: 3))
            let repo = try await fleet.project(
                "actions:\n  leaf: { run: 'true' }\n  wide: { run: 'true', steps: [leaf, leaf, leaf, leaf], strategy: parallel }")
            let id = try await fleet.createChange(repo, action: "wide")
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .error)
            let message = "the step returned 4 child steps; a step may have at most 3 (the dispatcher's --max-children-per-step); no child step was created and no property changed"
            #expect(tree.root?.error == message)
            #expect(tree.steps.count == 1)
            #expect(try await fleet.logs(id).contains { $0.text == message })
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(6))) func aWideChangeDoesNotStarveAOneStepChangeOnAnotherEnvironment() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2, settings: DispatcherConfiguration(maxStepsInFlightPerChange: 2))
            let leaves = Array(repeating: "leaf", count: 24).joined(separator: ", ")
            let repo = try await fleet.project(
                "actions:\n  leaf: { run: 'sleep 1' }\n  wide: { run: 'true', steps: [\(leaves)], strategy: parallel }\n  one: { run: 'echo one' }")
            _ = try await fleet.post("/projects/\(repo.project)/environments", ["code": "e2"])
            let wide = try await fleet.createChange(repo, action: "wide")
            // The wide change's children are running.
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline, try await fleet.snapshot(wide).1.steps.values.filter({ $0.action == "leaf" && $0.status == .running }).isEmpty {
                try await Task.sleep(for: .milliseconds(100))
            }
            let created = try await fleet.post(
                "/changes", ["project": .string(repo.project), "environment": "e2", "action": "one", "git_rev": "main"])
            let one = try #require(created["id"]?.stringValue)
            let clock = ContinuousClock()
            let started = clock.now
            let (oneChange, _) = try await fleet.waitForChange(one, timeout: .seconds(120))
            let waited = clock.now - started
            #expect(oneChange.status == .success)

            // It finished while the wide change was still early in its children.
            let (wideNow, wideTree) = try await fleet.snapshot(wide)
            let finished = wideTree.steps.values.filter { $0.action == "leaf" && $0.status.isFinal }.count
            print("the one-step change finished in \(waited) while \(finished) of the wide change's 24 children had finished")
            #expect(wideNow.status == .running)
            #expect(finished < 12, "the one-step change waited for \(finished) of the wide change's 24 children")
            #expect(wideTree.steps.values.filter(\.inFlight).count <= 2)

            let (wideChange, _) = try await fleet.waitForChange(wide, timeout: .seconds(300))
            #expect(wideChange.status == .success)
            await fleet.stop()
        }
    }
}
