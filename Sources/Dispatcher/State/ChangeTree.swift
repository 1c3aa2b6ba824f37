import Protocol

/// A change's steps and the rules that move them. Pure: every event is a method that mutates
/// the tree and returns the effects to carry out; nothing here does I/O.
public struct ChangeTree: Sendable, Equatable {
    public let changeId: String
    public private(set) var steps: [String: StepRecord]
    /// How long a claim or heartbeat keeps a lease, in seconds.
    public var leaseSeconds: Double
    /// At most this many steps of the change queued or running their own action at once, so
    /// that one wide change cannot fill every worker: the rest wait `pending` (`waitingTurn`)
    /// and are queued in turn as places free up.
    public var maxInFlight: Int

    public init(changeId: String, steps: [StepRecord], leaseSeconds: Double = 20, maxInFlight: Int = .max) {
        self.changeId = changeId
        self.steps = Dictionary(uniqueKeysWithValues: steps.map { ($0.id, $0) })
        self.leaseSeconds = leaseSeconds
        self.maxInFlight = maxInFlight
    }

    /// Steps queued or running their own action.
    public var inFlightCount: Int { steps.values.count(where: \.inFlight) }

    public var root: StepRecord? { steps.values.first { $0.parentId == nil } }

    public func children(of id: String) -> [StepRecord] {
        steps.values.filter { $0.parentId == id }.sorted { $0.position < $1.position }
    }

    /// The change's status as its root's.
    public var changeStatus: ChangeStatus {
        guard let root else { return .pending }
        switch root.status {
        case .pending: return .pending
        case .queued, .running: return .running
        case .success: return .success
        case .error, .aborted: return .error
        case .cancelled: return .cancelled
        }
    }

    // MARK: Starting

    /// Starts (or, for a retried change, resumes) the tree: queues what has to run first.
    public mutating func start(now: Double) -> [Effect] {
        guard let root else { return [] }
        return resume(root.id, now: now)
    }

    private mutating func resume(_ id: String, now: Double) -> [Effect] {
        guard let step = steps[id], !step.status.isFinal else { return [] }
        guard step.ownDone else { return queue(id, now: now) }
        steps[id]!.status = .running
        let remaining = children(of: id).filter { $0.status != .success && !($0.status == .error && $0.ignoreFailure) }
        if remaining.isEmpty { return finish(id, .success, error: nil, now: now) }
        switch step.childStrategy ?? .serial {
        case .serial: return resume(remaining[0].id, now: now)
        case .parallel: return remaining.flatMap { resume($0.id, now: now) }
        }
    }

    private mutating func queue(_ id: String, now: Double) -> [Effect] {
        // A step that has to wait joins the end of the line (one already in it is being let in).
        if steps[id]!.status == .pending, steps[id]!.waitingTurn == nil, mustWait(id) {
            steps[id]!.waitingTurn = (steps.values.compactMap(\.waitingTurn).max() ?? 0) + 1
            return []
        }
        steps[id]!.waitingTurn = nil
        steps[id]!.attempt += 1
        steps[id]!.status = .queued
        steps[id]!.runStarted = false
        steps[id]!.runStartedAt = nil
        steps[id]!.worker = nil
        steps[id]!.leaseExpiresAt = nil
        steps[id]!.queuedAt = now
        steps[id]!.resentAt = nil
        // `error` keeps why an earlier attempt ended until this one finishes.
        return [.enqueue(stepId: id, attempt: steps[id]!.attempt)]
    }

    /// Whether a step about to be queued must wait: the change is at its cap, or steps that
    /// came first are waiting already.
    private func mustWait(_ id: String) -> Bool {
        guard maxInFlight != .max else { return false }
        return steps.values.count(where: { $0.inFlight && $0.id != id }) >= maxInFlight
            || steps.values.contains { $0.status == .pending && $0.waitingTurn != nil }
    }

    /// Queues steps waiting for a place under `maxInFlight`, in turn, while places are free.
    private mutating func admitWaiting(now: Double) -> [Effect] {
        let free = maxInFlight - inFlightCount
        guard free > 0 else { return [] }
        let waiting = steps.values.filter { $0.status == .pending && $0.waitingTurn != nil }.sorted { $0.waitingTurn! < $1.waitingTurn! }
        return waiting.prefix(free).flatMap { queue($0.id, now: now) }
    }

    // MARK: Worker events

    /// Whether `identity` holds the lease of `ref` (a running attempt): the identity that
    /// claimed it or, for an attempt claimed before identities were kept, the holder's name.
    func holds(_ ref: AttemptRef, _ identity: WorkerIdentity) -> Bool {
        guard let step = steps[ref.stepId] else { return false }
        if let holder = step.holder(of: ref.attempt) { return holder == identity }
        return step.worker == identity.worker
    }

