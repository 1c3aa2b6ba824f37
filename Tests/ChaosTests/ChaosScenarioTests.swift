import Foundation
import Testing
import TestSupport

/// Short runs of the failure scenarios that need no broker fault (kill-workers,
/// dispatcher-restart, poison, worker-lost-during-run): the real `stepfleet chaos` command with
/// its own dispatcher and workers as processes, a real broker (a vhost of its own on the main
/// test node) and the real Docker engine. The full batch is `ops/chaos all`.
@Suite(.serialized) struct ChaosScenarioTests {
    static let vhost = testVhost("stepfleet-chaos-ci")

    /// The `stepfleet` binary built next to this test bundle.
    static var stepfleet: String { stepfleetExecutable }

    func run(_ scenario: String, changes: Int) throws -> String {
        let result = try runProgram(Self.stepfleet, [
            "chaos", scenario, "--changes", String(changes), "--amqp", "amqp://guest:guest@127.0.0.1:5672/\(Self.vhost)?heartbeat=2",
            "--node", "stepfleet@localhost", "--ops", repositoryRoot.appendingPathComponent("ops").path,
        ])
        #expect(result.status == 0, "stepfleet chaos \(scenario) exited \(result.status):\n\(result.output)")
        let line = result.output.split(separator: "\n").first { $0.hasPrefix("\(scenario): steps expected") }.map(String.init) ?? ""
        #expect(line.contains("lost 0, applied twice 0"), "\(result.output)")
        return line
    }

    // The invariants are what `run` checks (nothing lost, nothing applied twice, the command's
    // own checks); how many changes succeed depends on the machine's load (a step may fail as
    // "worker lost during run" when a loaded CI box starves heartbeats), so it is not asserted.

    @Test func killWorkers() throws {
        let line = try run("kill-workers", changes: 6)
        #expect(line.contains("steps expected 36, finished 36"), "\(line)")
    }

    @Test func dispatcherRestart() throws {
        let line = try run("dispatcher-restart", changes: 6)
        #expect(line.contains("steps expected 36"), "\(line)")
    }

    @Test func poison() throws {
        let line = try run("poison", changes: 4)
        #expect(line.contains("steps expected 24"), "\(line)")
    }

    @Test func workerLostDuringRun() throws {
        let line = try run("worker-lost-during-run", changes: 2)
        #expect(!line.contains("FAILED"), "\(line)")
    }
}
