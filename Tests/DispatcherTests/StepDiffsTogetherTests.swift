import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// A step's project and environment diffs are written together or not at all.
    @Suite(.timeLimit(.minutes(6))) struct StepDiffsTogetherTests {
        @Test func whenTheEnvironmentDiffNoLongerAppliesTheProjectDiffIsNotWrittenEither() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 1)
            // The step edits both documents after a while; meanwhile the environment's /x goes.
            let edit = #"sleep 8; jq ".n = 2" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES"; jq ".x = \"changed\"" "$OPSCHAIN_ENVIRONMENT_PROPERTIES" > /tmp/e && mv /tmp/e "$OPSCHAIN_ENVIRONMENT_PROPERTIES""#
            let repo = try await fleet.project("actions:\n  edit: { run: '\(edit)' }", project: ["n": 1], environment: ["x": "original"])
            let id = try await fleet.createChange(repo, action: "edit")
            try await fleet.waitUntil("the step to start its run", timeout: .seconds(120)) {
                try await fleet.snapshot(id).1.root?.runStarted == true
            }
            _ = try await fleet.send("PATCH", "/projects/\(repo.project)/environments/e/properties", [["op": "remove", "path": "/x"]])
            let projectBefore = try await fleet.properties(repo)
            let environmentBefore = try await fleet.properties(repo, environment: true)
            #expect(environmentBefore.properties == [:])

            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .error)
            #expect(tree.root?.error?.contains("Updates made to the environment properties") == true, "\(tree.root?.error ?? "")")
            // Neither document moved: the project's diff (which alone would apply) was not written.
            #expect(try await fleet.properties(repo) == projectBefore)
            #expect(try await fleet.properties(repo, environment: true) == environmentBefore)
            #expect(projectBefore.properties == ["n": 1])
            await fleet.stop()
        }
    }
}
