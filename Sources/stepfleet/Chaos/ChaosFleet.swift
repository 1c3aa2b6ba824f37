import Foundation
import Protocol

/// The processes of a chaos run: a dispatcher and workers started from this very binary, each
/// with its own log, so that a scenario can SIGKILL and restart them.
final class ChaosFleet: @unchecked Sendable {
    let amqp: String
    let folder: String
    let port: Int
    let lease: Int
    private let lock = NSLock()
    private var dispatcher: Process?
    private var workers: [String: Process] = [:]
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

    private func launch(_ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        process.arguments = arguments
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    func startDispatcher() throws {
        let process = try launch(
            ["dispatcher", "--amqp", amqp, "--db", folder + "/stepfleet.sqlite", "--listen", "127.0.0.1:\(port)", "--lease", String(lease), "--log-level", ProcessInfo.processInfo.environment["STEPFLEET_CHAOS_LOG_LEVEL"] ?? "warning"],
            log: folder + "/dispatcher.log")
        lock.withLock { dispatcher = process }
    }

    func killDispatcher() {
        lock.withLock {
            if let dispatcher, dispatcher.isRunning { kill(dispatcher.processIdentifier, SIGKILL) }
            dispatcher?.waitUntilExit()
            dispatcher = nil
        }
    }

    @discardableResult
    func startWorker(slots: Int = 2) throws -> String {
        let name = lock.withLock { () -> String in
            nextWorker += 1
            return "chaos-\(runID)-\(nextWorker)"
        }
        let process = try launch(
            ["worker", "--amqp", amqp, "--pool", Names.defaultPool, "--slots", String(slots), "--name", name, "--heartbeat", "1",
             "--work-dir", folder + "/" + name, "--log-level", ProcessInfo.processInfo.environment["STEPFLEET_CHAOS_LOG_LEVEL"] ?? "warning"],
            log: folder + "/\(name).log")
        lock.withLock { workers[name] = process }
        return name
    }

    var workerNames: [String] { lock.withLock { workers.keys.sorted() } }

    func killWorker(_ name: String) {
        lock.withLock {
            guard let process = workers.removeValue(forKey: name) else { return }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// Stops everything: workers with SIGTERM (they finish), then the dispatcher.
    func stop() {
        let (all, dispatcher) = lock.withLock { (Array(workers.values), self.dispatcher) }
        for process in all where process.isRunning { process.terminate() }
        for process in all { process.waitUntilExit() }
        if let dispatcher, dispatcher.isRunning {
            dispatcher.terminate()
            dispatcher.waitUntilExit()
        }
        lock.withLock { workers.removeAll() }
    }
}
