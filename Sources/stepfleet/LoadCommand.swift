import AMQP
import ArgumentParser
import Foundation
import Protocol

struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Submit changes to a running dispatcher at a rate and report what the fleet sustains.",
        discussion: """
            Makes a synthetic project (a git repository under --repo-dir with a three-step `deploy` action, the project and \
            --environment-count environments through the API), or uses --project. Submits changes round-robin over the \
            environments, at --rate changes per second (open loop) or as fast as the dispatcher accepts them with \
            --concurrency requests in flight, until --count changes or --duration seconds. Then waits for every change to \
            finish (at most --wait seconds) and reads each back from the API.

            Reports changes/s and steps/s sustained (from the first change's creation to the last one's end, on the \
            dispatcher's clock), queue latency (a step's enqueue → its claim by a worker, first attempts only), change \
            latency (create → final) and the submissions' round trip (HTTP, or publish → answer over the queue) as p50/p95/p99/max from HDR histograms, and \
            the errors. Writes the report as JSON (--report) and a picture of throughput and latency over time as SVG \
            (--svg). Exits non-zero when a change failed, was refused or did not finish.

            With --via queue the changes are submitted as requests over the broker (`stepfleet.requests`, answered on a \
            reply queue `stepfleet.client.USER.load-ID` of the run's own) with the broker URL in STEPFLEET_AMQP or \
            --amqp — a `client` account's (ops/broker-account client USER …) is enough; the submission latency is then \
            publish → answer. The project is still made, and the changes read back, through the API.
            """
    )

    @OptionGroup var server: ServerOptions
    @Option(help: "Use this existing project instead of making a synthetic one.")
    var project: String?
    @Option(name: .customLong("environment"), help: "With --project: an environment to use (repeat it); default: all of the project's.")
    var environments: [String] = []
    @Option(help: "With --project: the action to run (the synthetic project's is deploy).")
    var action: String?
    @Option(help: "With --project: the git revision each change runs (default: the remote's default branch).")
    var gitRev: String?
    @Option(help: "Environments of the synthetic project (one change runs per environment at a time).")
    var environmentCount = 10
    @Option(help: "Where the synthetic project's repository is made; must lie under one of the dispatcher's --git-local-roots.")
    var repoDir = FileManager.default.currentDirectoryPath
    @Option(help: "Changes per second to submit (open loop); default: as fast as the dispatcher accepts them.")
    var rate: Double?
    @Option(help: "Submissions in flight at once.")
    var concurrency = 8
    @Option(help: "Changes to submit (default 100 when --duration is not given).")
    var count: Int?
    @Option(help: "Seconds to keep submitting.")
    var duration: Double?
    @Option(help: "Seconds to wait, after the last submission, for the changes to finish.")
    var wait = 1800.0
    @Option(help: "The JSON report.")
    var report = "load-report.json"
    @Option(help: "The picture of throughput and latency over time (SVG).")
    var svg = "load-report.svg"
    @Option(help: "Who the changes are created for.")
    var user = "stepfleet-load"
    @Option(help: ArgumentHelp("How the changes are submitted: POST /changes, or requests over the broker's request queue.", valueName: "http|queue"))
    var via = "http"
    @Option(help: "With --via queue: the broker URL (better in the environment, STEPFLEET_AMQP: it holds a password).")
    var amqp: String?

    /// The broker URL for --via queue: --amqp, else STEPFLEET_AMQP.
    var brokerURL: String? { amqp ?? ProcessInfo.processInfo.environment["STEPFLEET_AMQP"].flatMap { $0.isEmpty ? nil : $0 } }

    func validate() throws {
        if let rate, !(rate > 0 && rate <= 10_000) { throw ValidationError("--rate must be more than 0 and at most 10000 changes per second") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be more than 0 seconds") }
        guard concurrency >= 1, concurrency <= 1000 else { throw ValidationError("--concurrency must be from 1 to 1000") }
        guard environmentCount >= 1, environmentCount <= 1000 else { throw ValidationError("--environment-count must be from 1 to 1000") }
        guard wait >= 0 else { throw ValidationError("--wait must be 0 or more seconds") }
        if project == nil, !environments.isEmpty || action != nil || gitRev != nil {
            throw ValidationError("--environment, --action and --git-rev go with --project (the synthetic project has its own)")
        }
        if project != nil, action == nil { throw ValidationError("--project needs --action: the action each change runs") }
        guard via == "http" || via == "queue" else { throw ValidationError("--via must be http or queue") }
        if via == "http", amqp != nil { throw ValidationError("--amqp goes with --via queue (over http the changes go to --server)") }
        if via == "queue" {
            guard let url = brokerURL else { throw ValidationError("--via queue needs the broker URL: STEPFLEET_AMQP or --amqp amqp://USER:PASSWORD@HOST:PORT/VHOST") }
            if let problem = DispatcherCommand.brokerURLs(url) { throw ValidationError("the broker URL is not usable: expected \(problem)") }
        }
    }

    func run() async throws {
        let client = server.client
        let target: LoadProject
        if let project {
            target = try await LoadProject.existing(client, code: project, environments: environments, action: action!)
        } else {
            target = try await LoadProject.make(client, folder: repoDir, environments: environmentCount)
            say("made the synthetic project \(target.code) with \(target.environments.count) environments (repository under \(repoDir))")
        }
        let pacer = LoadPacer(rate: rate, count: count ?? (duration == nil ? 100 : nil), duration: duration)
        let submitter: any LoadSubmitter
        var queue: LoadQueueSubmitter?
        if via == "queue", let url = brokerURL {
            let broker = try AMQPConfiguration(url: url)
            queue = try await LoadQueueSubmitter.connect(broker, logger: makeLogger("stepfleet.load", level: .warning))
            submitter = queue!
            say("submitting over \(Names.requestsExchange) on \(broker.description), answers on \(queue!.replyQueue)")
        } else {
            submitter = LoadHTTPSubmitter(client: client)
        }
        let settings = LoadReport.Settings(
            server: client.server, via: submitter.via, project: target.code, action: target.action, environments: target.environments.count, rate: rate,
            concurrency: concurrency, count: pacer.count, durationSeconds: duration)
        let run = LoadRun(
            submitter: submitter, reader: LoadReader(client: client, project: target.code), project: target,
            gitRev: project == nil ? "main" : gitRev, user: user, pacer: pacer, concurrency: concurrency, wait: wait)
        let result: LoadRun.Result
        do {
            result = try await run.run(progress: LoadProgress())
            await queue?.stop()
        } catch {
            await queue?.stop()
            throw error
        }
        let loadReport = LoadReport.make(
            settings: settings, startedAt: result.startedAt, wallSeconds: result.wallSeconds, submitted: result.submitted, submitErrors: result.errors,
            samples: result.samples, unfinished: result.unfinished, submitLatencies: result.submitLatencies)
        try Data((loadReport.json.serialized(pretty: true) + "\n").utf8).write(to: URL(fileURLWithPath: report))
        try Data(LoadChart.svg(loadReport).utf8).write(to: URL(fileURLWithPath: svg))
        say(loadReport.text)
        say("report: \(report)  picture: \(svg)")
        let failed = loadReport.changes.filter { $0.key != "success" }.values.reduce(0, +)
        if failed > 0 || !loadReport.submitErrors.isEmpty {
            throw CLIError("\(failed) change(s) did not succeed and \(loadReport.submitErrors.values.reduce(0, +)) submission(s) were refused or failed")
        }
    }
}
