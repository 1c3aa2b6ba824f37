import Foundation
import GRDB
import Logging
import Protocol

/// Batches in the engine: each batch event loads the batch's plan, moves it, saves it and
/// carries out its actions (creating or cancelling changes) in the transaction of the event
/// that caused it, so a dispatcher that dies at any moment starts nothing twice.
extension DispatcherEngine {
    /// What a new batch runs, checked by the caller (`Submitter`).
    public struct BatchSpec: Sendable {
        public var project: String
        /// In the order they start.
        public var environments: [String]
        public var selector: String
        public var action: String
        public var gitRev: String
        public var gitSha: String
        public var maxParallel: Int
        public var maxFailures: Int
        public var canary: Int
        public var user: String
        public var retryOf: String?
    }

    /// Creates a batch and starts its first wave; with `requestId`, only once for that id.
    public func createBatch(_ spec: BatchSpec, requestId: String? = nil) async throws -> (batch: BatchRecord, created: Bool) {
        try await store.write { db in
            if let requestId, let earlier = try Store.request(db, requestId) {
                guard earlier.kind == "batch" else { throw StoreError.conflict("request \(requestId) created a \(earlier.kind) (\(earlier.id)), not a batch") }
                return (try Store.batch(db, earlier.id), false)
            }
            let batch = try createBatch(db, spec)
            if let requestId { try Store.recordRequest(db, requestId, kind: "batch", createdId: batch.id, user: spec.user) }
            return (batch, true)
        }
    }

    func createBatch(_ db: Database, _ spec: BatchSpec) throws -> BatchRecord {
        for environment in spec.environments { _ = try Store.environment(db, spec.project, environment) }
        let batch = BatchRecord(
            id: Self.newID(), projectCode: spec.project, action: spec.action, gitRev: spec.gitRev, gitSha: spec.gitSha, selector: spec.selector,
            maxParallel: spec.maxParallel, maxFailures: spec.maxFailures, canary: spec.canary, status: .running, stopReason: nil, cancelRequested: false,
            user: spec.user, retryOf: spec.retryOf, createdAt: Store.now(), finishedAt: nil)
        let members = spec.environments.enumerated().map { BatchMember(position: $0.offset, environment: $0.element) }
        let plan = BatchPlan(batchId: batch.id, maxParallel: batch.maxParallel, maxFailures: batch.maxFailures, canary: batch.canary, members: members)
        try Store.insertBatch(db, batch, plan)
        logger.info("batch created", metadata: ["batch": "\(batch.id)", "environments": "\(members.count)", "action": "\(batch.action)"])
        try mutateBatch(db, batch.id) { plan in plan.start(now: Store.now(), makeID: Self.newID) }
        // Its first notification shows the first wave started.
        try Notifications.batchStatus(db, batch.id)
        return try Store.batch(db, batch.id)
    }

    /// Cancels a batch: environments not started end `skipped`, running changes are cancelled.
    public func cancelBatch(_ id: String) async throws -> BatchRecord {
        try await store.write { db in
            try mutateBatch(db, id) { plan in
                guard let actions = plan.cancel(now: Store.now()) else {
                    throw StoreError.conflict("batch \(id) has finished (\(plan.status.rawValue)); nothing to cancel")
                }
                return actions
            }
            return try Store.batch(db, id)
        }
    }

    /// A new batch over the environments of a finished one that failed, were cancelled or were
    /// skipped: same action, SHA and limits.
    public func retryBatch(_ id: String, user: String, requestId: String? = nil) async throws -> (batch: BatchRecord, created: Bool) {
        let (old, members) = try await store.read { db in (try Store.batch(db, id), try Store.batchMembers(db, id)) }
        guard old.status.isFinal else { throw StoreError.conflict("batch \(id) is still running; cancel it or wait for it to finish before retrying") }
        let again = members.filter { $0.status != .success }.map(\.environment)
        guard !again.isEmpty else { throw StoreError.conflict("every environment of batch \(id) succeeded; nothing to retry") }
        let spec = BatchSpec(
            project: old.projectCode, environments: again, selector: "retry of \(id)", action: old.action, gitRev: old.gitRev, gitSha: old.gitSha,
            maxParallel: old.maxParallel, maxFailures: old.maxFailures, canary: min(old.canary, again.count), user: user, retryOf: id)
        return try await createBatch(spec, requestId: requestId)
    }

