import Foundation
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

/// Batches end to end: a real dispatcher (SQLite, HTTP API) and real workers over the real
/// broker and Docker engine. Steps are cheap: `deploy` succeeds unless the environment's
/// properties say `"fail": true`.
extension FleetTests {
    @Suite struct BatchRunTests {
        static let actions = """
            actions:
              deploy: { run: 'test "$(jq -r ".fail // false" "$OPSCHAIN_ENVIRONMENT_PROPERTIES")" != true' }
              slow: { run: 'sleep 2' }
            """

        /// A project with environments `prod-00` … and those in `failing` set to fail.
        static func project(_ fleet: FleetHarness, environments: Int, failing: Set<Int> = []) async throws -> String {
            try await project(environments: environments, failing: failing) { method, path, body in try await fleet.send(method, path, body) }
        }

        /// The same on a fleet of processes.
        static func project(_ fleet: ProcessFleet, environments: Int, failing: Set<Int> = []) async throws -> String {
            try await project(environments: environments, failing: failing) { method, path, body in try await fleet.api(method, path, body) }
        }

        static func project(environments: Int, failing: Set<Int>, _ send: (String, String, JSON) async throws -> Void) async throws -> String {
            let repository = try TestRepository.make([".opschain/actions.yml": actions])
            let code = "b\(UUID().uuidString.prefix(6).lowercased())"
            try await send("POST", "/projects", ["code": .string(code), "git_remote": .string(repository.path)])
            for index in 0..<environments {
                let environment = String(format: "prod-%02d", index)
                try await send("POST", "/projects/\(code)/environments", ["code": .string(environment)])
                if failing.contains(index) { try await send("PUT", "/projects/\(code)/environments/\(environment)/properties", ["fail": true]) }
            }
            // One environment the glob must leave out.
            try await send("POST", "/projects/\(code)/environments", ["code": "staging"])
            return code
        }

        static func waitForBatch(_ fleet: FleetHarness, _ id: String, timeout: Duration = .seconds(300)) async throws -> JSON {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let batch = try await fleet.get("/batches/\(id)")
                if batch["status"]?.stringValue != "running" { return batch }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw TestSetupError("batch \(id) did not finish within \(timeout)")
        }

        static func changes(_ fleet: FleetHarness, project: String) async throws -> [ChangeRecord] {
            try await fleet.store.read { db in try Store.changes(db, project: project, environment: nil, status: nil, limit: 1000) }
        }

        /// The most changes of `changes` that were unfinished at one moment (a change counts
        /// from its creation, as the batch counts it, to its end).
        static func mostAtOnce(_ changes: [ChangeRecord]) -> Int {
            changes.map { change in
                changes.count { $0.createdAt <= change.createdAt && ($0.finishedAt ?? .infinity) > change.createdAt }
            }.max() ?? 0
        }

