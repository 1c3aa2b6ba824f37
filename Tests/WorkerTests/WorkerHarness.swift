import AMQP
import Fleet
import Foundation
import HostCommand
import Logging
import Protocol
import TestSupport
import Testing
@testable import Worker

/// A real worker on its own vhost of the test broker, with the test playing dispatcher:
/// it publishes jobs and collects claims, phases, logs and outcomes.
final class WorkerHarness: Sendable {
    static let vhost = testVhost("stepfleet-worker-tests")
    static let runnerImage = "stepfleet/runner:\(StepFleetVersion.current)"
    /// The runtime of a harness that names none (`STEPFLEET_TEST_RUNTIME`).
    static let runtime = StepRuntime(rawValue: testRuntimeName)!

    let pool: String
    let replyQueue: String
    let worker: WorkerService
    let engine: DockerEngine
    let client: AMQPClient
    let workDirectory: String
    private let outcomes = LockedValue<[StepOutcome]>([])
    private let events = LockedValue<[WorkerEvent]>([])
    private let logs = LockedValue<[LogBatch]>([])
    private let tasks = LockedValue<[Task<Void, Never>]>([])

    static var brokerURL: String { "amqp://guest:guest@127.0.0.1:5672/\(vhost)?heartbeat=5" }

    static let logger: Logger = {
        var logger = Logger(label: "worker-test")
        logger.logLevel = ProcessInfo.processInfo.environment["STEPFLEET_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }()

    /// Creates the vhost once per test process.
    private static let vhostReady: Result<Void, any Error> = Result { try ensureVhost(vhost) }

    init(
        slots: Int = 2, docker: String = "unix:///var/run/docker.sock", heartbeat: Duration = .seconds(1), grace: Duration = .seconds(10),
        secretsDirectory: String? = nil, stepNetworks: [String] = ["default"], imageRepository: String = DockerImageBuilder.defaultRepository,
        imageCache: ImageCachePolicy = ImageCachePolicy(keep: 0), diskBytes: Int = 1 << 30, buildTimeout: Duration = .seconds(300),
        minimumFreeDisk: Int64 = 0, declarePool: Bool = true, logger: Logger = WorkerHarness.logger, logCap: Int = LogLimiter.defaultLogCap,
        builds: Int? = nil, runtime: StepRuntime = WorkerHarness.runtime
    ) async throws {
        try Self.vhostReady.get()
        pool = "wt-\(UUID().uuidString.prefix(6).lowercased())"
        replyQueue = "test.outcomes.\(pool)"
        workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(pool)").path
        engine = try DockerEngine(endpoint: docker)
        let brokers = [try AMQPConfiguration(url: Self.brokerURL)]
        var configuration = WorkerConfiguration(
            name: "test-\(pool)", pool: pool, slots: slots, workDirectory: workDirectory, runnerImage: nil, heartbeatInterval: heartbeat,
            defaultTimeout: .seconds(120), limits: ContainerLimits(memoryBytes: 256 << 20, pids: 256, cpus: 1, diskBytes: diskBytes), shutdownGrace: grace,
            secretsDirectory: secretsDirectory, stepNetworks: stepNetworks, imageRepository: imageRepository, imageCache: imageCache,
            buildTimeout: buildTimeout, minimumFreeDisk: minimumFreeDisk)
        // Test repositories live in the temporary directory: the one local root.
        configuration.gitPolicy = GitRemotePolicy(localRoots: [FileManager.default.temporaryDirectory.path])
        configuration.logCap = logCap
        if let builds { configuration.maximumConcurrentBuilds = builds }
        configuration.runtime = runtime
        worker = WorkerService(configuration: configuration, brokers: brokers, engine: try DockerEngine(endpoint: docker), logger: logger)
        client = AMQPClient(
            endpoints: brokers,
            // The test plays dispatcher: it declares the fleet and the pool, and gets a copy of
            // every outcome of the vhost (each test picks its own by step).
            topology: FleetTopology.common + (declarePool ? FleetTopology.pool(pool) : AMQPTopology())
                + AMQPTopology(
                    queues: [.init(name: replyQueue, durable: false, autoDelete: true)],
                    bindings: [.init(queue: replyQueue, exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)]),
            logger: Self.logger)
        _ = try await client.connected()
        let outcomesStream = await client.subscribe(queue: replyQueue, prefetch: 50)
        let eventsStream = await client.subscribe(queue: Names.eventsQueue, prefetch: 100)
        let logsStream = await client.subscribe(queue: Names.logsQueue, prefetch: 100)
        let worker = worker
        tasks.value = [
            Task { await worker.run() },
            Task { [outcomes] in
                for await delivery in outcomesStream {
                    if let outcome = try? WireCodec.decode(StepOutcome.self, from: delivery.body) { outcomes.withLock { $0.append(outcome) } }
                    try? await delivery.ack()
                }
            },
            Task { [events] in
                for await delivery in eventsStream {
                    if let event = try? WireCodec.decode(WorkerEvent.self, from: delivery.body) { events.withLock { $0.append(event) } }
                    try? await delivery.ack()
                }
            },
            Task { [logs] in
                for await delivery in logsStream {
                    if let batch = try? WireCodec.decode(LogBatch.self, from: delivery.body) { logs.withLock { $0.append(batch) } }
                    try? await delivery.ack()
                }
            },
        ]
    }

    /// Stops the worker and the harness's client, within two minutes (a stop that hangs fails
    /// the test by name instead of holding the run).
    func stop() async {
        let (worker, tasks, client) = (worker, tasks.value, client)
        do {
            try await within(.seconds(120), "the worker's shutdown and the harness client's stop") {
                await worker.shutdown()
                for task in tasks { task.cancel() }
                await client.stop()
            }
        } catch {
            Issue.record("\(error)")
        }
        try? FileManager.default.removeItem(atPath: workDirectory)
    }

    // MARK: Dispatching

    func job(_ repository: TestRepository, action: String, project: JSON = [:], environment: JSON = [:], stepId: String = UUID().uuidString, attempt: Int = 1, timeout: Int? = nil) -> StepJob {
        StepJob(
            changeId: "change-\(pool)", stepId: stepId, attempt: attempt, action: action,
            git: GitSource(remote: repository.path, rev: "main", sha: repository.sha),
            context: StepContext(
                context: .init(project: ["code": "demo", "name": "Demo"], environment: ["code": "dev", "name": "Development"], change: ["id": "c"], step: ["id": .string(stepId)], user: ["name": "tester"]),
                project: .init(properties: project), environment: .init(properties: environment)),
            runner: RunnerSettings(baseImage: Self.runnerImage, version: StepFleetVersion.current), buildSecrets: [BuildSecretStore.defaultSet],
            timeoutSeconds: timeout, pool: pool)
    }

    func publish(_ job: StepJob) async throws {
        try await publish(raw: WireCodec.encode(job))
    }

    func publish(raw body: Data) async throws {
        // Stamped with the test's broker user, which the worker (sharing it) takes as the dispatcher's.
        try await client.publish(AMQPMessage(body: body, properties: AMQPProperties(userId: await client.endpoints[0].user)), exchange: Names.jobsExchange, routingKey: pool)
    }

    func cancel(_ ref: AttemptRef) async throws {
        try await client.publish(
            AMQPMessage(body: WireCodec.encode(ControlMessage(kind: .cancel, ref: ref)), properties: AMQPProperties(userId: await client.endpoints[0].user)),
            exchange: Names.controlExchange, routingKey: "")
    }

    /// Runs a job and waits for its outcome.
    func run(_ job: StepJob, timeout: Duration = .seconds(120)) async throws -> StepOutcome {
        try await publish(job)
        return try await outcome(for: AttemptRef(stepId: job.stepId, attempt: job.attempt), timeout: timeout)
    }

    func outcome(for ref: AttemptRef, timeout: Duration = .seconds(120)) async throws -> StepOutcome {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let outcome = outcomes.value.first(where: { $0.ref == ref }) { return outcome }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError("no outcome for \(ref) within \(timeout)")
    }

    func outcomes(for stepId: String) -> [StepOutcome] { outcomes.value.filter { $0.ref.stepId == stepId } }

    func events(for ref: AttemptRef) -> [WorkerEvent] { events.value.filter { $0.ref == ref } }

    /// The attempt's log lines in sequence order, every batch published so far included.
    ///
    /// The worker has each batch confirmed before it publishes the next and before the outcome;
    /// a marker batch published here (and confirmed) after that lands behind them on the one
    /// logs queue, so once this harness's consumer has it, it has every earlier batch too.
    /// (Not throwing, for its many callers: a marker that cannot be sent or does not come back
    /// is recorded as the test's failure, and the lines received so far are returned.)
    func logLines(for ref: AttemptRef, timeout: Duration = .seconds(30)) async -> [LogBatch.Line] {
        let marker = AttemptRef(stepId: "log-marker-\(UUID().uuidString)", attempt: 1)
        do {
            let batch = LogBatch(ref: marker, worker: "test-harness", lines: [])
            try await client.publish(AMQPMessage(body: WireCodec.encode(batch)), exchange: Names.eventsExchange, routingKey: Names.logsRoutingKey)
            let deadline = ContinuousClock.now + timeout
            while !logs.value.contains(where: { $0.ref == marker }) {
                guard ContinuousClock.now < deadline else { throw TestSetupError("the logs queue did not deliver the harness's marker within \(timeout)") }
                try await Task.sleep(for: .milliseconds(20))
            }
        } catch {
            Issue.record("waiting for the log batches of \(ref): \(error)")
        }
        return logs.value.filter { $0.ref == ref }.flatMap(\.lines).sorted { $0.seq < $1.seq }
    }

    /// The worker's `run()`: it returns once `shutdown()` has finished.
    var workerRun: Task<Void, Never> { tasks.value[0] }

    /// Jobs waiting in this pool's queue, unclaimed.
    func queuedJobs() async throws -> Int {
        try await client.connected().messageCount(queue: Names.stepsQueue(pool: pool))
    }

    func waitForEvent(_ ref: AttemptRef, timeout: Duration = .seconds(60), _ matches: @escaping @Sendable (WorkerEvent) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if events(for: ref).contains(where: matches) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestSetupError("no matching event for \(ref) within \(timeout)")
    }

    /// Containers on the engine, running or not, whose command contains `marker` (a build's
    /// `RUN` container has no label of ours; its command is the `RUN` line).
    static func containers(running marker: String) throws -> [String] {
        let listing = try runProgram("/usr/bin/docker", ["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"])
        return listing.output.split(separator: "\n").filter { $0.contains(marker) }.map { String($0.prefix(12)) }
    }

    /// Containers this worker created that still exist.
    /// On the oci runtime, also what its steps left (runc state, directories, mounts, cgroups,
    /// leases), once its clean-ups (which follow the outcome) had up to 20 s.
    func leftoverContainers() async throws -> [String] {
        try await engine.containers(label: "\(ContainerLabels.worker)=test-\(pool)") + (await ociLeftovers(workDirectory: workDirectory))
    }
}

/// The worker suites share their vhost's events and logs queues: one at a time.
@Suite(.serialized, .timeLimit(.minutes(15))) struct WorkerEndToEndTests {}

/// What the oci steps run from `workDirectory` in this process left on the host, once their
/// clean-ups had up to 20 s; empty for a Docker worker.
func ociLeftovers(workDirectory: String) async -> [String] {
    let used = Set(OCIContainerRuntime.idsUsed(in: workDirectory + "/oci"))
    let deadline = ContinuousClock.now + .seconds(20)
    while true {
        let left = OCIContainerRuntime.leftovers(workDirectory: workDirectory) { used.contains($0) }
        if left.isEmpty || ContinuousClock.now > deadline { return left }
        try? await Task.sleep(for: .milliseconds(100))
    }
}
