import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    @Suite(.timeLimit(.minutes(10))) struct APITests {
        @Test func badRequestsGet4xxAndChangeNothing() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["k": 1])
            let before = try await fleet.properties(repo)
            let cases: [(String, String, String?, [String: String], Int, String)] = [
                ("POST", "/projects", "{bad json", [:], 400, "not valid JSON"),
                ("POST", "/projects", #"{"code": "Bad Code!", "git_remote": "/x"}"#, [:], 400, "must be 1 to 64"),
                ("POST", "/projects", #"{"code": "\#(repo.project)", "git_remote": "/x"}"#, [:], 409, "exists already"),
                ("GET", "/projects/nope", nil, [:], 404, "no project"),
                ("PUT", "/projects/\(repo.project)/properties", "[1,2]", [:], 400, "must be a JSON object"),
                ("PUT", "/projects/\(repo.project)/properties", #"{"k": 2}"#, ["If-Match": "1"], 409, "not 1"),
                ("PATCH", "/projects/\(repo.project)/properties", #"[{"op": "remove", "path": "/missing"}]"#, [:], 409, "does not apply"),
                ("PATCH", "/projects/\(repo.project)/properties", #"[{"op": "jump"}]"#, [:], 400, "unknown operation"),
                ("POST", "/changes", #"{"project": "\#(repo.project)", "environment": "e"}"#, [:], 400, "missing \"action\""),
                ("POST", "/changes", #"{"project": "\#(repo.project)", "environment": "zz", "action": "a"}"#, [:], 404, "no environment"),
                ("POST", "/changes", #"{"project": "\#(repo.project)", "environment": "e", "action": "a", "git_rev": "no-such-branch"}"#, [:], 400, "is not a branch, tag or full SHA"),
                ("GET", "/changes?status=sideways", nil, [:], 400, "unknown status"),
                ("POST", "/changes/nope/cancel", nil, [:], 404, "no change"),
                // Found by schemathesis (ops/fuzz-api): a retry body that is not JSON was a 500.
                ("POST", "/changes/nope/retry", "\u{0}", [:], 400, "not valid JSON"),
                ("POST", "/changes/nope/retry", "[1]", [:], 400, "must be a JSON object"),
                ("POST", "/projects", String(repeating: " ", count: 2 << 20), [:], 413, "over 1 MiB"),
            ]
            for (method, path, body, headers, status, message) in cases {
                let (got, answer) = try await fleet.raw(method, path, body, headers: headers)
                #expect(got == status, "\(method) \(path): \(got) \(answer)")
                #expect(answer["error"]?.stringValue?.contains(message) == true, "\(method) \(path): \(answer)")
            }
            #expect(try await fleet.properties(repo) == before)
            #expect(try await fleet.get("/changes").arrayValue?.isEmpty == true)

            // The good paths: a versioned PUT and an RFC 6902 PATCH.
            let put = try await fleet.send("PUT", "/projects/\(repo.project)/properties", ["k": 2], headers: ["If-Match": "\(before.version)"])
            #expect(put["version"]?.intValue == before.version + 1)
            let patched = try await fleet.send("PATCH", "/projects/\(repo.project)/properties", [["op": "add", "path": "/list", "value": [1]]])
            #expect(patched["properties"] == ["k": 2, "list": [1]])
            #expect(try await fleet.get("/healthz")["status"] == "ok")
            await fleet.stop()
        }
    }
}

extension FleetTests {
    @Suite(.timeLimit(.minutes(10))) struct APIAuthTests {
        @Test func everyEndpointButHealthzWantsAValidToken() async throws {
            let fleet = try await FleetHarness(workers: 0)
            for (method, path) in [("GET", "/projects"), ("POST", "/projects"), ("GET", "/changes"), ("GET", "/metrics"), ("GET", "/changes/x/logs")] {
                let (status, answer) = try await fleet.raw(method, path, #"{"code": "p", "git_remote": "/x"}"#, authenticated: false)
                #expect(status == 401, "\(method) \(path)")
                #expect(answer["error"]?.stringValue?.contains("needs a token") == true, "\(answer)")
                let (wrong, wrongAnswer) = try await fleet.raw(method, path, nil, headers: ["Authorization": "Bearer sft_nope"], authenticated: false)
                #expect(wrong == 401 && wrongAnswer["error"]?.stringValue?.contains("not valid") == true, "\(wrongAnswer)")
            }
            #expect(try await fleet.raw("GET", "/healthz", nil, authenticated: false).0 == 200)
            #expect(try await fleet.get("/projects").arrayValue?.isEmpty == true)

            // Only the hash is stored; a revoked token is refused.
            let token = try await fleet.store.createToken(name: "ops")
            let stored = try await fleet.store.read { db in try String.fetchAll(db, sql: "SELECT sha256 FROM api_tokens") }
            #expect(!stored.contains(token) && stored.contains(Store.digest(token)))
            #expect(try await fleet.raw("GET", "/projects", nil, headers: ["Authorization": "Bearer \(token)"], authenticated: false).0 == 200)
            try await fleet.store.revokeToken(name: "ops")
            #expect(try await fleet.raw("GET", "/projects", nil, headers: ["Authorization": "Bearer \(token)"], authenticated: false).0 == 401)
            await #expect(throws: StoreError.conflict("a token named \"fleet-tests\" exists already")) { try await fleet.store.createToken(name: "fleet-tests") }
            await fleet.stop()
        }
    }
}

extension FleetTests {
    @Suite(.timeLimit(.minutes(10))) struct SecretPropertyTests {
        @Test func secretPropertiesAreMaskedInListingsAndKeptWhenWrittenBack() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["opschain": ["secrets": ["token": "abc-123-secret"]], "k": 1])
            let path = "/projects/\(repo.project)/properties"
            let shown = try await fleet.get(path)
            #expect(shown["properties"] == ["opschain": ["secrets": ["token": "****"]], "k": 1])
            #expect(!shown.serialized().contains("abc-123-secret"))
            // Written back as read (with an edit elsewhere): the secret keeps its value.
            guard case .object(var members) = shown["properties"]! else { return }
            members["k"] = 2
            let put = try await fleet.send("PUT", path, .object(members))
            #expect(put["properties"]?["opschain"]?["secrets"]?["token"] == "****")
            #expect(try await fleet.properties(repo).properties == ["opschain": ["secrets": ["token": "abc-123-secret"]], "k": 2])
            let patched = try await fleet.send("PATCH", path, [["op": "replace", "path": "/opschain/secrets/token", "value": "rotated-456"]])
            #expect(!patched.serialized().contains("rotated-456"))
            #expect(try await fleet.properties(repo).properties["opschain"]?["secrets"]?["token"] == "rotated-456")
            await fleet.stop()
        }
    }
}