        @Test(.timeLimit(.minutes(8)))
        func thirtyEnvironmentsFiveAtATimeStopAfterTheThirdFailureAndSkipTheRest() async throws {
            let fleet = try await FleetHarness(workers: 2, slots: 3)
            let project = try await Self.project(fleet, environments: 30, failing: [1, 3, 5])
            let created = try await fleet.post("/batches", [
                "project": .string(project), "environments": "prod-*", "action": "deploy", "git_rev": "main", "max_parallel": 5, "max_failures": 2,
            ])
            let id = try #require(created["id"]?.stringValue)
            #expect(created["counts"]?["total"] == 30)
            let batch = try await Self.waitForBatch(fleet, id)
            #expect(batch["status"] == "error")
            #expect(batch["stop_reason"]?.stringValue == "3 changes failed, more than max_failures (2); the rest did not start")
            let results = try #require(batch["results"]?.arrayValue)
            #expect(results.count == 30)
            #expect(!results.contains { $0["environment"] == "staging" })
            let failed = results.filter { $0["status"] == "error" }.compactMap { $0["environment"]?.stringValue }
            #expect(failed == ["prod-01", "prod-03", "prod-05"])
            let skipped = results.filter { $0["status"] == "skipped" }
            #expect(skipped.count >= 10, "\(skipped.count) skipped")
            #expect(skipped.allSatisfy { $0["change"] == .null && $0["reason"] == batch["stop_reason"] })
            #expect(results.allSatisfy { ["success", "error", "skipped"].contains($0["status"]?.stringValue ?? "") })
            // One change per started environment, all at the batch's one SHA, never more than five at once.
            let changes = try await Self.changes(fleet, project: project)
            #expect(changes.count == 30 - skipped.count)
            #expect(Set(changes.map(\.environmentCode)).count == changes.count)
            #expect(Set(changes.map(\.gitSha)) == [batch["git_sha"]?.stringValue ?? ""])
            #expect(Self.mostAtOnce(changes) <= 5, "\(Self.mostAtOnce(changes)) at once")
            #expect(Self.mostAtOnce(changes) >= 2)
            // Nothing started after the third failure ended.
            let third = try #require(changes.filter { $0.status == .error }.compactMap(\.finishedAt).max())
            #expect(changes.allSatisfy { $0.createdAt <= third }, "\(changes.filter { $0.createdAt > third }.map(\.environmentCode)) started after the third failure")
            // Retry runs the failed and skipped environments again as a new batch.
            let retried = try await fleet.post("/batches/\(id)/retry", nil)
            #expect(retried["retry_of"]?.stringValue == id)
            #expect(retried["counts"]?["total"]?.intValue == 3 + skipped.count)
            // Cancel cancels what runs and skips the rest.
            let retriedId = try #require(retried["id"]?.stringValue)
            _ = try await fleet.post("/batches/\(retriedId)/cancel", nil)
            let cancelled = try await Self.waitForBatch(fleet, retriedId)
            #expect(cancelled["status"] == "cancelled")
            let ends = cancelled["results"]?.arrayValue ?? []
            #expect(ends.allSatisfy { ["success", "error", "cancelled", "skipped"].contains($0["status"]?.stringValue ?? "") })
            #expect(ends.contains { $0["status"] == "skipped" && $0["reason"] == "the batch was cancelled" })
            let (again, _) = try await fleet.raw("POST", "/batches/\(retriedId)/cancel", nil)
            #expect(again == 409)
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(5)))
        func aFailingCanaryStartsNothingElse() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 3)
            let project = try await Self.project(fleet, environments: 6, failing: [0])
            let created = try await fleet.post("/batches", [
                "project": .string(project), "environments": "prod-*", "action": "deploy", "max_parallel": 3, "max_failures": 5, "canary": 1,
            ])
            let id = try #require(created["id"]?.stringValue)
            let batch = try await Self.waitForBatch(fleet, id)
            #expect(batch["status"] == "error")
            #expect(batch["stop_reason"]?.stringValue?.hasPrefix("the canary environment prod-00 did not succeed") == true)
            let results = try #require(batch["results"]?.arrayValue)
            #expect(results.map { $0["status"]?.stringValue ?? "" } == ["error"] + Array(repeating: "skipped", count: 5))
            #expect(try await Self.changes(fleet, project: project).map(\.environmentCode) == ["prod-00"])
            await fleet.stop()
        }

        /// The dispatcher is a process of its own, killed with SIGKILL (no shutdown, no last
        /// write) while the batch has changes finished, running and waiting.
        @Test(.timeLimit(.minutes(8)))
        func aDispatcherKilledMidBatchResumesAndStartsNothingTwice() async throws {
            let fleet = try ProcessFleet.onFleetVhost()
            defer { fleet.remove() }
            try await fleet.startDispatcher()
            try fleet.startWorker(slots: 3)
            let project = try await Self.project(fleet, environments: 8)
            let created = try await fleet.api("POST", "/batches", ["project": .string(project), "environments": "prod-*", "action": "slow", "max_parallel": 2])
            let id = try #require(created["id"]?.stringValue)
            try await waitUntil("two of the batch's changes finished and another running", timeout: .seconds(180)) {
                let batch = try await fleet.api("GET", "/batches/\(id)")
                return (batch["counts"]?["success"]?.intValue ?? 0) >= 2 && (batch["counts"]?["running"]?.intValue ?? 0) > 0
            }
            #expect(fleet.killDispatcher() == 128 + SIGKILL)
            // The running steps end while no dispatcher listens: their outcomes wait in the broker.
            try await waitUntil("an outcome waiting for the dead dispatcher", timeout: .seconds(60)) {
                let listed = try rabbitmqctl("list_queues", "-q", "-p", FleetHarness.vhost, "name", "messages")
                return listed.split(separator: "\n").contains { line in
                    let fields = line.split(whereSeparator: \.isWhitespace)
                    return fields.first.map(String.init) == Names.outcomesQueue && (fields.last.flatMap { Int($0) } ?? 0) > 0
                }
            }
            try await fleet.startDispatcher()
            let batch = try await fleet.waitForBatch(id)
            #expect(batch["status"] == "success", "\(batch.serialized())")
            #expect((batch["results"]?.arrayValue ?? []).map { $0["status"]?.stringValue ?? "" } == Array(repeating: "success", count: 8))
            fleet.stop()
            let store = try fleet.store()
            let changes = try await store.read { db in try Store.changes(db, project: project, environment: nil, status: nil, limit: 1000) }
            #expect(changes.count == 8)
            #expect(Set(changes.map(\.environmentCode)).count == 8)
            #expect(changes.allSatisfy { $0.status == .success })
            #expect(Self.mostAtOnce(changes) <= 2)
            // Each change's one step ran once: attempt 1, one attempt row.
            for change in changes {
                let attempts = try await store.read { db in try Store.attempts(db, changeId: change.id) }.values.flatMap { $0 }
                #expect(attempts.map(\.attempt) == [1], "change \(change.id) on \(change.environmentCode): \(attempts)")
            }
        }

        @Test(.timeLimit(.minutes(3)))
        func badBatchRequestsAreRefusedWithTheReasonAndCreateNothing() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let project = try await Self.project(fleet, environments: 2)
            let cases: [(JSON, Int, String)] = [
                (["project": .string(project), "action": "deploy"], 400, "missing \"environments\""),
                (["project": .string(project), "environments": "dev-*", "action": "deploy"], 404, "no environment of project"),
                (["project": .string(project), "environments": ["prod-00", "nope"], "action": "deploy"], 404, "has no environment nope"),
                (["project": .string(project), "environments": ["prod-00", "prod-00"], "action": "deploy"], 400, "lists prod-00 twice"),
                (["project": .string(project), "environments": "prod-*", "action": "deploy", "max_parallel": 0], 400, "\"max_parallel\" must be a whole number from 1"),
                (["project": .string(project), "environments": "prod-*", "action": "deploy", "canary": 3], 400, "only 2 environments"),
                (["project": .string(project), "environments": "prod-*", "action": "nope"], 400, "action \"nope\" is not defined"),
                (["project": "nope", "environments": "prod-*", "action": "deploy"], 404, "no project \"nope\""),
            ]
            for (body, status, message) in cases {
                let (got, answer) = try await fleet.raw("POST", "/batches", body.serialized())
                #expect(got == status, "\(body.serialized()): \(answer.serialized())")
                #expect(answer["error"]?.stringValue?.contains(message) == true, "\(body.serialized()): \(answer.serialized())")
            }
            #expect(try await fleet.get("/batches").arrayValue?.isEmpty == true)
            // A read token may list but not create.
            let reader = try await fleet.store.createToken(name: "reader", scope: .read)
            let (status, _) = try await fleet.raw("POST", "/batches", #"{"project":"\#(project)","environments":"prod-*","action":"deploy"}"#, headers: ["Authorization": "Bearer \(reader)"], authenticated: false)
            #expect(status == 403)
            await fleet.stop()
        }
    }
}
