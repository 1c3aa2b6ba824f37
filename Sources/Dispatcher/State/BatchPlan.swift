/// A batch's status: `running` until every environment has ended; then `success` when every
/// change succeeded, `cancelled` when it was cancelled, `error` otherwise.
public enum BatchStatus: String, Codable, Sendable, CaseIterable {
    case running, success, error, cancelled

    public var isFinal: Bool { self != .running }
}

/// How one environment of a batch went.
public enum BatchMemberStatus: String, Codable, Sendable, CaseIterable {
    /// Not started yet.
    case waiting
    /// Its change was created (it may wait behind another change on its environment).
    case running
    case success
    /// Its change failed.
    case error
    /// Its change was cancelled.
    case cancelled
    /// Never started: the batch stopped first (`reason` says why).
    case skipped

    public var isFinal: Bool { self != .waiting && self != .running }
    /// Counts towards `max_failures`.
    public var isFailure: Bool { self == .error || self == .cancelled }
}

/// One environment of a batch, in the order the batch runs them.
public struct BatchMember: Sendable, Equatable, Codable {
    public var position: Int
    public var environment: String
    public var status: BatchMemberStatus
    /// The change made for it, once started.
    public var changeId: String?
    /// Why it was skipped, or why it could not start.
    public var reason: String?
    public var startedAt: Double?
    public var finishedAt: Double?

    public init(position: Int, environment: String) {
        self.position = position
        self.environment = environment
        status = .waiting
    }
}

/// A batch's progress over its environments and the rules that move it: at most
/// `maxParallel` changes running, a canary wave that must all succeed before the rest start,
/// and a stop once failures pass `maxFailures`. Pure: every event mutates the plan and returns
/// what to do; the engine carries the actions out in the same transaction.
public struct BatchPlan: Sendable, Equatable {
    public let batchId: String
    public let maxParallel: Int
    public let maxFailures: Int
    /// The first `canary` environments run first; the rest start only when all of them succeeded.
    public let canary: Int
    public private(set) var members: [BatchMember]
    public private(set) var status: BatchStatus
    /// Set when the batch stopped starting changes: failures past the limit, a failed canary, a cancel.
    public private(set) var stopReason: String?
    public private(set) var finishedAt: Double?
    /// Set once `cancel` was called: the batch then ends `cancelled`.
    public private(set) var cancelRequested: Bool

    /// What the engine must do after a transition.
    public enum Action: Sendable, Equatable {
        /// Create (and start, when its environment is free) the change `changeId` for a member.
        case createChange(position: Int, environment: String, changeId: String)
        /// Cancel a running member's change.
        case cancelChange(changeId: String)
        /// Every member has ended: the batch ends with this status.
        case finished(BatchStatus)
    }

    public init(
        batchId: String, maxParallel: Int, maxFailures: Int, canary: Int, members: [BatchMember], status: BatchStatus = .running, stopReason: String? = nil,
        cancelRequested: Bool = false, finishedAt: Double? = nil
    ) {
        precondition(maxParallel >= 1 && maxFailures >= 0 && canary >= 0, "a batch's limits are checked before it is made")
        self.batchId = batchId
        self.maxParallel = maxParallel
        self.maxFailures = maxFailures
        self.canary = canary
        self.members = members.sorted { $0.position < $1.position }
        self.status = status
        self.stopReason = stopReason
        self.cancelRequested = cancelRequested
        self.finishedAt = finishedAt
    }

    // MARK: Counts

    public func count(_ status: BatchMemberStatus) -> Int { members.count(where: { $0.status == status }) }
    public var failures: Int { members.count(where: \.status.isFailure) }
    public var running: Int { count(.running) }
    /// Whether the canary wave (if any) has not yet all succeeded.
    var inCanaryWave: Bool { members.prefix(canary).contains { $0.status != .success } }

    // MARK: Events

    /// Starts the batch: the first wave (the canaries, or the first `maxParallel` environments).
    public mutating func start(now: Double, makeID: () -> String) -> [Action] {
        guard status == .running else { return [] }
        return admit(now: now, makeID: makeID) + finishIfDone(now: now)
    }

