import AMQP
import Dispatcher
import Foundation
import Protocol

/// One scenario: the fleet, the batch, the fault, the count.
struct ChaosScenario {
    let name: String
    var amqp: String
    var node: String
    let ops: String
    var changes: Int
    let workers: Int
    var stepSeconds: Double
    /// The workers' `--runtime`.
    var runtime = "docker"

    func run() async throws -> (ChaosReport, Double) {
        try resetVhost()
        if name == "long-step" { try await lowerConsumerTimeout() }
        defer { if name == "long-step" { try? restoreConsumerTimeout() } }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-chaos-\(name)-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // A lease must outlast the broker's own failover: a quorum queue whose leader died takes
        // about ten seconds to confirm again, and heartbeats wait for those confirms.
        let fleet = ChaosFleet(amqp: amqp, folder: folder, port: Int.random(in: 30_000..<40_000), lease: ["cluster-node-loss", "broker-flow"].contains(name) ? 20 : 6, runtime: runtime)
        // The token first: this process then creates and migrates the database before the
        // dispatcher opens it.
        var client = APIClient(server: fleet.server)
        client.token = try await Store(path: folder + "/stepfleet.sqlite").createToken(name: "chaos")
        try fleet.startDispatcher()
        for _ in 0..<workers { try fleet.startWorker() }
        defer { fleet.stop() }
        try await waitForAPI(client)

        // worker-lost-during-run: one change whose root may not re-run, one whose root may.
        let lostDuringRun = name == "worker-lost-during-run"
        let projects: [(code: String, retries: Int, environments: Int)] =
            lostDuringRun ? [("chaos", 0, 1), ("chaosr", 1, 1)] : [("chaos", name == "kill-workers" ? 3 : 0, changes)]
        var targets: [(project: String, environment: String)] = []
        for project in projects {
            let repository = try ChaosBatch.repository(
                in: folder, name: project.code, retries: project.retries, rootSeconds: lostDuringRun ? 8 : stepSeconds, stepSeconds: stepSeconds,
                logLines: name == "broker-flow" ? 200 : 0)
            _ = try await client.request("POST", "/projects", body: ["code": .string(project.code), "git_remote": .string(repository)])
            for index in 0..<project.environments {
                _ = try await client.request("POST", "/projects/\(project.code)/environments", body: ["code": .string("e\(index)")])
                _ = try await client.request("PUT", "/projects/\(project.code)/environments/e\(index)/properties", body: ["counters": [:]])
                targets.append((project.code, "e\(index)"))
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        if name == "broker-flow" {
            // Raised before the changes go in: the dispatcher meets the alarm while it sends
            // their root jobs (raised after, a fast dispatcher had sent them all already).
            try broker("set_vm_memory_high_watermark", "0.0001")
            say("broker-flow: memory alarm raised on \(node): publishes block")
        }
        var ids: [String] = []
        for target in targets {
            let change = try await client.request(
                "POST", "/changes", body: ["project": .string(target.project), "environment": .string(target.environment), "action": "root", "user": "chaos"])
            ids.append(change["id"]?.stringValue ?? "")
        }
        let settled = LockedValue(false)
        let fault = Task { try await inject(fleet: fleet, client: client, ids: ids, settled: settled) }
        try await waitUntilSettled(client, ids, fleet: fleet)
        settled.value = true
        try await fault.value
        let wall = (clock.now - start).seconds
        var report = try await count(client, ids, targets)
        if lostDuringRun { try await checkLostDuringRun(client, ids, &report) }
        if name == "broker-flow" { checkBlockLogged(folder, &report) }
        if name.hasPrefix("sigterm-") {
            try await checkRunOnce(client, ids, &report)
            fleet.stop()
            await checkNoContainerLeft(fleet, &report)
            for stop in fleet.shutdowns.stops { say("\(name): \(stop)") }
            report.failures += fleet.shutdowns.failures
        }
        return (report, wall)
    }

    /// An empty vhost for every scenario: nothing of an earlier one (jobs, poison) remains.
    private func resetVhost() throws {
        let vhost = try AMQPConfiguration.list(amqp)[0].vhost
        try? broker("delete_vhost", vhost)
        try broker("add_vhost", vhost)
        try broker("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    }

    private func waitForAPI(_ client: APIClient) async throws {
        for _ in 0..<100 {
            if (try? await client.request("GET", "/healthz")) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIError("the chaos dispatcher did not answer")
    }

    /// Waits for every change to finish. When the steps' statuses have not changed for 30 s it
    /// says so, with what it sees (steps by status, queues, connections, outbox, quiet logs),
    /// and again every 30 s: a stalled batch is never a silent one.
    private func waitUntilSettled(_ client: APIClient, _ ids: [String], fleet: ChaosFleet) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(900)
        var lastChange = clock.now
        var lastSeen = ""
        while clock.now < deadline {
            var open = 0
            var steps: [String: Int] = [:]
            for id in ids {
                guard let change = try? await client.request("GET", "/changes/\(id)") else {
                    open += 1
                    steps["(dispatcher did not answer)", default: 0] += 1
                    continue
                }
                if !["success", "error", "cancelled"].contains(change["status"]?.stringValue ?? "") { open += 1 }
                func walk(_ step: JSON) {
                    steps[step["status"]?.stringValue ?? "?", default: 0] += 1
                    for child in step["children"]?.arrayValue ?? [] { walk(child) }
                }
                if let root = change["root"], root != .null { walk(root) }
            }
            if open == 0 { return }
            let seen = steps.keys.sorted().map { "\($0)=\(steps[$0]!)" }.joined(separator: " ")
            if seen != lastSeen {
                lastSeen = seen
                lastChange = clock.now
            } else if clock.now - lastChange >= .seconds(30) {
                say("\(name): no progress for \(Int((clock.now - lastChange).seconds)) s: \(open) changes open, steps \(seen)\n" + stallReport(fleet))
                lastChange = clock.now
            }
            try await Task.sleep(for: .seconds(1))
        }
        say("\(name): the batch did not settle within 900 s; counting what it left")
    }

    /// What a stalled batch looks like from outside: the jobs queue and its consumers, the
    /// clients' connection states, the dispatcher's unsent outbox, and logs that went quiet.
    private func stallReport(_ fleet: ChaosFleet) -> String {
        let vhost = (try? AMQPConfiguration.list(amqp)[0].vhost) ?? "/"
        var lines: [String] = []
        let queues = query("list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged", "consumers")
        lines.append("  queues (name ready unacked consumers):\n" + indent(queues))
        let connections = query("list_connections", "name", "state")
        lines.append("  connections (name state):\n" + indent(connections))
        let outbox = (try? LocalRepository.run("/usr/bin/sqlite3", [fleet.folder + "/stepfleet.sqlite", "SELECT count(*) FROM outbox WHERE sent_at IS NULL"]).output)?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        lines.append("  outbox rows unsent: \(outbox.isEmpty ? "?" : outbox)")
        let logs = (try? FileManager.default.contentsOfDirectory(atPath: fleet.folder).filter { $0.hasSuffix(".log") }.sorted()) ?? []
        let quiet = logs.compactMap { log -> String? in
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: fleet.folder + "/" + log))?[.modificationDate] as? Date else { return nil }
            return "\(log) \(Int(-modified.timeIntervalSinceNow)) s"
        }
        lines.append("  logs last written: " + quiet.joined(separator: ", ") + " (in \(fleet.folder))")
        return lines.joined(separator: "\n")
    }

    /// Runs a rabbitmqctl query against the scenario's node, or a cluster survivor, for at most 15 s.
    private func query(_ arguments: String...) -> String {
        let nodes = name == "cluster-node-loss" ? ["stepfleet-c2@localhost", "stepfleet-c3@localhost", node] : [node]
        for candidate in nodes {
            if let result = try? LocalRepository.run("/usr/bin/timeout", ["15", ops + "/rabbitmqctl", "--node", candidate, "-q"] + arguments), result.status == 0 {
                return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return "(no node answered \(arguments[0]))"
    }

    private func indent(_ text: String) -> String {
        text.split(separator: "\n").prefix(30).map { "    " + $0 }.joined(separator: "\n")
    }

    /// Counts steps, effects and re-runs from the API.
    private func count(_ client: APIClient, _ ids: [String], _ targets: [(project: String, environment: String)]) async throws -> ChaosReport {
        var report = ChaosReport()
        for (index, id) in ids.enumerated() {
            let target = targets[index]
            report.expected += ChaosBatch.stepsPerChange
            let change = try await client.request("GET", "/changes/\(id)")
            report.statuses[change["status"]?.stringValue ?? "?", default: 0] += 1
            let properties = try await client.request("GET", "/projects/\(target.project)/environments/\(target.environment)/properties")["properties"] ?? [:]
            let counters = properties["counters"] ?? [:]
            if properties["poisoned"] != nil { report.failures.append("a poison outcome changed \(target.project)/\(target.environment)") }
            var steps: [JSON] = []
            func walk(_ step: JSON) {
                steps.append(step)
                for child in step["children"]?.arrayValue ?? [] { walk(child) }
            }
            if let root = change["root"], root != .null { walk(root) }
            for step in steps {
                let status = step["status"]?.stringValue ?? ""
                let action = step["action"]?.stringValue ?? ""
                let effects = counters[action]?.intValue ?? 0
                if ["success", "error", "cancelled", "aborted"].contains(status) { report.finished += 1 } else { report.lost += 1 }
                if status == "success" && effects == 0 { report.lost += 1 }
                if status == "error", let error = step["error"]?.stringValue, !error.hasPrefix("child step") { report.stepErrors[error, default: 0] += 1 }
                if effects > 1 { report.doubled += effects - 1 }
                let attempts = step["attempts"]?.arrayValue ?? []
                report.reRunAfterStart += attempts.filter { $0["status"] == "retried" && $0["run_started"] == true }.count
            }
            report.lost += ChaosBatch.stepsPerChange - min(ChaosBatch.stepsPerChange, steps.count) - abortedShortfall(steps)
        }
        return report
    }

    /// The root that may not re-run failed with "worker lost during run"; the one that may ran
    /// again and succeeded.
    private func checkLostDuringRun(_ client: APIClient, _ ids: [String], _ report: inout ChaosReport) async throws {
        let strict = try await client.request("GET", "/changes/\(ids[0])")
        let error = strict["root"]?["error"]?.stringValue ?? ""
        if strict["status"] != "error" || !error.hasPrefix("worker lost during run") {
            report.failures.append("the root without retries ended \(strict["status"]?.stringValue ?? "?") (\(error)), not in error with \"worker lost during run\"")
        }
        let retried = try await client.request("GET", "/changes/\(ids[1])")
        let attempts = retried["root"]?["attempts"]?.arrayValue?.count ?? 0
        if retried["status"] != "success" || attempts != 2 {
            report.failures.append("the root with retries ended \(retried["status"]?.stringValue ?? "?") after \(attempts) attempts, not success after 2")
        }
    }

    /// broker-flow: the processes that published during the alarm said they were blocked and
    /// for how long.
    private func checkBlockLogged(_ folder: String, _ report: inout ChaosReport) {
        let logs = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".log") }
        var blocked: [String] = []
        for log in logs.sorted() {
            let text = (try? String(contentsOfFile: folder + "/" + log, encoding: .utf8)) ?? ""
            if text.contains("the broker blocked publishing"), text.contains("the broker unblocked publishing") { blocked.append(log) }
        }
        say("broker-flow: the block and its end were logged by \(blocked.count) of \(logs.count) processes (\(blocked.joined(separator: ", ")))")
        if !blocked.contains("dispatcher.log") { report.failures.append("the dispatcher's log does not show the blocked period") }
    }

    /// Steps that never existed because their parent failed are not lost.
    private func abortedShortfall(_ steps: [JSON]) -> Int {
        let failedParents = steps.filter { $0["status"] != "success" && ($0["children"]?.arrayValue ?? []).isEmpty && ["root", "pair"].contains($0["action"]?.stringValue ?? "") }
        return failedParents.reduce(0) { total, step in total + (step["action"] == "root" ? 5 : 2) }
    }
}
