import Foundation
import HostCommand
import Protocol

/// Settings of one worker process.
public struct WorkerConfiguration: Sendable {
    /// Unique per process; appears in claims, heartbeats, outcomes and container labels.
    public var name: String
    /// The pool whose queue this worker consumes (`stepfleet.steps.<pool>`).
    public var pool: String
    /// Steps run at once.
    public var slots: Int
    /// Mirrors, checkouts and build scratch space.
    public var workDirectory: String
    /// Overrides the job's `OPSCHAIN_BASE_RUNNER` when set.
    public var runnerImage: String?
    public var heartbeatInterval: Duration
    /// For steps whose job and action name none.
    public var defaultTimeout: Duration
    public var limits: ContainerLimits
    public var maximumConcurrentBuilds: Int
    /// How long running steps may take to finish on SIGTERM before they are killed.
    public var shutdownGrace: Duration
    /// Build-secret sets: one `KEY=value` file per set name (`BuildSecretStore`).
    public var secretsDirectory: String?
    /// Engine networks a step may ask for with `opschain.config.network` (`StepNetwork`);
    /// `default` is the engine's default network. Steps that ask for none get only `lo`.
    public var stepNetworks: [String]
    /// Where step images are tagged; workers sharing an engine should share it.
    public var imageRepository: String
    /// How many step images the engine keeps, and for how long after their last use.
    public var imageCache: ImageCachePolicy
    /// Which git remotes jobs may name (`--git-local-roots`, `--git-allow-loopback`): the same
    /// policy as the dispatcher's.
    public var gitPolicy: GitRemotePolicy = GitRemotePolicy()
    /// How long a step's image build may take: the default, and the most that
    /// `opschain.config.build_timeout` may ask for (`BuildTimeout`).
    public var buildTimeout: Duration
    /// Below this many free bytes in the work directory or the engine's root directory the
    /// worker takes no jobs (`DiskSpace`); 0 never pauses.
    public var minimumFreeDisk: Int64
    /// The broker user step jobs and control messages must come from (their verified
    /// `user_id`); others are dead-lettered or ignored. Nil: the worker's own broker user (a
    /// fleet whose processes share one account, which cannot tell its members apart).
    public var dispatcherUser: String?
    /// The most bytes of output a step's log holds (`LogLimiter`); past it the rest is counted,
    /// not shipped, and the step runs on.
    public var logCap: Int = LogLimiter.defaultLogCap
    /// What runs step containers (`--runtime`); Docker builds the images either way.
    public var runtime: StepRuntime = .docker
    /// The oci runtime's layer cache (`--layer-cache`), shared by the workers of a host.
    public var layerCacheDirectory: String = OCIContainerRuntime.defaultLayerDirectory
    /// The oci runtime's containers started ahead of their steps (`--warm-containers`); nil
    /// for as many as there are slots.
    public var warmContainers: Int?

    public init(
        name: String = WorkerConfiguration.defaultName(), pool: String = Names.defaultPool, slots: Int = 2,
        workDirectory: String = WorkerConfiguration.defaultWorkDirectory(), runnerImage: String? = nil,
        heartbeatInterval: Duration = .seconds(5), defaultTimeout: Duration = .seconds(3600), limits: ContainerLimits = ContainerLimits(),
        maximumConcurrentBuilds: Int = 2, shutdownGrace: Duration = .seconds(30), secretsDirectory: String? = nil,
        stepNetworks: [String] = ["default"], imageRepository: String = DockerImageBuilder.defaultRepository,
        imageCache: ImageCachePolicy = ImageCachePolicy(), buildTimeout: Duration = .seconds(1800), minimumFreeDisk: Int64 = 2048 << 20,
        dispatcherUser: String? = nil
    ) {
        self.buildTimeout = buildTimeout
        self.minimumFreeDisk = minimumFreeDisk
        self.dispatcherUser = dispatcherUser
        self.imageRepository = imageRepository
        self.imageCache = imageCache
        self.secretsDirectory = secretsDirectory
        self.stepNetworks = stepNetworks
        self.name = name
        self.pool = pool
        self.slots = slots
        self.workDirectory = workDirectory
        self.runnerImage = runnerImage
        self.heartbeatInterval = heartbeatInterval
        self.defaultTimeout = defaultTimeout
        self.limits = limits
        self.maximumConcurrentBuilds = maximumConcurrentBuilds
        self.shutdownGrace = shutdownGrace
    }

    /// Where a worker keeps its mirrors and scratch space when told nothing: never the folder
    /// it was started from. Root: `/var/lib/stepfleet/worker`; anyone else: the XDG state
    /// directory, `$XDG_STATE_HOME/stepfleet/worker` (`~/.local/state/stepfleet/worker`).
    public static func defaultWorkDirectory(uid: uid_t = getuid(), environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if uid == 0 { return "/var/lib/stepfleet/worker" }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/stepfleet/worker" }
        let home = environment["HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? NSHomeDirectory()
        return home + "/.local/state/stepfleet/worker"
    }

    /// `host-pid-random`: unique, and says where the worker runs.
    public static func defaultName() -> String {
        "\(ProcessInfo.processInfo.hostName.split(separator: ".").first ?? "worker")-\(getpid())-\(UUID().uuidString.prefix(4).lowercased())"
    }
}
