import Foundation
import Protocol
import TestSupport
import Testing

/// The `stepfleet` command line against a real fleet: one command follows a change, with its
/// steps' logs, and says by its exit code how the change ended.
extension FleetTests {
    @Suite(.timeLimit(.minutes(5))) struct CLIFollowTests {
        static let actions = """
            actions:
              greet: { run: "echo hello-from-the-step" }
              boom: { run: "echo about-to-fail >&2; exit 3" }
            """

        /// Runs the built `stepfleet` against the fleet's API, off Swift's cooperative threads
        /// (the dispatcher under test needs them while the command waits).
        static func stepfleet(_ fleet: FleetHarness, _ arguments: [String]) async throws -> (status: Int32, output: String) {
            let token = try #require(fleet.token.value)
            let script = #"STEPFLEET_SERVER="$1" STEPFLEET_TOKEN="$2" exec "$0" "${@:3}""#
            let argv = ["-c", script, stepfleetExecutable, "http://127.0.0.1:\(fleet.port)", token] + arguments
            return try await withCheckedThrowingContinuation { continuation in
                DispatchQueue.global().async {
                    continuation.resume(with: Result { try runProgram("/bin/bash", argv) })
                }
            }
        }

        @Test func changeCreateFollowLogsShowsTheLogAndExitsByTheOutcome() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project(Self.actions)
            let succeeded = try await Self.stepfleet(fleet, ["change", "create", "--project", repo.project, "--environment", "e", "--action", "greet", "--follow", "--logs"])
            #expect(succeeded.status == 0, "\(succeeded.output)")
            #expect(succeeded.output.contains("[greet#1] stdout: hello-from-the-step"), "\(succeeded.output)")
            #expect(succeeded.output.contains("└─ greet [success]"), "\(succeeded.output)")

            let failed = try await Self.stepfleet(fleet, ["change", "create", "--project", repo.project, "--environment", "e", "--action", "boom", "--follow", "--logs"])
            #expect(failed.status == 1, "\(failed.output)")
            #expect(failed.output.contains("[boom#1] stderr: about-to-fail"), "\(failed.output)")
            #expect(failed.output.contains("└─ boom [error]"), "\(failed.output)")

            let shown = try await Self.stepfleet(fleet, ["properties", "show", "--project", repo.project])
            // The harness wrote {} over the first (empty) version: still version 1.
            #expect(shown.status == 0 && shown.output.contains("version 1 (properties set/patch --version 1"), "\(shown.output)")
            await fleet.stop()
        }
    }
}
