import Foundation
import HostCommand
import TestSupport
import Testing

/// `/metrics` of a real `stepfleet dispatcher` and a real `stepfleet worker --metrics-listen`:
/// Prometheus text from the swift-prometheus registry the process bootstrapped swift-metrics
/// with, so what the AMQP client records through swift-metrics is there too. Each process then
/// stops on SIGTERM, with status 0.
@Suite(.timeLimit(.minutes(3))) struct MetricsTests {
    static let vhost = testVhost("stepfleet-metrics")

    /// A `stepfleet` process in the background, its output in a file.
    final class Background {
        let pid: pid_t
        let log: String

        init(_ arguments: [String], log: String) throws {
            self.log = log
            pid = try Spawn.launch(stepfleetExecutable, arguments, logPath: log)
        }

        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        /// SIGTERM, then the exit status once it exits (nil: still running after `bound`, killed).
        func terminate(within bound: Duration) async throws -> Int32? {
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + bound
            var status: Int32 = 0
            while ContinuousClock.now < deadline {
                if waitpid(pid, &status, WNOHANG) == pid {
                    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            kill(pid, SIGKILL)
            Spawn.wait(pid)
            return nil
        }

        deinit {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == 0 {
                kill(pid, SIGKILL)
                Spawn.wait(pid)
            }
        }
    }

    /// GET `url` with curl, retried for up to 20 s until it answers 200.
    static func get(_ url: String, token: String? = nil) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(20)
        var last = ""
        while ContinuousClock.now < deadline {
            let result = try runProgram("/usr/bin/curl", ["-sf", "-m", "5", "-D", "-"] + (token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + [url])
            if result.status == 0 { return result.output }
            last = result.output
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSetupError("\(url) did not answer: \(last)")
    }

    @Test func bothProcessesServePrometheusTextAndStopOnSigterm() async throws {
        try ensureVhost(Self.vhost)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-metrics-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let amqp = "amqp://guest:guest@127.0.0.1:5672/\(Self.vhost)"
        let db = folder + "/stepfleet.sqlite"
        try #require(runProgram(stepfleetExecutable, ["token", "create", "--db", db, "--name", "metrics", "--write", folder + "/token"]).status == 0)
        let token = try String(contentsOfFile: folder + "/token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let apiPort = Int.random(in: 20_000..<25_000)
        let metricsPort = Int.random(in: 25_000..<30_000)

        let dispatcher = try Background(["dispatcher", "--amqp", amqp, "--db", db, "--listen", "127.0.0.1:\(apiPort)"], log: folder + "/dispatcher.log")
        let worker = try Background(
            ["worker", "--amqp", amqp, "--dispatcher-user", "guest", "--work-dir", folder + "/worker", "--metrics-listen", "127.0.0.1:\(metricsPort)"],
            log: folder + "/worker.log")

        let dispatcherText = try await Self.get("http://127.0.0.1:\(apiPort)/metrics", token: token)
        #expect(dispatcherText.contains("Content-Type: text/plain; version=0.0.4"), "\(dispatcherText)")
        #expect(dispatcherText.contains("# TYPE stepfleet_steps gauge"), "\(dispatcherText)")
        // swift-prometheus writes a gauge's value as a Double.
        #expect(dispatcherText.contains(#"stepfleet_steps{status="success"} 0.0"#), "\(dispatcherText)")
        #expect(dispatcherText.contains("# TYPE stepfleet_step_phase_seconds histogram"), "\(dispatcherText)")
        #expect(dispatcherText.contains(#"stepfleet_step_phase_seconds_count{phase="run.running"} 0"#), "\(dispatcherText)")
        #expect(dispatcherText.contains("stepfleet_patch_conflicts_total 0"), "\(dispatcherText)")
        #expect(dispatcherText.contains(#"stepfleet_queue_latency_seconds_bucket{le="0.05"} 0"#), "\(dispatcherText)")

        // The worker's, once it has connected (the AMQP client's swift-metrics timers).
        var workerText = ""
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, !workerText.contains("stepfleet_amqp_recovery_phase_seconds_count{phase=\"connect\"}") {
            workerText = try await Self.get("http://127.0.0.1:\(metricsPort)/metrics")
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(workerText.contains("Content-Type: text/plain; version=0.0.4"), "\(workerText)")
        #expect(workerText.contains("# TYPE stepfleet_amqp_recovery_phase_seconds histogram"), "\(workerText)\n\(worker.output)")
        let dispatcherAgain = try await Self.get("http://127.0.0.1:\(apiPort)/metrics", token: token)
        #expect(dispatcherAgain.contains(#"stepfleet_amqp_recovery_phase_seconds_count{phase="connect"}"#), "\(dispatcherAgain)")

        let workerStatus = try await worker.terminate(within: .seconds(20))
        #expect(workerStatus == 0, "the worker did not exit 0 within 20 s of SIGTERM:\n\(worker.output)")
        #expect(worker.output.contains("worker stopped"), "\(worker.output)")
        let dispatcherStatus = try await dispatcher.terminate(within: .seconds(20))
        #expect(dispatcherStatus == 0, "the dispatcher did not exit 0 within 20 s of SIGTERM:\n\(dispatcher.output)")
        #expect(dispatcher.output.contains("dispatcher stopped"), "\(dispatcher.output)")
    }
}