    private mutating func bind(_ ref: AttemptRef, to identity: WorkerIdentity) {
        steps[ref.stepId]!.worker = identity.worker
        steps[ref.stepId]!.holders = (steps[ref.stepId]!.holders ?? [:]).merging([ref.attempt: identity]) { $1 }
    }

    /// A worker claimed an attempt: the lease is bound to its identity. Claims for old
    /// attempts, finished steps or an attempt another worker holds are answered by cancelling
    /// that worker's run.
    public mutating func claimed(_ ref: AttemptRef, by identity: WorkerIdentity, now: Double) -> [Effect] {
        guard let step = steps[ref.stepId] else { return [] }
        guard ref.attempt == step.attempt, !step.status.isFinal else { return [.cancelAttempt(ref, worker: identity.worker)] }
        switch step.status {
        case .queued:
            steps[ref.stepId]!.status = .running
            bind(ref, to: identity)
            steps[ref.stepId]!.startedAt = steps[ref.stepId]!.startedAt ?? now
            steps[ref.stepId]!.leaseExpiresAt = now + leaseSeconds
            return []
        case .running where !step.ownDone && holds(ref, identity):
            bind(ref, to: identity)
            steps[ref.stepId]!.leaseExpiresAt = now + leaseSeconds
            return []
        case .running where step.worker == identity.worker:
            // The holder's name from another account: a forgery. A cancel by that name would
            // stop the holder's run.
            return []
        case .running:
            // The same attempt delivered twice: the first claim keeps it.
            return [.cancelAttempt(ref, worker: identity.worker)]
        default:
            return []
        }
    }

    /// A phase event or a heartbeat from the lease holder renews the lease.
    public mutating func heard(_ ref: AttemptRef, from identity: WorkerIdentity, runStarted: Bool, policy: ActionPolicy?, now: Double) -> [Effect] {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt, step.status == .running, !step.ownDone, holds(ref, identity) else {
            return []
        }
        steps[ref.stepId]!.leaseExpiresAt = now + leaseSeconds
        if runStarted {
            steps[ref.stepId]!.runStarted = true
            steps[ref.stepId]!.runStartedAt = steps[ref.stepId]!.runStartedAt ?? now
        }
        if let policy { adopt(policy, ref.stepId) }
        return []
    }

    /// Keeps the phase durations a worker reported for the step's current attempt.
    public mutating func recordDurations(_ durations: PhaseDurations, for ref: AttemptRef) {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt else { return }
        steps[ref.stepId]!.phaseDurations = durations
    }

    /// How an attempt ended. Outcomes for old attempts, finished steps or from an identity that
    /// does not hold the lease are dropped; one for a queued attempt (its claim not yet seen)
    /// binds the lease to its sender, as the claim would have.
    public mutating func outcome(_ ref: AttemptRef, from identity: WorkerIdentity, _ verdict: Verdict, now: Double, makeID: () -> String) -> [Effect] {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt, !step.status.isFinal, !step.ownDone else { return [] }
        guard step.status == .queued || (step.status == .running && holds(ref, identity)) else { return [] }
        if step.status == .queued { bind(ref, to: identity) }
        return settle(ref, verdict, now: now, makeID: makeID) + admitWaiting(now: now)
    }

    private mutating func settle(_ ref: AttemptRef, _ verdict: Verdict, now: Double, makeID: () -> String) -> [Effect] {
        let step = steps[ref.stepId]!
        switch verdict {
        case .cancelled:
            return finish(ref.stepId, .cancelled, error: "cancelled on the worker", now: now)
        case .failure(let error, let policy):
            if let policy { adopt(policy, ref.stepId) }
            if step.attempt <= steps[ref.stepId]!.retries {
                steps[ref.stepId]!.error = error
                return queue(ref.stepId, now: now)
            }
            return finish(ref.stepId, .error, error: error, now: now)
        case .success(let children, let strategy, let policy):
            if let policy { adopt(policy, ref.stepId) }
            steps[ref.stepId]!.ownDone = true
            steps[ref.stepId]!.worker = nil
            steps[ref.stepId]!.leaseExpiresAt = nil
            steps[ref.stepId]!.childStrategy = strategy
            steps[ref.stepId]!.status = .running
            if children.isEmpty { return finish(ref.stepId, .success, error: nil, now: now) }
            for (position, child) in children.enumerated() {
                let id = makeID()
                steps[id] = StepRecord(id: id, changeId: changeId, parentId: ref.stepId, position: position, action: child.action)
            }
            let created = self.children(of: ref.stepId)
            switch strategy ?? .serial {
            case .serial: return queue(created[0].id, now: now)
            case .parallel: return created.flatMap { queue($0.id, now: now) }
            }
        }
    }

