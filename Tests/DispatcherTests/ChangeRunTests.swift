import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    @Suite(.timeLimit(.minutes(10))) struct ChangeRunTests {
        static let bump = #"jq ".counters[\"$OPSCHAIN_ACTION\"] = ((.counters[\"$OPSCHAIN_ACTION\"] // 0) + 1)" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES""#

        static let actions = """
            actions:
              deploy: { run: 'sleep 0.3; \(bump)', steps: [build, verify, release], strategy: serial }
              build: { run: 'sleep 0.3', steps: [api, web], strategy: parallel }
              api: { run: 'sleep 1.5; \(bump)' }
              web: { run: 'sleep 1.5; \(bump)' }
              verify: { run: 'sleep 0.3; \(bump)' }
              release: { run: 'jq ".released = true" "$OPSCHAIN_ENVIRONMENT_PROPERTIES" > /tmp/e && mv /tmp/e "$OPSCHAIN_ENVIRONMENT_PROPERTIES"' }
            """

        @Test func aNestedChangeRunsEveryStepInOrderAndPropertiesEndAsTheDiffsSay() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project(Self.actions, project: ["counters": [:]], environment: ["region": "eu"])
            let id = try await fleet.createChange(repo, action: "deploy")
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .success)
            #expect(change.gitSha == repo.sha)
            #expect(tree.steps.values.allSatisfy { $0.status == .success && $0.attempt == 1 })
            let (build, api, web, verify, release) = (tree.step("build")!, tree.step("api")!, tree.step("web")!, tree.step("verify")!, tree.step("release")!)
            // Serial children never overlap; parallel ones do.
            #expect(build.finishedAt! <= verify.startedAt!)
            #expect(verify.finishedAt! <= release.startedAt!)
            #expect(api.startedAt! < web.finishedAt! && web.startedAt! < api.finishedAt!)
            #expect(tree.step("deploy")!.childStrategy == .serial)
            #expect(build.childStrategy == .parallel)

            let project = try await fleet.properties(repo)
            #expect(project.properties == ["counters": ["deploy": 1, "api": 1, "web": 1, "verify": 1]])
            // One version per step that changed the project properties (after the initial two).
            #expect(project.version == 2 + 4)
            let environment = try await fleet.properties(repo, environment: true)
            #expect(environment.properties == ["region": "eu", "released": true])
            #expect(environment.version == 3)

            let logs = try await fleet.logs(id)
            #expect(logs.filter { $0.text == "run: started" }.count == 6)
            #expect(try await fleet.leftoverContainers().isEmpty)

            // The API shows the tree.
            let shown = try await fleet.get("/changes/\(id)")
            #expect(shown["status"] == "success")
            #expect(shown["root"]?["children"]?.arrayValue?.map { $0["action"]?.stringValue } == ["build", "verify", "release"])
            let rootAttempts = shown["root"]?["attempts"]?.arrayValue ?? []
            #expect(rootAttempts.count == 1)
            #expect(rootAttempts.first?["status"] == "success" && rootAttempts.first?["run_started"] == true)
            #expect(rootAttempts.first?["worker"]?.stringValue?.hasPrefix("fleet-worker-0") == true)
            await fleet.stop()
        }

        @Test func parallelSiblingsOnDifferentKeysBothLandAndAGuardedConflictFailsCleanly() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let guarded = #"echo '["/counter"]' > "$OPSCHAIN_PROJECT_GUARDS"; sleep 1; jq ".counter += 1" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES""#
            let repo = try await fleet.project("""
                actions:
                  both: { run: 'true', steps: [x, y], strategy: parallel }
                  x:
                    run: |
                      sleep 1; jq ".x = 1" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES"
                  y:
                    run: |
                      sleep 1; jq ".y = 2" "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES"
                  race: { run: 'true', steps: [g1, g2], strategy: parallel }
                  g1:
                    run: |
                      \(guarded)
                  g2:
                    run: |
                      \(guarded)
                """, project: ["counter": 0])
            let first = try await fleet.createChange(repo, action: "both")
            let (firstChange, firstTree) = try await fleet.waitForChange(first)
            #expect(firstChange.status == .success, "\(firstTree.steps.values.map { "\($0.action): \($0.status) \($0.error ?? "")" })")
            #expect(try await fleet.properties(repo).properties == ["counter": 0, "x": 1, "y": 2])

            let second = try await fleet.createChange(repo, action: "race")
            let (change, tree) = try await fleet.waitForChange(second)
            #expect(change.status == .error)
            let outcomes = [try #require(tree.step("g1")), try #require(tree.step("g2"))]
            #expect(outcomes.filter { $0.status == .success }.count == 1)
            let loser = try #require(outcomes.first { $0.status == .error })
            #expect(loser.error == "Updates made to the project properties in step \"[\(loser.id)] \(loser.action)\" could not be applied")
            #expect(try await fleet.properties(repo).properties["counter"] == 1)
            let log = try await fleet.logs(second).filter { $0.stepId == loser.id }.map(\.text)
            #expect(log.contains { $0.hasPrefix("original project properties: ") })
            #expect(log.contains { $0.hasPrefix("patch: [{\"op\":\"test\"") })
            #expect(log.contains { $0.hasPrefix("patched original: ") })
            #expect(log.contains { $0.hasPrefix("current project properties (version") })
            let metrics = try await fleet.raw("GET", "/metrics", nil).1.stringValue ?? ""
            #expect(metrics.contains("stepfleet_patch_conflicts_total 1"))
            await fleet.stop()
        }

        @Test func aFailingSerialChildAbortsItsLaterSiblings() async throws {
            let fleet = try await FleetHarness()
            let repo = try await fleet.project("""
                actions:
                  main: { run: 'true', steps: [ok, broken, never] }
                  ok: { run: 'true' }
                  broken: { run: 'echo no; exit 4' }
                  never: { run: 'true' }
                """)
            let id = try await fleet.createChange(repo, action: "main")
            let (change, tree) = try await fleet.waitForChange(id)
            #expect(change.status == .error)
            #expect(tree.children(of: tree.root!.id).map(\.status) == [.success, .error, .aborted])
            #expect(tree.step("broken")?.error == "the command exited with status 4")
            #expect(tree.root?.error == "child step \"broken\" failed")
            await fleet.stop()
        }

        @Test func aSecondChangeOnTheSameEnvironmentWaitsForTheFirst() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("actions:\n  slow: { run: 'sleep 2' }")
            let first = try await fleet.createChange(repo, action: "slow")
            let second = try await fleet.createChange(repo, action: "slow")
            // While the first one's step runs, the second still waits.
            try await fleet.waitUntil("the first change's step to run", timeout: .seconds(120)) { try await fleet.snapshot(first).1.root?.runStarted == true }
            #expect(try await fleet.snapshot(second).0.status == .pending)
            let (firstChange, _) = try await fleet.waitForChange(first)
            let (secondChange, _) = try await fleet.waitForChange(second)
            #expect(secondChange.status == .success)
            #expect(secondChange.startedAt! >= firstChange.finishedAt!)
            await fleet.stop()
        }
    }
}
