import Foundation
import Testing
import TestSupport

/// SIGTERM to real worker and dispatcher processes while changes run (`stepfleet chaos
/// sigterm-workers`, `sigterm-dispatcher`): each exits by itself with status 0 within its bound
/// (a worker: its 30 s grace period and 15 s; the dispatcher: 15 s), a worker leaves no container,
/// and after the restarts every change succeeds with no step lost, applied twice or run twice.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ShutdownTests {
    static let vhost = testVhost("stepfleet-chaos-shutdown")

    func run(_ scenario: String, changes: Int) async throws -> String {
        let result = try await runProgramDetached(stepfleetExecutable, [
            "chaos", scenario, "--changes", String(changes), "--workers", "3",
            "--amqp", "amqp://guest:guest@127.0.0.1:5672/\(Self.vhost)?heartbeat=2",
            "--node", "stepfleet@localhost", "--ops", repositoryRoot.appendingPathComponent("ops").path,
        ])
        #expect(result.status == 0, "stepfleet chaos \(scenario) exited \(result.status):\n\(result.output)")
        #expect(result.output.contains("lost 0, applied twice 0"), "\(result.output)")
        #expect(!result.output.contains("FAILED"), "\(result.output)")
        return result.output
    }

    @Test func sigtermToWorkersUnderLoad() async throws {
        let output = try await run("sigterm-workers", changes: 4)
        #expect(output.contains("steps expected 24, finished 24"), "\(output)")
        // At least one worker was stopped while it ran steps, and exited 0.
        #expect(output.split(separator: "\n").contains { $0.contains("sigterm-workers: worker ") && $0.contains("exited 0 after") && !$0.contains("(0 steps running)") }, "\(output)")
    }

    @Test func sigtermToTheDispatcherUnderLoad() async throws {
        let output = try await run("sigterm-dispatcher", changes: 4)
        #expect(output.contains("steps expected 24, finished 24"), "\(output)")
        #expect(output.components(separatedBy: "sigterm-dispatcher: the dispatcher").count - 1 == 2, "\(output)")
    }
}
