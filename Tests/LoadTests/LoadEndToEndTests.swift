import Foundation
import HostCommand
import GRDB
import Protocol
import Testing
import TestSupport

/// The real `stepfleet bench dispatcher` and `stepfleet load` commands, on the real broker (a
/// vhost of their own on the main test node): their reports must say what the store says.
@Suite(.serialized) struct LoadEndToEndTests {
    static let vhost = testVhost("stepfleet-load-tests")
    static var amqp: String { "amqp://guest:guest@127.0.0.1:5672/\(vhost)?heartbeat=5" }

    static func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("load-e2e-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test(.timeLimit(.minutes(10))) func benchDispatcherCountsWhatItsStoreHolds() async throws {
        try ensureVhost(Self.vhost)
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let figures = folder + "/bench.json"
        let result = try await runProgramDetached(stepfleetExecutable, [
            "bench", "dispatcher", "--amqp", Self.amqp, "--changes", "12", "--fanout", "4", "--environments", "3", "--workers", "2", "--slots", "4",
            "--json", figures,
        ])
        #expect(result.status == 0, "\(result.output)")
        let run = try #require(try JSON.parse(String(contentsOfFile: figures, encoding: .utf8)).arrayValue?.first, "\(result.output)")
        // 12 changes of 5 steps: every outcome the simulated workers sent is a successful step in the store.
        #expect(run["outcomes"]?.intValue == 60)
        #expect(run["store_steps"]?["success"]?.intValue == 60, "\(run.serialized())")
        #expect(run["store_changes"]?["success"]?.intValue == 12, "\(run.serialized())")
        // Every step but the first root of each environment has a dispatch latency.
        #expect(run["dispatch_latency"]?["count"]?.intValue == 57, "\(run.serialized())")
        #expect(run["left_out_first_roots"]?.intValue == 3)
        #expect(run["timings"]?["store.commit"]?["count"]?.intValue ?? 0 > 0)
        #expect(result.output.contains("dispatch latency (outcome published → next job at a worker): p50"))
    }

    @Test(.timeLimit(.minutes(15))) func loadReportsWhatTheStoreHolds() async throws {
        try ensureVhost(Self.vhost)
        let folder = try Self.folder()
        let fleet = LoadTestFleet(folder: folder, amqp: Self.amqp)
        defer {
            fleet.stop()
            try? FileManager.default.removeItem(atPath: folder)
        }
        try await fleet.start()
        let report = folder + "/report.json"
        let svg = folder + "/report.svg"
        let result = try await fleet.stepfleet([
            "load", "--server", fleet.server, "--count", "4", "--environment-count", "2", "--repo-dir", folder, "--report", report, "--svg", svg,
        ])
        #expect(result.status == 0, "\(result.output)")
        let json = try JSON.parse(String(contentsOfFile: report, encoding: .utf8))
        let project = try #require(json["settings"]?["project"]?.stringValue)
        let database = try DatabaseQueue(path: folder + "/stepfleet.sqlite")
        let (changes, steps) = try await database.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE project_code = ? AND status = 'success'", arguments: [project]) ?? -1,
                try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM steps WHERE status IN ('success', 'error') AND change_id IN (SELECT id FROM changes WHERE project_code = ?)
                    """, arguments: [project]) ?? -1
            )
        }
        #expect(changes == 4)
        #expect(json["changes"]?["success"]?.intValue == changes, "\(json.serialized())")
        #expect(json["submitted"]?.intValue == 4)
        #expect(json["accepted"]?.intValue == 4)
        // Three steps per change, each run once: one queue latency each.
        #expect(steps == 12)
        #expect(json["steps"]?.intValue == steps)
        #expect(json["queue_latency"]?["count"]?.intValue == steps)
        #expect(json["change_latency"]?["count"]?.intValue == changes)
        let series = json["series"]?.arrayValue ?? []
        #expect(series.compactMap { $0["changes_finished"]?.intValue }.reduce(0, +) == changes)
        #expect(series.compactMap { $0["steps_finished"]?.intValue }.reduce(0, +) == steps)
        let picture = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(picture.contains("<svg") && picture.contains("</svg>"))
        #expect(result.output.contains("queue latency (enqueue → claim):"))
    }
}

/// A dispatcher and one worker as processes of the built `stepfleet` binary, on a folder and
/// vhost of the test's own.
final class LoadTestFleet: @unchecked Sendable {
    let folder: String
    let amqp: String
    let port = Int.random(in: 20_000..<40_000)
    private var processes: [pid_t] = []
    private var token = ""

    init(folder: String, amqp: String) {
        self.folder = folder
        self.amqp = amqp
    }

    var server: String { "http://127.0.0.1:\(port)" }

    func start() async throws {
        let database = folder + "/stepfleet.sqlite"
        try launch(["dispatcher", "--amqp", amqp, "--db", database, "--listen", "127.0.0.1:\(port)", "--git-local-roots", folder, "--log-level", "warning"], log: "dispatcher.log")
        let name = "load-test-\(UUID().uuidString.prefix(6).lowercased())"
        try launch(
            ["worker", "--amqp", amqp, "--pool", Names.defaultPool, "--slots", "2", "--name", name, "--work-dir", folder + "/" + name, "--git-local-roots", folder,
             "--dispatcher-user", "guest", "--log-level", "warning"], log: "worker.log")
        for _ in 0..<100 {
            if (try? runProgram("/usr/bin/curl", ["-sf", server + "/healthz"]).status) == 0 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let made = try runProgram(stepfleetExecutable, ["token", "create", "--db", database, "--name", "load-test", "--write", folder + "/token"])
        guard made.status == 0 else { throw TestSetupError("token create: \(made.output)") }
        token = try String(contentsOfFile: folder + "/token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func launch(_ arguments: [String], log: String) throws {
        processes.append(try Spawn.launch(stepfleetExecutable, arguments, logPath: folder + "/" + log))
    }

    /// Runs `stepfleet` with the fleet's API token to its end, off the cooperative threads.
    func stepfleet(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runProgramDetached("/usr/bin/env", ["STEPFLEET_TOKEN=\(token)", stepfleetExecutable] + arguments, timeout: .seconds(600))
    }

    /// Workers first (SIGTERM: they finish), then the dispatcher; SIGKILL after 30 s.
    func stop() {
        for pid in processes.reversed() {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(30)
            var status: Int32 = 0
            while waitpid(pid, &status, WNOHANG) == 0, Date() < deadline { usleep(100_000) }
            if waitpid(pid, &status, WNOHANG) == 0 {
                kill(pid, SIGKILL)
                Spawn.wait(pid)
            }
        }
    }
}
