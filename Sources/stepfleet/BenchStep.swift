import AMQP
import ArgumentParser
import Fleet
import Foundation
import HostCommand
import Protocol
import Worker

struct BenchStep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Per-step overhead of a worker (claim → outcome) against a plain `docker run --rm` of the same image.",
        discussion: """
            Starts a worker in this process on a pool of its own, runs a no-op step once to build its image, then runs \
            STEPS cache-hit steps one after another and times each from the worker's claim to the outcome's arrival. \
            Then times `docker run --rm --network none IMAGE true` of the same step image STEPS times. Prints medians and \
            p99s; the last line is `ratio: R` (worker step median / docker run median).
            """
    )

    @Option(help: "Broker URL.")
    var amqp = "amqp://guest:guest@127.0.0.1:5672/"
    @Option(help: "The Docker engine.")
    var docker = "unix:///var/run/docker.sock"
    @Option(help: "Base runner image.")
    var runnerImage = "stepfleet/runner:\(StepFleetVersion.current)"
    @Option(help: "Measured steps (and docker runs).")
    var steps = 20
    @Option(help: ArgumentHelp("What runs the worker's step containers.", valueName: "docker|oci"))
    var runtime = "docker"

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard runtime == "docker" || runtime == "oci" else { throw ValidationError("--runtime must be docker or oci") }
    }

    func run() async throws {
        let logger = makeLogger("stepfleet.bench", level: .warning)
        let broker = try AMQPConfiguration(url: amqp)
        let pool = "bench-\(UUID().uuidString.prefix(6).lowercased())"
        let replyQueue = "stepfleet.bench.outcomes.\(pool)"
        let repositoryPath = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-bench-repo-\(UUID().uuidString.prefix(6))").path
        let repository = (path: repositoryPath, sha: try LocalRepository.make(at: repositoryPath, files: [".opschain/actions.yml": "actions:\n  noop: { run: 'true' }\n"]))
        defer { try? FileManager.default.removeItem(atPath: repository.path) }
        let workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-bench-\(pool)").path
        defer { try? FileManager.default.removeItem(atPath: workDirectory) }

        var configuration = WorkerConfiguration(name: "bench-\(pool)", pool: pool, slots: 1, workDirectory: workDirectory)
        configuration.gitPolicy = GitRemotePolicy(localRoots: [FileManager.default.temporaryDirectory.path])
        configuration.runtime = try await StepRuntime.choose(runtime).0
        let worker = WorkerService(configuration: configuration, brokers: [broker], engine: try DockerEngine(endpoint: docker), logger: logger)
        let workerTask = Task { await worker.run() }
        // The bench plays dispatcher: it declares the fleet's topology and the pool's queue,
        // and gets a copy of every outcome on the vhost in a queue of its own.
        let client = AMQPClient(
            endpoints: [broker],
            topology: FleetTopology.common + FleetTopology.pool(pool)
                + AMQPTopology(
                    queues: [.init(name: replyQueue, durable: false, exclusive: true, autoDelete: true)],
                    bindings: [.init(queue: replyQueue, exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)]),
            logger: logger)
        let connection = try await client.connected()
        let outcomes = try await connection.consume(queue: replyQueue, prefetch: 10)
        var iterator = outcomes.makeAsyncIterator()

        func runStep() async throws -> (StepOutcome, Double) {
            let job = StepJob(
                changeId: "bench", stepId: UUID().uuidString, attempt: 1, action: "noop",
                git: GitSource(remote: repository.path, rev: "main", sha: repository.sha),
                context: StepContext(
                    context: .init(project: ["code": "bench"], environment: ["code": "bench"], change: [:], step: [:], user: [:]),
                    project: .init(properties: [:]), environment: .init(properties: [:])),
                runner: RunnerSettings(baseImage: runnerImage, version: StepFleetVersion.current), pool: pool)
            try await client.publish(
                AMQPMessage(body: WireCodec.encode(job), properties: AMQPProperties(userId: broker.user)), exchange: Names.jobsExchange, routingKey: pool)
            guard let delivery = try await iterator.next() else { throw CLIError("the outcome queue closed") }
            let received = Date().timeIntervalSince1970 * 1000
            try await delivery.ack()
            let outcome = try WireCodec.decode(StepOutcome.self, from: delivery.body)
            guard outcome.status == .success else { throw CLIError("the bench step failed: \(outcome.error ?? "?")") }
            return (outcome, received - Double(outcome.claimedAt ?? 0))
        }

        say("warming up: building the step image once")
        _ = try await runStep()
        var workerSamples: [Double] = []
        var phases: [PhaseDurations] = []
        for _ in 0..<steps {
            let (outcome, milliseconds) = try await runStep()
            workerSamples.append(milliseconds)
            if let durations = outcome.phases { phases.append(durations) }
        }
        await worker.shutdown()
        await workerTask.value
        _ = try? await connection.deleteQueue(Names.stepsQueue(pool: pool))
        await client.stop()

        let engine = try DockerEngine(endpoint: docker)
        guard let image = try await engine.images(label: "org.stepfleet.git-sha=\(repository.sha)").first else {
            throw CLIError("the step image was not found")
        }
        var dockerSamples: [Double] = []
        for _ in 0..<steps {
            let clock = ContinuousClock()
            let start = clock.now
            let status = try LocalRepository.run("/usr/bin/docker", ["run", "--rm", "--network", "none", image, "true"]).status
            guard status == 0 else { throw CLIError("docker run exited with \(status)") }
            dockerSamples.append((clock.now - start).seconds * 1000)
        }
        let workerStats = Percentiles(workerSamples)
        let dockerStats = Percentiles(dockerSamples)
        say("worker step (claim → outcome, --runtime \(runtime)), \(steps) cache-hit steps: median \(workerStats.median.milliseconds), p99 \(workerStats.value(99).milliseconds)")
        func median(_ path: KeyPath<PhaseDurations, Int?>) -> String {
            let values = phases.compactMap { $0[keyPath: path] }.map(Double.init)
            return values.isEmpty ? "?" : String(format: "%.0f", Percentiles(values).median)
        }
        say(
            "  where it goes (median ms): build initialise \(median(\.buildInitialiseMs)) (mirror, repository files, build key and image lookup: no checkout on a hit), build \(median(\.buildMs)) in all, "
                + "run initialise \(median(\.runInitialiseMs)) (layers, mount, config), running \(median(\.runningMs)), completing \(median(\.runCompletingMs)); "
                + "the rest is the claim, phase events and the outcome")
        say("docker run --rm, \(steps) runs of the same image: median \(dockerStats.median.milliseconds), p99 \(dockerStats.value(99).milliseconds)")
        say(String(format: "ratio: %.2f", workerStats.median / dockerStats.median))
    }
}

/// A git repository made on the spot (for the bench and chaos projects), one commit on main.
enum LocalRepository {
    /// Writes `files` (relative path → contents) into `path` and commits them; returns the SHA.
    @discardableResult
    static func make(at path: String, files: [String: String]) throws -> String {
        for (name, contents) in files {
            let file = (path as NSString).appendingPathComponent(name)
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        }
        for arguments in [["init", "--quiet", "--initial-branch=main"], ["add", "-A"], ["-c", "user.name=stepfleet", "-c", "user.email=stepfleet@localhost", "commit", "--quiet", "-m", "StepFleet"]] {
            guard try run("/usr/bin/git", ["-C", path] + arguments).status == 0 else { throw CLIError("git \(arguments[0]) failed in \(path)") }
        }
        return try run("/usr/bin/git", ["-C", path, "rev-parse", "HEAD"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs a program to its end, feeding it `input` if given; returns its status and standard output.
    static func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> (status: Int32, output: String) {
        try Spawn.run(executable, arguments, input: input)
    }
}
