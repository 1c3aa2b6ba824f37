import Foundation
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
        let fleet = try ProcessFleet.make(amqp: Self.amqp)
        defer { fleet.remove() }
        try await fleet.startDispatcher()
        try fleet.startWorker(slots: 2)
        let report = fleet.folder + "/report.json"
        let svg = fleet.folder + "/report.svg"
        let result = try await fleet.stepfleet([
            "load", "--server", fleet.server, "--count", "4", "--environment-count", "2", "--repo-dir", fleet.folder, "--report", report, "--svg", svg,
        ])
        #expect(result.status == 0, "\(result.output)")
        let json = try JSON.parse(String(contentsOfFile: report, encoding: .utf8))
        let project = try #require(json["settings"]?["project"]?.stringValue)
        let database = try DatabaseQueue(path: fleet.database)
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

    /// A `client` broker account (`ops/broker-account client NAME …`) on the load tests' vhost; its URL.
    static func clientAccount(_ name: String) throws -> String {
        let passwords = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-load-accounts").path
        try FileManager.default.createDirectory(atPath: passwords, withIntermediateDirectories: true)
        let made = try runProgram(repositoryRoot.appendingPathComponent("ops/broker-account").path, ["client", name, vhost, passwords + "/" + name])
        guard made.status == 0, let url = made.output.split(separator: "\n").last.map(String.init), url.hasPrefix("amqps://\(name):") else {
            throw TestSetupError("ops/broker-account client \(name) failed: \(made.output)")
        }
        return url
    }

    /// `stepfleet load --via queue` with a `client` account: every change is a request over
    /// `stepfleet.requests` (the store records each request id, and the broker-verified account
    /// as the change's user), and the report is the HTTP run's.
    @Test(.timeLimit(.minutes(15))) func loadOverTheRequestQueueReportsWhatTheStoreHolds() async throws {
        try ensureVhost(Self.vhost)
        let fleet = try ProcessFleet.make(amqp: Self.amqp)
        defer { fleet.remove() }
        try await fleet.startDispatcher()
        try fleet.startWorker(slots: 2)
        let account = "sfl-load" + (ProcessInfo.processInfo.environment["STEPFLEET_TEST_VHOST_SUFFIX"] ?? "")
        let url = try Self.clientAccount(account)
        let report = fleet.folder + "/report.json"
        let svg = fleet.folder + "/report.svg"
        let result = try await fleet.stepfleet(
            ["load", "--via", "queue", "--count", "6", "--environment-count", "3", "--repo-dir", fleet.folder, "--report", report, "--svg", svg],
            environment: ["STEPFLEET_AMQP": url])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("answers on stepfleet.client.\(account).load-"), "\(result.output)")
        let json = try JSON.parse(String(contentsOfFile: report, encoding: .utf8))
        #expect(json["settings"]?["via"] == "queue")
        let project = try #require(json["settings"]?["project"]?.stringValue)
        let database = try DatabaseQueue(path: fleet.database)
        let (changes, byAccount, requests, steps) = try await database.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE project_code = ? AND status = 'success'", arguments: [project]) ?? -1,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE project_code = ? AND user = ?", arguments: [project, account]) ?? -1,
                try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM requests WHERE kind = 'change' AND request_id LIKE 'load-%' AND created_id IN (SELECT id FROM changes WHERE project_code = ?)
                    """, arguments: [project]) ?? -1,
                try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM steps WHERE status IN ('success', 'error') AND change_id IN (SELECT id FROM changes WHERE project_code = ?)
                    """, arguments: [project]) ?? -1
            )
        }
        #expect(changes == 6)
        #expect(byAccount == 6, "the broker-verified publisher is each change's user")
        #expect(requests == 6, "one stored request id per change")
        #expect(json["submitted"]?.intValue == 6)
        #expect(json["accepted"]?.intValue == 6, "\(json.serialized())")
        #expect(json["changes"]?["success"]?.intValue == 6, "\(json.serialized())")
        #expect(steps == 18)
        #expect(json["steps"]?.intValue == steps)
        #expect(json["queue_latency"]?["count"]?.intValue == steps)
        #expect(json["submit_latency"]?["count"]?.intValue == 6, "\(json.serialized())")
        #expect(result.output.contains("submit latency (publish → answer):"), "\(result.output)")
        #expect(result.output.contains("queue latency (enqueue → claim):"))
    }
}
