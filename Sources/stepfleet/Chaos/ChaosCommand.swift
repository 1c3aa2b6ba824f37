import ArgumentParser
import Foundation
import Protocol

struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Run a batch of changes on a real fleet, inject a fault, and count what was lost or applied twice.",
        discussion: """
            Starts a dispatcher and workers (this binary, as separate processes) against --amqp, submits --changes \
            changes of six steps each (serial and parallel children, every step adding 1 to its own counter in its \
            environment's properties), injects the scenario's fault (cluster-node-loss starts a three-node cluster \
            of its own; long-step lowers the broker's consumer timeout to 3 s and runs 5 s steps; broker-flow raises the memory alarm for 15 s \
            while the dispatcher sends at least 200 root jobs and steps print log lines), waits for the batch to settle and prints one line: \
            steps expected, finished, lost (never finished, or a successful step whose effect is missing), applied twice, \
            re-run after their run phase had started, final change statuses, wall time. Exits 1 if anything was lost or \
            doubled. ops/chaos starts a broker node of its own for this.
            """
    )

    static let scenarios = [
        "kill-workers", "broker-restart", "broker-kill", "dispatcher-restart", "connections-dropped", "broker-alarm", "poison",
        "cluster-node-loss", "long-step", "worker-lost-during-run", "broker-flow", "sigterm-workers", "sigterm-dispatcher",
    ]

    @Argument(help: "One of: \(ChaosCommand.scenarios.joined(separator: ", ")), or all.")
    var scenario: String
    @Option(help: "Broker URL (a vhost of its own: the scenario purges it).")
    var amqp = "amqp://guest:guest@127.0.0.1:5682/stepfleet-chaos?heartbeat=2"
    @Option(help: "The broker's private node, for broker faults (ops/rabbitmqctl and ops/broker-node drive it).")
    var node = "stepfleet-chaos@localhost"
    @Option(help: "The ops/ folder of this repository (its rabbitmqctl and broker-node scripts).")
    var ops = "ops"
    @Option(help: "Changes in the batch.")
    var changes = 50
    @Option(help: "Workers.")
    var workers = 4
    @Option(help: "Seconds each step's command runs.")
    var stepSeconds = 0.2
    @Option(help: "The workers' step runtime: docker, oci or auto (worker-lost-during-run then also checks that no runc state, mount or cgroup of the killed workers is left).")
    var runtime = "docker"

    func validate() throws {
        guard scenario == "all" || Self.scenarios.contains(scenario) else {
            throw ValidationError("unknown scenario \(scenario): \(Self.scenarios.joined(separator: ", ")) or all")
        }
        guard ["docker", "oci", "auto"].contains(runtime) else { throw ValidationError("--runtime must be docker, oci or auto") }
        guard changes > 0, workers > 0 else { throw ValidationError("--changes and --workers must be positive") }
    }

    func run() async throws {
        // SIGTERM or SIGINT stops the fleet (and the cluster) before the harness exits.
        let signals = onTerminationSignals {
            say("chaos: stopping the fleet (signal)")
            ChaosFleet.stopAll()
            Foundation.exit(143)
        }
        defer { signals.forEach { $0.cancel() } }
        var clean = true
        for name in scenario == "all" ? Self.scenarios : [scenario] {
            var runner = ChaosScenario(name: name, amqp: amqp, node: node, ops: ops, changes: changes, workers: workers, stepSeconds: stepSeconds)
            runner.runtime = runtime
            if name == "cluster-node-loss" {
                // Three nodes of one cluster; every process is given all three addresses.
                try ChaosCluster(ops: ops).prepare()
                runner.node = "stepfleet-c1@localhost"
                runner.amqp = (1...3).map { amqp.replacingOccurrences(of: #"@[^/]+/"#, with: "@127.0.0.1:569\($0)/", options: .regularExpression) }
                    .joined(separator: ",")
            }
            if name == "broker-flow" {
                // At least 200 root jobs go out at once: the dispatcher's backlog meets the alarm.
                runner.changes = max(changes, 200)
            }
            if name.hasPrefix("sigterm-") {
                // Steps long enough to be running when the signal comes.
                runner.stepSeconds = max(stepSeconds, 2)
            }
            if name == "long-step" {
                runner.changes = min(changes, 10)
                runner.stepSeconds = 5
            }
            let outcome: Result<(ChaosReport, Double), any Error>
            do {
                outcome = .success(try await runner.run())
            } catch {
                outcome = .failure(error)
            }
            if name == "cluster-node-loss" { try? runner.control("stop-cluster") }
            let (report, wall) = try outcome.get()
            say(report.line(name, wall: wall))
            clean = clean && report.clean
        }
        if !clean { throw ExitCode(1) }
    }
}
