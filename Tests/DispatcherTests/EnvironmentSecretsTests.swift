import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// Secrets under an environment's `opschain.secrets` are masked as a project's are: in the
    /// properties listing, in the step's log and in the conflict log of a diff that failed.
    @Suite(.timeLimit(.minutes(6))) struct EnvironmentSecretsTests {
        static let secret = "env-secret-\(UInt32.random(in: 100_000...999_999))-value"

        @Test func anEnvironmentSecretIsMaskedInListingsLogsAndTheConflictLog() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 1)
            let action = #"sleep 8; echo "value $(jq -r .opschain.secrets.token "$OPSCHAIN_ENVIRONMENT_PROPERTIES")"; jq ".x = \"changed\"" "$OPSCHAIN_ENVIRONMENT_PROPERTIES" > /tmp/e && mv /tmp/e "$OPSCHAIN_ENVIRONMENT_PROPERTIES""#
            let repo = try await fleet.project(
                "actions:\n  leak: { run: '\(action)' }", environment: ["opschain": ["secrets": ["token": .string(Self.secret)]], "x": "original"])
            let path = "/projects/\(repo.project)/environments/e/properties"
            let listed = try await fleet.get(path)
            #expect(listed["properties"]?["opschain"]?["secrets"]?["token"] == "****", "\(listed)")
            #expect(!listed.serialized().contains(Self.secret))

            let id = try await fleet.createChange(repo, action: "leak")
            try await fleet.waitUntil("the step to run", timeout: .seconds(120)) { try await fleet.snapshot(id).1.root?.runStarted == true }
            // /x goes while the step runs: its environment diff conflicts, and the dispatcher
            // writes the documents involved to the change's log.
            _ = try await fleet.send("PATCH", path, [["op": "remove", "path": "/x"]])
            let (change, _) = try await fleet.waitForChange(id)
            #expect(change.status == .error)
            let log = try await fleet.logs(id).map(\.text)
            #expect(log.contains("value ****"), "\(log)")
            #expect(log.contains { $0.hasPrefix("original environment properties:") }, "\(log)")
            #expect(!log.joined(separator: "\n").contains(Self.secret), "\(log.filter { $0.contains(Self.secret) })")
            let (_, shown) = try await fleet.raw("GET", "/changes/\(id)/logs", nil)
            #expect(shown.stringValue?.contains("original environment properties:") == true)
            #expect(!shown.serialized().contains(Self.secret))
            // Still stored as written.
            #expect(try await fleet.properties(repo, environment: true).properties["opschain"]?["secrets"]?["token"] == .string(Self.secret))
            await fleet.stop()
        }
    }
}
