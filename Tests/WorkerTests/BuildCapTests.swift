import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

extension WorkerEndToEndTests {
    /// `--builds N`: at most N image builds at once on a worker, whatever its slots; the others
    /// wait their turn and then build.
    @Suite(.timeLimit(.minutes(8))) struct BuildCapTests {
        @Test func withACapOfOneTwoDifferentBuildsNeverRunTogether() async throws {
            let harness = try await WorkerHarness(slots: 2, builds: 1)
            let markers = (0..<2).map { _ in "cap\(UUID().uuidString.prefix(8).lowercased())" }
            let jobs = try markers.map { harness.job(try BuildTimeoutTests.blockingRepository($0, seconds: 6), action: "ok") }
            for job in jobs { try await harness.publish(job) }
            let refs = jobs.map { AttemptRef(stepId: $0.stepId, attempt: 1) }
            // Until both steps have their outcome: never both builds' RUN containers at once,
            // and each of them at some point.
            var seen: Set<String> = []
            let deadline = ContinuousClock.now + .seconds(300)
            while refs.contains(where: { harness.outcomes(for: $0.stepId).isEmpty }) {
                try #require(ContinuousClock.now < deadline, "the two steps did not both end within 300 s")
                let building = try markers.filter { try !WorkerHarness.containers(running: $0).isEmpty }
                #expect(building.count <= 1, "two builds ran at once with --builds 1: \(building)")
                seen.formUnion(building)
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(seen == Set(markers), "builds seen: \(seen)")
            for ref in refs {
                let outcome = try await harness.outcome(for: ref)
                #expect(outcome.status == .success, "\(outcome.error ?? "")")
            }
            await harness.stop()
        }

        /// README: identical builds running at once are built once. Two steps of one commit (one
        /// build key) arrive together on a worker with two slots: one build container ever runs
        /// the Dockerfile's RUN, the other step waits for it, and both run on its image.
        @Test func identicalBuildsRunningAtOnceAreBuiltOnce() async throws {
            let harness = try await WorkerHarness(slots: 2)
            let marker = "once\(UUID().uuidString.prefix(8).lowercased())"
            let repository = try BuildTimeoutTests.blockingRepository(marker, seconds: 6)
            let jobs = [harness.job(repository, action: "ok"), harness.job(repository, action: "ok")]
            for job in jobs { try await harness.publish(job) }
            var builders: Set<String> = []
            let deadline = ContinuousClock.now + .seconds(300)
            while jobs.contains(where: { harness.outcomes(for: $0.stepId).isEmpty }) {
                try #require(ContinuousClock.now < deadline, "the two steps did not both end within 300 s")
                builders.formUnion(try WorkerHarness.containers(running: marker))
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(builders.count == 1, "build containers that ran the RUN line: \(builders)")
            var waited = 0
            for job in jobs {
                let ref = AttemptRef(stepId: job.stepId, attempt: 1)
                let outcome = try await harness.outcome(for: ref)
                #expect(outcome.status == .success, "\(outcome.error ?? "")")
                if await harness.logLines(for: ref).contains(where: { $0.text.contains("an identical build is running; waiting for it") }) { waited += 1 }
            }
            #expect(waited == 1, "steps whose log says they waited for the identical build: \(waited)")
            await harness.stop()
        }
    }
}
