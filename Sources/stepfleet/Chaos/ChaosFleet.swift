import Foundation
import HostCommand
import Protocol

/// The processes of a chaos run: a dispatcher and workers started from this very binary, each
/// with its own log, so that a scenario can SIGKILL and restart them. Started with
/// `posix_spawn` and reaped with `waitpid` (`Spawn`): `Foundation.Process.waitUntilExit` was
/// seen spinning for ever on a child that had already exited.
final class ChaosFleet: @unchecked Sendable {
    let amqp: String
    let folder: String
    let port: Int
    let lease: Int
    private let lock = NSLock()
    private var dispatcher: pid_t?
    private var workers: [String: pid_t] = [:]
    private var nextWorker = 0
    /// Worker names carry the run's id: two workers with one name would fight over their
    /// exclusive control queue.
    private let runID = UUID().uuidString.prefix(6).lowercased()

    init(amqp: String, folder: String, port: Int, lease: Int) {
        self.amqp = amqp
        self.folder = folder
        self.port = port
        self.lease = lease
    }

    var server: String { "http://127.0.0.1:\(port)" }

    private func launch(_ arguments: [String], log: String) throws -> pid_t {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        return try Spawn.launch(executable, arguments, logPath: log)
    }

    private var logLevel: String { ProcessInfo.processInfo.environment["STEPFLEET_CHAOS_LOG_LEVEL"] ?? "warning" }

    func startDispatcher() throws {
        let pid = try launch(
            ["dispatcher", "--amqp", amqp, "--db", folder + "/stepfleet.sqlite", "--listen", "127.0.0.1:\(port)", "--lease", String(lease), "--log-level", logLevel],
            log: folder + "/dispatcher.log")
        lock.withLock { dispatcher = pid }
    }

    func killDispatcher() {
        guard let pid = lock.withLock({ () -> pid_t? in defer { dispatcher = nil }; return dispatcher }) else { return }
        kill(pid, SIGKILL)
        Spawn.wait(pid)
    }

    @discardableResult
    func startWorker(slots: Int = 2) throws -> String {
        let name = lock.withLock { () -> String in
            nextWorker += 1
            return "chaos-\(runID)-\(nextWorker)"
        }
        let pid = try launch(
            ["worker", "--amqp", amqp, "--pool", Names.defaultPool, "--slots", String(slots), "--name", name, "--heartbeat", "1",
             "--work-dir", folder + "/" + name, "--log-level", logLevel],
            log: folder + "/\(name).log")
        lock.withLock { workers[name] = pid }
        return name
    }

    var workerNames: [String] { lock.withLock { workers.keys.sorted() } }

    func killWorker(_ name: String) {
        guard let pid = lock.withLock({ workers.removeValue(forKey: name) }) else { return }
        kill(pid, SIGKILL)
        Spawn.wait(pid)
    }

    /// Stops everything: workers with SIGTERM (they finish), then the dispatcher.
    func stop() {
        let (all, dispatcher) = lock.withLock { () -> ([pid_t], pid_t?) in
            defer {
                workers.removeAll()
                self.dispatcher = nil
            }
            return (Array(workers.values), self.dispatcher)
        }
        for pid in all { kill(pid, SIGTERM) }
        for pid in all { Spawn.wait(pid) }
        if let dispatcher {
            kill(dispatcher, SIGTERM)
            Spawn.wait(dispatcher)
        }
    }
}
