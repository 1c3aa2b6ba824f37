import AMQP
import Dispatcher
import Foundation
import GRDB
import HostCommand
import Hummingbird
import Logging
import Protocol

/// One bench run: a fresh store and dispatcher, the workload, the simulated workers, and the
/// figures once every change has finished.
struct BenchDispatcherRun {
    struct Settings: Sendable {
        var broker: AMQPConfiguration
        var changes: Int
        var fanout: Int
        var environments: Int
        var workers: Int
        var slots: Int
        var logBatches: Int
        var timeout: Duration
    }

    /// The dispatcher as it was (one store transaction per worker event or log batch), or as
    /// it is (what waits applied in one transaction).
    enum Variant: Sendable, CustomStringConvertible {
        case transactionPerMessage
        case batched

        var description: String {
            switch self {
            case .transactionPerMessage: "before: one store transaction per worker event and log batch (messageBatchLimit 1, the default)"
            case .batched: "after: waiting worker events and log batches applied in one transaction (messageBatchLimit \(Self.batchLimit))"
            }
        }

        static let batchLimit = 200

        func apply(_ configuration: inout DispatcherConfiguration) {
            switch self {
            case .transactionPerMessage: configuration.messageBatchLimit = 1
            case .batched: configuration.messageBatchLimit = Self.batchLimit
            }
        }
    }

    let settings: Settings
    let variant: Variant

    static let project = "bench"
    static let fanAction = "fan"
    static let leafAction = "leaf"

