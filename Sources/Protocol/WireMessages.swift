/// Milliseconds since 1970, the time stamp of every wire message.
public typealias EpochMilliseconds = Int64

/// Where a step's code comes from.
public struct GitSource: Codable, Sendable, Hashable {
    /// A repository path or URL the worker can fetch.
    public var remote: String
    /// The revision the change was created with (`GIT_REV`).
    public var rev: String
    /// The SHA it resolved to when the change was created (`GIT_SHA`).
    public var sha: String

    public init(remote: String, rev: String, sha: String) {
        self.remote = remote
        self.rev = rev
        self.sha = sha
    }
}

/// The runner base image a step image is built from.
public struct RunnerSettings: Codable, Sendable, Hashable {
    /// `OPSCHAIN_BASE_RUNNER`, e.g. `stepfleet/runner:0.1.0`.
    public var baseImage: String
    /// `OPSCHAIN_VERSION`.
    public var version: String

    public init(baseImage: String, version: String) {
        self.baseImage = baseImage
        self.version = version
    }
}

/// dispatcher → worker, on `stepfleet.steps.<pool>`: run one attempt of one step.
public struct StepJob: WireMessage, Hashable {
    public static let messageType = "step_job"

    public var changeId: String
    public var stepId: String
    public var attempt: Int
    public var action: String
    public var git: GitSource
    public var context: StepContext
    public var runner: RunnerSettings
    /// Named build-secret sets the worker provides to `opschain-exec` during the build.
    public var buildSecrets: [String]
    /// Kill the step's container after this many seconds; nil: the worker's default.
    public var timeoutSeconds: Int?
    public var pool: String
    /// A random token of this attempt, known only to the dispatcher and to whoever reads the
    /// pool's queue: the claim (and an outcome sent before the claim was heard) carries it back,
    /// so a broker account that cannot read the pool cannot claim the pool's attempts.
    public var claimToken: String?

    public init(
        changeId: String, stepId: String, attempt: Int, action: String, git: GitSource, context: StepContext,
        runner: RunnerSettings, buildSecrets: [String] = [], timeoutSeconds: Int? = nil, pool: String = "default", claimToken: String? = nil
    ) {
        self.claimToken = claimToken
        self.changeId = changeId
        self.stepId = stepId
        self.attempt = attempt
        self.action = action
        self.git = git
        self.context = context
        self.runner = runner
        self.buildSecrets = buildSecrets
        self.timeoutSeconds = timeoutSeconds
        self.pool = pool
    }
}

/// Which attempt of which step a message is about. Only the current attempt counts.
public struct AttemptRef: Codable, Sendable, Hashable, CustomStringConvertible {
    public var stepId: String
    public var attempt: Int

    public init(stepId: String, attempt: Int) {
        self.stepId = stepId
        self.attempt = attempt
    }

    public var description: String { "\(stepId)#\(attempt)" }
}

/// worker → dispatcher, on `stepfleet.events`: claims, phases and heartbeats.
public struct WorkerEvent: WireMessage, Hashable {
    public static let messageType = "worker_event"

    public enum Kind: String, Codable, Sendable {
        /// The worker took the job (published before the job is acked).
        case claimed
        /// A phase started or finished (see `phase`).
        case phase
        /// The worker is still on this attempt; renews its lease.
        case heartbeat
    }

    public var kind: Kind
    public var ref: AttemptRef
    public var worker: String
    public var at: EpochMilliseconds
    public var phase: Phase?
    /// Sent with the run phase: the action's retry and failure policy, so that the dispatcher
    /// knows it even if the worker is lost before its outcome.
    public var policy: ActionPolicy?
    /// A claim's proof that its sender took the job from the pool's queue (`StepJob.claimToken`).
    public var claimToken: String?

    public init(
        kind: Kind, ref: AttemptRef, worker: String, at: EpochMilliseconds, phase: Phase? = nil, policy: ActionPolicy? = nil, claimToken: String? = nil
    ) {
        self.claimToken = claimToken
        self.kind = kind
        self.ref = ref
        self.worker = worker
        self.at = at
        self.phase = phase
        self.policy = policy
    }
}

public struct Phase: Codable, Sendable, Hashable {
    public enum Name: String, Codable, Sendable {
        case build
        case run
    }

    public enum State: String, Codable, Sendable {
        case started
        case finished
    }

    public var name: Name
    public var state: State
    /// Set when `state` is `finished`.
    public var durationMs: Int?
    /// Set when `state` is `finished`: the parts of the phases so far (absent from workers
    /// before it was added).
    public var durations: PhaseDurations?

    public init(name: Name, state: State, durationMs: Int? = nil, durations: PhaseDurations? = nil) {
        self.name = name
        self.state = state
        self.durationMs = durationMs
        self.durations = durations
    }
}

/// How long the parts of an attempt's phases took, in milliseconds, each set once known: where
/// a step's time goes. Every field is optional, so older and newer workers and dispatchers
/// read each other's messages.
public struct PhaseDurations: Codable, Sendable, Hashable {
    /// Build: from its start until the checkout and the repository's files were ready.
    public var buildInitialiseMs: Int?
    /// Build: the whole phase (the image built or found).
    public var buildMs: Int?
    /// Run: from its start until the container was created with step_context.json in it.
    public var runInitialiseMs: Int?
    /// Run: from the container's start until it exited.
    public var runningMs: Int?
    /// Run: from the container's exit until its output and step_result.json were read.
    public var runCompletingMs: Int?
    /// Run: the whole phase.
    public var runMs: Int?

