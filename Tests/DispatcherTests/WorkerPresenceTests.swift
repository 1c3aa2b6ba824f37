import Foundation
import Protocol
import Testing
@testable import Dispatcher

/// The workers page lists idle workers: a real worker on the real broker that runs no step
/// announces itself, and the dispatcher's `GET /workers` (and the dashboard's `/ui/fleet`) lists
/// it, with its pool and slots, within two announcement intervals.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct WorkerPresenceTests {
        @Test func anIdleWorkerIsListedWithinSeconds() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let name = "idle-\(UUID().uuidString.prefix(6).lowercased())"
            let started = ContinuousClock.now
            try await fleet.startWorker(0, slots: 3, name: name)
            var listed: JSON?
            try await fleet.waitUntil("the idle worker \(name) in GET /workers", timeout: .seconds(15)) {
                listed = try await fleet.get("/workers").arrayValue?.first { $0["name"]?.stringValue == name }
                return listed != nil
            }
            let elapsed = ContinuousClock.now - started
            print("WorkerPresenceTests: idle worker listed \(elapsed) after its start")
            let worker = try #require(listed)
            #expect(worker["pool"] == "default")
            #expect(worker["slots"] == 3)
            #expect(worker["slots_in_use"] == 0)
            #expect(worker["draining"] == false)
            #expect(worker["running"] == [])
            #expect((worker["last_heard_seconds_ago"]?.intValue ?? 99) <= 10)
            let dashboard = try await fleet.get("/ui/fleet")
            #expect(dashboard["workers"]?.arrayValue?.contains { $0["name"]?.stringValue == name } == true)
            await fleet.stop()
        }
    }
}
