import AMQP
import Foundation
import HostCommand
import Protocol
import Synchronization
import Worker

/// sigterm-workers and sigterm-dispatcher: SIGTERM (as an init system stops a service) to a
/// worker running steps, or to the dispatcher, while the batch runs. Each must exit by itself,
/// with status 0, within its bound; a worker leaves no container behind; afterwards every change
/// finishes with no step run a second time (`checkRunOnce`).
final class ChaosShutdowns: Sendable {
    /// A worker's bound: its grace period (30 s, the default) and 15 s to report and close.
    static let workerBound: Duration = .seconds(45)
    /// The dispatcher's: it finishes the transactions in hand and closes its connection.
    static let dispatcherBound: Duration = .seconds(15)

    private let record = Mutex<(stops: [String], failures: [String])>(([], []))

    var stops: [String] { record.withLock { $0.stops } }
    var failures: [String] { record.withLock { $0.failures } }

    /// Sends SIGTERM to `pid` and waits for it to exit, for at most `bound` (then SIGKILL, and a failure).
    func terminate(_ what: String, pid: pid_t, bound: Duration, running: Int) {
        let clock = ContinuousClock()
        let start = clock.now
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { break }
            if clock.now - start > bound {
                kill(pid, SIGKILL)
                Spawn.wait(pid)
                record.withLock { $0.failures.append("\(what) was still running \(bound) after SIGTERM (killed)") }
                return
            }
            usleep(20_000)
        }
        let took = clock.now - start
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        record.withLock { $0.stops.append(String(format: "%@ (%d steps running) exited %d after %.1f s", what, running, exit, seconds)) }
        if exit != 0 { record.withLock { $0.failures.append("\(what) exited with status \(exit) after SIGTERM, not 0") } }
    }

    func fail(_ failure: String) {
        record.withLock { $0.failures.append(failure) }
    }
}

extension ChaosScenario {
    /// SIGTERM to a worker that runs steps, every few seconds while the batch runs; a new
    /// worker takes its place.
    func terminateWorkers(fleet: ChaosFleet, client: APIClient, ids: [String], settled: LockedValue<Bool>) async throws {
        let engine = try DockerEngine(endpoint: "unix:///var/run/docker.sock")
        var stopped = 0
        while !settled.value && stopped < 3 {
            try await Task.sleep(for: .seconds(2))
            let busy = try await runningByWorker(client: client, ids: ids)
            guard let (victim, running) = busy.filter({ fleet.workerNames.contains($0.key) }).max(by: { $0.value < $1.value }), running > 0,
                let pid = fleet.forgetWorker(victim)
            else { continue }
            stopped += 1
            fleet.shutdowns.terminate("worker \(victim)", pid: pid, bound: ChaosShutdowns.workerBound, running: running)
            let left = (try? await engine.containers(label: "org.stepfleet.worker=\(victim)")) ?? []
            if !left.isEmpty { fleet.shutdowns.fail("worker \(victim) left \(left.count) container(s) after SIGTERM") }
            try fleet.startWorker()
        }
        if stopped == 0 { fleet.shutdowns.fail("no worker was seen running a step: nothing was stopped under load") }
    }

    /// SIGTERM to the dispatcher twice while steps run; started again two seconds after each exit.
    func terminateDispatcher(fleet: ChaosFleet, client: APIClient, ids: [String]) async throws {
        for pause in [3, 3] {
            try await Task.sleep(for: .seconds(pause))
            let running = try await runningByWorker(client: client, ids: ids).values.reduce(0, +)
            guard let pid = fleet.forgetDispatcher() else { return }
            fleet.shutdowns.terminate("the dispatcher", pid: pid, bound: ChaosShutdowns.dispatcherBound, running: running)
            try await Task.sleep(for: .seconds(2))
            try fleet.startDispatcher()
        }
    }

    /// Steps running now, by the worker that runs them.
    private func runningByWorker(client: APIClient, ids: [String]) async throws -> [String: Int] {
        var running: [String: Int] = [:]
        for id in ids {
            guard let change = try? await client.request("GET", "/changes/\(id)") else { continue }
            func walk(_ step: JSON) {
                if step["status"] == "running", let worker = step["worker"]?.stringValue { running[worker, default: 0] += 1 }
                for child in step["children"]?.arrayValue ?? [] { walk(child) }
            }
            if let root = change["root"], root != .null { walk(root) }
        }
        return running
    }

    /// After a graceful stop no step needs a second attempt: every step ran exactly once.
    func checkRunOnce(_ client: APIClient, _ ids: [String], _ report: inout ChaosReport) async throws {
        var again = 0
        for id in ids {
            let change = try await client.request("GET", "/changes/\(id)")
            func walk(_ step: JSON) {
                if (step["attempts"]?.arrayValue?.count ?? 0) > 1 { again += 1 }
                for child in step["children"]?.arrayValue ?? [] { walk(child) }
            }
            if let root = change["root"], root != .null { walk(root) }
        }
        if again > 0 { report.failures.append("\(again) step(s) ran more than once") }
        if report.statuses.keys.contains(where: { $0 != "success" }) { report.failures.append("not every change succeeded: \(report.statuses)") }
    }

    /// No container of any worker of the run is left once the fleet has stopped.
    func checkNoContainerLeft(_ fleet: ChaosFleet, _ report: inout ChaosReport) async {
        guard let engine = try? DockerEngine(endpoint: "unix:///var/run/docker.sock") else { return report.failures.append("cannot reach the Docker engine") }
        for name in fleet.everyWorkerName {
            let left = (try? await engine.containers(label: "org.stepfleet.worker=\(name)")) ?? []
            if !left.isEmpty { report.failures.append("worker \(name) left \(left.count) container(s)") }
        }
    }
}
