import AMQP
import Foundation
import Protocol
import Synchronization
import TestSupport
import Testing
@testable import Worker

/// Less work around the container on a cache hit: the Dockerfile, the actions file and the
/// refs are read from the git mirror, and a step whose build key hits makes no checkout.
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(6))) struct CacheHitTests {
        static let actions = "actions:\n  noop: { run: 'true' }\n"

        static func kinds(_ harness: WorkerHarness, _ ref: AttemptRef) -> [String] {
            harness.events(for: ref).map { event in event.phase.map { "\($0.name.rawValue) \($0.state.rawValue)" } ?? event.kind.rawValue }
                .filter { $0 != "heartbeat" }
        }

        @Test func aCacheHitStepMakesNoCheckoutAndANewTagStillBuilds() async throws {
            let harness = try await WorkerHarness()
            let mirrors = harness.workDirectory + "/git"
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            let first = try await harness.run(harness.job(repository, action: "noop"))
            #expect(first.status == .success, "\(first.error ?? "")")
            #expect(GitMirror.clones(in: mirrors) == 1, "the first step builds its image from a checkout")

            // Same commit, same refs: the image exists, and the step makes no checkout.
            let second = try await harness.run(harness.job(repository, action: "noop"))
            #expect(second.status == .success, "\(second.error ?? "")")
            #expect(GitMirror.clones(in: mirrors) == 1, "a cache-hit step made a checkout")
            let said = await harness.logLines(for: second.ref).filter { $0.stream == .system }.map(\.text)
            #expect(said.contains { $0.hasPrefix("build: initialised in ") && $0.contains("(no checkout: the image of this build key exists") }, "\(said)")
            #expect(said.contains { $0.contains("(existing image reused:") }, "\(said)")
            // Its phase events all arrived, in order, once each, though none was waited for alone.
            #expect(Self.kinds(harness, second.ref) == ["claimed", "build started", "build finished", "run started", "run finished"])

            // A tag added at the same commit is in repo.tar: read from the mirror (fetched for a
            // new change), it changes the build key, so this step builds, from a checkout.
            let tag = try runProgram("/usr/bin/git", ["-C", repository.path, "tag", "v-\(UUID().uuidString.prefix(6).lowercased())"])
            #expect(tag.status == 0, "\(tag.output)")
            var third = harness.job(repository, action: "noop")
            third.changeId = "change-\(UUID().uuidString.prefix(6))"
            let tagged = try await harness.run(third)
            #expect(tagged.status == .success, "\(tagged.error ?? "")")
            #expect(GitMirror.clones(in: mirrors) == 2, "the new tag did not lead to a build from a checkout")
            #expect(await harness.logLines(for: tagged.ref).contains { $0.text.contains("(image built:") })
            await harness.stop()
        }
    }
}

/// A step's phase events go out one behind the other without the step waiting, and
/// `confirmed()` waits for all of them.
@Suite(.timeLimit(.minutes(1))) struct PhaseEventsTests {
    final class Recorder: Sendable {
        let started = Mutex<[Int]>([])
        let confirmed = Mutex<[Int]>([])
    }

    @Test func eventsAreConfirmedInOrderAndAllBeforeConfirmedReturns() async throws {
        let recorder = Recorder()
        // Each publish takes its own random time: unchained, later ones would confirm first.
        let phases = PhaseEvents { publish in try? await publish() }
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<20 {
            phases.send { () throws(AMQPError) in
                recorder.started.withLock { $0.append(index) }
                try? await Task.sleep(for: .milliseconds(Int.random(in: 1...15)))
                recorder.confirmed.withLock { $0.append(index) }
            }
        }
        #expect(clock.now - start < .milliseconds(15), "send waited for a confirm")
        await phases.confirmed()
        let confirmed = recorder.confirmed.withLock { $0 }
        let started = recorder.started.withLock { $0 }
        #expect(confirmed == Array(0..<20), "not all confirmed, or out of order, when confirmed() returned")
        #expect(started == Array(0..<20), "an event was published before the one ahead of it was confirmed")
        // Sent after a confirmed(): published once, after the earlier ones.
        phases.send { () throws(AMQPError) in recorder.confirmed.withLock { $0.append(99) } }
        await phases.confirmed()
        let after = recorder.confirmed.withLock { $0 }
        #expect(after == Array(0..<20) + [99])
    }
}