    private mutating func adopt(_ policy: ActionPolicy, _ id: String) {
        steps[id]!.ignoreFailure = policy.ignoreFailure
        steps[id]!.retries = policy.retries
        steps[id]!.timeoutSeconds = policy.timeoutSeconds ?? steps[id]!.timeoutSeconds
    }

    // MARK: Leases and cancel

    /// Attempts whose lease ran out before `now`.
    public func expiredLeases(now: Double) -> [AttemptRef] {
        steps.values.filter { $0.status == .running && !$0.ownDone && ($0.leaseExpiresAt ?? .infinity) < now }.map(\.ref)
    }

    /// The lease holder went silent. A run that never started is queued again; one that had
    /// started fails ("worker lost during run") unless the action may be re-run.
    public mutating func leaseExpired(_ ref: AttemptRef, now: Double) -> [Effect] {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt, step.status == .running, !step.ownDone else { return [] }
        let stop = Effect.cancelAttempt(ref, worker: step.worker)
        if !step.runStarted { return [stop] + queue(ref.stepId, now: now) }
        if step.attempt <= step.retries {
            steps[ref.stepId]!.error = "worker lost during run; running it again"
            return [stop] + queue(ref.stepId, now: now)
        }
        return [stop] + finish(ref.stepId, .error, error: "worker lost during run (\(step.worker ?? "unknown worker") went silent)", now: now)
            + admitWaiting(now: now)
    }

    /// Attempts still running `grace` seconds past their action's timeout: their worker should
    /// have killed them, so the dispatcher does.
    public func overdue(now: Double, grace: Double) -> [AttemptRef] {
        steps.values.filter { step in
            guard step.status == .running, !step.ownDone, let started = step.runStartedAt, let timeout = step.timeoutSeconds else { return false }
            return now > started + Double(timeout) + grace
        }.map(\.ref)
    }

    /// Queued attempts that nobody has claimed for `after` seconds since their job was last
    /// published: after a broker node dies, a quorum queue keeps a message it had delivered to a
    /// consumer on that node checked out until the node returns, so the job may never come back.
    public func unclaimed(now: Double, after: Double) -> [AttemptRef] {
        steps.values.filter { step in
            guard step.status == .queued, let published = step.resentAt ?? step.queuedAt else { return false }
            return now - published >= after
        }.map(\.ref)
    }

    /// Publishes a queued attempt's job again, with a new claim token (`mutate` issues it): the
    /// old delivery, should it come back, cannot be claimed, so one attempt still runs once.
    public mutating func resend(_ ref: AttemptRef, now: Double) -> [Effect] {
        guard let step = steps[ref.stepId], step.status == .queued, step.attempt == ref.attempt else { return [] }
        steps[ref.stepId]!.resentAt = now
        return [.enqueue(stepId: ref.stepId, attempt: ref.attempt)]
    }

    /// Fails an attempt that ran past its timeout and stops its container.
    public mutating func timedOut(_ ref: AttemptRef, now: Double) -> [Effect] {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt, step.status == .running, !step.ownDone else { return [] }
        let timeout = step.timeoutSeconds.map { "\($0) s" } ?? "timeout"
        return [.cancelAttempt(ref, worker: step.worker)]
            + finish(ref.stepId, .error, error: "the step ran past its timeout of \(timeout) and its worker did not stop it; the dispatcher failed it", now: now)
            + admitWaiting(now: now)
    }

    /// The broker dead-lettered an attempt's job before any worker claimed it (its delivery
    /// limit, say): the step is queued again as a new attempt, `limit` times at most.
    public mutating func jobDeadLettered(_ ref: AttemptRef, reason: String, now: Double, limit: Int = 5) -> [Effect] {
        guard let step = steps[ref.stepId], ref.attempt == step.attempt, step.status == .queued else { return [] }
        if step.attempt >= limit {
            return finish(ref.stepId, .error, error: "the broker dead-lettered this step's job \(step.attempt) times (last: \(reason))", now: now)
                + admitWaiting(now: now)
        }
        steps[ref.stepId]!.error = "the broker dead-lettered the job (\(reason)); queued again"
        return queue(ref.stepId, now: now)
    }

