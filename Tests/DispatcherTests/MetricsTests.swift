import Foundation
import Protocol
import Testing
@testable import Dispatcher

extension FleetTests {
    /// `GET /metrics` beyond patch conflicts: steps by status, the queue latency and the run
    /// time histograms, each counting what the change did.
    @Suite(.timeLimit(.minutes(6))) struct MetricsTests {
        @Test func stepsByStatusQueueLatencyAndRunTimeCountWhatRan() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("""
                actions:
                  main: { run: 'true', steps: [a, b], strategy: serial }
                  a: { run: 'sleep 1' }
                  b: { run: 'exit 3' }
                """)
            let before = try await Self.metrics(fleet)
            #expect(before["stepfleet_queue_latency_seconds_count"] == 0)
            #expect(before["stepfleet_step_run_seconds_count"] == 0)
            let id = try await fleet.createChange(repo, action: "main")
            let (change, _) = try await fleet.waitForChange(id)
            #expect(change.status == .error)
            let after = try await Self.metrics(fleet)
            #expect(after["stepfleet_steps{status=\"success\"}"] == 1, "\(after)")  // a
            #expect(after["stepfleet_steps{status=\"error\"}"] == 2, "\(after)")  // b, and main through it
            #expect(after["stepfleet_steps{status=\"running\"}"] == 0)
            // Three jobs claimed and run: main, a, b.
            #expect(after["stepfleet_queue_latency_seconds_count"] == 3, "\(after)")
            #expect(after["stepfleet_step_run_seconds_count"] == 3, "\(after)")
            #expect((after["stepfleet_step_run_seconds_sum"] ?? 0) >= 1, "a slept a second: \(after)")
            #expect(after["stepfleet_step_run_seconds_bucket{le=\"+Inf\"}"] == 3)
            await fleet.stop()
        }

        /// The exposition's samples by name (with labels), as numbers.
        static func metrics(_ fleet: FleetHarness) async throws -> [String: Double] {
            let (status, body) = try await fleet.raw("GET", "/metrics", nil)
            #expect(status == 200)
            let text = try #require(body.stringValue, "\(body)")
            var samples: [String: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
                samples[String(line[..<space])] = value
            }
            return samples
        }
    }
}
