import Foundation
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

extension ProcessFleet {
    /// A fleet of `stepfleet` processes on the fleet tests' vhost (the suites there run one at a time).
    static func onFleetVhost() throws -> ProcessFleet {
        try ensureVhost(FleetHarness.vhost)
        return try ProcessFleet.make(amqp: "amqp://guest:guest@127.0.0.1:5672/\(FleetHarness.vhost)?heartbeat=5")
    }

    /// The fleet's store, opened beside its dispatcher (or after it), for reading.
    func store() throws -> Store { try Store(path: database, secretsKey: .none) }
}

/// A request over `stepfleet.requests` whose change was committed, but whose delivery was not
/// acked, when the dispatcher process died (SIGKILL): the redelivery after the restart creates
/// nothing new, and the answer and the notifications still go out.
extension FleetTests {
    @Suite struct RequestRestartTests {
        @Test(.timeLimit(.minutes(6)))
        func aDispatcherKilledBetweenCreateAndAckCreatesOneChangeAndStillAnswers() async throws {
            let fleet = try ProcessFleet.onFleetVhost()
            defer { fleet.remove() }
            let requestId = "restart-\(UUID().uuidString)"
            // The crash point: the dispatcher kills itself (SIGKILL) once this request's change
            // has committed, before it answers or acks (`CrashPoint`).
            try await fleet.startDispatcher(environment: ["STEPFLEET_TEST_KILL_AFTER_REQUEST": requestId])
            try fleet.startWorker(slots: 1)
            let repository = try TestRepository.make([".opschain/actions.yml": "actions:\n  deploy: { run: 'true' }\n"])
            let project = "r\(UUID().uuidString.prefix(6).lowercased())"
            try await fleet.api("POST", "/projects", ["code": .string(project), "git_remote": .string(repository.path)])
            try await fleet.api("POST", "/projects/\(project)/environments", ["code": "e"])
            let client = try await RequestQueueTests.Client(notificationKey: "change.\(project).#")
            let request: JSON = ["kind": "change", "request_id": .string(requestId), "project": .string(project), "environment": "e", "action": "deploy"]
            try await client.send(request.serialized(), correlationId: "ask")

            let status = try await fleet.waitForDispatcherExit()
            #expect(status == 128 + SIGKILL, "\(fleet.log("dispatcher-1.log"))")
            let store = try fleet.store()
            let committed = try await store.read { try Store.changes($0, project: project, environment: nil, status: nil, limit: 10) }
            #expect(committed.count == 1, "the change was committed before the kill")
            let id = try #require(committed.first?.id)
            #expect(await client.replies.first(1, timeout: .seconds(2)).isEmpty, "nothing answered before the kill")

            // The broker hands the unacked request to the restarted dispatcher.
            try await fleet.startDispatcher()
            let reply = try #require(await client.replies.first(1).first, "no answer after the restart: \(fleet.log("dispatcher-2.log"))")
            #expect(reply.properties.correlationId == "ask")
            let answer = RequestQueueTests.json(reply)
            #expect(answer["status"] == "existing", "\(answer.serialized())")
            #expect(answer["id"]?.stringValue == id, "\(answer.serialized())")
            let change = try await fleet.waitForChange(id)
            #expect(change["status"] == "success", "\(change.serialized())")
            #expect(change["root"]?["attempt"]?.intValue == 1)
            let all = try await store.read { try Store.changes($0, project: project, environment: nil, status: nil, limit: 10) }
            #expect(all.map(\.id) == [id], "one change for the one request id")
            // Its notifications come from the outbox: the creation's, written before the kill, too.
            let keys = try await waitFor("the change's notifications", timeout: .seconds(60)) { () async -> Set<String>? in
                let keys = Set(await client.notifications.first(20, timeout: .seconds(1)).map(\.routingKey))
                return keys.isSuperset(of: ["change.\(project).e.pending", "change.\(project).e.success"]) ? keys : nil
            }
            #expect(keys.isSuperset(of: ["change.\(project).e.pending", "change.\(project).e.running", "change.\(project).e.success"]), "\(keys)")
            // The request was acked this time: no further delivery, no further answer.
            #expect(await client.replies.first(2, timeout: .seconds(3)).count == 1)
            await client.stop()
        }
    }
}
