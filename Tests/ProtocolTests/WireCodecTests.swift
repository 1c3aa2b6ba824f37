import Foundation
import Testing
@testable import Protocol

@Suite(.timeLimit(.minutes(2))) struct WireCodecTests {
    static let context = StepContext(
        context: .init(project: ["code": "demo"], environment: ["code": "dev"], change: ["id": "c1"], step: ["id": "s1"], user: ["name": "u"]),
        project: .init(properties: ["big": .number(JSONNumber(literal: "123456789012345678901234567890")!), "env": ["A": "1"]]),
        environment: .init(properties: ["ratio": .number(JSONNumber(literal: "0.1")!)])
    )

    static let job = StepJob(
        changeId: "c1", stepId: "s1", attempt: 2, action: "deploy", git: GitSource(remote: "/srv/repo.git", rev: "main", sha: String(repeating: "a", count: 40)),
        context: context, runner: RunnerSettings(baseImage: "stepfleet/runner:0.1.0", version: "0.1.0"), buildSecrets: ["opschain-build-env"],
        timeoutSeconds: 60, pool: "default")

    @Test func everyMessageRoundTrips() throws {
        #expect(try WireCodec.decode(StepJob.self, from: WireCodec.encode(Self.job)) == Self.job)
        let ref = AttemptRef(stepId: "s1", attempt: 2)
        let event = WorkerEvent(kind: .phase, ref: ref, worker: "w1", at: 1_700_000_000_000, phase: Phase(name: .build, state: .finished, durationMs: 12))
        #expect(try WireCodec.decode(WorkerEvent.self, from: WireCodec.encode(event)) == event)
        let logs = LogBatch(ref: ref, worker: "w1", lines: [.init(seq: 0, stream: .stdout, text: "hello\u{1b}[0m", at: 1)])
        #expect(try WireCodec.decode(LogBatch.self, from: WireCodec.encode(logs)) == logs)
        let outcome = StepOutcome(ref: ref, worker: "w1", status: .success, exitCode: 0, result: StepResult(), runStarted: true, buildMs: 5, runMs: 7, policy: ActionPolicy(ignoreFailure: true, retries: 2))
        #expect(try WireCodec.decode(StepOutcome.self, from: WireCodec.encode(outcome)) == outcome)
        let control = ControlMessage(kind: .cancel, ref: ref)
        #expect(try WireCodec.decode(ControlMessage.self, from: WireCodec.encode(control)) == control)
    }

    @Test func bodiesCarrySchemaAndType() throws {
        let body = try JSON.parse(bytes: WireCodec.encode(Self.job))
        #expect(body["schema"] == 1)
        #expect(body["type"] == "step_job")
        #expect(body["context"]?["project"]?["properties"]?["big"]?.serialized() == "123456789012345678901234567890")
    }

    @Test func badBodiesAreTypedErrors() throws {
        func decode(_ text: String) -> WireError? {
            do {
                _ = try WireCodec.decode(StepJob.self, from: Data(text.utf8))
                return nil
            } catch {
                return error
            }
        }
        #expect(decode("{not json") == .malformed("invalid JSON at byte 1: expected a string as object key"))
        #expect(decode("[1]") == .malformed("body is a array, not an object"))
        #expect(decode(#"{"type":"step_job"}"#) == .unsupportedSchema(nil))
        #expect(decode(#"{"schema":2,"type":"step_job"}"#) == .unsupportedSchema(2))
        #expect(decode(#"{"schema":1,"type":"control","kind":"drain"}"#) == .wrongType(expected: "step_job", found: "control"))
        #expect(decode(#"{"schema":1,"type":"step_job","stepId":"s"}"#) == .invalid("the member \"changeId\" is missing from the top level"))
        var good = try JSON.parse(bytes: WireCodec.encode(Self.job))
        if case .object(var members) = good {
            members["attempt"] = "two"
            good = .object(members)
        }
        #expect(decode(good.serialized()) == .invalid("/attempt is a string (\"two\"); it must be a whole number"))
        let truncated = String(decoding: WireCodec.encode(Self.job).prefix(100), as: UTF8.self)
        #expect(decode(truncated).map { if case .malformed = $0 { true } else { false } } == true)
        let huge = Data(repeating: 0x20, count: WireCodec.maximumBodySize + 1)
        #expect(throws: WireError.tooLarge(bytes: huge.count, limit: WireCodec.maximumBodySize)) { try WireCodec.decode(StepJob.self, from: huge) }
    }
}
