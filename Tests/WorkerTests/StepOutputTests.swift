import AMQP
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Worker

/// A step's output as its log holds it, end to end on the real broker and engine: every byte
/// written (the last line without a newline too), held to the log and line caps with their
/// markers, secrets masked before any cut; the phases with their durations.
extension WorkerEndToEndTests {
    @Suite(.timeLimit(.minutes(10))) struct StepOutputTests {
        static let secret = "S3cr3t-VALUE-0123456789"
        static let actions = """
            actions:
              tail:
                run: |
                  echo first
                  echo second >&2
                  i=0; while [ $i -lt 300 ]; do echo "burst $i"; i=$((i+1)); done
                  sleep 0.3
                  printf "partial-no-newline"
                  printf "err-partial" >&2
              flood:
                run: |
                  yes xxxxxxxxx | head -n 300000
                  jq '.after = "ran"' "$OPSCHAIN_PROJECT_PROPERTIES" > /tmp/p && mv /tmp/p "$OPSCHAIN_PROJECT_PROPERTIES"
              longline:
                run: |
                  head -c 16374 /dev/zero | tr '\\0' a
                  jq -j '.opschain.secrets.token' "$OPSCHAIN_PROJECT_PROPERTIES"
                  head -c 5000000 /dev/zero | tr '\\0' b
                  echo
                  echo after
              tags:
                run: |
                  git -C /opt/opschain tag -l | sed 's/^/tag: /'
            """

        /// Runs before the fix lost `partial-no-newline` and `err-partial` in most runs: the
        /// engine's followed log stream ends before the engine writes unterminated output.
        @Test func theLastLineWithoutANewlineIsKeptOnBothStreams() async throws {
            let harness = try await WorkerHarness()
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            for _ in 0..<4 {
                let outcome = try await harness.run(harness.job(repository, action: "tail"))
                #expect(outcome.status == .success, "\(outcome.error ?? "")")
                let lines = await harness.logLines(for: outcome.ref)
                let stdout = lines.filter { $0.stream == .stdout && !$0.text.hasPrefix("build: ") }.map(\.text)
                let stderr = lines.filter { $0.stream == .stderr }.map(\.text)
                #expect(stdout.last == "partial-no-newline", "\(stdout.suffix(3))")
                #expect(stderr.last == "err-partial", "\(stderr)")
                // Read once: the catch-up after the exit repeats nothing.
                #expect(stdout.filter { $0 == "first" }.count == 1 && stderr.filter { $0 == "second" }.count == 1)
                #expect(stdout.filter { $0.hasPrefix("burst ") } == (0..<300).map { "burst \($0)" }, "\(stdout.filter { $0.hasPrefix("burst ") }.count) burst lines")
                #expect(lines.map(\.seq) == Array(0..<lines.count))
            }
            await harness.stop()
        }

        @Test func aLogPastItsCapEndsWithTheCountOfBytesCutAndTheStepRunsOn() async throws {
            let harness = try await WorkerHarness(logCap: 1 << 20)
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            let outcome = try await harness.run(harness.job(repository, action: "flood"))
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            // The container ran to its end after the cut: its last command's change came back.
            #expect(outcome.result?.project.propertiesDiff.operations == [.add(path: try JSONPointer("/after"), value: "ran")])
            let lines = await harness.logLines(for: outcome.ref)
            let output = lines.filter { $0.stream != .system }
            let shipped = output.reduce(0) { $0 + $1.text.utf8.count + 1 }
            #expect(shipped <= 1 << 20, "\(shipped) bytes of output shipped")
            #expect(shipped > (1 << 20) - 100, "the log is filled up to its cap: \(shipped)")
            let floodLines = output.filter { $0.text == "xxxxxxxxx" }.count
            let cut = LogLimiter.bytes(3_000_000 - 10 * floodLines)
            let marker = try #require(lines.first { $0.text.hasSuffix("bytes cut: the step's log passed its 1 MiB cap]") }, "no marker")
            #expect(marker.stream == .system)
            #expect(marker.text == "[… \(cut) bytes cut: the step's log passed its 1 MiB cap]")
            // StepFleet's own lines still come after the cut.
            #expect(lines.contains { $0.text.hasPrefix("run: finished in ") })
            await harness.stop()
        }

        @Test func aLongLineIsCutAtItsCapAfterItsSecretsAreMasked() async throws {
            let harness = try await WorkerHarness()
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            let project: JSON = ["opschain": ["secrets": ["token": .string(Self.secret)]]]
            let outcome = try await harness.run(harness.job(repository, action: "longline", project: project))
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            let stdout = await harness.logLines(for: outcome.ref).filter { $0.stream == .stdout && !$0.text.hasPrefix("build: ") }.map(\.text)
            #expect(stdout.count == 2, "one cut line and \"after\", not pieces: \(stdout.count) lines")
            let long = try #require(stdout.first)
            // The secret starts 10 bytes before the cap: masked whole, then cut.
            let expected = String(repeating: "a", count: 16374) + "****" + String(repeating: "b", count: 6)
                + " [… \(LogLimiter.bytes(16374 + Self.secret.count + 5_000_000 - 16384)) bytes cut: the line passed its 16 KiB cap]"
            #expect(long == expected, "\(long.utf8.count) bytes ending \(long.suffix(80))")
            #expect(!stdout.joined().contains(String(Self.secret.prefix(8))), "a piece of the secret is in the log")
            #expect(stdout.last == "after")
            await harness.stop()
        }

        /// Before the fix the second step reused the first one's image (same SHA) and the
        /// mirror was not fetched again: no `newtag` inside the step.
        @Test func aTagAddedAtTheSameShaReachesTheNextChangesStep() async throws {
            let harness = try await WorkerHarness()
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            var first = harness.job(repository, action: "tags")
            first.changeId = "change-one-\(harness.pool)"
            let one = try await harness.run(first)
            #expect(one.status == .success, "\(one.error ?? "")")
            #expect(!(await harness.logLines(for: one.ref)).contains { $0.text == "tag: newtag" })
            try TestRepository.git(repository.path, "tag", "newtag")
            var second = harness.job(repository, action: "tags")
            second.changeId = "change-two-\(harness.pool)"
            let two = try await harness.run(second)
            #expect(two.status == .success, "\(two.error ?? "")")
            let lines = await harness.logLines(for: two.ref)
            #expect(lines.contains { $0.text == "tag: newtag" }, "\(lines.map(\.text))")
            #expect(lines.contains { $0.text.contains("(image built:") }, "a new image for the new refs")
            // Another step of the same change at the same refs reuses that image.
            var third = harness.job(repository, action: "tags")
            third.changeId = second.changeId
            let three = try await harness.run(third)
            #expect(await harness.logLines(for: three.ref).contains { $0.text.contains("(existing image reused:") })
            await harness.stop()
        }

        @Test func aFromImageTheEngineLacksFailsTheStepInOneSentence() async throws {
            let harness = try await WorkerHarness()
            let image = "audit-base-\(UUID().uuidString.prefix(6).lowercased())"
            let repository = try TestRepository.make([
                ".opschain/actions.yml": Self.actions, ".opschain/Dockerfile": "FROM \(image)\nADD repo.tar /opt/opschain/\n",
            ])
            let outcome = try await harness.run(harness.job(repository, action: "tags"))
            #expect(outcome.status == .error)
            #expect(outcome.error == "image \(image):latest is not on this worker's Docker engine; StepFleet never pulls images: build or load it there")
            await harness.stop()
        }

        @Test func eachPhaseSaysWhenItInitialisesAndCompletesWithDurations() async throws {
            let harness = try await WorkerHarness()
            let repository = try TestRepository.make([".opschain/actions.yml": Self.actions])
            let outcome = try await harness.run(harness.job(repository, action: "tags"))
            #expect(outcome.status == .success, "\(outcome.error ?? "")")
            let system = await harness.logLines(for: outcome.ref).filter { $0.stream == .system }.map(\.text)
            let order = ["build: started", "build: initialised in ", "build: finished in ", "run: started", "run: initialised in ", "run: completing in ", "run: finished in "]
            let found = order.map { prefix in system.firstIndex { $0.hasPrefix(prefix) } }
            #expect(found.allSatisfy { $0 != nil } && found.compactMap { $0 } == found.compactMap { $0 }.sorted(), "\(system)")
            let phases = try #require(outcome.phases)
            #expect(phases.parts.map(\.name) == PhaseDurations().allPartNames)
            #expect(phases.buildMs == outcome.buildMs && phases.runMs == outcome.runMs)
            #expect((phases.runInitialiseMs ?? 0) + (phases.runningMs ?? 0) + (phases.runCompletingMs ?? 0) <= (phases.runMs ?? 0) + 2)
            let finished = harness.events(for: outcome.ref).compactMap(\.phase).filter { $0.state == .finished }
            #expect(finished.first { $0.name == .build }?.durations?.buildInitialiseMs == phases.buildInitialiseMs)
            #expect(finished.first { $0.name == .run }?.durations == phases)
            await harness.stop()
        }
    }
}
