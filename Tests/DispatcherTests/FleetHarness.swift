import AMQP
import AsyncHTTPClient
import Foundation
import GRDB
import HostCommand
import Hummingbird
import Logging
import NIOCore
import Protocol
import TestSupport
import Testing
@testable import Dispatcher
@testable import Worker

/// A whole fleet in this process: a dispatcher on a real SQLite file with its HTTP API, and
/// real workers, over the real broker (a vhost of its own) and the real Docker engine.
final class FleetHarness: Sendable {
    static let vhost = testVhost("stepfleet-fleet-tests")
    static var broker: AMQPConfiguration { try! AMQPConfiguration(url: "amqp://guest:guest@127.0.0.1:5672/\(vhost)?heartbeat=5") }

    static let logger: Logger = {
        var logger = Logger(label: "fleet-test")
        logger.logLevel = ProcessInfo.processInfo.environment["STEPFLEET_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }()

    private static let vhostReady: Result<Void, any Error> = Result { try ensureVhost(vhost) }

    /// The broker the dispatcher and workers use (the fleet-tests vhost unless given).
    let broker: AMQPConfiguration
    let folder: String
    let databasePath: String
    /// The API's port: 0 until the first start binds one, then kept across restarts.
    var port: Int { boundPort.value }
    private let boundPort = LockedValue<Int>(0)
    let leaseSeconds: Double
    /// The dispatcher's settings (its lease from `leaseSeconds`).
    let settings: DispatcherConfiguration
    /// The API token every request carries (made on the harness's database).
    let token = LockedValue<String?>(nil)
    private let dispatcher = LockedValue<(engine: DispatcherEngine, service: DispatcherService, api: Task<Void, any Error>)?>(nil)
    private let workers = LockedValue<[(WorkerService, Task<Void, Never>)]>([])

    var engine: DispatcherEngine { dispatcher.value!.engine }
    var store: Store { engine.store }

    init(
        workers count: Int = 1, slots: Int = 2, leaseSeconds: Double = 6, broker: AMQPConfiguration? = nil,
        settings: DispatcherConfiguration = DispatcherConfiguration()
    ) async throws {
        if broker == nil { try Self.vhostReady.get() }
        self.broker = broker ?? Self.broker
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        databasePath = folder + "/stepfleet.sqlite"
        self.leaseSeconds = leaseSeconds
        var settings = settings
        settings.leaseSeconds = leaseSeconds
        settings.gitPolicy = Self.gitPolicy
        self.settings = settings
        try await startDispatcher()
        for index in 0..<count { try await startWorker(index, slots: slots) }
    }

    func startDispatcher() async throws {
        let engine = DispatcherEngine(store: try Store(path: databasePath), configuration: settings, logger: Self.logger)
        if token.value == nil { token.value = try await engine.store.createToken(name: "fleet-tests") }
        let service = DispatcherService(engine: engine, brokers: [broker], logger: Self.logger)
        try await service.start()
        let app = Application(
            router: HTTPAPI(engine: engine, service: service).router(), configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { [boundPort] channel in boundPort.value = channel.localAddress?.port ?? 0 },
            logger: Self.logger)
        // Port 0 the first time: the kernel picks a free one, read back once bound (no collision
        // with another test's API); a restart binds that same port again.
        boundPort.value = 0
        let api = Task { try await app.run() }
        dispatcher.value = (engine, service, api)
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            if port != 0, (try? await get("/healthz")) != nil { break }
            guard ContinuousClock.now < deadline else { throw TestSetupError("the dispatcher's API did not answer within 20 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Stops the dispatcher at once (its unsent outbox rows stay in the database).
    func stopDispatcher() async {
        guard let current = dispatcher.value else { return }
        current.api.cancel()
        await current.service.stop()
        _ = await current.api.result
    }

    /// Test repositories live in the temporary directory: the one local root.
    static let gitPolicy = GitRemotePolicy(localRoots: [FileManager.default.temporaryDirectory.path])

    /// A worker on the harness's broker account, or on `broker` as `name` expecting jobs from
    /// `dispatcherUser` (one broker account per worker).
    func startWorker(_ index: Int, slots: Int, name: String? = nil, broker: AMQPConfiguration? = nil, dispatcherUser: String? = nil, pool: String = Names.defaultPool) async throws {
        var configuration = WorkerConfiguration(
            name: name ?? "fleet-worker-\(index)-\(UUID().uuidString.prefix(4))", pool: pool, slots: slots, workDirectory: folder + "/worker-\(index)",
            heartbeatInterval: .seconds(1), defaultTimeout: .seconds(120), limits: ContainerLimits(memoryBytes: 256 << 20, pids: 256, cpus: 1),
            imageCache: ImageCachePolicy(keep: 0), dispatcherUser: dispatcherUser)
        configuration.gitPolicy = Self.gitPolicy
        configuration.runtime = StepRuntime(rawValue: testRuntimeName)!
        let worker = WorkerService(configuration: configuration, brokers: [broker ?? self.broker], engine: try DockerEngine(), logger: Self.logger)
        let task = Task { await worker.run() }
        workers.withLock { $0.append((worker, task)) }
    }

    /// Stops the workers and the dispatcher, each within a minute: a stop that hangs fails the
    /// test with its name instead of holding the run.
    func stop() async {
        for (worker, task) in workers.value {
            do {
                try await within(.seconds(60), "a fleet worker's shutdown") {
                    await worker.shutdown()
                    await task.value
                }
            } catch {
                Issue.record("\(error)")
            }
        }
        do {
            try await within(.seconds(60), "the dispatcher's stop") { await self.stopDispatcher() }
        } catch {
            Issue.record("\(error)")
        }
        try? FileManager.default.removeItem(atPath: folder)
    }

    // MARK: Setting up a project

    /// A project `p` with environment `e` on a fresh repository holding `actions`.
    func project(_ actions: String, project properties: JSON = [:], environment environmentProperties: JSON = [:], files: [String: String] = [:]) async throws -> TestRepo {
        let repository = try TestRepository.make(files.merging([".opschain/actions.yml": actions]) { $1 })
        let code = "p\(UUID().uuidString.prefix(6).lowercased())"
        _ = try await post("/projects", ["code": .string(code), "git_remote": .string(repository.path)])
        _ = try await post("/projects/\(code)/environments", ["code": "e"])
        _ = try await send("PUT", "/projects/\(code)/properties", properties)
        _ = try await send("PUT", "/projects/\(code)/environments/e/properties", environmentProperties)
        return TestRepo(path: repository.path, sha: repository.sha, project: code)
    }

    func createChange(_ repo: TestRepo, action: String) async throws -> String {
        let change = try await post("/changes", ["project": .string(repo.project), "environment": "e", "action": .string(action), "git_rev": "main"])
        return try #require(change["id"]?.stringValue)
    }

    /// Waits for the change to finish and for every log line shipped before that to be
    /// stored; returns its tree.
    @discardableResult
    func waitForChange(_ id: String, timeout: Duration = .seconds(180)) async throws -> (ChangeRecord, ChangeTree) {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (change, tree) = try await snapshot(id)
            if change.status.isFinal {
                if let root = tree.root { try await waitForShippedLogs(id, root: root.id, deadline: deadline) }
                return try await snapshot(id)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSetupError("change \(id) did not finish within \(timeout)")
    }

    /// A worker ships (and has confirmed) an attempt's log lines before its outcome, but the
    /// dispatcher reads logs and outcomes from two queues: a line may be stored after the step
    /// it belongs to has finished. A fence behind them in the logs queue, which the dispatcher
    /// reads in order: a line for attempt 0 of the root (a number no attempt has, which the
    /// dispatcher stores from anyone), waited for in the store and then deleted. Once it is
    /// stored, so is everything shipped before the change finished.
    private func waitForShippedLogs(_ id: String, root: String, deadline: ContinuousClock.Instant) async throws {
        let text = "fleet harness fence \(UUID().uuidString)"
        let fence = LogBatch(
            ref: AttemptRef(stepId: root, attempt: 0), worker: "fleet-harness",
            lines: [LogBatch.Line(seq: 0, stream: .system, text: text, at: Int64(Date().timeIntervalSince1970 * 1000))])
        let client = AMQPClient(endpoints: [broker], logger: Self.logger)
        do {
            try await client.publish(
                AMQPMessage(body: WireCodec.encode(fence), properties: AMQPProperties(messageId: UUID().uuidString, type: LogBatch.messageType, userId: broker.user)),
                exchange: Names.eventsExchange, routingKey: Names.logsRoutingKey, timeout: max(deadline - ContinuousClock.now, .seconds(1)))
        } catch {
            await client.stop()
            throw TestSetupError("cannot publish the log fence for change \(id): \(error)")
        }
        await client.stop()
        let query = "FROM log_lines WHERE step_id = ? AND attempt = 0 AND text = ?"
        try await waitUntil("the logs shipped before change \(id) finished to be stored", timeout: max(deadline - ContinuousClock.now, .seconds(1))) {
            try await store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) " + query, arguments: [root, text]) ?? 0 } > 0
        }
        try await store.write { db in try db.execute(sql: "DELETE " + query, arguments: [root, text]) }
    }

    /// Waits until `condition` holds; throws, saying `what`, if it does not within `timeout`.
    func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestSetupError("waited \(timeout) for \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The attempts the harness's workers run right now.
    func runningSteps() async -> [AttemptRef] {
        var all: [AttemptRef] = []
        for (worker, _) in workers.value { all += await worker.runningSteps }
        return all
    }

    func snapshot(_ id: String) async throws -> (ChangeRecord, ChangeTree) {
        let lease = leaseSeconds
        return try await store.read { db in (try Store.change(db, id), try Store.tree(db, changeId: id, leaseSeconds: lease)) }
    }

    func properties(_ repo: TestRepo, environment: Bool = false) async throws -> PropertiesVersion {
        try await store.read { db in try Store.properties(db, repo.project, environment ? "e" : nil) }
    }

    func logs(_ id: String) async throws -> [Store.LogLine] {
        try await store.read { db in try Store.logs(db, changeId: id).map(\.line) }
    }

    /// Step containers of this harness's workers that still exist.
    func leftoverContainers() async throws -> [String] {
        let engine = try DockerEngine()
        var all: [String] = []
        for (worker, _) in workers.value {
            all += try await engine.containers(label: "org.stepfleet.worker=\(worker.configuration.name)")
            // On the oci runtime, what its steps left: runc state, directories, mounts, cgroups.
            let work = await worker.configuration.workDirectory
            let used = Set(OCIContainerRuntime.idsUsed(in: work + "/oci"))
            let deadline = ContinuousClock.now + .seconds(20)
            while true {
                let left = OCIContainerRuntime.leftovers(workDirectory: work) { used.contains($0) }
                if left.isEmpty || ContinuousClock.now > deadline {
                    all += left
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        return all
    }

    // MARK: HTTP

    func get(_ path: String) async throws -> JSON { try await send("GET", path, nil) }
    func post(_ path: String, _ body: JSON?) async throws -> JSON { try await send("POST", path, body) }

    @discardableResult
    func send(_ method: String, _ path: String, _ body: JSON?, headers: [String: String] = [:]) async throws -> JSON {
        let (status, json) = try await raw(method, path, body.map { $0.serialized() }, headers: headers)
        guard (200..<300).contains(status) else { throw TestSetupError("\(method) \(path): \(status) \(json.serialized())") }
        return json
    }

    /// One request, with the harness's token unless `authenticated` is false.
    func raw(_ method: String, _ path: String, _ body: String?, headers: [String: String] = [:], authenticated: Bool = true) async throws -> (Int, JSON) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .init(rawValue: method)
        if authenticated, let token = token.value { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let data = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), (try? JSON.parse(bytes: data.readableBytesView)) ?? .string(String(buffer: data)))
    }
}

/// A test project: its repository and its project code.
struct TestRepo: Sendable {
    let path: String
    let sha: String
    let project: String
}

/// The fleet suites share their vhost's queues: one at a time.
@Suite(.serialized, .timeLimit(.minutes(15))) struct FleetTests {}

extension ChangeTree {
    /// The step running `action` (the first, when several do).
    func step(_ action: String) -> StepRecord? {
        steps.values.filter { $0.action == action }.sorted { ($0.startedAt ?? 0) < ($1.startedAt ?? 0) }.first
    }
}
