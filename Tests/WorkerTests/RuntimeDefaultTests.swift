import Foundation
import TestSupport
import Testing

/// `stepfleet worker` with no `--runtime` picks one for this host (`auto`) and says which and
/// why in its start-up log; this host (root, runc, overlayfs, the cgroup controllers) gets oci.
@Suite(.timeLimit(.minutes(2))) struct RuntimeDefaultTests {
    @Test func theDefaultIsAutoAndTheStartUpLineSaysWhatItChose() async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("runtime-default-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: work) }
        let worker = try WorkerProcess(
            arguments: [
                "worker", "--amqp", WorkerHarness.brokerURL, "--pool", "rd-\(UUID().uuidString.prefix(6).lowercased())", "--work-dir", work,
                "--dispatcher-user", "guest", "--min-free-disk", "0", "--log-level", "info",
            ], logPath: work + ".log")
        defer {
            worker.kill()
            try? FileManager.default.removeItem(atPath: work + ".log")
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while !worker.log.contains("worker starting"), ContinuousClock.now < deadline, worker.exitStatus() == nil {
            try await Task.sleep(for: .milliseconds(100))
        }
        let log = worker.log
        #expect(log.contains("step runtime: oci (auto: runc works here"), "\(log)")
        #expect(log.contains("runtime=oci") && log.contains("worker starting"), "\(log)")
    }
}
