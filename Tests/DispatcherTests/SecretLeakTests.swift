import Foundation
import Protocol
import Testing
@testable import Dispatcher

/// Issue 11, item 4: no API answer may hold a secret value, whatever patch is sent.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct SecretLeakTests {
        static let secret = "s3cr3t-api-key-value"

        @Test func patchesThatWouldReadSecretsAreRefused() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["opschain": ["secrets": ["api_key": .string(Self.secret), "n": 12345]], "k": 1])
            let path = "/projects/\(repo.project)/properties"
            let before = try await fleet.properties(repo)
            let attacks: [(String, String)] = [
                (#"[{"op": "test", "path": "/opschain/secrets", "value": 0}]"#, "a test at, under or above /opschain/secrets"),
                (#"[{"op": "test", "path": "/opschain/secrets/api_key", "value": "guess"}]"#, "a test at, under or above"),
                (#"[{"op": "test", "path": "/opschain", "value": 0}]"#, "a test at, under or above"),
                (#"[{"op": "test", "path": "", "value": 0}]"#, "a test at, under or above"),
                (#"[{"op": "copy", "from": "/opschain/secrets/api_key", "path": "/leak"}]"#, "cannot be copied or moved"),
                (#"[{"op": "copy", "from": "/opschain/secrets", "path": "/leak"}]"#, "cannot be copied or moved"),
                (#"[{"op": "copy", "from": "/opschain", "path": "/leak"}]"#, "cannot be copied or moved"),
                (#"[{"op": "move", "from": "/opschain/secrets/api_key", "path": "/leak"}]"#, "cannot be copied or moved"),
                (#"[{"op": "move", "from": "/opschain", "path": "/leak"}]"#, "cannot be copied or moved"),
                (#"[{"op": "add", "path": "/x", "value": 1}, {"op": "copy", "from": "/opschain/secret~73", "path": "/leak"}]"#, "invalid patch"),
            ]
            for (patch, reason) in attacks {
                let (status, answer) = try await fleet.raw("PATCH", path, patch)
                #expect(status == 400, "\(patch): \(status) \(answer)")
                #expect(answer["error"]?.stringValue?.contains(reason) == true, "\(patch): \(answer)")
                #expect(!answer.serialized().contains(Self.secret) && !answer.serialized().contains("12345"), "\(patch): \(answer)")
            }
            #expect(try await fleet.properties(repo) == before)
            let shown = try await fleet.get(path).serialized()
            #expect(!shown.contains(Self.secret) && !shown.contains("leak"), "\(shown)")

            // Writing stays allowed: into the secrets, and tests elsewhere.
            let written = try await fleet.send("PATCH", path, [
                ["op": "test", "path": "/k", "value": 1],
                ["op": "add", "path": "/opschain/secrets/other", "value": "new-secret-value"],
                ["op": "copy", "from": "/k", "path": "/opschain/secrets/copied"],
            ])
            #expect(!written.serialized().contains("new-secret-value"))
            #expect(try await fleet.properties(repo).properties["opschain"]?["secrets"]?["other"] == "new-secret-value")
            await fleet.stop()
        }

        @Test func aConflictMessageNeverQuotesASecret() async throws {
            let fleet = try await FleetHarness(workers: 0)
            // The same value outside the secrets subtree: a failed test quotes it, masked.
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["opschain": ["secrets": ["api_key": .string(Self.secret)]], "copy": .string(Self.secret)])
            let (status, answer) = try await fleet.raw("PATCH", "/projects/\(repo.project)/properties", #"[{"op": "test", "path": "/copy", "value": "x"}]"#)
            #expect(status == 409, "\(answer)")
            #expect(answer["error"]?.stringValue?.contains("test failed") == true, "\(answer)")
            #expect(!answer.serialized().contains(Self.secret), "\(answer)")
            await fleet.stop()
        }
    }
}
