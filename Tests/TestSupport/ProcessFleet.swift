import Foundation
import HostCommand
import Protocol
import Synchronization

/// A fleet of processes of the built `stepfleet` binary — a dispatcher and workers — on a
/// folder and a broker URL of the test's own. Unlike the in-process `FleetHarness`, its
/// dispatcher can be killed for real (SIGKILL) and started again on the same database and port.
///
/// Every process it starts is stopped by `stop()` (workers first, SIGTERM, then SIGKILL after
/// 30 s); call it on every exit path.
public final class ProcessFleet: @unchecked Sendable {
    public let folder: String
    public let amqp: String
    public let port = Int.random(in: 20_000..<40_000)
    public var database: String { folder + "/stepfleet.sqlite" }
    public var server: String { "http://127.0.0.1:\(port)" }
    /// The API token (made once the dispatcher first answered).
    public private(set) var token = ""

    private struct Processes {
        var dispatcher: pid_t?
        var dispatcherStarts = 0
        var workers: [pid_t] = []
    }
    private let processes = Mutex(Processes())

    /// `amqp` is the URL the dispatcher and workers use; test repositories must lie under
    /// `gitRoots` (default: the temporary directory, where `TestRepository` makes them).
    public init(folder: String, amqp: String, gitRoots: [String] = [FileManager.default.temporaryDirectory.path]) {
        self.folder = folder
        self.amqp = amqp
        self.gitRoots = gitRoots
    }

    private let gitRoots: [String]

    /// A fleet in a new folder under the temporary directory.
    public static func make(amqp: String) throws -> ProcessFleet {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("process-fleet-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return ProcessFleet(folder: folder, amqp: amqp)
    }

    /// Starts the dispatcher (with `environment` added to ours) and waits until its API answers;
    /// the first start also makes the API token.
    public func startDispatcher(environment: [String: String] = [:]) async throws {
        let start = processes.withLock { $0.dispatcherStarts += 1; return $0.dispatcherStarts }
        let pid = try launch(
            ["dispatcher", "--amqp", amqp, "--db", database, "--listen", "127.0.0.1:\(port)", "--git-local-roots", gitRoots.joined(separator: ","),
             "--log-level", "warning"], log: "dispatcher-\(start).log", environment: environment)
        processes.withLock { $0.dispatcher = pid }
        try await waitUntil("the dispatcher's API at \(server)", timeout: .seconds(60)) {
            if let ended = self.reapedDispatcher() { throw TestSetupError("the dispatcher exited (status \(ended)) before its API answered: \(self.log("dispatcher-\(start).log"))") }
            return (try? await runProgramDetached("/usr/bin/curl", ["-sf", "-o", "/dev/null", self.server + "/healthz"], timeout: .seconds(10)).status) == 0
        }
        if token.isEmpty {
            let file = folder + "/token"
            let made = try runProgram(stepfleetExecutable, ["token", "create", "--db", database, "--name", "process-fleet", "--write", file])
            guard made.status == 0 else { throw TestSetupError("token create: \(made.output)") }
            token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            // curl reads the header from a file: the token never appears on a command line.
            try Data("Authorization: Bearer \(token)\n".utf8).write(to: URL(fileURLWithPath: folder + "/auth-header"))
        }
    }

    /// Kills the dispatcher with SIGKILL (no shutdown of any kind) and reaps it; returns its
    /// exit status (128 + 9).
    @discardableResult
    public func killDispatcher() -> Int32 {
        guard let pid = processes.withLock({ $0.dispatcher }) else { return -1 }
        kill(pid, SIGKILL)
        let status = Spawn.wait(pid)
        processes.withLock { $0.dispatcher = nil }
        return status
    }

    /// Waits for the dispatcher to end on its own (a test crash point); returns its exit status.
    public func waitForDispatcherExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        try await waitFor("the dispatcher to exit", timeout: timeout) { self.reapedDispatcher() }
    }

    /// The dispatcher's exit status if it has ended (reaping it), else nil.
    private func reapedDispatcher() -> Int32? {
        guard let pid = processes.withLock({ $0.dispatcher }) else { return nil }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        processes.withLock { $0.dispatcher = nil }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Starts a worker process on the default pool.
    public func startWorker(slots: Int = 2) throws {
        let name = "pf-worker-\(UUID().uuidString.prefix(6).lowercased())"
        let pid = try launch(
            ["worker", "--amqp", amqp, "--pool", "default", "--slots", "\(slots)", "--name", name, "--work-dir", folder + "/" + name,
             "--git-local-roots", gitRoots.joined(separator: ","), "--dispatcher-user", "guest", "--log-level", "warning"], log: name + ".log")
        processes.withLock { $0.workers.append(pid) }
    }

    private func launch(_ arguments: [String], log: String, environment extra: [String: String] = [:]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, folder + "/" + log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }.map { "\($0.key)=\($0.value)" }
        return try Spawn.spawn(stepfleetExecutable, arguments, &actions, environment: environment)
    }

