import HostCommand
import Protocol

public struct DispatcherConfiguration: Sendable {
    /// Seconds a claim or heartbeat keeps an attempt's lease (three worker heartbeats by default).
    public var leaseSeconds: Double
    /// `OPSCHAIN_BASE_RUNNER` and `OPSCHAIN_VERSION` for step images.
    public var runner: RunnerSettings
    /// The build-secret set used when neither project nor environment lists any.
    public var defaultBuildSecrets: [String]
    /// Which git remotes projects may name (`--git-local-roots`, `--git-allow-loopback`).
    public var gitPolicy: GitRemotePolicy
    /// A step whose result lists more child steps than this fails, and none is created.
    public var maxChildrenPerStep: Int
    /// Steps of one change queued or running at once; the rest wait, so one wide change
    /// leaves workers for the others.
    public var maxStepsInFlightPerChange: Int
    /// A queued job nobody has claimed for this long, while its pool's queue has no ready
    /// message, is published again (a broker node that died can hold its delivery for good).
    public var unclaimedResendSeconds: Double = 30
    /// Worker events (claims, phases, heartbeats) and log batches applied in one store
    /// transaction at most, when that many wait; 1 (the default): one transaction per message.
    /// `stepfleet bench dispatcher --compare` measures both: batches cut transactions about
    /// fivefold but hold the single writer longer, which delayed outcomes on a loaded machine.
    public var messageBatchLimit = 1

    public init(
        leaseSeconds: Double = 20, runner: RunnerSettings = RunnerSettings(baseImage: "stepfleet/runner:\(StepFleetVersion.current)", version: StepFleetVersion.current),
        defaultBuildSecrets: [String] = ["opschain-build-env"], gitPolicy: GitRemotePolicy = GitRemotePolicy(), maxChildrenPerStep: Int = 100,
        maxStepsInFlightPerChange: Int = 20
    ) {
        self.maxChildrenPerStep = maxChildrenPerStep
        self.maxStepsInFlightPerChange = maxStepsInFlightPerChange
        self.leaseSeconds = leaseSeconds
        self.runner = runner
        self.defaultBuildSecrets = defaultBuildSecrets
        self.gitPolicy = gitPolicy
    }

    /// The git runner every git call of the dispatcher goes through.
    var git: Git { Git(policy: gitPolicy) }
}