    public init(
        buildInitialiseMs: Int? = nil, buildMs: Int? = nil, runInitialiseMs: Int? = nil, runningMs: Int? = nil, runCompletingMs: Int? = nil,
        runMs: Int? = nil
    ) {
        self.buildInitialiseMs = buildInitialiseMs
        self.buildMs = buildMs
        self.runInitialiseMs = runInitialiseMs
        self.runningMs = runningMs
        self.runCompletingMs = runCompletingMs
        self.runMs = runMs
    }

    /// The names `parts` uses, all of them, in order.
    public var allPartNames: [String] { ["build.initialise", "build", "run.initialise", "run.running", "run.completing", "run"] }

    /// Each part with its name, in the order the phases run; unset parts left out.
    public var parts: [(name: String, ms: Int)] {
        [
            ("build.initialise", buildInitialiseMs), ("build", buildMs), ("run.initialise", runInitialiseMs), ("run.running", runningMs),
            ("run.completing", runCompletingMs), ("run", runMs),
        ].compactMap { name, ms in ms.map { (name, $0) } }
    }
}

/// worker → dispatcher, on `stepfleet.logs`: a batch of a step's log lines.
public struct LogBatch: WireMessage, Hashable {
    public static let messageType = "log_batch"

    public enum Stream: String, Codable, Sendable {
        case stdout
        case stderr
        /// Lines StepFleet writes itself (phases, errors).
        case system
    }

    public struct Line: Codable, Sendable, Hashable {
        /// Per attempt, from 0, with no gaps: duplicates and losses are visible.
        public var seq: Int
        public var stream: Stream
        public var text: String
        public var at: EpochMilliseconds

        public init(seq: Int, stream: Stream, text: String, at: EpochMilliseconds) {
            self.seq = seq
            self.stream = stream
            self.text = text
            self.at = at
        }
    }

    public var ref: AttemptRef
    public var worker: String
    public var lines: [Line]

    public init(ref: AttemptRef, worker: String, lines: [Line]) {
        self.ref = ref
        self.worker = worker
        self.lines = lines
    }
}

/// worker → dispatcher, to the job's reply-to queue: how an attempt ended.
public struct StepOutcome: WireMessage, Hashable {
    public static let messageType = "step_outcome"

    public enum Status: String, Codable, Sendable {
        case success
        case error
        case cancelled
    }

    public var ref: AttemptRef
    public var worker: String
    public var status: Status
    public var exitCode: Int?
    /// What went wrong, precisely; nil on success.
    public var error: String?
    /// The step's `step_result.json`, when it wrote a valid one.
    public var result: StepResult?
    /// True once the container was started: a lost attempt after this point is not re-queued.
    public var runStarted: Bool
    public var buildMs: Int?
    public var runMs: Int?
    /// The action's settings from `actions.yml` that the dispatcher applies.
    public var policy: ActionPolicy?
    /// When the worker claimed the attempt (its clock).
    public var claimedAt: EpochMilliseconds?
    /// The parts of its phases (absent from workers before it was added).
    public var phases: PhaseDurations?
    /// The job's `claimToken`: an outcome that overtakes its claim is taken only with it.
    public var claimToken: String?

    public init(
        ref: AttemptRef, worker: String, status: Status, exitCode: Int? = nil, error: String? = nil,
        result: StepResult? = nil, runStarted: Bool, buildMs: Int? = nil, runMs: Int? = nil, policy: ActionPolicy? = nil
    ) {
        self.ref = ref
        self.worker = worker
        self.status = status
        self.exitCode = exitCode
        self.error = error
        self.result = result
        self.runStarted = runStarted
        self.buildMs = buildMs
        self.runMs = runMs
        self.policy = policy
    }
}

/// An action's failure-handling settings (`ignore_failure`, `retries`, `timeout`).
public struct ActionPolicy: Codable, Sendable, Hashable {
    public var ignoreFailure: Bool
    public var retries: Int
    public var timeoutSeconds: Int?

    public init(ignoreFailure: Bool = false, retries: Int = 0, timeoutSeconds: Int? = nil) {
        self.ignoreFailure = ignoreFailure
        self.retries = retries
        self.timeoutSeconds = timeoutSeconds
    }
}

/// dispatcher → every worker, on the `stepfleet.control` fanout.
public struct ControlMessage: WireMessage, Hashable {
    public static let messageType = "control"

    public enum Kind: String, Codable, Sendable {
        /// Kill the attempt's container if this worker runs it.
        case cancel
        /// Stop taking jobs (the named worker, or all when nil).
        case drain
    }

    public var kind: Kind
    public var ref: AttemptRef?
    public var worker: String?

    public init(kind: Kind, ref: AttemptRef? = nil, worker: String? = nil) {
        self.kind = kind
        self.ref = ref
        self.worker = worker
    }
}
