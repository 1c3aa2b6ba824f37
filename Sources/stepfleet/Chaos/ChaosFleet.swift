import AMQP
import Foundation
import HostCommand
import Protocol

/// The processes of a chaos run: a dispatcher and workers started from this very binary, each
/// with its own log, so that a scenario can SIGKILL and restart them. Started with
/// `posix_spawn` and reaped with `waitpid` (`Spawn`): `Foundation.Process.waitUntilExit` was
/// seen spinning for ever on a child that had already exited.
final class ChaosFleet: Sendable {
    let amqp: String
    let folder: String
    let port: Int
    let lease: Int
    /// The workers' `--runtime`.
    let runtime: String
    private struct Processes {
        var dispatcher: pid_t?
        var workers: [String: pid_t] = [:]
        var nextWorker = 0
    }
    private let processes = LockedValue(Processes())
    /// Worker names carry the run's id: two workers with one name would fight over their
    /// exclusive control queue.
    private let runID = UUID().uuidString.prefix(6).lowercased()
    /// sigterm-workers, sigterm-dispatcher: how each stop went.
    let shutdowns = ChaosShutdowns()

    init(amqp: String, folder: String, port: Int, lease: Int, runtime: String = "docker") {
        self.amqp = amqp
        self.runtime = runtime
        self.folder = folder
        self.port = port
        self.lease = lease
        register()
    }

    var server: String { "http://127.0.0.1:\(port)" }

    private func launch(_ arguments: [String], log: String) throws -> pid_t {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        return try Spawn.launch(executable, arguments, logPath: log)
    }

    private var logLevel: String { ProcessInfo.processInfo.environment["STEPFLEET_CHAOS_LOG_LEVEL"] ?? "warning" }

    func startDispatcher() throws {
        let pid = try launch(
            ["dispatcher", "--amqp", amqp, "--db", folder + "/stepfleet.sqlite", "--listen", "127.0.0.1:\(port)", "--lease", String(lease), "--log-level", logLevel,
             "--git-local-roots", folder],
            log: folder + "/dispatcher.log")
        processes.withLock { $0.dispatcher = pid }
    }

    func killDispatcher() {
        guard let pid = processes.withLock({ processes -> pid_t? in defer { processes.dispatcher = nil }; return processes.dispatcher }) else { return }
        kill(pid, SIGKILL)
        Spawn.wait(pid)
    }

    @discardableResult
    func startWorker(slots: Int = 2) throws -> String {
        let name = processes.withLock { processes -> String in
            processes.nextWorker += 1
            return "chaos-\(runID)-\(processes.nextWorker)"
        }
        let pid = try launch(
            ["worker", "--amqp", amqp, "--pool", Names.defaultPool, "--slots", String(slots), "--name", name, "--heartbeat", "1",
             "--work-dir", folder + "/" + name, "--log-level", logLevel, "--git-local-roots", folder, "--runtime", runtime,
             // One account for the whole chaos fleet: the dispatcher's is the workers' own.
             "--dispatcher-user", (try AMQPConfiguration.list(amqp))[0].user],
            log: folder + "/\(name).log")
        processes.withLock { $0.workers[name] = pid }
        return name
    }

    var workerNames: [String] { processes.value.workers.keys.sorted() }

    /// Every worker name this fleet has started.
    var everyWorkerName: [String] { (0..<processes.value.nextWorker).map { "chaos-\(runID)-\($0 + 1)" } }

    /// The worker's pid, no longer the fleet's to stop (its caller stops and reaps it).
    func forgetWorker(_ name: String) -> pid_t? {
        processes.withLock { $0.workers.removeValue(forKey: name) }
    }

    /// The dispatcher's pid, no longer the fleet's to stop (its caller stops and reaps it).
    func forgetDispatcher() -> pid_t? {
        processes.withLock { processes -> pid_t? in defer { processes.dispatcher = nil }; return processes.dispatcher }
    }

    /// The running worker's pid.
    func workerPID(_ name: String) -> pid_t? { processes.value.workers[name] }

    func killWorker(_ name: String) {
        guard let pid = processes.withLock({ $0.workers.removeValue(forKey: name) }) else { return }
        kill(pid, SIGKILL)
        Spawn.wait(pid)
    }

    /// Stops everything: workers with SIGTERM (they finish), then the dispatcher; a process
    /// still running after `grace` gets SIGKILL, so stopping never hangs on a stuck process.
    func stop(grace: Duration = .seconds(30)) {
        Self.live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(self)) }
        let stopping = processes.withLock { processes -> Processes in
            defer { processes = Processes(nextWorker: processes.nextWorker) }
            return processes
        }
        Self.terminate(stopping.workers.map { (name: $0.key, pid: $0.value) }, grace: grace)
        if let dispatcher = stopping.dispatcher { Self.terminate([(name: "dispatcher", pid: dispatcher)], grace: grace) }
    }

    /// Every fleet not stopped yet, for the signal handler.
    private static let live = LockedValue<[ObjectIdentifier: ChaosFleet]>([:])

    /// Registers the fleet so that `stopAll` (SIGTERM, SIGINT to `stepfleet chaos`) stops it.
    func register() {
        Self.live.withLock { $0[ObjectIdentifier(self)] = self }
    }

    /// Stops every registered fleet (quickly: the harness itself is being stopped).
    static func stopAll() {
        for fleet in live.withLock({ Array($0.values) }) { fleet.stop(grace: .seconds(10)) }
    }

    private static func terminate(_ processes: [(name: String, pid: pid_t)], grace: Duration) {
        for process in processes { kill(process.pid, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        var left = processes
        while !left.isEmpty {
            left = left.filter { process in
                var status: Int32 = 0
                let result = waitpid(process.pid, &status, WNOHANG)
                return result == 0 || (result < 0 && errno == EINTR)
            }
            if left.isEmpty { break }
            if ContinuousClock.now >= deadline {
                say("chaos: \(left.map(\.name).joined(separator: ", ")) still running \(grace) after SIGTERM; sending SIGKILL")
                for process in left {
                    kill(process.pid, SIGKILL)
                    Spawn.wait(process.pid)
                }
                break
            }
            usleep(100_000)
        }
    }
}
