import AMQP
import ArgumentParser
import Dispatcher
import Foundation
import Hummingbird
import Logging
import Protocol

struct DispatcherCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatcher",
        abstract: "Run the dispatcher: state on SQLite, jobs out through the broker, the HTTP API."
    )

    @Option(help: "Broker URL(s), comma-separated (env STEPFLEET_AMQP).")
    var amqp = ProcessInfo.processInfo.environment["STEPFLEET_AMQP"] ?? "amqp://guest:guest@127.0.0.1:5672/"
    @Option(help: "The SQLite database file.")
    var db = FileManager.default.currentDirectoryPath + "/stepfleet.sqlite"
    @Option(help: "HOST:PORT for the HTTP API.")
    var listen = "127.0.0.1:8080"
    @Option(help: "Seconds a claim or heartbeat keeps an attempt's lease.")
    var lease = 20.0
    @Option(help: "Base runner image for step images (OPSCHAIN_BASE_RUNNER).")
    var runnerImage = "stepfleet/runner:\(StepFleetVersion.current)"
    @Option(help: "A step whose result lists more child steps than this fails, and none is created.")
    var maxChildrenPerStep = 100
    @Option(help: "Steps of one change queued or running at once; the rest wait, so one wide change leaves workers for the others.")
    var maxStepsInFlight = 20
    @Option(help: "Log level.")
    var logLevel = "info"
    @Option(help: "The key that encrypts secret properties at rest: a file of 32 random bytes, made (mode 0600) when missing; default: the database's path + .key. Keep it apart from database backups.")
    var secretsKey: String?
    @OptionGroup var git: GitPolicyOptions

    func validate() throws {
        guard maxChildrenPerStep >= 1, maxStepsInFlight >= 1 else { throw ValidationError("--max-children-per-step and --max-steps-in-flight must be at least 1") }
    }

    func run() async throws {
        let logger = makeLogger("stepfleet.dispatcher", level: logLevel)
        let parts = listen.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--listen must be HOST:PORT") }
        let store: Store
        do {
            store = try Store(path: db, secretsKey: secretsKey.map(SecretsKeySource.file) ?? .nextToDatabase)
        } catch let error as SecretsKeyError {
            throw CLIError(error.description)
        }
        let engine = DispatcherEngine(
            store: store,
            configuration: DispatcherConfiguration(
                leaseSeconds: lease, runner: RunnerSettings(baseImage: runnerImage, version: StepFleetVersion.current), gitPolicy: git.policy,
                maxChildrenPerStep: maxChildrenPerStep, maxStepsInFlightPerChange: maxStepsInFlight),
            logger: logger)
        let service = DispatcherService(engine: engine, brokers: try AMQPConfiguration.list(amqp), logger: logger)
        try await service.start()
        let app = Application(
            router: HTTPAPI(engine: engine, service: service).router(),
            configuration: .init(address: .hostname(String(parts[0]), port: port), serverName: "stepfleet"),
            logger: logger)
        logger.info("dispatcher listening", metadata: ["address": "\(listen)", "db": "\(db)"])
        try await app.runService()
        await service.stop()
    }
}
