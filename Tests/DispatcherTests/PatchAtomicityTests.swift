import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// A PATCH whose operations all apply but the last is refused whole: the stored document and
    /// its version stay as they were, for a project's properties and an environment's.
    @Suite(.timeLimit(.minutes(3))) struct PatchAtomicityTests {
        @Test func aPatchWhoseLastOperationFailsChangesNothingThroughTheAPI() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["k": 1, "list": [1, 2]], environment: ["k": 1, "list": [1, 2]])
            let patch = #"[{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/list/0"}, {"op": "remove", "path": "/zzz"}]"#
            for (path, environment) in [("/projects/\(repo.project)/properties", false), ("/projects/\(repo.project)/environments/e/properties", true)] {
                let before = try await fleet.properties(repo, environment: environment)
                let (status, answer) = try await fleet.raw("PATCH", path, patch)
                #expect(status == 409, "\(path): \(status) \(answer)")
                #expect(answer["error"]?.stringValue?.contains("patch operation 2 (remove /zzz)") == true, "\(path): \(answer)")
                let after = try await fleet.properties(repo, environment: environment)
                #expect(after == before, "\(path): \(before) became \(after)")
                // The store still takes a patch there: what was refused was this one alone.
                let (good, written) = try await fleet.raw("PATCH", path, #"[{"op": "add", "path": "/b", "value": 2}]"#)
                #expect(good == 200, "\(path): \(good) \(written)")
                #expect(try await fleet.properties(repo, environment: environment).version == before.version + 1)
            }
            await fleet.stop()
        }
    }
}
