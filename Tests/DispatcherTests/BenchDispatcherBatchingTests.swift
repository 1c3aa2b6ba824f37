import Foundation
import GRDB
import Logging
import Protocol
import Testing
@testable import Dispatcher

/// Worker events and log batches applied many to one store transaction (what `stepfleet bench
/// dispatcher` found to be the first bottleneck): in order, each in a savepoint of its own.
@Suite struct BenchDispatcherBatchingTests {
    /// A change whose root step is queued, with its claim token.
    func queuedChange() async throws -> (DispatcherEngine, AttemptRef, String?) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("batching-\(UUID()).sqlite").path
        var logger = Logger(label: "batching-tests")
        logger.logLevel = .critical
        let engine = DispatcherEngine(store: try Store(path: path), configuration: DispatcherConfiguration(), logger: logger)
        try await engine.store.write { db in
            try Store.createProject(db, Project(code: "p", name: "P", gitRemote: "/r"))
            try Store.createEnvironment(db, Environment(projectCode: "p", code: "e", name: "E"))
        }
        let change = try await engine.createChange(project: "p", environment: "e", action: "deploy", gitRev: "main", gitSha: "0", user: "u")
        let root = try await engine.store.read { db in try Store.tree(db, changeId: change.id, leaseSeconds: 20).root! }
        return (engine, root.ref, root.claimToken)
    }

    @Test(.timeLimit(.minutes(2))) func aBatchAppliesItsEventsInOrder() async throws {
        let (engine, ref, token) = try await queuedChange()
        // The claim first, then the run phase: applied in that order, the run counts as started.
        let failed = try await engine.handle(events: [
            (WorkerEvent(kind: .claimed, ref: ref, worker: "w", at: 0, claimToken: token), "w"),
            (WorkerEvent(kind: .phase, ref: ref, worker: "w", at: 0, phase: Phase(name: .build, state: .started)), "w"),
            (WorkerEvent(kind: .phase, ref: ref, worker: "w", at: 0, phase: Phase(name: .run, state: .started), policy: ActionPolicy(retries: 2)), "w"),
        ])
        #expect(failed.isEmpty)
        let step = try #require(try await engine.store.read { db in try Store.step(db, ref.stepId) })
        #expect(step.status == .running)
        #expect(step.worker == "w")
        #expect(step.runStarted)
        #expect(step.retries == 2)
    }

    @Test(.timeLimit(.minutes(2))) func aMessageThatFailsLeavesTheOthersOfItsBatchApplied() async throws {
        let (engine, ref, token) = try await queuedChange()
        // A step row that does not decode: reading it throws inside the batch.
        try await engine.store.write { db in
            try db.execute(sql: "INSERT INTO steps (id, change_id, record, status) VALUES ('broken', 'x', 'not json', 'running')")
        }
        let broken = AttemptRef(stepId: "broken", attempt: 1)
        let failed = try await engine.handle(events: [
            (WorkerEvent(kind: .claimed, ref: ref, worker: "w", at: 0, claimToken: token), "w"),
            (WorkerEvent(kind: .phase, ref: broken, worker: "w", at: 0, phase: Phase(name: .run, state: .started)), "w"),
            (WorkerEvent(kind: .phase, ref: ref, worker: "w", at: 0, phase: Phase(name: .run, state: .started)), "w"),
        ])
        #expect(failed == [1])
        let step = try #require(try await engine.store.read { db in try Store.step(db, ref.stepId) })
        #expect(step.status == .running)
        #expect(step.runStarted)

        let logFailed = try await engine.handle(logs: [
            (LogBatch(ref: broken, worker: "w", lines: [.init(seq: 0, stream: .stdout, text: "lost", at: 0)]), "w"),
            (LogBatch(ref: ref, worker: "w", lines: [.init(seq: 0, stream: .stdout, text: "kept", at: 0)]), "w"),
        ])
        #expect(logFailed == [0])
        let change = try await engine.store.read { db in try Store.changeId(db, ofStep: ref.stepId)! }
        let lines = try await engine.store.read { db in try Store.logs(db, changeId: change).map(\.line.text) }
        #expect(lines == ["kept"])
    }

    @Test(.timeLimit(.minutes(2))) func aMessageWithoutAUserIsRefusedAndTheRestApplied() async throws {
        let (engine, ref, token) = try await queuedChange()
        let failed = try await engine.handle(events: [
            (WorkerEvent(kind: .claimed, ref: ref, worker: "w", at: 0, claimToken: token), nil),
            (WorkerEvent(kind: .claimed, ref: ref, worker: "w", at: 0, claimToken: token), "w"),
        ])
        #expect(failed.isEmpty)
        #expect(engine.metrics.refusedWorkerMessages.count == 1)
        let step = try #require(try await engine.store.read { db in try Store.step(db, ref.stepId) })
        #expect(step.status == .running)
    }
}
