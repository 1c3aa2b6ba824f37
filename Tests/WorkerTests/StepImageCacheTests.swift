import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// Engine times as the cache reads them.
@Suite(.timeLimit(.minutes(2))) struct EngineTimeTests {
    @Test func timesKeepTheirFractionAndZone() throws {
        let utc = try #require(StepImageCache.parseTime("2026-11-29T14:10:47.880615205Z"))
        #expect(abs(utc.timeIntervalSince1970 - 1_795_961_447.880615) < 0.000_01)
        #expect(StepImageCache.parseTime("2026-11-29T15:10:47.880615205+01:00") == utc)
        #expect(StepImageCache.parseTime("2026-11-29T14:10:47Z")?.timeIntervalSince1970 == 1_795_961_447)
        #expect(StepImageCache.parseTime("0001-01-01T00:00:00Z") == nil)
        #expect(StepImageCache.parseTime("yesterday") == nil)
    }
}

extension WorkerEndToEndTests {
    /// Pruning on the real engine, in a repository of the test's own.
    @Suite(.timeLimit(.minutes(10))) struct StepImageCacheTests {
        /// A distinct small image (a label over the runner image), tagged `repository:name`.
        static func image(_ engine: DockerEngine, _ repository: String, _ name: String) async throws {
            let dockerfile = "FROM \(WorkerHarness.runnerImage)\nLABEL org.stepfleet.test=\(repository)-\(name)\n"
            try await engine.build(
                context: Tar.archive([.file("Dockerfile", Data(dockerfile.utf8))]), tag: "\(repository):\(name)", buildArgs: [:], labels: [:], output: { _ in })
        }

        @Test func theLeastRecentlyUsedGoUnlessRecentOrInUse() async throws {
            let engine = try DockerEngine()
            let repository = "stepfleet/cache-test-\(UUID().uuidString.prefix(6).lowercased())"
            let cache = StepImageCache(engine: engine, repository: repository)
            for name in ["a", "b", "c", "d"] { try await Self.image(engine, repository, name) }
            // Used since: c, then a (tagging again is what the builder does on a reuse).
            try await engine.tagImage("\(repository):c", repository: repository, tag: "c")
            try await engine.tagImage("\(repository):a", repository: repository, tag: "a")

            // Recently used images stay whatever the limit.
            let recent = try await cache.prune(ImageCachePolicy(keep: 1, idle: .seconds(3600)))
            #expect(recent == StepImageCache.Report(removed: [], spared: 3, kept: 1))

            let pruned = try await cache.prune(ImageCachePolicy(keep: 2, idle: .zero))
            #expect(Set(pruned.removed) == ["\(repository):b", "\(repository):d"])
            #expect(Set(try await engine.imageTags(repository: repository)) == ["\(repository):a", "\(repository):c"])

            // An image a container uses is spared, and goes once the container has gone.
            let container = try await engine.createContainer(["Image": .string("\(repository):c"), "Cmd": ["true"]])
            let inUse = try await cache.prune(ImageCachePolicy(keep: 1, idle: .zero))
            #expect(inUse == StepImageCache.Report(removed: [], spared: 1, kept: 1))
            try await engine.remove(container)
            let afterwards = try await cache.prune(ImageCachePolicy(keep: 1, idle: .zero))
            #expect(afterwards.removed == ["\(repository):c"])
            #expect(try await engine.imageTags(repository: repository) == ["\(repository):a"])

            // keep 0 keeps everything.
            #expect(try await cache.prune(ImageCachePolicy(keep: 0, idle: .zero)) == StepImageCache.Report(removed: [], spared: 0, kept: 1))
            try await engine.removeImage("\(repository):a")
        }

        /// The worker prunes on its own; the image used last stays.
        @Test func aWorkerKeepsItsEngineWithinThePolicy() async throws {
            let repository = "stepfleet/cache-test-\(UUID().uuidString.prefix(6).lowercased())"
            let harness = try await WorkerHarness(imageRepository: repository, imageCache: ImageCachePolicy(keep: 1, idle: .zero, interval: .milliseconds(500)))
            let engine = try DockerEngine()
            let first = try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'echo first' }"])
            let second = try TestRepository.make([".opschain/actions.yml": "actions:\n  ok: { run: 'echo second' }"])
            #expect(try await harness.run(harness.job(first, action: "ok")).status == .success)
            #expect(try await harness.run(harness.job(second, action: "ok")).status == .success)
            let firstAgain = try await harness.run(harness.job(first, action: "ok"))
            #expect(firstAgain.status == .success)
            let deadline = ContinuousClock.now + .seconds(20)
            var tags = try await engine.imageTags(repository: repository)
            while tags.count > 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                tags = try await engine.imageTags(repository: repository)
            }
            #expect(tags.count == 1, "\(tags)")
            // The survivor is the first repository's image: built, then reused last.
            let survivor = try #require(tags.first)
            #expect(try await engine.inspectImage(survivor)?["Config"]?["Labels"]?["org.stepfleet.git-sha"]?.stringValue == first.sha)
            await harness.stop()
            for tag in tags { try? await engine.removeImage(tag) }
        }
    }
}
