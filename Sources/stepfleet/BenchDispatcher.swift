import AMQP
import ArgumentParser
import Dispatcher
import Foundation
import Protocol

struct BenchDispatcher: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatcher",
        abstract: "The dispatcher's own ceiling: steps per second and dispatch latency, with simulated workers and no containers.",
        discussion: """
            Runs a real dispatcher in this process (its SQLite store in a fresh folder, its HTTP API for the project) on the \
            broker at --amqp, which should be a vhost of its own (its StepFleet queues are deleted first). Simulated workers \
            in this process speak the real wire protocol over the broker: credit subscriptions on the pool's queue, a \
            confirmed claim with the claim token before the ack, four phase events, --log-batches log batches and a \
            confirmed outcome carrying a one-operation patch. Each change's root step returns --fanout parallel children.

            Dispatch latency: from the publish of the outcome that makes a step ready (its parent's, or the last one of the \
            change before it on the same environment) until a simulated worker holds the step's job. Steps per second: \
            all steps over the time until the dispatcher had handled every message of the run (claims, phases and logs \
            travel on queues of their own, so a dispatcher behind on them is not sustaining its outcome rate). Then where the dispatcher's time went: the store's single writer \
            (waiting, transaction bodies, commits), handling each kind of message, and outbox rounds.

            With --compare the same workload runs twice, each on a fresh store: first with one store transaction per worker \
            event and log batch (the default), then with what waits applied in one transaction (messageBatchLimit 200); \
            both are printed side by side.
            """
    )

    @Option(help: "Broker URL; a vhost of its own (create it with: ops/rabbitmqctl add_vhost stepfleet-bench; ops/rabbitmqctl set_permissions -p stepfleet-bench guest '.*' '.*' '.*').")
    var amqp = "amqp://guest:guest@127.0.0.1:5672/stepfleet-bench"
    @Option(help: "Changes per run.")
    var changes = 300
    @Option(help: "Children of each change's root step (parallel): steps per change = fanout + 1.")
    var fanout = 20
    @Option(help: "Environments the changes are spread over (one change runs per environment at a time).")
    var environments = 16
    @Option(help: "Simulated workers, each on a broker connection of its own.")
    var workers = 8
    @Option(help: "Jobs each simulated worker holds at once.")
    var slots = 16
    @Option(help: "Log batches each simulated step sends.")
    var logBatches = 1
    @Flag(help: "Run twice: one transaction per worker message (the default), then batched; print both side by side.")
    var compare = false
    @Option(help: "Write the figures as JSON to this file.")
    var json: String?
    @Option(help: "Give up on a run after this many seconds.")
    var timeout = 600

    func validate() throws {
        guard changes >= 1, fanout >= 0, fanout <= 100, environments >= 1, workers >= 1, slots >= 1, logBatches >= 0, timeout >= 1 else {
            throw ValidationError("--changes, --environments, --workers, --slots and --timeout must be at least 1; --fanout from 0 to 100; --log-batches 0 or more")
        }
    }

    func run() async throws {
        let broker = try AMQPConfiguration(url: amqp)
        let settings = BenchDispatcherRun.Settings(
            broker: broker, changes: changes, fanout: fanout, environments: environments, workers: workers, slots: slots, logBatches: logBatches,
            timeout: .seconds(timeout))
        let variants: [BenchDispatcherRun.Variant] = compare ? [.transactionPerMessage, .batched] : [.transactionPerMessage]
        say("bench dispatcher: \(changes) changes × \(fanout + 1) steps on \(environments) environments; \(workers) simulated workers × \(slots) slots; broker \(broker)")
        var figures: [BenchDispatcherFigures] = []
        for variant in variants {
            say("run: \(variant.description)")
            let result = try await BenchDispatcherRun(settings: settings, variant: variant).run()
            say(result.text)
            figures.append(result)
        }
        if figures.count > 1 { say(BenchDispatcherFigures.sideBySide(figures)) }
        if let json {
            let document: JSON = .array(figures.map(\.json))
            try Data((document.serialized(pretty: true) + "\n").utf8).write(to: URL(fileURLWithPath: json))
            say("figures written to \(json)")
        }
    }
}
