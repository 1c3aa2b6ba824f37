import Foundation
import Protocol
import Testing
@testable import Worker

/// The log's caps, masking and the catch-up after a container's exit, as plain values.
@Suite(.timeLimit(.minutes(1))) struct LogLimiterTests {
    static let none = SecretMask()

    @Test func linesAreSplitPerStreamAndUnterminatedEndsAreKept() {
        var limiter = LogLimiter()
        #expect(limiter.feed(.stdout, Data("one\ntw".utf8), mask: Self.none).map(\.1) == ["one"])
        #expect(limiter.feed(.stderr, Data("err".utf8), mask: Self.none).isEmpty)
        #expect(limiter.feed(.stdout, Data("o\nthree".utf8), mask: Self.none).map(\.1) == ["two"])
        let end = limiter.end(mask: Self.none)
        #expect(end.map(\.0) == [.stdout, .stderr] && end.map(\.1) == ["three", "err"])
        #expect(limiter.end(mask: Self.none).isEmpty)
        #expect(limiter.shipped == "one\ntwo\nthree".utf8.count + "err".utf8.count)
    }

    @Test func aLineLongerThanItsCapIsCutWithACount() {
        var limiter = LogLimiter(logCap: 1 << 20, lineCap: 16)
        let lines = limiter.feed(.stdout, Data((String(repeating: "x", count: 1_234_567) + "\nok\n").utf8), mask: Self.none)
        #expect(lines.map(\.1) == [String(repeating: "x", count: 16) + " [… 1,234,551 bytes cut: the line passed its 16 bytes cap]", "ok"])
    }

    @Test func aSecretAcrossTheLineCapIsMaskedBeforeTheCut() {
        let mask = SecretMask(["hunter2-secret"])
        var limiter = LogLimiter(logCap: 1 << 20, lineCap: 10)
        // Fed a byte at a time: the secret is whole when the line is masked.
        var lines: [(LogBatch.Stream, String)] = []
        for byte in "aaaaaaahunter2-secretbbbbbbbbbbbbb\n".utf8 { lines += limiter.feed(.stdout, Data([byte]), mask: mask) }
        #expect(lines.map(\.1) == ["aaaaaaa***" + " [… 24 bytes cut: the line passed its 10 bytes cap]"])
        #expect(!lines[0].1.contains("hun"))
    }

    @Test func pastTheLogCapWholeLinesAreDroppedAndCountedOnce() {
        var limiter = LogLimiter(logCap: 25, lineCap: 100)
        var lines = limiter.feed(.stdout, Data("0123456789\n0123456789\n0123456789\n".utf8), mask: Self.none)
        lines += limiter.line(.stdout, "build line", mask: Self.none)
        lines += limiter.feed(.stderr, Data("tail".utf8), mask: Self.none)
        #expect(limiter.capPassed)
        lines += limiter.end(mask: Self.none)
        #expect(lines.map(\.1) == ["0123456789", "0123456789", "[… 26 bytes cut: the step's log passed its 25 bytes cap]"])
        #expect(LogLimiter.size(16 << 20) == "16 MiB" && LogLimiter.size(16 << 10) == "16 KiB")
        #expect(LogLimiter.bytes(4_812_331) == "4,812,331" && LogLimiter.bytes(999) == "999" && LogLimiter.bytes(1000) == "1,000")
    }

    @Test func aCutNeverEndsInsideACharacter() {
        #expect(LogLimiter.prefix("ééé", bytes: 3) == "é")
        #expect(LogLimiter.prefix("a😀", bytes: 4) == "a")
        #expect(LogLimiter.prefix("abc", bytes: 5) == "abc")
    }

    @Test func theCatchUpSkipsWhatTheFollowedStreamDelivered() {
        var catchUp = LogCatchUp()
        #expect(catchUp.followed(.stdout, Data("2026-11-29T22:22:59.95466419Z one\n".utf8)) == Data("one\n".utf8))
        // stderr's copier stamped its frame earlier, but the log has it after stdout's.
        _ = catchUp.followed(.stderr, Data("2026-11-29T22:22:59.9546Z err\n".utf8))
        _ = catchUp.followed(.stdout, Data("2026-11-29T22:22:59.95466419Z two\n".utf8))
        // The re-read starts two seconds before the latest stamp.
        #expect(catchUp.rereading() == "1795990977.954664190")
        #expect(catchUp.reread(.stdout, Data("2026-11-29T22:22:58.1Z missed by the follow\n".utf8)) == Data("missed by the follow\n".utf8))
        #expect(catchUp.reread(.stdout, Data("2026-11-29T22:22:59.95466419Z one\n".utf8)) == nil)
        #expect(catchUp.reread(.stderr, Data("2026-11-29T22:22:59.9546Z err\n".utf8)) == nil)
        #expect(catchUp.reread(.stdout, Data("2026-11-29T22:22:59.95466419Z two\n".utf8)) == nil)
        #expect(catchUp.reread(.stdout, Data("2026-11-29T22:22:59.99900818Z partial".utf8)) == Data("partial".utf8))
        #expect(catchUp.reread(.stderr, Data("2026-11-29T22:22:59.9546Z err-partial".utf8)) == Data("err-partial".utf8))
        let nothing = LogCatchUp()
        #expect(nothing.rereading() == nil)
        #expect(LogCatchUp.nanoseconds("2026-11-29T22:22:59Z").map { LogCatchUp.unixTime(nanoseconds: $0) } == "1795990979.000000000")
    }

    @Test func theDefaultWorkDirectoryIsNeverTheCurrentOne() {
        #expect(WorkerConfiguration.defaultWorkDirectory(uid: 0, environment: [:]) == "/var/lib/stepfleet/worker")
        #expect(WorkerConfiguration.defaultWorkDirectory(uid: 1000, environment: ["XDG_STATE_HOME": "/s", "HOME": "/h"]) == "/s/stepfleet/worker")
        #expect(WorkerConfiguration.defaultWorkDirectory(uid: 1000, environment: ["HOME": "/h"]) == "/h/.local/state/stepfleet/worker")
        #expect(WorkerConfiguration.defaultWorkDirectory(uid: 1000, environment: ["XDG_STATE_HOME": "relative", "HOME": "/h"]) == "/h/.local/state/stepfleet/worker")
    }

    @Test func aMissingFromImageIsNamedWithItsTag() {
        #expect(DockerImageBuilder.missingImage("audit-base") == "image audit-base:latest is not on this worker's Docker engine; StepFleet never pulls images: build or load it there")
        #expect(DockerImageBuilder.missingImage("registry:5000/team/base").hasPrefix("image registry:5000/team/base:latest is not"))
        #expect(DockerImageBuilder.missingImage("base:1.2").hasPrefix("image base:1.2 is not"))
    }

    @Test func oldPhaseMessagesStillDecodeAndNewOnesCarryDurations() throws {
        let old = #"{"schema":1,"type":"worker_event","kind":"phase","ref":{"stepId":"s","attempt":1},"worker":"w","at":1,"phase":{"name":"run","state":"finished","durationMs":5}}"#
        let event = try WireCodec.decode(WorkerEvent.self, from: Data(old.utf8))
        #expect(event.phase?.durationMs == 5 && event.phase?.durations == nil)
        var outcome = StepOutcome(ref: AttemptRef(stepId: "s", attempt: 1), worker: "w", status: .success, runStarted: true)
        outcome.phases = PhaseDurations(buildInitialiseMs: 1, buildMs: 2, runInitialiseMs: 3, runningMs: 4, runCompletingMs: 5, runMs: 12)
        #expect(try WireCodec.decode(StepOutcome.self, from: WireCodec.encode(outcome)).phases == outcome.phases)
    }
}
