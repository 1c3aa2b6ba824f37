import Foundation
import Logging
import Protocol
import Synchronization
import GRDB
import Testing
@testable import Dispatcher

/// Worker events on a wide change, on a real SQLite file: a heartbeat, phase, log batch or late
/// outcome touches its step's row, not the change's whole tree.
@Suite(.timeLimit(.minutes(10))) struct EventLoadTests {
    static let width = 1_000

    /// A running change of one parent and `width - 1` parallel children, every child claimed by
    /// worker `w`; returns the engine and the children's attempts.
    func wideChange() async throws -> (DispatcherEngine, [AttemptRef], String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID()).sqlite").path
        var logger = Logger(label: "event-load-tests")
        logger.logLevel = .error
        let engine = DispatcherEngine(
            store: try Store(path: path), configuration: DispatcherConfiguration(maxChildrenPerStep: Self.width, maxStepsInFlightPerChange: Self.width),
            logger: logger)
        try await engine.store.write { db in
            try Store.createProject(db, Project(code: "p", name: "P", gitRemote: "/r"))
            try Store.createEnvironment(db, Environment(projectCode: "p", code: "e", name: "E"))
        }
        let changeId = "wide-\(UUID().uuidString.prefix(6))"
        var root = StepRecord(id: "root", changeId: changeId, parentId: nil, position: 0, action: "wide")
        root.ownDone = true
        root.childStrategy = .parallel
        let children = (1..<Self.width).map { StepRecord(id: "child-\($0)", changeId: changeId, parentId: "root", position: $0, action: "leaf") }
        let configuration = engine.configuration
        let steps = [root] + children
        try await engine.store.write { db in
            try Store.insertChange(db, ChangeRecord(
                id: changeId, projectCode: "p", environmentCode: "e", action: "wide", gitRev: "main", gitSha: "0", status: .pending, user: "u", createdAt: Store.now()))
            try Store.save(db, ChangeTree(changeId: changeId, steps: steps, leaseSeconds: configuration.leaseSeconds), before: nil)
            try engine.startWaitingChanges(db, project: "p", environment: "e")
        }
        let refs = children.map { AttemptRef(stepId: $0.id, attempt: 1) }
        // Each claim carries its attempt's claim token, as a worker that took the job does.
        let queued = try await engine.store.read { db in try Store.tree(db, changeId: changeId, leaseSeconds: 20) }
        for ref in refs {
            let token = queued.steps[ref.stepId]?.claimToken
            try await engine.handle(WorkerEvent(kind: .claimed, ref: ref, worker: "w", at: 0, claimToken: token), publishedBy: "w")
        }
        return (engine, refs, changeId)
    }

    func seconds(_ body: () async throws -> Void) async rethrows -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try await body()
        let elapsed = clock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Counts the whole-tree loads (`Store.tree`) the store's writer connection runs while
    /// it is installed.
    final class TreeLoads: Sendable {
        private let count = Mutex(0)
        var value: Int { count.withLock { $0 } }

        func install(on store: Store) async throws {
            try await store.write { db in
                db.trace { [self] event in
                    if case .statement(let statement) = event, statement.sql.contains("SELECT record FROM steps WHERE change_id") {
                        count.withLock { $0 += 1 }
                    }
                }
            }
        }

        func reset() { count.withLock { $0 = 0 } }
    }

    @Test(.timeLimit(.minutes(5))) func heartbeatsOnAThousandStepChangeTouchOnlyTheirStep() async throws {
        let (engine, refs, changeId) = try await wideChange()
        let identity = WorkerIdentity(user: "w", worker: "w")
        let heartbeats = 1_000
        let loads = TreeLoads()
        try await loads.install(on: engine.store)
        // Before: every event loaded, compared and saved the whole tree (`mutate`).
        let wholeTree = try await seconds {
            for index in 0..<heartbeats / 10 {
                let ref = refs[index % refs.count]
                try await engine.store.write { db in
                    try engine.mutate(db, changeId: changeId) { tree in tree.heard(ref, from: identity, runStarted: false, policy: nil, now: Store.now()) }
                }
            }
        } * 10
        #expect(loads.value >= heartbeats / 10, "the counter sees whole-tree loads (\(loads.value))")
        loads.reset()
        // After: the event handler reads and writes the step's row.
        let oneRow = try await seconds {
            for index in 0..<heartbeats {
                try await engine.handle(WorkerEvent(kind: .heartbeat, ref: refs[index % refs.count], worker: "w", at: 0), publishedBy: "w")
            }
        }
        print("1,000 heartbeats on a \(Self.width)-step change: \(String(format: "%.2f", wholeTree)) s loading the whole tree per event (estimated from 100), \(String(format: "%.2f", oneRow)) s touching the step's row")
        // Counted, not timed: a busy machine cannot break it.
        #expect(loads.value == 0, "\(heartbeats) heartbeats loaded the whole tree \(loads.value) times")

        // The heartbeats did renew the leases.
        let tree = try await engine.store.read { db in try Store.tree(db, changeId: changeId, leaseSeconds: 20) }
        #expect(tree.steps[refs[0].stepId]?.leaseExpiresAt ?? 0 > Store.now() + 10)

        // Late outcomes for finished steps and log batches are as cheap.
        try await engine.cancel(changeId: changeId)
        loads.reset()
        let late = try await seconds {
            for ref in refs.prefix(500) {
                try await engine.handle(StepOutcome(ref: ref, worker: "w", status: .cancelled, runStarted: true), publishedBy: "w")
                try await engine.handle(LogBatch(ref: ref, worker: "w", lines: [.init(seq: 0, stream: .stdout, text: "x", at: 0)]), publishedBy: "w")
            }
        }
        print("500 late outcomes and 500 log batches after cancel: \(String(format: "%.2f", late)) s")
        #expect(loads.value == 0, "late outcomes and log batches loaded the whole tree \(loads.value) times")
    }

    @Test func messagesFromAnotherIdentityOrWithoutUserIDChangeNothingAndAreCounted() async throws {
        let (engine, refs, changeId) = try await wideChange()
        let before = try await engine.store.read { db in try Store.tree(db, changeId: changeId, leaseSeconds: 20) }
        let ref = refs[0]
        try await engine.handle(StepOutcome(ref: ref, worker: "w", status: .error, error: "forged", runStarted: true), publishedBy: "intruder")
        try await engine.handle(StepOutcome(ref: ref, worker: "w", status: .error, error: "forged", runStarted: true), publishedBy: nil)
        try await engine.handle(WorkerEvent(kind: .phase, ref: ref, worker: "w", at: 0, phase: Phase(name: .run, state: .started)), publishedBy: "intruder")
        try await engine.handle(WorkerEvent(kind: .claimed, ref: ref, worker: "w", at: 0), publishedBy: "intruder")
        try await engine.handle(LogBatch(ref: ref, worker: "w", lines: [.init(seq: 0, stream: .stdout, text: "forged", at: 0)]), publishedBy: "intruder")
        #expect(engine.metrics.refusedWorkerMessages.count == 5)
        let after = try await engine.store.read { db in try Store.tree(db, changeId: changeId, leaseSeconds: 20) }
        #expect(after == before)
        #expect(try await engine.store.read { db in try Store.logs(db, changeId: changeId) }.isEmpty)
        let outbox = try await engine.store.read { db in try Store.unsentOutbox(db, limit: 5_000) }
        #expect(!outbox.contains { $0.messageType == ControlMessage.messageType }, "a forged claim made the dispatcher cancel the holder's run")
    }
}
