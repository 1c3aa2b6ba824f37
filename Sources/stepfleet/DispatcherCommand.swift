import AMQP
import ArgumentParser
import Dispatcher
import Foundation
import Hummingbird
import Logging
import Protocol
import ServiceLifecycle

struct DispatcherCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatcher",
        abstract: "Run the dispatcher: state on SQLite, jobs out through the broker, the HTTP API.",
        discussion: """
            Every option can also be set with an environment variable (STEPFLEET_ and the option's name in capitals, \
            dashes as underscores: STEPFLEET_MAX_STEPS_IN_FLIGHT) or in the --config file ({"max-steps-in-flight": 20}); \
            the command line wins over the environment, the environment over the file. \
            SIGTERM or SIGINT: stop taking work, finish the transactions in hand, close the broker connection, exit.
            """
    )

    // Each setting: an option here (no default: unset means "look further") and one line in `settings()`.
    @Option(help: "Broker URL(s), comma-separated (default: amqp://guest:guest@127.0.0.1:5672/).")
    var amqp: String?
    @Option(help: "The SQLite database file (default: stepfleet.sqlite in the current folder).")
    var db: String?
    @Option(help: "HOST:PORT for the HTTP API and /metrics (default: 127.0.0.1:8080).")
    var listen: String?
    @Option(help: "Seconds a claim or heartbeat keeps an attempt's lease (default: 20).")
    var lease: Double?
    @Option(help: "Base runner image for step images, OPSCHAIN_BASE_RUNNER (default: stepfleet/runner:<version>).")
    var runnerImage: String?
    @Option(help: "A step whose result lists more child steps than this fails, and none is created (default: 100).")
    var maxChildrenPerStep: Int?
    @Option(help: "Steps of one change queued or running at once; the rest wait, so one wide change leaves workers for the others (default: 20).")
    var maxStepsInFlight: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default: info).")
    var logLevel: String?
    @Option(help: "The key that encrypts secret properties at rest: a file of 32 random bytes, made (mode 0600) when missing; default: the database's path + .key. Keep it apart from database backups.")
    var secretsKey: String?
    @OptionGroup var git: GitPolicyOptions
    @OptionGroup var config: ConfigFileOption

    /// Every setting, from the command line, the environment, the --config file or its default.
    struct Resolved {
        var amqp: [AMQPConfiguration]
        var db: String
        var host: String
        var port: Int
        var logLevel: Logger.Level
        var secretsKey: String?
        var dispatcher: DispatcherConfiguration
    }

    func settings(environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> Resolved {
        var s = try await Settings(file: config.path, environment: environment)
        let amqp = try s.string("amqp", amqp, default: "amqp://guest:guest@127.0.0.1:5672/", check: Self.brokerURLs)
        let db = try s.string("db", db, default: FileManager.default.currentDirectoryPath + "/stepfleet.sqlite")
        let listen = try s.string("listen", listen, default: "127.0.0.1:8080", check: { Self.address($0) == nil ? "HOST:PORT" : nil })
        let lease = try s.double("lease", lease, default: 20, above: 0)
        let runnerImage = try s.string("runner-image", runnerImage, default: "stepfleet/runner:\(StepFleetVersion.current)")
        let maxChildren = try s.int("max-children-per-step", maxChildrenPerStep, default: 100, atLeast: 1)
        let maxInFlight = try s.int("max-steps-in-flight", maxStepsInFlight, default: 20, atLeast: 1)
        let level = try s.string("log-level", logLevel, default: "info", check: Self.logLevelProblem)
        let secretsKey = try s.optionalString("secrets-key", secretsKey)
        let gitPolicy = try git.policy(&s)
        try s.refuseUnknownFileKeys()
        let (host, port) = Self.address(listen)!
        return Resolved(
            amqp: try AMQPConfiguration.list(amqp), db: db, host: host, port: port, logLevel: Logger.Level(rawValue: level)!, secretsKey: secretsKey,
            dispatcher: DispatcherConfiguration(
                leaseSeconds: lease, runner: RunnerSettings(baseImage: runnerImage, version: StepFleetVersion.current), gitPolicy: gitPolicy,
                maxChildrenPerStep: maxChildren, maxStepsInFlightPerChange: maxInFlight))
    }

    static func address(_ text: String) -> (String, Int)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (0...65535).contains(port) else { return nil }
        return (String(parts[0]), port)
    }

    static func logLevelProblem(_ level: String) -> String? {
        Logger.Level(rawValue: level) == nil ? "one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))" : nil
    }

    /// Says what is wrong with broker URLs without showing a password: the AMQP error quotes
    /// a URL it cannot parse as it is, so every `//user:password@` in it is masked here.
    static func brokerURLs(_ text: String) -> String? {
        do {
            _ = try AMQPConfiguration.list(text)
            return nil
        } catch {
            let masked = "\(error)".replacingOccurrences(of: #"//([^:/@\s]*):\S*@"#, with: "//$1:***@", options: .regularExpression)
            return "amqp://USER:PASSWORD@HOST:PORT/VHOST or amqps://…, comma-separated (\(masked))"
        }
    }

    func run() async throws {
        let settings: Resolved
        do {
            settings = try await self.settings()
        } catch let problem as Settings.Problem {
            throw CLIError(problem.description)
        }
        let logger = makeLogger("stepfleet.dispatcher", level: settings.logLevel)
        let metrics = ProcessMetrics.bootstrap()
        let store: Store
        do {
            store = try Store(path: settings.db, secretsKey: settings.secretsKey.map(SecretsKeySource.file) ?? .nextToDatabase)
        } catch let error as SecretsKeyError {
            throw CLIError(error.description)
        }
        let engine = DispatcherEngine(store: store, configuration: settings.dispatcher, metrics: DispatcherMetrics(factory: metrics), logger: logger)
        let service = DispatcherService(engine: engine, brokers: settings.amqp, logger: logger)
        let app = Application(
            router: HTTPAPI(engine: engine, service: service).router(),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "stepfleet"),
            logger: logger)
        logger.info("dispatcher listening", metadata: ["address": "\(settings.host):\(settings.port)", "db": "\(settings.db)"])
        // Shut down in reverse order: the HTTP API first (no new requests), then the broker side.
        var group = ServiceGroupConfiguration(
            services: [
                .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            logger: logger)
        group.gracefulShutdownSignals = [.sigterm, .sigint]
        // A client following a change's log holds its request open: past this, it is cut.
        group.maximumGracefulShutdownDuration = .seconds(20)
        group.maximumCancellationDuration = .seconds(10)
        try await ServiceGroup(configuration: group).run()
        logger.info("dispatcher stopped")
    }
}