    /// After a restart: settles members whose change ended unseen and fills free places, for
    /// every running batch (each in a savepoint of its own: one that cannot be read is logged
    /// and skipped).
    public func resumeBatches() async throws {
        let logger = logger
        try await store.write { db in
            for id in try Store.runningBatches(db) {
                do {
                    try db.inSavepoint {
                        let changes = try Store.changeStatuses(db, try Store.batchMembers(db, id).compactMap(\.changeId))
                        try mutateBatch(db, id) { plan in plan.resume(changes: changes, now: Store.now(), makeID: Self.newID) }
                        return .commit
                    }
                } catch {
                    logger.error("cannot resume a batch; skipping it", metadata: ["batch": "\(id)", "error": "\(error)"])
                }
            }
        }
    }

    /// Called when a change has just ended: its batch, if any, reacts.
    func batchChangeFinished(_ db: Database, changeId: String, status: ChangeStatus) throws {
        guard let batchId = try Store.batchId(db, ofChange: changeId) else { return }
        try mutateBatch(db, batchId) { plan in plan.changeFinished(changeId, status, now: Store.now(), makeID: Self.newID) }
    }

    /// Loads a batch's plan, runs `transition`, saves the plan and carries out its actions.
    /// The plan is saved before the actions run: an action that ends a change comes back here
    /// for the same batch and must see the plan as it now is.
    func mutateBatch(_ db: Database, _ batchId: String, _ transition: (inout BatchPlan) throws -> [BatchPlan.Action]) throws {
        let batch = try Store.batch(db, batchId)
        let before = try Store.plan(db, batch)
        var plan = before
        let actions = try transition(&plan)
        try Store.savePlan(db, plan, before: before)
        if plan.status != before.status { try Notifications.batchStatus(db, batchId) }
        for action in actions {
            switch action {
            case .createChange(let position, let environment, let changeId):
                do {
                    try createBatchChange(db, batch, environment: environment, changeId: changeId)
                } catch let error as StoreError {
                    logger.warning("a batch's change cannot be created", metadata: ["batch": "\(batchId)", "environment": "\(environment)", "error": "\(error)"])
                    try mutateBatch(db, batchId) { plan in
                        plan.changeNotCreated(position: position, reason: "its change could not be created: \(error)", now: Store.now(), makeID: Self.newID)
                    }
                }
            case .cancelChange(let changeId):
                guard !(try Store.change(db, changeId)).status.isFinal else { continue }
                try mutate(db, changeId: changeId) { tree in tree.cancel(now: Store.now()) }
            case .finished(let status):
                logger.info("batch finished", metadata: ["batch": "\(batchId)", "status": "\(status.rawValue)"])
            }
        }
    }

    /// Creates a batch member's change with the id the plan gave it; it starts at once unless
    /// another change runs on its environment.
    private func createBatchChange(_ db: Database, _ batch: BatchRecord, environment: String, changeId: String) throws {
        _ = try insertChange(
            db, id: changeId, project: batch.projectCode, environment: environment, action: batch.action, gitRev: batch.gitRev, gitSha: batch.gitSha,
            user: batch.user)
    }

    /// Creates a change once for `requestId` (the request queue's rule): a second request with
    /// the same id gets the first one's change.
    func createChange(
        requestId: String, project: String, environment: String, action: String, gitRev: String, gitSha: String, user: String
    ) async throws -> (change: ChangeRecord, created: Bool) {
        try await store.write { db in
            if let earlier = try Store.request(db, requestId) {
                guard earlier.kind == "change" else { throw StoreError.conflict("request \(requestId) created a \(earlier.kind) (\(earlier.id)), not a change") }
                return (try Store.change(db, earlier.id), false)
            }
            let change = try insertChange(db, project: project, environment: environment, action: action, gitRev: gitRev, gitSha: gitSha, user: user)
            try Store.recordRequest(db, requestId, kind: "change", createdId: change.id, user: user)
            return (change, true)
        }
    }
}
