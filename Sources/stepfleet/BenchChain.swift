import AMQP
import ArgumentParser
import Dispatcher
import Fleet
import Foundation
import HostCommand
import Logging
import Protocol

struct BenchChain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "Cost per step of a whole change: N no-op steps through a real dispatcher and workers.",
        discussion: """
            Starts a dispatcher and WORKERS workers (processes of this binary, each with SLOTS slots) on a vhost of the broker, \
            runs one change first to build the step image, then CHANGES changes of STEPS no-op child steps (serial, or parallel \
            with --fan) and times each from its creation to its end as the API reports it. Prints the median change and the \
            median per step; the last line is `ms per step: M` (serial) or `steps per second: S` (fan).
            """
    )

    @Option(help: "Broker URL (its vhost is emptied first; default: the bench vhost).")
    var amqp = "amqp://guest:guest@127.0.0.1:5672/stepfleet-bench"
    @Option(help: "No-op steps per change.")
    var steps = 20
    @Option(help: "Measured changes.")
    var changes = 3
    @Option(help: "Workers.")
    var workers = 2
    @Option(help: "Slots per worker.")
    var slots = 2
    @Flag(help: "Run the steps in parallel (a fan) instead of one after another.")
    var fan = false
    @Option(help: ArgumentHelp("What runs the workers' step containers.", valueName: "docker|oci|auto"))
    var runtime = "auto"
    @Option(help: "The ops folder (its rabbitmqctl makes the bench vhost).")
    var ops = "ops"
    @Option(help: "The broker node.")
    var node = "stepfleet@localhost"

    func validate() throws {
        guard steps >= 1, changes >= 1, workers >= 1, slots >= 1 else { throw ValidationError("--steps, --changes, --workers and --slots must be at least 1") }
        guard ["docker", "oci", "auto"].contains(runtime) else { throw ValidationError("--runtime must be docker, oci or auto") }
    }

    func run() async throws {
        let broker = try AMQPConfiguration(url: amqp)
        try? brokerControl("delete_vhost", broker.vhost)
        try brokerControl("add_vhost", broker.vhost)
        try brokerControl("set_permissions", "-p", broker.vhost, broker.user, ".*", ".*", ".*")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-bench-chain-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let names = (1...steps).map { "s\($0)" }
        let actions = "actions:\n  root:\n    steps: [\(names.joined(separator: ", "))]\n    strategy: \(fan ? "parallel" : "serial")\n"
            + names.map { "  \($0): { run: 'true' }\n" }.joined()
        let repository = folder + "/bench.git"
        try LocalRepository.make(at: repository, files: [".opschain/actions.yml": actions])

        let port = Int.random(in: 40_000..<50_000)
        var client = APIClient(server: "http://127.0.0.1:\(port)")
        client.token = try await Store(path: folder + "/stepfleet.sqlite").createToken(name: "bench")
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        var pids: [pid_t] = []
        defer {
            for pid in pids { kill(pid, SIGTERM) }
            for pid in pids { Spawn.wait(pid) }
        }
        pids.append(
            try Spawn.launch(
                executable,
                ["dispatcher", "--amqp", amqp, "--db", folder + "/stepfleet.sqlite", "--listen", "127.0.0.1:\(port)", "--log-level", "warning", "--git-local-roots", folder],
                logPath: folder + "/dispatcher.log"))
        for index in 0..<workers {
            pids.append(
                try Spawn.launch(
                    executable,
                    ["worker", "--amqp", amqp, "--slots", String(slots), "--work-dir", folder + "/worker\(index)", "--log-level", "warning",
                     "--git-local-roots", folder, "--dispatcher-user", broker.user, "--runtime", runtime, "--min-free-disk", "0"],
                    logPath: folder + "/worker\(index).log"))
        }
        var answered = false
        for _ in 0..<200 where !answered {
            answered = (try? await client.request("GET", "/healthz")) != nil
            if !answered { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard answered else { throw CLIError("the dispatcher did not answer within 20 s; see \(folder)/dispatcher.log") }
        _ = try await client.request("POST", "/projects", body: ["code": "bench", "git_remote": .string(repository)])
        _ = try await client.request("POST", "/projects/bench/environments", body: ["code": "e"])

        // A change's end comes as its notification (pushed, as Celery's result backend pushes
        // a task's), so the bench does not load the dispatcher with polls while it measures.
        let notes = "bench.notifications.\(UUID().uuidString.prefix(8).lowercased())"
        let amqpClient = AMQPClient(
            endpoints: [broker],
            topology: FleetTopology.common
                + AMQPTopology(
                    queues: [.init(name: notes, durable: false, exclusive: true, autoDelete: true)],
                    bindings: [.init(queue: notes, exchange: Names.notificationsExchange, routingKey: "change.bench.e.*")]),
            logger: Logger(label: "stepfleet.bench"))
        await amqpClient.start()
        let consumer = try await amqpClient.connected().consume(queue: notes, prefetch: 100)
        var notifications = consumer.makeAsyncIterator()

        func change() async throws -> (ms: Double, id: String) {
            let clock = ContinuousClock()
            let start = clock.now
            let created = try await client.request("POST", "/changes", body: ["project": "bench", "environment": "e", "action": "root", "user": "bench"])
            guard let id = created["id"]?.stringValue else { throw CLIError("the dispatcher made no change: \(created)") }
            // No wait without a deadline: the consumer is cancelled after 600 s, which ends the loop.
            let watchdog = Task {
                try await Task.sleep(for: .seconds(600))
                await consumer.cancel()
            }
            defer { watchdog.cancel() }
            while let delivery = try await notifications.next() {
                try? await delivery.ack()
                let note = try? JSON.parse(bytes: delivery.body)
                guard note?["id"]?.stringValue == id, let status = note?["status"]?.stringValue else { continue }
                if status == "success" { return ((clock.now - start).seconds * 1000, id) }
                if ["error", "cancelled"].contains(status) { throw CLIError("the bench change ended \(status); see the logs in \(folder)") }
            }
            throw CLIError("the bench change did not end within 600 s")
        }

        say("warming up: one change to build the step image")
        _ = try await change()
        var samples: [Double] = []
        var breakdown = ChainBreakdown()
        for _ in 0..<changes {
            let (ms, id) = try await change()
            samples.append(ms)
            breakdown.add(change: try await client.request("GET", "/changes/\(id)"))
        }
        let stats = Percentiles(samples)
        let mode = fan ? "a fan of \(steps) parallel steps" : "a chain of \(steps) serial steps"
        say("\(changes) changes of \(mode), \(workers) workers × \(slots) slots, --runtime \(runtime): median \(stats.median.milliseconds) per change, max \(stats.value(100).milliseconds)")
        say("where a step's time goes (medians per step, from the dispatcher's records and the workers' phase parts):")
        for line in breakdown.lines(serial: !fan) { say(line) }
        if fan {
            say(String(format: "steps per second: %.2f", Double(steps) / (stats.median / 1000)))
        } else {
            say(String(format: "ms per step: %.1f", stats.median / Double(steps)))
        }
        await amqpClient.stop()
    }

    private func brokerControl(_ arguments: String...) throws {
        let result = try Spawn.run(ops + "/rabbitmqctl", ["--node", node] + arguments)
        guard result.status == 0 else { throw CLIError("rabbitmqctl \(arguments.first ?? "") failed (exit \(result.status))") }
    }
}