    /// A member's change ended. Changes the batch does not run, or members already final, are ignored.
    public mutating func changeFinished(_ changeId: String, _ change: ChangeStatus, now: Double, makeID: () -> String) -> [Action] {
        guard let index = members.firstIndex(where: { $0.changeId == changeId }), members[index].status == .running else { return [] }
        switch change {
        case .success: members[index].status = .success
        case .error: members[index].status = .error
        case .cancelled: members[index].status = .cancelled
        case .pending, .running: return []
        }
        members[index].finishedAt = now
        if stopReason == nil {
            if members[index].status != .success, members[index].position < canary {
                stop("the canary environment \(members[index].environment) did not succeed (\(change.rawValue)); the rest did not start", now: now)
            } else if failures > maxFailures {
                stop(tooManyFailures, now: now)
            }
        }
        return admit(now: now, makeID: makeID) + finishIfDone(now: now)
    }

    /// A member's change could not be created (its environment was deleted since the batch
    /// was made): it ends `error` with `reason`, and counts as a failure.
    public mutating func changeNotCreated(position: Int, reason: String, now: Double, makeID: () -> String) -> [Action] {
        guard let index = members.firstIndex(where: { $0.position == position }), members[index].status == .running else { return [] }
        members[index].status = .error
        members[index].changeId = nil
        members[index].reason = reason
        members[index].finishedAt = now
        if stopReason == nil, failures > maxFailures {
            stop(tooManyFailures, now: now)
        }
        return admit(now: now, makeID: makeID) + finishIfDone(now: now)
    }

    /// Cancels the batch: environments not started end `skipped`, running changes are
    /// cancelled (their ends come back as `changeFinished`). Nil when the batch has ended.
    public mutating func cancel(now: Double) -> [Action]? {
        guard status == .running else { return nil }
        let wasStopped = stopReason != nil
        stopReason = wasStopped ? stopReason : "the batch was cancelled"
        skipWaiting(now: now)
        cancelRequested = true
        let cancels = members.filter { $0.status == .running }.compactMap(\.changeId).map { Action.cancelChange(changeId: $0) }
        return cancels + finishIfDone(now: now)
    }

    /// After a dispatcher restart: members whose change ended while no one was listening are
    /// settled from `changes` (each member's change status as stored), and free places are
    /// filled. A member that has a change is never started again.
    public mutating func resume(changes: [String: ChangeStatus], now: Double, makeID: () -> String) -> [Action] {
        guard status == .running else { return [] }
        var actions: [Action] = []
        for member in members where member.status == .running {
            guard let changeId = member.changeId else { continue }
            guard let change = changes[changeId] else {
                actions += changeNotCreated(position: member.position, reason: "its change \(changeId) is missing from the store", now: now, makeID: makeID)
                continue
            }
            if change.isFinal { actions += changeFinished(changeId, change, now: now, makeID: makeID) }
        }
        return actions + admit(now: now, makeID: makeID) + finishIfDone(now: now)
    }

    // MARK: Rules

    private var tooManyFailures: String {
        "\(failures) change\(failures == 1 ? "" : "s") failed, more than max_failures (\(maxFailures)); the rest did not start"
    }

    private mutating func stop(_ reason: String, now: Double) {
        stopReason = reason
        skipWaiting(now: now)
    }

    private mutating func skipWaiting(now: Double) {
        for index in members.indices where members[index].status == .waiting {
            members[index].status = .skipped
            members[index].reason = stopReason
            members[index].finishedAt = now
        }
    }

    /// Starts waiting members, in order, while places are free (only canaries while the
    /// canary wave has not all succeeded).
    private mutating func admit(now: Double, makeID: () -> String) -> [Action] {
        guard status == .running, stopReason == nil else { return [] }
        var free = maxParallel - running
        var actions: [Action] = []
        let canaryWave = inCanaryWave
        for index in members.indices where free > 0 && members[index].status == .waiting {
            if canaryWave && members[index].position >= canary { break }
            let id = makeID()
            members[index].status = .running
            members[index].changeId = id
            members[index].startedAt = now
            actions.append(.createChange(position: members[index].position, environment: members[index].environment, changeId: id))
            free -= 1
        }
        return actions
    }

    private mutating func finishIfDone(now: Double) -> [Action] {
        guard status == .running, members.allSatisfy(\.status.isFinal) else { return [] }
        if cancelRequested {
            status = .cancelled
        } else {
            status = members.allSatisfy { $0.status == .success } ? .success : .error
        }
        finishedAt = now
        return [.finished(status)]
    }
}
