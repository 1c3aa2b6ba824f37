import AMQP
import Foundation
import HostCommand
import Protocol
import TestSupport
import Testing
@testable import Worker

#if canImport(Glibc)
    import Glibc
#endif

extension WorkerEndToEndTests {
    /// A worker killed (SIGKILL) while an oci step runs leaves its container, cgroup, mount
    /// and runc state; the next worker started on the same work directory removes them all.
    @Suite struct OCICrashTests {
        @Test(.timeLimit(.minutes(5))) func theNextWorkerRemovesWhatAKilledWorkerLeft() async throws {
            let harness = try await WorkerHarness()
            // The test's worker steps aside: a `stepfleet worker --runtime oci` process takes the job.
            await harness.worker.shutdown()
            let work = harness.workDirectory
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  sleepy: { run: 'echo SLEEPING; sleep 120' }\n"])
            let log = work + "-child.log"
            defer { try? FileManager.default.removeItem(atPath: log) }
            let child = try Spawn.launch(
                stepfleetExecutable,
                [
                    "worker", "--runtime", "oci", "--amqp", WorkerHarness.brokerURL, "--pool", harness.pool, "--work-dir", work, "--dispatcher-user", "guest",
                    "--git-local-roots", FileManager.default.temporaryDirectory.path, "--min-free-disk", "0", "--keep-images", "0", "--slots", "1",
                    "--log-level", "warning",
                ], logPath: log)
            var killed = false
            defer {
                if !killed {
                    kill(child, SIGKILL)
                    Spawn.wait(child)
                }
            }
            let job = harness.job(repository, action: "sleepy")
            let ref = AttemptRef(stepId: job.stepId, attempt: job.attempt)
            try await harness.publish(job)
            try await harness.waitForEvent(ref, timeout: .seconds(120)) { $0.phase?.name == .run && $0.phase?.state == .started }
            // The container runs: its mount, cgroup and runc state are there.
            let steps = work + "/oci/steps"
            var ids: [String] = []
            let deadline = ContinuousClock.now + .seconds(20)
            while ids.isEmpty, ContinuousClock.now < deadline {
                ids = OCIContainerRuntime.mountedSteps(under: steps)
                try await Task.sleep(for: .milliseconds(100))
            }
            try #require(ids.count == 1, "the child's step is mounted: \(ids)")
            let id = ids[0]
            try await Task.sleep(for: .seconds(1))
            #expect(!OCICgroups.directories(id).isEmpty, "the step's cgroup exists while it runs")
            #expect(FileManager.default.fileExists(atPath: work + "/oci/runc/" + id), "runc's state exists while it runs")

            kill(child, SIGKILL)
            Spawn.wait(child)
            killed = true
            #expect(OCIContainerRuntime.mountedSteps(under: steps) == [id], "the killed worker left its step mounted")

            // The next worker on the same work directory cleans up as it starts.
            var configuration = WorkerConfiguration(
                name: "next-\(harness.pool)", pool: harness.pool, slots: 1, workDirectory: work, minimumFreeDisk: 0)
            configuration.runtime = .oci
            let next = WorkerService(
                configuration: configuration, brokers: [try AMQPConfiguration(url: WorkerHarness.brokerURL)], engine: try DockerEngine(), logger: WorkerHarness.logger)
            let running = Task { await next.run() }
            let cleanDeadline = ContinuousClock.now + .seconds(30)
            func leftovers() -> [String] {
                var found: [String] = []
                if !OCIContainerRuntime.mountedSteps(under: steps).isEmpty { found.append("mount") }
                if !OCICgroups.directories(id).isEmpty { found.append("cgroup") }
                if FileManager.default.fileExists(atPath: work + "/oci/runc/" + id) { found.append("runc state") }
                if FileManager.default.fileExists(atPath: steps + "/" + id) { found.append("step directory") }
                return found
            }
            while !leftovers().isEmpty, ContinuousClock.now < cleanDeadline { try await Task.sleep(for: .milliseconds(200)) }
            #expect(leftovers().isEmpty, "left after the next start: \(leftovers())")
            await next.shutdown()
            await running.value
            await harness.stop()
        }
    }
}
