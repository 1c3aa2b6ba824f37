import AMQP
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

@Suite(.timeLimit(.minutes(2))) struct DiskSpaceTests {
    @Test func lowWhenAnyMeasuredPlaceIsBelowTheMinimum() {
        let free: [String: Int64] = ["/work": 5000 << 20, "/var/lib/docker": 1000 << 20]
        let low = DiskSpace.check(["/work", "/var/lib/docker"], minimum: 2048 << 20) { free[$0] }
        #expect(low == DiskSpace.Report(low: true, summary: "/work: 5000 MiB free, /var/lib/docker: 1000 MiB free (minimum 2048 MiB)"))
        #expect(!DiskSpace.check(["/work", "/var/lib/docker"], minimum: 512 << 20) { free[$0] }.low)
        // Not measurable from here (the engine's folder in another container): not counted.
        #expect(!DiskSpace.check(["/work", "/elsewhere"], minimum: 2048 << 20) { free[$0] }.low)
        #expect(!DiskSpace.check(["/var/lib/docker"], minimum: 0) { free[$0] }.low, "0 never pauses")
        #expect(DiskSpace.freeBytes("/") ?? 0 > 0)
        #expect(DiskSpace.freeBytes("/no/such/folder") == nil)
    }

    @Test func everyStepContainerHasAFileSizeLimit() {
        let runtime = DockerContainerRuntime(engine: try! DockerEngine())
        let run = ContainerRun(image: "x", action: "a", stepContext: Data(), timeout: .seconds(1), labels: [:], limits: ContainerLimits(diskBytes: 20 << 20))
        let body = runtime.createBody(run, asRoot: false)
        #expect(body["HostConfig"]?["Ulimits"] == [["Name": "fsize", "Soft": JSON(20 << 20), "Hard": JSON(20 << 20)]])
        #expect(body["HostConfig"]?["StorageOpt"] == nil)
        #expect(runtime.createBody(run, asRoot: false, storageQuota: true)["HostConfig"]?["StorageOpt"] == ["size": "20971520"])
    }
}

/// A step cannot fill the host's disk, and a worker whose disk is full takes no steps. Real
/// engine (overlay2 on ext4 here: no storage quota, so the worker watches the layer's size).
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(10))) struct DiskLimitTests {
        static let actions = """
            actions:
              many: { run: 'for i in $(seq 1 40); do head -c 5000000 /dev/zero > /tmp/f$i || exit 9; done; echo "PROBE wrote all"; sleep 600' }
              one: { run: 'head -c 50000000 /dev/zero > /tmp/big; echo "PROBE big=$(stat -c %s /tmp/big)"; sleep 600' }
              small: { run: 'head -c 1000000 /dev/zero > /tmp/small' }
            """

        @Test(.timeLimit(.minutes(4))) func aStepWritingPastItsDiskLimitIsKilled() async throws {
            let harness = try await WorkerHarness(diskBytes: 20 << 20)
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            // Many files, each under the limit: the watch on the layer's size kills the container
            // (its outcome within run's 120 s: left alone it would sleep 600 s; no wall-clock
            // bound of our own, which a busy machine breaks).
            let many = try await harness.run(harness.job(repository, action: "many"))
            #expect(many.status == .error)
            #expect(many.error == "the step wrote more than its disk limit of 20 MiB and was killed", "\(many.error ?? "")")
            // One file past the limit: stopped at the limit by RLIMIT_FSIZE, and the step fails.
            let one = try await harness.run(harness.job(repository, action: "one"))
            #expect(one.error == "the step wrote more than its disk limit of 20 MiB and was killed", "\(one.error ?? "")")
            let oneLog = await harness.logLines(for: one.ref).map(\.text)
            #expect(oneLog.contains("PROBE big=\(20 << 20)"), "\(oneLog)")
            #expect(try await harness.run(harness.job(repository, action: "small")).status == .success)
            #expect(try await harness.leftoverContainers().isEmpty)
            await harness.stop()
        }

        @Test(.timeLimit(.minutes(2))) func aWorkerWithTooLittleFreeDiskTakesNoJobs() async throws {
            let harness = try await WorkerHarness(minimumFreeDisk: Int64.max >> 1)
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'true' }"])
            let job = harness.job(repository, action: "ok")
            try await harness.publish(job)
            try await Task.sleep(for: .seconds(4))
            #expect(harness.events(for: AttemptRef(stepId: job.stepId, attempt: 1)).isEmpty)
            let connection = try await harness.client.connected()
            #expect(try await connection.messageCount(queue: Names.stepsQueue(pool: harness.pool)) == 1)
            _ = try await connection.deleteQueue(Names.stepsQueue(pool: harness.pool))
            await harness.stop()
        }
    }
}
