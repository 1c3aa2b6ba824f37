import Protocol

/// A step's status. `pending`: created, waiting for its turn; `queued`: its job is on its way
/// to a worker; `running`: claimed (or its children are running); the rest are final.
public enum StepStatus: String, Codable, Sendable, CaseIterable {
    case pending, queued, running, success, error, cancelled, aborted

    public var isFinal: Bool {
        switch self {
        case .success, .error, .cancelled, .aborted: true
        case .pending, .queued, .running: false
        }
    }
}

/// A change's status: `pending` while another change runs on its project environment, then
/// its root step's.
public enum ChangeStatus: String, Codable, Sendable, CaseIterable {
    case pending, running, success, error, cancelled

    public var isFinal: Bool { self == .success || self == .error || self == .cancelled }
}

/// One step as the dispatcher keeps it.
public struct StepRecord: Sendable, Equatable, Codable {
    public var id: String
    public var changeId: String
    public var parentId: String?
    /// Order among its siblings.
    public var position: Int
    public var action: String
    public var status: StepStatus
    /// The current attempt; 0 until first queued.
    public var attempt: Int
    /// How its children run (from its result).
    public var childStrategy: ExecutionStrategy?
    /// Its own action has succeeded (its children may still run).
    public var ownDone: Bool
    /// The current attempt's container was (about to be) started.
    public var runStarted: Bool
    /// The worker holding the current attempt's lease.
    public var worker: String?
    /// Epoch seconds; the lease of a running attempt.
    public var leaseExpiresAt: Double?
    public var ignoreFailure: Bool
    /// How many re-runs the action's policy allows.
    public var retries: Int
    public var error: String?
    public var queuedAt: Double?
    /// When the current attempt's job was last published again because nobody claimed it.
    public var resentAt: Double?
    public var startedAt: Double?
    public var finishedAt: Double?
    /// When the current attempt's run phase began.
    public var runStartedAt: Double?
    /// The action's timeout, as its worker reported it.
    public var timeoutSeconds: Int?
    /// The verified identity that claimed each attempt (by attempt number): later messages
    /// about an attempt count only from it.
    public var holders: [Int: WorkerIdentity]?
    /// Set while the step waits for a free place under its change's cap on steps in flight:
    /// its turn in the line of waiting steps (they are queued in turn as places free up).
    public var waitingTurn: Int?
    /// How long the parts of the current attempt's phases took, as its worker reported them.
    public var phaseDurations: PhaseDurations?
    /// The current attempt's claim token (`StepJob.claimToken`), made when it is queued.
    public var claimToken: String?

    public init(id: String, changeId: String, parentId: String?, position: Int, action: String) {
        self.id = id
        self.changeId = changeId
        self.parentId = parentId
        self.position = position
        self.action = action
        status = .pending
        attempt = 0
        childStrategy = nil
        ownDone = false
        runStarted = false
        worker = nil
        leaseExpiresAt = nil
        ignoreFailure = false
        retries = 0
    }

    public var ref: AttemptRef { AttemptRef(stepId: id, attempt: attempt) }

    /// Who claimed `attempt`, if anyone has yet.
    public func holder(of attempt: Int) -> WorkerIdentity? { holders?[attempt] }

    /// Queued, or running its own action: it takes a place under the change's cap.
    var inFlight: Bool { status == .queued || (status == .running && !ownDone) }

    /// A failure that fails its parent.
    var failsParent: Bool {
        switch status {
        case .error: !ignoreFailure
        case .cancelled, .aborted: true
        default: false
        }
    }
}

/// What an outcome amounts to once the dispatcher has tried to apply its property diffs.
public enum Verdict: Sendable, Equatable {
    case success(children: [ChildStep], strategy: ExecutionStrategy?, policy: ActionPolicy?)
    case failure(error: String, policy: ActionPolicy?)
    case cancelled
}

/// What the dispatcher must do after a transition.
public enum Effect: Sendable, Equatable {
    /// Publish (through the outbox) a job for this attempt of this step.
    case enqueue(stepId: String, attempt: Int)
    /// Tell workers (or one worker) to stop an attempt.
    case cancelAttempt(AttemptRef, worker: String?)
    /// The root step is final: the change is too.
    case changeFinished(ChangeStatus)
}
