import Foundation
import Protocol
import Testing
@testable import StepRunner

/// How the action's command ends, as `opschain-action` reports it: its own exit status, or the
/// signal that killed it (128 + the signal's number, and said so), run in the repository with
/// the step's environment and nothing else of ours.
extension ActionRunnerTests {
    @Test func aCommandKilledByASignalIsSaidToBe() throws {
        let sandbox = try Sandbox(actions: "actions:\n  die: { run: 'kill -TERM $$; sleep 5' }")
        #expect(sandbox.runner.run(action: "die") == 128 + SIGTERM)
        #expect(try sandbox.result().error == "the command was killed by signal \(SIGTERM)")
    }

    @Test func anExitStatusAbove128IsNotTakenForASignal() throws {
        let sandbox = try Sandbox(actions: "actions:\n  high: { run: 'exit 143' }")
        #expect(sandbox.runner.run(action: "high") == 143)
        #expect(try sandbox.result().error == "the command exited with status 143")
    }

    @Test func theCommandRunsInTheRepositoryWithTheStepsEnvironment() throws {
        // The repository is the folder above the step context's; REGION comes as a property.
        let sandbox = try Sandbox(
            actions: """
                actions:
                  where: { run: 'test "$(pwd -P)" = "$(cd "$(dirname "$OPSCHAIN_STEP_CONTEXT")/.." && pwd -P)" && test "$OPSCHAIN_ACTION" = where && test "$REGION" = eu' }
                """,
            environment: ["env": ["REGION": "eu"]])
        #expect(sandbox.runner.run(action: "where") == 0)
        #expect(try sandbox.result().error == nil)
    }

    @Test func aMissingShellIsNamed() throws {
        let sandbox = try Sandbox(actions: "actions:\n  any: { run: 'true' }")
        var runner = sandbox.runner
        runner.shell = "/nonexistent/sh"
        #expect(runner.run(action: "any") == 1)
        #expect(try sandbox.result().error == "cannot start /nonexistent/sh: no such executable")
    }
}