    /// A log file of one of the fleet's processes (`dispatcher-1.log`, …), or what is left of it.
    public func log(_ name: String) -> String {
        (try? String(contentsOfFile: folder + "/" + name, encoding: .utf8)).map { String($0.suffix(4000)) } ?? "(no \(name))"
    }

    /// Stops the workers (SIGTERM: they finish what they run) and the dispatcher; SIGKILL after 30 s.
    public func stop() {
        let pids = processes.withLock { processes -> [pid_t] in
            let all = processes.workers + (processes.dispatcher.map { [$0] } ?? [])
            processes = Processes(dispatcherStarts: processes.dispatcherStarts)
            return all
        }
        for pid in pids {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(30)
            var status: Int32 = 0
            var reaped = false
            while Date() < deadline {
                if waitpid(pid, &status, WNOHANG) == pid { reaped = true; break }
                usleep(100_000)
            }
            if !reaped {
                kill(pid, SIGKILL)
                Spawn.wait(pid)
            }
        }
    }

    /// Stops the fleet and removes its folder.
    public func remove() {
        stop()
        try? FileManager.default.removeItem(atPath: folder)
    }

    // MARK: The API and the command line

    /// One API request with the fleet's token; returns the status and the answer as JSON (or as
    /// a JSON string when it is not JSON).
    public func raw(_ method: String, _ path: String, _ body: JSON? = nil) async throws -> (Int, JSON) {
        var arguments = ["-sS", "-X", method, "-H", "@" + folder + "/auth-header", "-w", "\n%{http_code}", "--max-time", "30"]
        if let body {
            let file = folder + "/body-\(UUID().uuidString.prefix(8))"
            try Data(body.serialized().utf8).write(to: URL(fileURLWithPath: file))
            arguments += ["-H", "Content-Type: application/json", "--data-binary", "@" + file]
        }
        let result = try await runProgramDetached("/usr/bin/curl", arguments + ["--", server + path], timeout: .seconds(40))
        guard result.status == 0, let split = result.output.lastIndex(of: "\n"), let status = Int(result.output[split...].dropFirst()) else {
            throw TestSetupError("\(method) \(path): curl: \(result.output)")
        }
        let text = String(result.output[..<split])
        return (status, (try? JSON.parse(text)) ?? .string(text))
    }

    /// An API request that must succeed (2xx).
    @discardableResult
    public func api(_ method: String, _ path: String, _ body: JSON? = nil) async throws -> JSON {
        let (status, answer) = try await raw(method, path, body)
        guard (200..<300).contains(status) else { throw TestSetupError("\(method) \(path): \(status) \(answer.serialized())") }
        return answer
    }

    /// Runs `stepfleet` against the fleet's API (`STEPFLEET_SERVER`, `STEPFLEET_TOKEN`) to its
    /// end, off the cooperative threads.
    public func stepfleet(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(600)) async throws -> (status: Int32, output: String) {
        let settings = ["STEPFLEET_SERVER=\(server)", "STEPFLEET_TOKEN=\(token)"] + environment.map { "\($0.key)=\($0.value)" }.sorted()
        return try await runProgramDetached("/usr/bin/env", settings + [stepfleetExecutable] + arguments, timeout: timeout)
    }

    /// Waits for a batch to leave `running`; returns its view.
    public func waitForBatch(_ id: String, timeout: Duration = .seconds(300)) async throws -> JSON {
        // (JSON takes a nil literal too: the closure's type says which nil ends the wait.)
        try await waitFor("batch \(id) to finish", timeout: timeout) { () async throws -> JSON? in
            let batch = try await self.api("GET", "/batches/\(id)")
            return batch["status"]?.stringValue == "running" ? Optional.none : batch
        }
    }

    /// Waits for a change to finish; returns its view with its steps.
    public func waitForChange(_ id: String, timeout: Duration = .seconds(180)) async throws -> JSON {
        try await waitFor("change \(id) to finish", timeout: timeout) { () async throws -> JSON? in
            let change = try await self.api("GET", "/changes/\(id)")
            return ["success", "error", "cancelled"].contains(change["status"]?.stringValue ?? "") ? change : Optional.none
        }
    }
}
