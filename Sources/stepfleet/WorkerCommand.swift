import AMQP
import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Protocol
import ServiceLifecycle
import Worker

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Consume a pool's step jobs and run each step in its own container.",
        discussion: """
            Every option can also be set with an environment variable (STEPFLEET_ and the option's name in capitals, \
            dashes as underscores: STEPFLEET_MIN_FREE_DISK) or in the --config file ({"min-free-disk": 4096}); \
            the command line wins over the environment, the environment over the file. \
            SIGTERM or SIGINT: stop taking jobs, let running steps finish within the grace period, then kill them and report them.
            """
    )

    // Each setting: an option here (no default: unset means "look further") and one line in `settings()`.
    @Option(help: "Broker URL(s), comma-separated (default: amqp://guest:guest@127.0.0.1:5672/).")
    var amqp: String?
    @Option(help: "The pool to serve (default: default).")
    var pool: String?
    @Option(help: "Steps run at once (default: 2).")
    var slots: Int?
    @Option(help: "The Docker engine (default: unix:///var/run/docker.sock).")
    var docker: String?
    @Option(help: "Base runner image (OPSCHAIN_BASE_RUNNER); default: the one the job names.")
    var runnerImage: String?
    @Option(help: ArgumentHelp(
        "Mirrors, checkouts and build scratch space (default: /var/lib/stepfleet/worker as root, else $XDG_STATE_HOME/stepfleet/worker, i.e. ~/.local/state/stepfleet/worker).",
        valueName: "dir"))
    var workDir: String?
    @Option(help: "Worker name (default: host-pid-random).")
    var name: String?
    @Option(help: "Seconds running steps get to finish on shutdown (default: 30).")
    var grace: Int?
    @Option(help: "Seconds between heartbeats (default: 5).")
    var heartbeat: Int?
    @Option(help: "Step timeout in seconds when neither the job nor the action sets one (default: 3600).")
    var defaultTimeout: Int?
    @Option(help: "Concurrent image builds (default: 2).")
    var builds: Int?
    @Option(help: "Memory limit of a step container, MiB (default: 1024).")
    var memory: Int?
    @Option(help: "Process limit of a step container (default: 1024).")
    var pids: Int?
    @Option(help: "CPU limit of a step container (default: 1).")
    var cpus: Double?
    @Option(help: "Disk limit of a step container, MiB: what it may write; past it the step is killed (default: 1024).")
    var disk: Int?
    @Option(help: ArgumentHelp(
        "The most a step's log holds, MiB: past it the rest of the step's output is counted, not shipped, and the log ends with \"[… N bytes cut: the step's log passed its cap]\"; the step runs on. One line holds at most 16 KiB (the rest of it is cut the same way). Default: 16.",
        valueName: "mib"))
    var logCap: Int?
    @Option(help: "Seconds an image build may take; opschain.config.build_timeout may ask for less (default: 1800).")
    var buildTimeout: Int?
    @Option(help: "Free MiB needed in the work directory and the engine's root directory to take jobs; 0: never pause (default: 2048).")
    var minFreeDisk: Int?
    @Option(help: "Build-secret sets: one file per set name holding KEY=value lines (default: none).")
    var secretsDir: String?
    @Option(help: "Engine networks a step may ask for with opschain.config.network, comma-separated (true asks for \"default\"); empty: none (default: default).")
    var stepNetworks: String?
    @Option(help: "Step images the engine keeps, the most recently used first; 0 keeps all (default: 200).")
    var keepImages: Int?
    @Option(help: "Minutes a step image stays after its last use whatever --keep-images says (default: 10).")
    var imageIdle: Int?
    @Option(help: "Where step images are tagged; workers sharing an engine should share it (default: stepfleet/step).")
    var imageRepository: String?
    @Option(help: "The dispatcher's broker user: step jobs and control messages from any other account are refused. For a fleet sharing one account, that account (default: stepfleet-dispatcher).")
    var dispatcherUser: String?
    @Option(help: "HOST:PORT to serve Prometheus metrics on at /metrics, e.g. 127.0.0.1:9464 (default: none, not served).")
    var metricsListen: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default: info).")
    var logLevel: String?
    @Option(help: ArgumentHelp(
        "What runs step containers: docker (the engine), oci (runc on the image's layers; root only) or auto (oci when runc works here, else docker). Docker builds the images either way (default: auto).",
        valueName: "docker|oci|auto"))
    var runtime: String?
    @Option(help: ArgumentHelp("The oci runtime's layer cache, shared by the workers of this host (default: \(OCIContainerRuntime.defaultLayerDirectory)).", valueName: "dir"))
    var layerCache: String?
    @Option(help: ArgumentHelp(
        "oci runtime: step containers started ahead, for the image steps ran on last, so that a step finds its container waiting (default: as many as --slots; 0: none).",
        valueName: "n"))
    var warmContainers: Int?
    @OptionGroup var git: GitPolicyOptions
    @OptionGroup var config: ConfigFileOption

    /// Every setting, from the command line, the environment, the --config file or its default.
    struct Resolved {
        /// docker, oci or auto: chosen for this host when the worker starts.
        var runtime: String
        var amqp: [AMQPConfiguration]
        var docker: String
        var logLevel: Logger.Level
        var metricsListen: (host: String, port: Int)?
        var worker: WorkerConfiguration
    }

    func settings(environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> Resolved {
        var s = try await Settings(file: config.path, environment: environment)
        let amqp = try s.string("amqp", amqp, default: "amqp://guest:guest@127.0.0.1:5672/", check: DispatcherCommand.brokerURLs)
        let pool = try s.string("pool", pool, default: Names.defaultPool)
        let slots = try s.int("slots", slots, default: 2, atLeast: 1)
        let docker = try s.string("docker", docker, default: "unix:///var/run/docker.sock")
        let runnerImage = try s.optionalString("runner-image", runnerImage)
        let workDir = try s.optionalString("work-dir", workDir)
        let name = try s.optionalString("name", name)
        let grace = try s.int("grace", grace, default: 30, atLeast: 0)
        let heartbeat = try s.int("heartbeat", heartbeat, default: 5, atLeast: 1)
        let defaultTimeout = try s.int("default-timeout", defaultTimeout, default: 3600, atLeast: 1)
        let builds = try s.int("builds", builds, default: 2, atLeast: 1)
        let memory = try s.int("memory", memory, default: 1024, atLeast: 16)
        let pids = try s.int("pids", pids, default: 1024, atLeast: 16)
        let cpus = try s.double("cpus", cpus, default: 1, above: 0)
        let disk = try s.int("disk", disk, default: 1024, atLeast: 1)
        let logCap = try s.int("log-cap", logCap, default: 16, atLeast: 1)
        let buildTimeout = try s.int("build-timeout", buildTimeout, default: 1800, atLeast: 1)
        let minFreeDisk = try s.int("min-free-disk", minFreeDisk, default: 2048, atLeast: 0)
        let secretsDir = try s.optionalString("secrets-dir", secretsDir)
        let stepNetworks = try s.string("step-networks", stepNetworks, default: "default", check: Self.networksProblem)
        let keepImages = try s.int("keep-images", keepImages, default: 200, atLeast: 0)
        let imageIdle = try s.int("image-idle", imageIdle, default: 10, atLeast: 0)
        let imageRepository = try s.string("image-repository", imageRepository, default: DockerImageBuilder.defaultRepository)
        let dispatcherUser = try s.string("dispatcher-user", dispatcherUser, default: Names.conventionalDispatcherUser)
        let metricsListen = try s.optionalString("metrics-listen", metricsListen, check: { DispatcherCommand.address($0) == nil ? "HOST:PORT" : nil })
        let level = try s.string("log-level", logLevel, default: "info", check: DispatcherCommand.logLevelProblem)
        let runtime = try s.string("runtime", runtime, default: "auto", check: { ["docker", "oci", "auto"].contains($0) ? nil : "docker, oci or auto" })
        let layerCache = try s.string("layer-cache", layerCache, default: OCIContainerRuntime.defaultLayerDirectory)
        let warmContainers = try s.int("warm-containers", warmContainers, default: slots, atLeast: 0)
        let gitPolicy = try git.policy(&s)
        try s.refuseUnknownFileKeys()

        var configuration = WorkerConfiguration(
            name: name ?? WorkerConfiguration.defaultName(), pool: pool, slots: slots, workDirectory: workDir ?? WorkerConfiguration.defaultWorkDirectory(),
            runnerImage: runnerImage, heartbeatInterval: .seconds(heartbeat), defaultTimeout: .seconds(defaultTimeout),
            limits: ContainerLimits(memoryBytes: memory << 20, pids: pids, cpus: cpus, diskBytes: disk << 20), maximumConcurrentBuilds: builds,
            shutdownGrace: .seconds(grace), secretsDirectory: secretsDir, stepNetworks: Self.networks(stepNetworks), imageRepository: imageRepository,
            imageCache: ImageCachePolicy(keep: keepImages, idle: .seconds(imageIdle * 60)), buildTimeout: .seconds(buildTimeout),
            minimumFreeDisk: Int64(minFreeDisk) << 20, dispatcherUser: dispatcherUser)
        configuration.gitPolicy = gitPolicy
        configuration.logCap = logCap << 20
        configuration.layerCacheDirectory = layerCache
        configuration.warmContainers = warmContainers
        return Resolved(
            runtime: runtime,
            amqp: try AMQPConfiguration.list(amqp), docker: docker, logLevel: Logger.Level(rawValue: level)!,
            metricsListen: metricsListen.flatMap(DispatcherCommand.address).map { (host: $0.0, port: $0.1) }, worker: configuration)
    }

    static func networks(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func networksProblem(_ text: String) -> String? {
        networks(text).first { !StepNetwork.isNetworkName($0) || $0 == "none" }.map { "engine network names, comma-separated (\"\($0)\" is not one)" }
    }

    func run() async throws {
        let settings: Resolved
        do {
            settings = try await self.settings()
        } catch let problem as Settings.Problem {
            throw CLIError(problem.description)
        }
        let logger = makeLogger("stepfleet.worker", level: settings.logLevel)
        let metrics = ProcessMetrics.bootstrap()
        let engine = try DockerEngine(endpoint: settings.docker)
        var configuration = settings.worker
        let (stepRuntime, why) = try await StepRuntime.choose(settings.runtime)
        configuration.runtime = stepRuntime
        logger.info("step runtime: \(stepRuntime.rawValue) (\(why))")
        let worker = WorkerService(configuration: configuration, brokers: settings.amqp, engine: engine, logger: logger)
        // Shut down in reverse order: the worker first (its steps finish), then /metrics.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let address = settings.metricsListen {
            let router = Router()
            router.get("/metrics") { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.registry.emitToString())))
            }
            let app = Application(router: router, configuration: .init(address: .hostname(address.host, port: address.port), serverName: "stepfleet-worker"), logger: logger)
            services.append(.init(service: app, successTerminationBehavior: .gracefullyShutdownGroup))
            logger.info("serving metrics", metadata: ["address": "\(address.host):\(address.port)"])
        }
        services.append(.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup))
        var group = ServiceGroupConfiguration(services: services, logger: logger)
        group.gracefulShutdownSignals = [.sigterm, .sigint]
        // The grace period for the steps, and time to report them and close the connection.
        group.maximumGracefulShutdownDuration = settings.worker.shutdownGrace + .seconds(30)
        group.maximumCancellationDuration = .seconds(10)
        try await ServiceGroup(configuration: group).run()
    }
}

func makeLogger(_ label: String, level: Logger.Level) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
}
