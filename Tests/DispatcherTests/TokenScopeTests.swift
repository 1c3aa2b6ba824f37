import Foundation
import GRDB
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

/// Issue 11, item 13: tokens expire and have scopes; list limits hold.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct TokenScopeTests {
        @Test func aReadTokenOnlyReadsAndAnExpiredTokenIsRefused() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let reader = try await fleet.store.createToken(name: "reader", scope: .read)
            let read = ["Authorization": "Bearer \(reader)"]
            #expect(try await fleet.raw("GET", "/projects", nil, headers: read, authenticated: false).0 == 200)
            #expect(try await fleet.raw("GET", "/changes", nil, headers: read, authenticated: false).0 == 200)
            for (method, path, body) in [("POST", "/projects", #"{"code": "p", "git_remote": "/tmp/x"}"#), ("PUT", "/projects/p/properties", "{}"),
                                         ("PATCH", "/projects/p/properties", "[]"), ("POST", "/changes/x/cancel", nil)] {
                let (status, answer) = try await fleet.raw(method, path, body, headers: read, authenticated: false)
                #expect(status == 403, "\(method) \(path): \(answer)")
                #expect(answer["error"]?.stringValue?.contains("read-only") == true && answer["error"]?.stringValue?.contains("--scope operator") == true, "\(answer)")
            }
            #expect(try await fleet.get("/projects").arrayValue?.isEmpty == true)

            let expired = try await fleet.store.createToken(name: "old", scope: .operator, expiresAt: Date().timeIntervalSince1970 - 1)
            let (status, answer) = try await fleet.raw("GET", "/projects", nil, headers: ["Authorization": "Bearer \(expired)"], authenticated: false)
            #expect(status == 401, "\(answer)")
            #expect(answer["error"]?.stringValue?.contains("expired") == true && answer["error"]?.stringValue?.contains("token create") == true, "\(answer)")
            let later = try await fleet.store.createToken(name: "later", scope: .operator, expiresAt: Date().timeIntervalSince1970 + 3600)
            // (project create checks the remote at once: a real repository.)
            let remote = try TestRepository.make(["a": "a"]).path
            #expect(try await fleet.raw("POST", "/projects", #"{"code": "ok", "git_remote": "\#(remote)"}"#, headers: ["Authorization": "Bearer \(later)"], authenticated: false).0 == 201)

            let listed = try await fleet.store.tokens().map { "\($0.name) \($0.scope.rawValue) \($0.expiresAt == nil ? "never" : "expires")" }
            #expect(listed == ["fleet-tests operator never", "later operator expires", "old operator expires", "reader read never"])
            await fleet.stop()
        }

        @Test func listLimitsOutsideTheirRangeAreRefused() async throws {
            let fleet = try await FleetHarness(workers: 0)
            for limit in ["-1", "0", "1001", "abc", "1e3", "", "99999999999999999999"] {
                let (status, answer) = try await fleet.raw("GET", "/changes?limit=\(limit)", nil)
                #expect(status == 400, "limit=\(limit): \(answer)")
                #expect(answer["error"]?.stringValue?.contains("from 1 to 1000") == true, "\(answer)")
            }
            #expect(try await fleet.raw("GET", "/changes?limit=1000", nil).0 == 200)
            #expect(try await fleet.raw("GET", "/changes?limit=5", nil).0 == 200)
            await fleet.stop()
        }

        @Test func tokensMadeBeforeScopesKeepWorkingAsOperators() async throws {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("v3-\(UUID().uuidString.prefix(8)).sqlite").path
            defer { for suffix in ["", "-wal", "-shm", ".key"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
            // A v3 database (before scopes) with one token.
            let queue = try DatabaseQueue(path: path)
            try Schema.migrator.migrate(queue, upTo: "v3: API tokens")
            try await queue.write { db in try db.execute(sql: "INSERT INTO api_tokens VALUES ('old-ops', ?, 0)", arguments: [Store.digest("sft_old")]) }
            try queue.close()
            let store = try Store(path: path)
            let grant = try #require(try await store.grant(for: "sft_old"))
            #expect(grant.scope == .operator && grant.expiresAt == nil)
        }
    }
}
