import Foundation
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

extension FleetTests {
    /// `POST /changes/ID/retry`: of a cancelled change too; with `refresh_sha` the retry runs
    /// the revision's current commit, without it the failed change's commit.
    @Suite(.timeLimit(.minutes(8))) struct RetryTests {
        @Test func aRetryKeepsTheCommitUnlessAskedToRefreshIt() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("actions:\n  check: { run: 'test -f fixed' }")
            let id = try await fleet.createChange(repo, action: "check")
            let (failed, _) = try await fleet.waitForChange(id)
            #expect(failed.status == .error)
            #expect(failed.gitSha == repo.sha)

            // The fix lands on main.
            try "yes\n".write(toFile: repo.path + "/fixed", atomically: true, encoding: .utf8)
            try TestRepository.git(repo.path, "add", "fixed")
            try TestRepository.git(repo.path, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "-m", "fix")
            let fixed = try TestRepository.git(repo.path, "rev-parse", "HEAD").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(fixed != repo.sha)

            let same = try await fleet.post("/changes/\(id)/retry", [:])
            let sameId = try #require(same["id"]?.stringValue)
            let (again, _) = try await fleet.waitForChange(sameId)
            #expect(again.gitSha == repo.sha)
            #expect(again.status == .error)

            let refreshed = try await fleet.post("/changes/\(sameId)/retry", ["refresh_sha": true])
            let refreshedId = try #require(refreshed["id"]?.stringValue)
            #expect(refreshed["retry_of"]?.stringValue == sameId)
            let (done, _) = try await fleet.waitForChange(refreshedId)
            #expect(done.gitSha == fixed)
            #expect(done.status == .success)
            await fleet.stop()
        }

        @Test func aCancelledChangeCanBeRetriedAndRunsWhatWasCancelled() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("""
                actions:
                  main: { run: 'true', steps: [first, slow], strategy: serial }
                  first: { run: 'true' }
                  slow: { run: 'sleep 60' }
                """)
            let id = try await fleet.createChange(repo, action: "main")
            try await fleet.waitUntil("slow to run", timeout: .seconds(120)) { try await fleet.snapshot(id).1.step("slow")?.runStarted == true }
            _ = try await fleet.post("/changes/\(id)/cancel", nil)
            #expect(try await fleet.snapshot(id).0.status == .cancelled)

            let retried = try await fleet.post("/changes/\(id)/retry", [:])
            let newId = try #require(retried["id"]?.stringValue, "\(retried)")
            #expect(retried["retry_of"]?.stringValue == id)
            // The retry runs slow again (first had succeeded): cancel it too once it runs.
            try await fleet.waitUntil("slow to run again", timeout: .seconds(120)) { try await fleet.snapshot(newId).1.step("slow")?.runStarted == true }
            let tree = try await fleet.snapshot(newId).1
            #expect(tree.step("first")?.status == .success)
            // The phase event that sets runStarted is confirmed before the container starts; the
            // log line that says so is shipped after it, in the next batch: wait for it.
            try await fleet.waitUntil("the retry's run to be logged", timeout: .seconds(60)) {
                try await fleet.logs(newId).contains { $0.text == "run: started" }
            }
            let started = try await fleet.logs(newId).filter { $0.text == "run: started" }.map(\.stepId)
            #expect(started == [tree.step("slow")?.id], "runs in the retry: \(started)")
            _ = try await fleet.post("/changes/\(newId)/cancel", nil)
            await fleet.stop()
        }
    }
}