    func run() async throws -> BenchDispatcherFigures {
        let logger = makeLogger("stepfleet.bench", level: .error)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-bench-dispatcher-\(UUID().uuidString.prefix(8).lowercased())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let sha = try LocalRepository.make(
            at: folder + "/repo", files: [".opschain/actions.yml": "actions:\n  \(Self.fanAction): { run: 'true' }\n  \(Self.leafAction): { run: 'true' }\n"])

        try await emptyQueues()
        var configuration = DispatcherConfiguration(
            leaseSeconds: 120, gitPolicy: GitRemotePolicy(localRoots: [folder]), maxChildrenPerStep: max(100, settings.fanout),
            maxStepsInFlightPerChange: settings.fanout + 1)
        variant.apply(&configuration)
        let store = try Store(path: folder + "/stepfleet.sqlite")
        let metrics = DispatcherMetrics()
        let engine = DispatcherEngine(store: store, configuration: configuration, metrics: metrics, logger: logger)
        try await makeProject(engine, remote: folder + "/repo", logger: logger)

        // Every change exists before the dispatcher starts: one per environment runs, the rest
        // wait their turn and start in the transaction that finishes the one before.
        var changes: [BenchDispatcherLatency.Change] = []
        for index in 0..<settings.changes {
            let environment = "e\(index % settings.environments)"
            let change = try await engine.createChange(
                project: Self.project, environment: environment, action: Self.fanAction, gitRev: "main", gitSha: sha, user: "bench")
            changes.append(.init(id: change.id, environment: environment, seq: index))
        }
        store.timings.reset()
        metrics.timings.reset()

        let recorder = BenchDispatcherRecorder()
        let service = DispatcherService(engine: engine, brokers: [settings.broker], logger: logger)
        let clock = ContinuousClock()
        let started = clock.now
        try await service.start()
        try await waitForPoolQueue(logger)
        let plan = BenchDispatcherWorker.Plan(fanAction: Self.fanAction, leafAction: Self.leafAction, fanout: settings.fanout, logBatches: settings.logBatches)
        let runID = UUID().uuidString.prefix(6).lowercased()
        let workers = (0..<settings.workers).map {
            BenchDispatcherWorker(name: "bench-\(runID)-\($0)", broker: settings.broker, slots: settings.slots, plan: plan, recorder: recorder, logger: logger)
        }
        let tasks = workers.map { worker in Task { await worker.run() } }

        let expectedSteps = settings.changes * (settings.fanout + 1)
        var finished = false
        while clock.now - started < settings.timeout {
            try await Task.sleep(for: .milliseconds(200))
            if try await store.read({ db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE status IN ('success', 'error', 'cancelled')") ?? 0 }) == settings.changes {
                finished = true
                break
            }
        }
        let finishedAfter = (clock.now - started).seconds
        // Claims, phases and logs travel on queues of their own: the run is over once the
        // dispatcher has handled every one of them too, not only the outcomes.
        let expectedEvents = expectedSteps * 5
        let expectedLogs = expectedSteps * settings.logBatches
        func handled(_ kind: String) -> Int {
            let timings = metrics.timings.snapshot
            return (timings["handle.\(kind)"]?.count ?? 0) + Int(timings["batch size \(kind)"]?.seconds ?? 0)
        }
        while finished, clock.now - started < settings.timeout {
            if handled(WorkerEvent.messageType) >= expectedEvents, handled(LogBatch.messageType) >= expectedLogs { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let wall = (clock.now - started).seconds
        for task in tasks { task.cancel() }
        for worker in workers { await worker.stop() }
        await service.stop()
        guard finished else {
            throw CLIError("the bench run did not finish within \(settings.timeout): \(recorder.outcomes) of \(expectedSteps) outcomes sent")
        }

        let stored = try await store.read { db in
            (
                changes: try Self.countByStatus(db, "changes"),
                steps: try Self.countByStatus(db, "steps"),
                tree: try Row.fetchAll(db, sql: "SELECT record FROM steps").map { row -> BenchDispatcherLatency.Step in
                    let record = try JSONDecoder().decode(StepRecord.self, from: Data((row["record"] as String).utf8))
                    return .init(id: record.id, changeId: record.changeId, parentId: record.parentId)
                }
            )
        }
        let seen = recorder.snapshot
        let latency = BenchDispatcherLatency.derive(steps: stored.tree, changes: changes, outcomeSent: seen.outcomeSent, delivered: seen.delivered)
        var histogram = LoadHistogram()
        for sample in latency.samples { histogram.record(milliseconds: Double(sample) / 1e6) }
        let outcomeTimes = Array(seen.outcomeSent.values)
        return BenchDispatcherFigures(
            variant: variant.description, wallSeconds: wall, changesFinishedSeconds: finishedAfter, outcomes: seen.outcomeSent.count,
            stepsPerSecond: BenchDispatcherLatency.sustainedRate(outcomeTimes),
            overallStepsPerSecond: Double(seen.outcomeSent.count) / wall.nonZero,
            latency: histogram.summary, firstRoots: latency.firstRoots, missing: latency.missing, redeliveries: seen.redeliveries,
            publishFailures: seen.publishFailures, storedChanges: stored.changes, storedSteps: stored.steps,
            timings: store.timings.snapshot.merging(metrics.timings.snapshot) { $1 })
    }

    static func countByStatus(_ db: Database, _ table: String) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM \(table) GROUP BY status") {
            counts[row["status"] as String] = row["n"] as Int
        }
        return counts
    }

    /// The project and its environments, through the dispatcher's own API (in this process).
    private func makeProject(_ engine: DispatcherEngine, remote: String, logger: Logger) async throws {
        let token = try await engine.store.createToken(name: "bench")
        let port = Int.random(in: 20_000..<40_000)
        let app = Application(
            router: HTTPAPI(engine: engine, service: nil).router(), configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        let server = Task { try await app.run() }
        defer { server.cancel() }
        var client = APIClient(server: "http://127.0.0.1:\(port)")
        client.token = token
        for _ in 0..<50 where (try? await client.request("GET", "/healthz")) == nil { try await Task.sleep(for: .milliseconds(100)) }
        _ = try await client.request("POST", "/projects", body: ["code": .string(Self.project), "git_remote": .string(remote)])
        for index in 0..<settings.environments {
            _ = try await client.request("POST", "/projects/\(Self.project)/environments", body: ["code": .string("e\(index)")])
        }
        server.cancel()
        _ = await server.result
    }

    /// Deletes the StepFleet queues of the bench's vhost, so that nothing of an earlier run is delivered.
    private func emptyQueues() async throws {
        let connection: AMQPConnection
        do {
            connection = try await AMQPConnection.open(settings.broker)
        } catch {
            throw CLIError(
                "cannot connect to \(settings.broker): \(error) (the bench wants a vhost of its own: ops/rabbitmqctl add_vhost \(settings.broker.vhost); ops/rabbitmqctl set_permissions -p \(settings.broker.vhost) \(settings.broker.user) '.*' '.*' '.*')")
        }
        for queue in [Names.stepsQueue(pool: Names.defaultPool), Names.eventsQueue, Names.logsQueue, Names.outcomesQueue, Names.deadJobsQueue] {
            _ = try? await connection.deleteQueue(queue)
        }
        await connection.close()
    }

    /// The dispatcher declares the pool's queue once connected; the workers subscribe after.
    private func waitForPoolQueue(_ logger: Logger) async throws {
        let probe = AMQPClient(endpoints: [settings.broker], logger: logger)
        await probe.start()
        defer { Task { await probe.stop() } }
        for _ in 0..<100 {
            if (try? await probe.connected(timeout: .seconds(5)).messageCount(queue: Names.stepsQueue(pool: Names.defaultPool))) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIError("the dispatcher did not declare the pool's queue within 10 s")
    }
}

extension Double {
    /// Itself, or a tiny positive number instead of zero (for rates).
    var nonZero: Double { self == 0 ? 1e-9 : self }
}
