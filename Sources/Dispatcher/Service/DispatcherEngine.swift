import Foundation
import GRDB
import Logging
import Protocol

/// Applies every event to the store in one transaction each: the change's tree moves, property
/// diffs apply, and the resulting jobs and control messages go into the outbox. Only the
/// outbox publisher talks to the broker.
public struct DispatcherEngine: Sendable {
    public let store: Store
    public let configuration: DispatcherConfiguration
    let metrics: DispatcherMetrics
    let logger: Logger

    public init(store: Store, configuration: DispatcherConfiguration, metrics: DispatcherMetrics = DispatcherMetrics(), logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
    }

    static func newID() -> String { UUID().uuidString.lowercased() }

    /// 128 random bits (the system's secure generator), as hex.
    static func newClaimToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let text = String(generator.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - text.count) + text
        }.joined()
    }

    // MARK: Changes

    /// Creates a change on `sha` (resolved by the caller at creation) and starts it unless
    /// another change runs on its project environment.
    public func createChange(project: String, environment: String, action: String, gitRev: String, gitSha: String, user: String, retryOf: String? = nil, steps: [StepRecord]? = nil) async throws -> ChangeRecord {
        try await store.write { db in
            try insertChange(db, project: project, environment: environment, action: action, gitRev: gitRev, gitSha: gitSha, user: user, retryOf: retryOf, steps: steps)
        }
    }

    /// `createChange`'s work inside a transaction of the caller's (a request over the queue
    /// records itself in the same one; a batch member's change has the id its plan gave it).
    func insertChange(
        _ db: Database, id: String = DispatcherEngine.newID(), project: String, environment: String, action: String, gitRev: String, gitSha: String,
        user: String, retryOf: String? = nil, steps: [StepRecord]? = nil
    ) throws -> ChangeRecord {
        _ = try Store.environment(db, project, environment)
        let change = ChangeRecord(
            id: id, projectCode: project, environmentCode: environment, action: action, gitRev: gitRev, gitSha: gitSha,
            status: .pending, user: user, retryOf: retryOf, createdAt: Store.now())
        try Store.insertChange(db, change)
        let root = StepRecord(id: Self.newID(), changeId: change.id, parentId: nil, position: 0, action: action)
        try Store.save(db, ChangeTree(changeId: change.id, steps: steps ?? [root], leaseSeconds: configuration.leaseSeconds), before: nil)
        try startWaitingChanges(db, project: project, environment: environment)
        return try Store.change(db, change.id)
    }

    /// Starts the oldest pending change of a project environment when none runs there.
    func startWaitingChanges(_ db: Database, project: String, environment: String) throws {
        let running = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE project_code = ? AND environment_code = ? AND status = 'running'", arguments: [project, environment]) ?? 0
        guard running == 0 else { return }
        guard let next = try String.fetchOne(db, sql: """
            SELECT id FROM changes WHERE project_code = ? AND environment_code = ? AND status = 'pending' ORDER BY seq LIMIT 1
            """, arguments: [project, environment])
        else { return }
        let now = Store.now()
        try Store.updateChange(db, next, status: .running, now: now)
        try mutate(db, changeId: next) { tree in tree.start(now: now) }
    }

    /// Cancels a change: finished steps keep their state; the rest end `cancelled`.
    public func cancel(changeId: String) async throws -> ChangeRecord {
        try await store.write { db in
            let change = try Store.change(db, changeId)
            guard !change.status.isFinal else { throw StoreError.conflict("change \(changeId) has finished (\(change.status.rawValue)); nothing to cancel") }
            // A pending change's tree has nothing queued; cancelling it marks its steps all the same.
            try mutate(db, changeId: changeId) { tree in tree.cancel(now: Store.now()) }
            return try Store.change(db, changeId)
        }
    }

    /// A new change that re-runs what did not succeed in a failed or cancelled one.
    public func retry(changeId: String, refreshedSha: String?, user: String) async throws -> ChangeRecord {
        let (old, tree) = try await store.read { db in
            (try Store.change(db, changeId), try Store.tree(db, changeId: changeId, leaseSeconds: 0))
        }
        guard old.status == .error || old.status == .cancelled else {
            throw StoreError.conflict("only a failed or cancelled change can be retried; \(changeId) is \(old.status.rawValue)")
        }
        let newId = Self.newID()
        let steps = tree.retried(as: newId, makeID: Self.newID)
        return try await createChangeWithID(newId, from: old, sha: refreshedSha ?? old.gitSha, user: user, steps: steps)
    }

    private func createChangeWithID(_ id: String, from old: ChangeRecord, sha: String, user: String, steps: [StepRecord]) async throws -> ChangeRecord {
        let configuration = configuration
        return try await store.write { db in
            let change = ChangeRecord(
                id: id, projectCode: old.projectCode, environmentCode: old.environmentCode, action: old.action, gitRev: old.gitRev,
                gitSha: sha, status: .pending, user: user, retryOf: old.id, createdAt: Store.now())
            try Store.insertChange(db, change)
            try Store.save(db, ChangeTree(changeId: id, steps: steps, leaseSeconds: configuration.leaseSeconds), before: nil)
            try startWaitingChanges(db, project: old.projectCode, environment: old.environmentCode)
            return try Store.change(db, id)
        }
    }

    // MARK: Worker messages

    /// Applies a claim, heartbeat or phase event that broker user `user` published (the
    /// delivery's `user_id`, verified by the broker). Touches only the step's own row.
    public func handle(_ event: WorkerEvent, publishedBy user: String?) async throws {
        guard let identity = identity(user, event.worker, "a \(event.kind.rawValue) event", event.ref) else { return }
        try await store.write { db in try apply(event, from: identity, db) }
    }

    private func apply(_ event: WorkerEvent, from identity: WorkerIdentity, _ db: Database) throws {
        let what = "a \(event.kind.rawValue) event"
        let metrics = metrics
        guard let step = try Store.step(db, event.ref.stepId) else { return }
        // A claim from another worker for an attempt someone holds is a duplicate delivery
        // (the tree answers it with a cancel); anything else from a non-holder is refused.
        let duplicateClaim = event.kind == .claimed && step.worker != identity.worker
        guard duplicateClaim || mayReport(step, event.ref, identity) else {
            return refuse(what, event.ref, identity, holder: step.holder(of: event.ref.attempt))
        }
        guard event.kind != .claimed || provesClaim(step, event.ref, event.claimToken) else {
            return refuseClaim(what, event.ref, identity)
        }
        let now = Store.now()
        try mutateStep(db, step) { tree in
            switch event.kind {
            case .claimed:
                if step.status == .queued, step.attempt == event.ref.attempt, let queuedAt = step.queuedAt {
                    metrics.queueLatency.record(now - queuedAt)
                }
                return tree.claimed(event.ref, by: identity, now: now)
            case .heartbeat:
                return tree.heard(event.ref, from: identity, runStarted: false, policy: nil, now: now)
            case .phase:
                let runStarted = event.phase?.name == .run && event.phase?.state == .started
                let effects = tree.heard(event.ref, from: identity, runStarted: runStarted, policy: event.policy, now: now)
                if let durations = event.phase?.durations { tree.recordDurations(durations, for: event.ref) }
                return effects
            }
        }
    }

    /// Applies many worker messages in one transaction, in order, each in a savepoint of its
    /// own; returns the positions of those that threw (only their savepoint is rolled back):
    /// the caller handles each of those alone, as `handle` would. One commit for many
    /// messages: a busy fleet's claims and phases do not queue for the store's writer one by one.
    public func handle(events: [(WorkerEvent, String?)]) async throws -> [Int] {
        let identities = events.map { event, user in identity(user, event.worker, "a \(event.kind.rawValue) event", event.ref) }
        return try await store.write { db in
            try applyEach(events.indices, db) { index in
                if let identity = identities[index] { try apply(events[index].0, from: identity, db) }
            }
        }
    }

    /// Log batches in one transaction, as `handle(events:)` does for events.
    public func handle(logs: [(LogBatch, String?)]) async throws -> [Int] {
        let identities = logs.map { batch, user in identity(user, batch.worker, "a log batch", batch.ref) }
        return try await store.write { db in
            try applyEach(logs.indices, db) { index in
                if let identity = identities[index] { try apply(logs[index].0, from: identity, db) }
            }
        }
    }

    private func applyEach(_ indices: Range<Int>, _ db: Database, _ apply: (Int) throws -> Void) throws -> [Int] {
        var failed: [Int] = []
        for index in indices {
            do {
                try db.inSavepoint {
                    try apply(index)
                    return .commit
                }
            } catch {
                failed.append(index)
            }
        }
        return failed
    }

    /// Appends a log batch from the identity holding its attempt (or from anyone while the
    /// attempt's claim has not been seen yet). Touches only the step's row and the log.
    public func handle(_ batch: LogBatch, publishedBy user: String?) async throws {
        guard let identity = identity(user, batch.worker, "a log batch", batch.ref) else { return }
        try await store.write { db in try apply(batch, from: identity, db) }
    }

    private func apply(_ batch: LogBatch, from identity: WorkerIdentity, _ db: Database) throws {
        guard let step = try Store.step(db, batch.ref.stepId) else { return }
        guard mayReport(step, batch.ref, identity) else { return refuse("a log batch", batch.ref, identity, holder: step.holder(of: batch.ref.attempt)) }
        try Store.appendLogs(db, changeId: step.changeId, batch)
    }

    /// Applies an outcome from the identity holding its attempt: for a success, the step's
    /// diffs to the *current* properties (new versions), atomically; a diff that does not apply
    /// fails the step and changes nothing. An outcome for a finished step or an old attempt is
    /// dropped after reading only the step's row.
    public func handle(_ outcome: StepOutcome, publishedBy user: String?) async throws {
        guard let identity = identity(user, outcome.worker, "an outcome", outcome.ref) else { return }
        let metrics = metrics
        try await store.write { db in
            guard let step = try Store.step(db, outcome.ref.stepId) else { return }
            guard mayReport(step, outcome.ref, identity) else { return refuse("an outcome", outcome.ref, identity, holder: step.holder(of: outcome.ref.attempt)) }
            // An outcome that overtook its claim must prove, as a claim does, that its sender took the job.
            guard step.holder(of: outcome.ref.attempt) != nil || provesClaim(step, outcome.ref, outcome.claimToken) else {
                return refuseClaim("an outcome", outcome.ref, identity)
            }
            guard outcome.ref.attempt == step.attempt, !step.status.isFinal, !step.ownDone else {
                logger.debug("dropping an outcome for an old or finished attempt", metadata: ["step": "\(outcome.ref)"])
                return
            }
            let changeId = step.changeId
            let change = try Store.change(db, changeId)
            let tree = try loadTree(db, changeId)
            guard tree.accepts(outcome.ref, from: identity) else {
                logger.debug("dropping an outcome for an attempt another worker holds", metadata: ["step": "\(outcome.ref)"])
                return
            }
            var verdict: Verdict
            switch outcome.status {
            case .cancelled:
                verdict = .cancelled
            case .error:
                verdict = .failure(error: outcome.error ?? "the step failed", policy: outcome.policy)
            case .success:
                let result = outcome.result ?? StepResult()
                let children = result.steps.children.count
                if children > configuration.maxChildrenPerStep {
                    let error = "the step returned \(children) child steps; a step may have at most \(configuration.maxChildrenPerStep) (the dispatcher's --max-children-per-step); no child step was created and no property changed"
                    try Store.appendSystemLog(db, changeId: changeId, stepId: step.id, attempt: step.attempt, error)
                    verdict = .failure(error: error, policy: outcome.policy)
                    break
                }
                verdict = .success(children: result.steps.children, strategy: result.steps.childExecutionStrategy, policy: outcome.policy)
                if let conflict = try applyDiffs(db, change: change, step: step, result: result) {
                    verdict = .failure(error: conflict, policy: outcome.policy)
                }
            }
            try Store.setStepResult(db, step.id, result: outcome.result)
            if let durationMs = outcome.runMs { metrics.stepDuration.record(Double(durationMs) / 1000) }
            if let phases = outcome.phases { metrics.record(phases) }
            // The tree and change read above still hold: the diffs write properties and the
            // result its own column, neither of which the tree or the change row carries.
            try mutate(db, changeId: changeId, loaded: (tree, change)) { tree in
                if let phases = outcome.phases { tree.recordDurations(phases, for: outcome.ref) }
                return tree.outcome(outcome.ref, from: identity, verdict, now: Store.now(), makeID: Self.newID)
            }
        }
    }

    /// The sender's identity, or nil (the message is refused: logged and counted) when it
    /// carries no `user_id`.
    private func identity(_ user: String?, _ worker: String, _ what: String, _ ref: AttemptRef) -> WorkerIdentity? {
        guard let user, !user.isEmpty else {
            metrics.refusedWorkerMessages.increment()
            logger.warning(
                "refusing \(what) without a user_id: every worker stamps its broker user on what it publishes",
                metadata: ["step": "\(ref)", "claimed_worker": "\(worker)"])
            return nil
        }
        return WorkerIdentity(user: user, worker: worker)
    }

    /// Whether `identity` may report on `ref`: it claimed that attempt, or no claim of it has
    /// been seen yet (for a step claimed before identities were kept: the holder's name).
    private func mayReport(_ step: StepRecord, _ ref: AttemptRef, _ identity: WorkerIdentity) -> Bool {
        if let holder = step.holder(of: ref.attempt) { return holder == identity }
        guard ref.attempt == step.attempt, step.status == .running, !step.ownDone, let worker = step.worker else { return true }
        return worker == identity.worker
    }

    /// Whether `token` is the claim token of `ref`, the step's current attempt (a message about
    /// another attempt is the tree's to answer; attempts queued before tokens existed have none).
    private func provesClaim(_ step: StepRecord, _ ref: AttemptRef, _ token: String?) -> Bool {
        guard ref.attempt == step.attempt, let expected = step.claimToken else { return true }
        return token == expected
    }

    private func refuseClaim(_ what: String, _ ref: AttemptRef, _ identity: WorkerIdentity) {
        metrics.refusedWorkerMessages.increment()
        logger.warning(
            "refusing \(what) from \(identity) without the attempt's claim token: its sender did not take the job from the pool's queue",
            metadata: ["step": "\(ref)", "claimed_worker": "\(identity.worker)", "user_id": "\(identity.user)"])
    }

    private func refuse(_ what: String, _ ref: AttemptRef, _ identity: WorkerIdentity, holder: WorkerIdentity?) {
        metrics.refusedWorkerMessages.increment()
        logger.warning(
            "refusing \(what) from \(identity): the attempt's lease is held by \(holder.map(\.description) ?? "another worker")",
            metadata: ["step": "\(ref)", "claimed_worker": "\(identity.worker)", "user_id": "\(identity.user)"])
    }

    /// Applies a successful step's project and environment diffs; returns the failure text
    /// when one does not apply (and then nothing is written), nil when both applied.
    private func applyDiffs(_ db: Database, change: ChangeRecord, step: StepRecord, result: StepResult) throws -> String? {
        let context = try Store.stepContext(db, step.id)
        var writes: [(environment: String?, document: JSON)] = []
        for (kind, environment, diff, original) in [
            ("project", nil as String?, result.project.propertiesDiff, context?.project.properties),
            ("environment", change.environmentCode as String?, result.environment.propertiesDiff, context?.environment.properties),
        ] where !diff.isEmpty {
            let current = try Store.properties(db, change.projectCode, environment)
            do {
                let document = try diff.apply(to: current.properties)
                // The store keeps only objects of numbers it can carry: a patch that makes
                // anything else fails here, with the step, not later in a retried write.
                if let refusal = PropertiesRefusal(document) { throw refusal }
                writes.append((environment, document))
            } catch {
                let message = "Updates made to the \(kind) properties in step \"[\(step.id)] \(step.action)\" could not be applied"
                let patched = original.flatMap { try? diff.apply(to: $0) }
                let reason = (error as? PropertiesRefusal).map { ": \($0)" } ?? ""
                // A patch that does not apply now is a conflict; one that can never make valid
                // properties is an unprocessable outcome.
                (error is PropertiesRefusal ? metrics.unprocessableMessages : metrics.patchConflicts).increment()
                for line in [
                    message + ": \(error)",
                    "original \(kind) properties: \(original?.serialized() ?? "unknown")",
                    "patch: \(diff.json.serialized())",
                    "patched original: \(patched?.serialized() ?? "unknown")",
                    "current \(kind) properties (version \(current.version)): \(current.properties.serialized())",
                ] {
                    // Secret properties never reach the log, whichever document they sit in.
                    let masked = SecretProperties.maskValues(in: line, of: [original, patched, current.properties].compactMap { $0 })
                    try Store.appendSystemLog(db, changeId: change.id, stepId: step.id, attempt: step.attempt, masked)
                }
                return message + reason
            }
        }
        for write in writes {
            try Store.setProperties(db, change.projectCode, write.environment, write.document, ifVersion: nil, step: step.id)
        }
        return nil
    }

    /// Fails attempt `ref` at once because a message about it (`what`, from `worker` as broker
    /// user `user`) can never be processed: the reason goes into the step's error and log.
    /// Only the identity that may report on the attempt can fail it this way; anything else is
    /// refused as usual. Returns whether the step was failed.
    @discardableResult
    public func failUnprocessable(_ ref: AttemptRef, worker: String, publishedBy user: String?, what: String, reason: String, policy: ActionPolicy? = nil) async throws -> Bool {
        guard let identity = identity(user, worker, what, ref) else { return false }
        return try await store.write { db in
            guard let step = try Store.step(db, ref.stepId) else { return false }
            guard mayReport(step, ref, identity) else {
                refuse(what, ref, identity, holder: step.holder(of: ref.attempt))
                return false
            }
            guard try loadTree(db, step.changeId).accepts(ref, from: identity) else { return false }
            let error = "the dispatcher cannot process \(what) from worker \(identity.worker): \(reason)"
            try Store.appendSystemLog(db, changeId: step.changeId, stepId: step.id, attempt: step.attempt, "error: " + error)
            try mutate(db, changeId: step.changeId) { tree in
                tree.outcome(ref, from: identity, .failure(error: error, policy: policy), now: Store.now(), makeID: Self.newID)
            }
            return true
        }
    }

    /// A step job the broker dead-lettered.
    public func handleDeadLettered(_ job: StepJob, reason: String) async throws {
        try await store.write { db in
            guard try Store.changeId(db, ofStep: job.stepId) != nil else { return }
            try mutate(db, changeId: job.changeId) { tree in
                tree.jobDeadLettered(AttemptRef(stepId: job.stepId, attempt: job.attempt), reason: reason, now: Store.now())
            }
        }
    }

    // MARK: Leases

    /// Expires the leases that ran out and fails attempts far past their timeout; returns how
    /// many attempts that touched.
    ///
    /// Each change is handled in a savepoint of its own: one whose tree or documents cannot be
    /// processed is logged with its id and skipped (its part rolled back), and the others'
    /// leases still expire.
    @discardableResult
    public func checkDeadlines() async throws -> Int {
        let grace = configuration.leaseSeconds
        let logger = logger
        return try await store.write { db in
            let now = Store.now()
            var count = 0
            for changeId in try Store.changesWithRunningSteps(db) {
                do {
                    try db.inSavepoint {
                        let tree = try Store.tree(db, changeId: changeId, leaseSeconds: configuration.leaseSeconds)
                        let expired = tree.expiredLeases(now: now)
                        let overdue = tree.overdue(now: now, grace: grace).filter { !expired.contains($0) }
                        guard !expired.isEmpty || !overdue.isEmpty else { return .commit }
                        try mutate(db, changeId: changeId) { tree in
                            expired.flatMap { tree.leaseExpired($0, now: now) } + overdue.flatMap { tree.timedOut($0, now: now) }
                        }
                        count += expired.count + overdue.count
                        return .commit
                    }
                } catch {
                    logger.error("cannot check the leases of a change; skipping it", metadata: ["change": "\(changeId)", "error": "\(error)"])
                }
            }
            return count
        }
    }

    /// A queued attempt nobody claimed in time, and the pool its job went to.
    public struct UnclaimedJob: Sendable, Hashable {
        public let changeId: String
        public let ref: AttemptRef
        public let pool: String
    }

    /// Queued attempts that nobody has claimed for `configuration.unclaimedResendSeconds` since
    /// their job was last published; none while the outbox still has jobs to send.
    public func unclaimedJobs() async throws -> [UnclaimedJob] {
        let after = configuration.unclaimedResendSeconds
        let leaseSeconds = configuration.leaseSeconds
        return try await store.read { db in
            guard try Store.unsentOutbox(db, limit: 1).isEmpty else { return [] }
            var jobs: [UnclaimedJob] = []
            let now = Store.now()
            for changeId in try String.fetchAll(db, sql: "SELECT DISTINCT change_id FROM steps WHERE status = 'queued'") {
                let tree = try Store.tree(db, changeId: changeId, leaseSeconds: leaseSeconds)
                for ref in tree.unclaimed(now: now, after: after) {
                    let pool = try Store.stepContext(db, ref.stepId)?.mergedProperties["opschain"]?["config"]?["pool"]?.stringValue ?? Names.defaultPool
                    jobs.append(UnclaimedJob(changeId: changeId, ref: ref, pool: pool))
                }
            }
            return jobs
        }
    }

    /// Publishes the jobs of `jobs` again, each with a new claim token (those still queued and
    /// unclaimed); returns how many went out.
    @discardableResult
    public func resend(_ jobs: [UnclaimedJob]) async throws -> Int {
        try await store.write { db in
            var count = 0
            for (changeId, refs) in Dictionary(grouping: jobs, by: \.changeId) {
                try mutate(db, changeId: changeId) { tree in
                    let effects = refs.flatMap { tree.resend($0.ref, now: Store.now()) }
                    count += effects.count
                    return effects
                }
            }
            return count
        }
    }

    /// After a restart: give running attempts a fresh lease so their workers can be heard.
    public func renewLeasesAfterRestart() async throws {
        let until = Store.now() + configuration.leaseSeconds
        let logger = logger
        try await store.write { db in
            Store.renewAllLeases(db, until: until) { changeId, error in
                logger.error("cannot renew the leases of a change; skipping it", metadata: ["change": "\(changeId)", "error": "\(error)"])
            }
        }
    }

    // MARK: Effects

    /// A change's whole tree, with the engine's lease and in-flight settings.
    func loadTree(_ db: Database, _ changeId: String) throws -> ChangeTree {
        var tree = try Store.tree(db, changeId: changeId, leaseSeconds: configuration.leaseSeconds)
        tree.maxInFlight = configuration.maxStepsInFlightPerChange
        return tree
    }

    /// Runs `transition` on a tree of one step (claims, heartbeats and phases move nothing
    /// else), saves that row if it changed and writes its effects (cancels, nothing else) to
    /// the outbox: a busy change's events do not each load and compare its whole tree.
    func mutateStep(_ db: Database, _ step: StepRecord, _ transition: (inout ChangeTree) -> [Effect]) throws {
        let before = ChangeTree(changeId: step.changeId, steps: [step], leaseSeconds: configuration.leaseSeconds)
        var tree = before
        let effects = transition(&tree)
        try Store.save(db, tree, before: before)
        for effect in effects {
            guard case .cancelAttempt(let ref, let worker) = effect else {
                preconditionFailure("a claim, heartbeat or phase of one step moved more than that step: \(effect)")
            }
            try addCancel(db, ref, worker: worker)
        }
    }

    private func addCancel(_ db: Database, _ ref: AttemptRef, worker: String?) throws {
        let body = WireCodec.encode(ControlMessage(kind: .cancel, ref: ref, worker: worker))
        try Store.addToOutbox(db, exchange: Names.controlExchange, routingKey: "", replyTo: nil, messageType: ControlMessage.messageType, body: body)
    }

    /// Loads a change's tree, runs `transition`, saves what changed and carries out the effects.
    /// `loaded`: the change's tree and row when the caller has just read them in this
    /// transaction (an outcome reads both to check its sender), so they are not read twice.
    func mutate(
        _ db: Database, changeId: String, loaded: (tree: ChangeTree, change: ChangeRecord)? = nil, _ transition: (inout ChangeTree) throws -> [Effect]
    ) throws {
        let before = try loaded?.tree ?? loadTree(db, changeId)
        var tree = before
        let effects = try transition(&tree)
        // Every queued attempt gets a claim token of its own, saved with the step.
        tree.issueClaimTokens(for: effects, Self.newClaimToken)
        try Store.save(db, tree, before: before)
        let change = try loaded?.change ?? Store.change(db, changeId)
        // Read once for all the jobs this transition queues (a parent's children, say).
        var source: JobSource?
        for effect in effects {
            switch effect {
            case .enqueue(let stepId, let attempt):
                if source == nil { source = try JobSource(db, change) }
                try enqueue(db, change: change, source: source!, step: tree.steps[stepId]!, attempt: attempt)
            case .cancelAttempt(let ref, let worker):
                try addCancel(db, ref, worker: worker)
            case .changeFinished(let status):
                if change.status != status {
                    try Store.updateChange(db, changeId, status: status, now: Store.now())
                    logger.info("change finished", metadata: ["change": "\(changeId)", "status": "\(status.rawValue)"])
                }
                try startWaitingChanges(db, project: change.projectCode, environment: change.environmentCode)
                if change.status != status { try batchChangeFinished(db, changeId: changeId, status: status) }
            }
        }
        if tree.changeStatus == .running, change.status == .pending {
            try Store.updateChange(db, changeId, status: .running, now: Store.now())
        }
    }

    /// Writes a step's job to the outbox: the context from the *current* properties.
    private func enqueue(_ db: Database, change: ChangeRecord, source: JobSource, step: StepRecord, attempt: Int) throws {
        let (project, environment) = (source.project, source.environment)
        let (projectProperties, environmentProperties) = (source.projectProperties, source.environmentProperties)
        let context = StepContext(
            context: .init(
                project: ["code": .string(project.code), "name": .string(project.name)],
                environment: ["code": .string(environment.code), "name": .string(environment.name)],
                change: ["id": .string(change.id), "action": .string(change.action), "git_rev": .string(change.gitRev), "git_sha": .string(change.gitSha)],
                step: ["id": .string(step.id), "action": .string(step.action), "attempt": JSON(attempt)],
                user: ["name": .string(change.user)]),
            project: .init(properties: projectProperties), environment: .init(properties: environmentProperties))
        try Store.setStepContext(db, step.id, context)
        let merged = context.mergedProperties
        let pool = merged["opschain"]?["config"]?["pool"]?.stringValue ?? Names.defaultPool
        let job = StepJob(
            changeId: change.id, stepId: step.id, attempt: attempt, action: step.action,
            git: GitSource(remote: project.gitRemote, rev: change.gitRev, sha: change.gitSha), context: context, runner: configuration.runner,
            buildSecrets: Self.buildSecrets(project: projectProperties, environment: environmentProperties, default: configuration.defaultBuildSecrets),
            pool: pool, claimToken: step.claimToken)
        try Store.addToOutbox(db, exchange: Names.jobsExchange, routingKey: pool, replyTo: Names.outcomesQueue, messageType: StepJob.messageType, body: WireCodec.encode(job))
        if attempt > 1 {
            try Store.appendSystemLog(db, changeId: change.id, stepId: step.id, attempt: attempt, "attempt \(attempt) queued\(step.error.map { " after: \($0)" } ?? "")")
        }
    }

    /// The seed's rule: project lists then environment lists; the default set only when
    /// neither lists any.
    static func buildSecrets(project: JSON, environment: JSON, default defaults: [String]) -> [String] {
        func list(_ properties: JSON) -> [String]? {
            properties["opschain"]?["config"]?["build_secrets"]?.arrayValue?.compactMap(\.stringValue)
        }
        let projectList = list(project)
        let environmentList = list(environment)
        if projectList == nil && environmentList == nil { return defaults }
        return (projectList ?? []) + (environmentList ?? [])
    }
}

/// What every job of one change reads from the store: its project and environment and their
/// *current* properties (nothing a transition writes changes them).
private struct JobSource {
    let project: Project
    let environment: Environment
    let projectProperties: JSON
    let environmentProperties: JSON

    init(_ db: Database, _ change: ChangeRecord) throws {
        project = try Store.project(db, change.projectCode)
        environment = try Store.environment(db, change.projectCode, change.environmentCode)
        projectProperties = try Store.properties(db, change.projectCode, nil).properties
        environmentProperties = try Store.properties(db, change.projectCode, change.environmentCode).properties
    }
}

extension ChangeTree {
    /// Whether `outcome` would be taken: the current attempt of an unfinished step, from the
    /// lease holder (or before any claim was seen).
    func accepts(_ ref: AttemptRef, from identity: WorkerIdentity) -> Bool {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt, !step.status.isFinal, !step.ownDone else { return false }
        return step.status == .queued || (step.status == .running && holds(ref, identity))
    }
}
