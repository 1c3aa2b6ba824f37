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

    func run() async throws -> (ChaosReport, Double) {
        try resetVhost()
        if name == "long-step" { try await lowerConsumerTimeout() }
        defer { if name == "long-step" { try? restoreConsumerTimeout() } }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-chaos-\(name)-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // A lease must outlast the broker's own failover: a quorum queue whose leader died takes
        // about ten seconds to confirm again, and heartbeats wait for those confirms.
        let fleet = ChaosFleet(amqp: amqp, folder: folder, port: Int.random(in: 30_000..<40_000), lease: name == "cluster-node-loss" ? 20 : 6)
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
                in: folder, name: project.code, retries: project.retries, rootSeconds: lostDuringRun ? 8 : stepSeconds, stepSeconds: stepSeconds)
            _ = try await client.request("POST", "/projects", body: ["code": .string(project.code), "git_remote": .string(repository)])
            for index in 0..<project.environments {
                _ = try await client.request("POST", "/projects/\(project.code)/environments", body: ["code": .string("e\(index)")])
                _ = try await client.request("PUT", "/projects/\(project.code)/environments/e\(index)/properties", body: ["counters": [:]])
                targets.append((project.code, "e\(index)"))
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        var ids: [String] = []
        for target in targets {
            let change = try await client.request(
                "POST", "/changes", body: ["project": .string(target.project), "environment": .string(target.environment), "action": "root", "user": "chaos"])
            ids.append(change["id"]?.stringValue ?? "")
        }
        let settled = LockedValue(false)
        let fault = Task { try await inject(fleet: fleet, client: client, ids: ids, settled: settled) }
        try await waitUntilSettled(client, ids)
        settled.value = true
        try await fault.value
        let wall = (clock.now - start).seconds
        var report = try await count(client, ids, targets)
        if lostDuringRun { try await checkLostDuringRun(client, ids, &report) }
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

    private func waitUntilSettled(_ client: APIClient, _ ids: [String]) async throws {
        let deadline = ContinuousClock.now + .seconds(900)
        while ContinuousClock.now < deadline {
            var open = 0
            for id in ids {
                guard let change = try? await client.request("GET", "/changes/\(id)") else { open += 1; continue }
                if !["success", "error", "cancelled"].contains(change["status"]?.stringValue ?? "") { open += 1 }
            }
            if open == 0 { return }
            try await Task.sleep(for: .seconds(1))
        }
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

    /// Steps that never existed because their parent failed are not lost.
    private func abortedShortfall(_ steps: [JSON]) -> Int {
        let failedParents = steps.filter { $0["status"] != "success" && ($0["children"]?.arrayValue ?? []).isEmpty && ["root", "pair"].contains($0["action"]?.stringValue ?? "") }
        return failedParents.reduce(0) { total, step in total + (step["action"] == "root" ? 5 : 2) }
    }
}
