import AMQP
import Fleet
import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

/// Issue 11, item 6: a number the fleet cannot carry is refused at the door, and a change whose
/// documents cannot be processed never stops lease expiry for the others.
extension FleetTests {
    @Suite(.timeLimit(.minutes(3))) struct NumberRangeTests {
        @Test func numbersThatCannotBeCarriedAreRefusedAtTheDoor() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  a: { run: 'true' }", project: ["k": 1])
            let before = try await fleet.properties(repo)
            let path = "/projects/\(repo.project)/properties"
            let cases: [(String, String, String)] = [
                ("PUT", #"{"big": 1e400}"#, "/big: the number 1e400 is out of range"),
                ("PUT", #"{"a": {"tiny": [1, -1e-400]}}"#, "/a/tiny/1: the number -1e-400 is out of range"),
                ("PUT", #"{"long": 1.2345678901234567890123456789012345678901234567890}"#, "/long: the number 1.23456789"),
                ("PATCH", #"[{"op": "add", "path": "/big", "value": 1e400}]"#, "/0/value: the number 1e400 is out of range"),
            ]
            for (method, body, message) in cases {
                let (status, answer) = try await fleet.raw(method, path, body)
                #expect(status == 400, "\(body): \(answer)")
                #expect(answer["error"]?.stringValue?.contains(message) == true, "\(body): \(answer)")
            }
            #expect(try await fleet.properties(repo) == before)
            // What can be carried keeps its exact literal.
            let put = try await fleet.send("PUT", path, try JSON.parse(#"{"i": 9007199254740993, "d": 0.1000000000000000000000001, "e": 1.5e-200, "u": 18446744073709551615}"#))
            #expect(put["properties"]?.serialized() == #"{"d":0.1000000000000000000000001,"e":1.5e-200,"i":9007199254740993,"u":18446744073709551615}"#)
            let change = try await fleet.createChange(repo, action: "a")
            #expect(try await fleet.snapshot(change).0.status == .running)
            await fleet.stop()
            try await fleet.dropQueuedJobs()
        }

        @Test func onePoisonedChangeDoesNotStopLeaseExpiryForTheOthers() async throws {
            let fleet = try await FleetHarness(workers: 0, leaseSeconds: 2)
            let healthy = try await fleet.project("actions:\n  a: { run: 'true' }")
            let poisoned = try await fleet.project("actions:\n  a: { run: 'true' }")
            let healthyChange = try await fleet.createChange(healthy, action: "a")
            let poisonedChange = try await fleet.createChange(poisoned, action: "a")
            // Both roots claimed by a worker that then goes silent.
            for change in [healthyChange, poisonedChange] {
                let root = try #require(try await fleet.snapshot(change).1.step("a"))
                try await fleet.engine.handle(
                    WorkerEvent(kind: .claimed, ref: root.ref, worker: "silent-worker", at: Int64(Date().timeIntervalSince1970 * 1000), claimToken: root.claimToken),
                    publishedBy: "guest")
            }
            // A document stored before the door refused such numbers (an old row): the next
            // job of that change cannot be built.
            let code = poisoned.project
            try await fleet.store.write { db in
                try db.execute(sql: """
                    INSERT INTO properties (project_code, environment_code, version, document, written_by_step, created_at)
                    SELECT project_code, environment_code, version + 1, '{"big":1e400}', NULL, 0 FROM properties
                    WHERE project_code = ? AND environment_code = 'e' ORDER BY version DESC LIMIT 1
                    """, arguments: [code])
            }
            // The real dispatcher's lease loop: the healthy change's lease still expires and its step is queued again.
            let deadline = ContinuousClock.now + .seconds(30)
            var requeued = false
            while ContinuousClock.now < deadline, !requeued {
                try await Task.sleep(for: .milliseconds(250))
                requeued = try await fleet.snapshot(healthyChange).1.step("a")?.attempt == 2
            }
            #expect(requeued, "the healthy change's lease never expired")
            let stuck = try #require(try await fleet.snapshot(poisonedChange).1.step("a"))
            #expect(stuck.attempt == 1 && stuck.status == .running)
            await fleet.stop()
            try await fleet.dropQueuedJobs()
        }
    }
}

extension FleetHarness {
    /// Deletes the default pool's queue: the jobs of a test without workers must not be run by a
    /// later test's workers on the same vhost.
    func dropQueuedJobs() async throws {
        let client = AMQPClient(endpoints: [broker], topology: FleetTopology.pool(Names.defaultPool), logger: Self.logger)
        let connection = try await client.connected()
        _ = try await connection.deleteQueue(Names.stepsQueue(pool: Names.defaultPool))
        await client.stop()
    }
}

/// The exactness rules themselves, without a dispatcher.
@Suite(.timeLimit(.minutes(1))) struct NumberCarriageTests {
    @Test func everyCarriableNumberSurvivesTheCodableRoundTripExactly() throws {
        let literals = [
            "0", "-0", "1", "-1", "9223372036854775807", "-9223372036854775808", "18446744073709551615", "0.1", "1e10", "1E+2", "1.5e-200",
            "123456789012345678901234567890123456.78", "1e127", "-2.5e-120", "3.14159", "1e300", "4.9e-324",
        ]
        for literal in literals {
            let number = try #require(JSONNumber(literal: literal))
            guard number.isCarriable else { continue }
            let wrapped: JSON = ["n": .number(number)]
            let decoded = try JSONDecoder().decode(JSON.self, from: JSONEncoder().encode(wrapped))
            #expect(decoded == wrapped, "\(literal) came back as \(decoded)")
        }
    }

    @Test func outOfRangeNumbersAreFoundWithTheirPath() throws {
        for literal in ["1e400", "-1e400", "1e-400", "1.2345678901234567890123456789012345678901234567890"] {
            let document = try JSON.parse(#"{"a": [{"b": \#(literal)}]}"#)
            let found = try #require(document.uncarriableNumber(), "\(literal)")
            #expect(found.path == "/a/0/b" && found.literal == literal)
            #expect(throws: EncodingError.self) { try JSONEncoder().encode(document) }
        }
        #expect(try JSON.parse(#"{"a": [1, 2.5, -3e5]}"#).uncarriableNumber() == nil)
    }

    @Test func aStepResultWithSuchANumberIsRefusedByTheWireCodecWithItsPath() throws {
        let outcome = StepOutcome(
            ref: AttemptRef(stepId: "s", attempt: 1), worker: "w", status: .success,
            result: StepResult(project: .init(propertiesDiff: JSONPatch([.add(path: try JSONPointer("/big"), value: 1)]))), runStarted: true)
        let body = String(decoding: WireCodec.encode(outcome), as: UTF8.self).replacingOccurrences(of: #""value":1"#, with: #""value":1e400"#)
        #expect(body.contains("1e400"))
        #expect(throws: WireError.invalid("/result/project/properties_diff/0/value: the number 1e400 is out of range (numbers must be 64-bit integers, decimals of at most 38 significant digits with an exponent within ±128, or doubles written exactly)")) {
            try WireCodec.decode(StepOutcome.self, from: Data(body.utf8))
        }
    }
}