    /// Cancels the change: finished steps keep their state, all others end `cancelled`, and
    /// attempts that may be running are stopped.
    public mutating func cancel(now: Double) -> [Effect] {
        var effects: [Effect] = []
        for id in steps.keys.sorted() where !steps[id]!.status.isFinal {
            let step = steps[id]!
            if (step.status == .queued || step.status == .running) && !step.ownDone {
                effects.append(.cancelAttempt(step.ref, worker: nil))
            }
            steps[id]!.status = .cancelled
            steps[id]!.finishedAt = now
            steps[id]!.leaseExpiresAt = nil
        }
        return effects + [.changeFinished(.cancelled)]
    }

    // MARK: Completion

    /// Marks a step final and lets its parent react: a serial parent runs the next child or,
    /// after a failure, aborts the rest; a parallel parent waits for all its children.
    private mutating func finish(_ id: String, _ status: StepStatus, error: String?, now: Double) -> [Effect] {
        steps[id]!.status = status
        steps[id]!.error = error
        steps[id]!.finishedAt = now
        steps[id]!.leaseExpiresAt = nil
        guard let parentId = steps[id]!.parentId else { return [.changeFinished(changeStatus)] }
        guard let parent = steps[parentId], !parent.status.isFinal else { return [] }
        let siblings = children(of: parentId)
        let failed = siblings.filter(\.failsParent)
        switch parent.childStrategy ?? .serial {
        case .serial:
            if let first = failed.first {
                for sibling in siblings where sibling.status == .pending {
                    steps[sibling.id]!.status = .aborted
                    steps[sibling.id]!.finishedAt = now
                }
                return finish(parentId, .error, error: "child step \"\(first.action)\" failed", now: now)
            }
            if let next = siblings.first(where: { $0.status == .pending }) { return queue(next.id, now: now) }
            return siblings.allSatisfy(\.status.isFinal) ? finish(parentId, .success, error: nil, now: now) : []
        case .parallel:
            guard siblings.allSatisfy(\.status.isFinal) else { return [] }
            if let first = failed.first { return finish(parentId, .error, error: "child step \"\(first.action)\" failed", now: now) }
            return finish(parentId, .success, error: nil, now: now)
        }
    }

    // MARK: Retry

    /// The tree of a change that retries this one: successful steps are kept as they were,
    /// the rest run again (a step whose own action had succeeded only re-runs its children).
    public func retried(as changeId: String, makeID: () -> String) -> [StepRecord] {
        var result: [StepRecord] = []
        func copy(_ step: StepRecord, parent: String?) {
            let id = makeID()
            if step.status == .success {
                var kept = step
                kept.id = id
                kept.changeId = changeId
                kept.parentId = parent
                result.append(kept)
                for child in children(of: step.id) { copy(child, parent: id) }
                return
            }
            var again = StepRecord(id: id, changeId: changeId, parentId: parent, position: step.position, action: step.action)
            again.ignoreFailure = step.ignoreFailure
            again.retries = step.retries
            if step.ownDone {
                again.ownDone = true
                again.childStrategy = step.childStrategy
                again.attempt = step.attempt
            }
            result.append(again)
            if step.ownDone {
                for child in children(of: step.id) { copy(child, parent: id) }
            }
        }
        if let root { copy(root, parent: nil) }
        return result
    }
}

extension ChangeTree {
    /// Extends every running attempt's lease to at least `until`.
    mutating func renewLeases(until: Double) {
        for (id, step) in steps where step.status == .running && step.leaseExpiresAt != nil {
            steps[id]!.leaseExpiresAt = max(step.leaseExpiresAt!, until)
        }
    }
}

extension ChangeTree {
    /// A worker whose broker user is its own name (one account per worker, the convention).
    public mutating func claimed(_ ref: AttemptRef, by worker: String, now: Double) -> [Effect] {
        claimed(ref, by: WorkerIdentity(user: worker, worker: worker), now: now)
    }

    public mutating func heard(_ ref: AttemptRef, from worker: String, runStarted: Bool, policy: ActionPolicy?, now: Double) -> [Effect] {
        heard(ref, from: WorkerIdentity(user: worker, worker: worker), runStarted: runStarted, policy: policy, now: now)
    }

    public mutating func outcome(_ ref: AttemptRef, from worker: String, _ verdict: Verdict, now: Double, makeID: () -> String) -> [Effect] {
        outcome(ref, from: WorkerIdentity(user: worker, worker: worker), verdict, now: now, makeID: makeID)
    }

    /// Gives every attempt that `effects` queue a claim token of its own (`StepJob.claimToken`).
    mutating func issueClaimTokens(for effects: [Effect], _ makeToken: () -> String) {
        for case .enqueue(let stepId, _) in effects { steps[stepId]?.claimToken = makeToken() }
    }
}
