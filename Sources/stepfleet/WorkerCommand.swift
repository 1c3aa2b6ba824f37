import AMQP
import ArgumentParser
import Dispatch
import Foundation
import Logging
import Protocol
import Worker

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Consume a pool's step jobs and run each step in its own container.",
        discussion: "SIGTERM or SIGINT: stop taking jobs, let running steps finish within the grace period, then kill them and report them."
    )

    @Option(help: "Broker URL(s), comma-separated (env STEPFLEET_AMQP).")
    var amqp = ProcessInfo.processInfo.environment["STEPFLEET_AMQP"] ?? "amqp://guest:guest@127.0.0.1:5672/"
    @Option(help: "The pool to serve.")
    var pool = Names.defaultPool
    @Option(help: "Steps run at once.")
    var slots = 2
    @Option(help: "The Docker engine.")
    var docker = "unix:///var/run/docker.sock"
    @Option(help: "Base runner image (OPSCHAIN_BASE_RUNNER); default: the one the job names.")
    var runnerImage: String?
    @Option(help: ArgumentHelp(
        "Mirrors, checkouts and build scratch space (default: /var/lib/stepfleet/worker as root, else $XDG_STATE_HOME/stepfleet/worker, i.e. ~/.local/state/stepfleet/worker).",
        valueName: "dir"))
    var workDir: String?
    @Option(help: "Worker name (default: host-pid-random).")
    var name: String?
    @Option(help: "Seconds running steps get to finish on shutdown.")
    var grace = 30
    @Option(help: "Seconds between heartbeats.")
    var heartbeat = 5
    @Option(help: "Step timeout in seconds when neither the job nor the action sets one.")
    var defaultTimeout = 3600
    @Option(help: "Concurrent image builds.")
    var builds = 2
    @Option(help: "Memory limit of a step container, MiB.")
    var memory = 1024
    @Option(help: "Process limit of a step container.")
    var pids = 1024
    @Option(help: "CPU limit of a step container.")
    var cpus = 1.0
    @Option(help: "Disk limit of a step container, MiB: what it may write; past it the step is killed.")
    var disk = 1024
    @Option(help: ArgumentHelp(
        "The most a step's log holds, MiB: past it the rest of the step's output is counted, not shipped, and the log ends with \"[… N bytes cut: the step's log passed its cap]\"; the step runs on. One line holds at most 16 KiB (the rest of it is cut the same way).",
        valueName: "mib"))
    var logCap = 16
    @Option(help: "Seconds an image build may take; opschain.config.build_timeout may ask for less.")
    var buildTimeout = 1800
    @Option(help: "Free MiB needed in the work directory and the engine's root directory to take jobs; 0: never pause.")
    var minFreeDisk = 2048
    @Option(help: "Build-secret sets: one file per set name holding KEY=value lines (env STEPFLEET_SECRETS_DIR).")
    var secretsDir: String?
    @Option(help: "Engine networks a step may ask for with opschain.config.network, comma-separated (true asks for \"default\"); empty: none.")
    var stepNetworks = "default"
    @Option(help: "Step images the engine keeps, the most recently used first; 0 keeps all.")
    var keepImages = 200
    @Option(help: "Minutes a step image stays after its last use whatever --keep-images says.")
    var imageIdle = 10
    @Option(help: "Where step images are tagged; workers sharing an engine should share it.")
    var imageRepository = DockerImageBuilder.defaultRepository
    @Option(help: "The dispatcher's broker user: step jobs and control messages from any other account are refused (env STEPFLEET_DISPATCHER_USER). For a fleet sharing one account, that account.")
    var dispatcherUser = ProcessInfo.processInfo.environment["STEPFLEET_DISPATCHER_USER"] ?? Names.conventionalDispatcherUser
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel = "info"
    @Option(help: ArgumentHelp(
        "What runs step containers: docker (the engine), oci (runc on the image's layers; root only) or auto (oci when runc works here, else docker). Docker builds the images either way.",
        valueName: "docker|oci|auto"))
    var runtime = "auto"
    @Option(help: ArgumentHelp("The oci runtime's layer cache, shared by the workers of this host.", valueName: "dir"))
    var layerCache = OCIContainerRuntime.defaultLayerDirectory
    @OptionGroup var git: GitPolicyOptions

    var stepNetworkList: [String] { stepNetworks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func validate() throws {
        guard slots > 0 else { throw ValidationError("--slots must be at least 1") }
        guard keepImages >= 0, imageIdle >= 0 else { throw ValidationError("--keep-images and --image-idle must not be negative") }
        guard grace >= 0, heartbeat > 0, defaultTimeout > 0, builds > 0, memory >= 16, pids >= 16, cpus > 0, disk >= 1, buildTimeout > 0, logCap >= 1 else {
            throw ValidationError("--grace, --heartbeat, --default-timeout, --builds, --memory, --pids, --cpus, --disk, --build-timeout and --log-cap must be positive")
        }
        guard minFreeDisk >= 0 else { throw ValidationError("--min-free-disk must not be negative") }
        guard ["docker", "oci", "auto"].contains(runtime) else { throw ValidationError("--runtime must be docker, oci or auto") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        for network in stepNetworkList where !StepNetwork.isNetworkName(network) || network == "none" {
            throw ValidationError("--step-networks: \"\(network)\" is not a network name")
        }
    }

    func run() async throws {
        let logger = makeLogger("stepfleet.worker", level: logLevel)
        let brokers = try AMQPConfiguration.list(amqp)
        let engine = try DockerEngine(endpoint: docker)
        var configuration = WorkerConfiguration(
            name: name ?? WorkerConfiguration.defaultName(), pool: pool, slots: slots, workDirectory: workDir ?? WorkerConfiguration.defaultWorkDirectory(), runnerImage: runnerImage,
            heartbeatInterval: .seconds(heartbeat), defaultTimeout: .seconds(defaultTimeout),
            limits: ContainerLimits(memoryBytes: memory << 20, pids: pids, cpus: cpus, diskBytes: disk << 20), maximumConcurrentBuilds: builds,
            shutdownGrace: .seconds(grace), secretsDirectory: secretsDir ?? ProcessInfo.processInfo.environment["STEPFLEET_SECRETS_DIR"],
            stepNetworks: stepNetworkList, imageRepository: imageRepository,
            imageCache: ImageCachePolicy(keep: keepImages, idle: .seconds(imageIdle * 60)), buildTimeout: .seconds(buildTimeout),
            minimumFreeDisk: Int64(minFreeDisk) << 20, dispatcherUser: dispatcherUser)
        configuration.gitPolicy = git.policy
        configuration.logCap = logCap << 20
        let (stepRuntime, why) = try await StepRuntime.choose(runtime)
        configuration.runtime = stepRuntime
        configuration.layerCacheDirectory = layerCache
        logger.info("step runtime: \(stepRuntime.rawValue) (\(why))")
        let worker = WorkerService(configuration: configuration, brokers: brokers, engine: engine, logger: logger)
        let signals = onTerminationSignals { Task { await worker.shutdown() } }
        await worker.run()
        signals.forEach { $0.cancel() }
    }
}

/// Calls `handler` on SIGTERM and SIGINT (once each).
func onTerminationSignals(_ handler: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
    [SIGTERM, SIGINT].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler(handler: handler)
        source.resume()
        return source
    }
}

func makeLogger(_ label: String, level: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = Logger.Level(rawValue: level) ?? .info
    return logger
}
