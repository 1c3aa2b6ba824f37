import Foundation
import GRDB
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

/// What an operator meets on a first run: the default branch, short SHAs, a remote checked at
/// once, an undefined action refused before anything is queued, the properties a step ran
/// with, and projects and environments that can be deleted.
extension FleetTests {
    @Suite(.timeLimit(.minutes(5))) struct FirstRunTests {
        @Test func anOmittedRevisionIsTheDefaultBranchAndAShortSHAResolves() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }")
            // A repository whose default branch is not "main".
            _ = try TestRepository.git(repo.path, "branch", "-m", "main", "trunk")
            let created = try await fleet.post("/changes", ["project": .string(repo.project), "environment": "e", "action": "a"])
            #expect(created["git_rev"] == "trunk" && created["git_sha"] == .string(repo.sha), "\(created)")

            let short = try await fleet.post("/changes", ["project": .string(repo.project), "environment": "e", "action": "a", "git_rev": .string(String(repo.sha.prefix(8)))])
            #expect(short["git_sha"] == .string(repo.sha), "\(short)")

            let unknownPrefix = repo.sha.hasPrefix("0") ? "1234567" : "0000000"
            let (status, answer) = try await fleet.raw("POST", "/changes", (["project": .string(repo.project), "environment": "e", "action": "a", "git_rev": .string(unknownPrefix)] as JSON).serialized())
            #expect(status == 400 && answer["error"]?.stringValue?.contains("no commit's SHA starts with it") == true, "\(answer)")
            await fleet.stop()
        }

        @Test func projectCreateChecksTheRemoteAtOnce() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let missing = FileManager.default.temporaryDirectory.appendingPathComponent("no-such-repo-\(UUID().uuidString.prefix(6))").path
            let (status, answer) = try await fleet.raw("POST", "/projects", (["code": "ghost", "git_remote": .string(missing)] as JSON).serialized())
            let error = answer["error"]?.stringValue ?? ""
            #expect(status == 400, "\(answer)")
            #expect(error.hasPrefix("cannot read the git repository \(missing): fatal:") && !error.contains("\n"), "\(error)")
            #expect(try await fleet.raw("GET", "/projects/ghost", nil).0 == 404)
            await fleet.stop()
        }

        @Test func anActionTheActionsFileDoesNotDefineIsRefusedBeforeAnythingIsQueued() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  deploy: { run: 'true' }\n  build: { run: 'true' }")
            let (status, answer) = try await fleet.raw("POST", "/changes", (["project": .string(repo.project), "environment": "e", "action": "deplyo"] as JSON).serialized())
            #expect(status == 400, "\(answer)")
            #expect(answer["error"]?.stringValue == "action \"deplyo\" is not defined in .opschain/actions.yml at \(repo.sha.prefix(12)) (defined: build, deploy)", "\(answer)")
            #expect(try await fleet.get("/changes").arrayValue?.isEmpty == true)
            #expect(try await fleet.store.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM outbox") } == 0)

            let bare = try TestRepository.make(["README": "no actions here"])
            _ = try await fleet.post("/projects", ["code": "bare", "git_remote": .string(bare.path)])
            _ = try await fleet.post("/projects/bare/environments", ["code": "e"])
            let (noFile, noFileAnswer) = try await fleet.raw("POST", "/changes", #"{"project": "bare", "environment": "e", "action": "a"}"#)
            #expect(noFile == 400 && noFileAnswer["error"]?.stringValue?.contains("has no actions file") == true, "\(noFileAnswer)")
            await fleet.stop()
        }

        @Test func aStepsMergedPropertiesAreShownWithSecretsMasked() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 1)
            let repo = try await fleet.project(
                "actions:\n  a: { run: 'true' }",
                project: ["region": "eu", "opschain": ["secrets": ["db_password": "hunter2-secret"]]], environment: ["region": "us", "tier": 3])
            let id = try await fleet.createChange(repo, action: "a")
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .success)
            let step = try #require(tree.root)
            let shown = try await fleet.get("/changes/\(id)/steps/\(step.id)")
            #expect(shown["action"] == "a" && shown["status"] == "success")
            #expect(shown["properties"]?["region"] == "us" && shown["properties"]?["tier"] == 3, "\(shown)")
            #expect(shown["properties"]?["opschain"]?["secrets"]?["db_password"] == "****", "\(shown)")
            #expect(!shown.serialized().contains("hunter2-secret"))
            #expect(try await fleet.raw("GET", "/changes/\(id)/steps/nope", nil).0 == 404)

            // The same through the command line, by action name.
            let cli = try await CLIFollowTests.stepfleet(fleet, ["change", "show", id, "--step", "a", "--properties"])
            #expect(cli.status == 0, "\(cli.output)")
            let printed = try JSON.parse(cli.output)
            #expect(printed["region"] == "us" && printed["opschain"]?["secrets"]?["db_password"] == "****", "\(cli.output)")
            await fleet.stop()
        }

        @Test func projectsAndEnvironmentsAreDeletedOnlyWhenNothingRunsOnThem() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 1)
            let repo = try await fleet.project("actions:\n  slow: { run: 'sleep 3' }", project: ["k": 1])
            _ = try await fleet.post("/projects/\(repo.project)/environments", ["code": "spare"])
            let id = try await fleet.createChange(repo, action: "slow")
            let (busy, busyAnswer) = try await fleet.raw("DELETE", "/projects/\(repo.project)/environments/e", nil)
            #expect(busy == 409 && busyAnswer["error"]?.stringValue?.contains(id) == true, "\(busyAnswer)")
            #expect(try await fleet.raw("DELETE", "/projects/\(repo.project)", nil).0 == 409)
            // An environment nothing runs on goes at once.
            #expect(try await fleet.raw("DELETE", "/projects/\(repo.project)/environments/spare", nil).0 == 200)

            _ = try await fleet.waitForChange(id)
            let deleted = try await fleet.send("DELETE", "/projects/\(repo.project)", nil)
            #expect(deleted["changes_kept"] == 1 && deleted["environments_deleted"] == 1, "\(deleted)")
            #expect(try await fleet.raw("GET", "/projects/\(repo.project)", nil).0 == 404)
            #expect(try await fleet.raw("GET", "/projects/\(repo.project)/properties", nil).0 == 404)
            #expect(try await fleet.store.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM properties WHERE project_code = ?", arguments: [repo.project]) } == 0)
            // The change stays readable: the record of what ran.
            #expect(try await fleet.get("/changes/\(id)")["status"] == "success")
            await fleet.stop()
        }
    }
}
