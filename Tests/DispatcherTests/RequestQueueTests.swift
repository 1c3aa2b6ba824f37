import AMQP
import Foundation
import Synchronization
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

/// Work handed over `stepfleet.requests` and followed on `stepfleet.notifications`, over the
/// real broker with a real dispatcher and worker.
extension FleetTests {
    @Suite struct RequestQueueTests {
        /// A client of the fleet's broker: a reply queue bound to `stepfleet.replies` and a
        /// notification queue bound to `stepfleet.notifications` with `notificationKey`.
        struct Client {
            let client: AMQPClient
            let connection: AMQPConnection
            let replyQueue: String
            let replies: Collector
            let notifications: Collector

            init(notificationKey: String) async throws {
                let suffix = UUID().uuidString.prefix(8).lowercased()
                replyQueue = "test.replies.\(suffix)"
                let notes = "test.notifications.\(suffix)"
                client = AMQPClient(endpoints: [FleetHarness.broker], logger: FleetHarness.logger)
                await client.start()
                connection = try await client.connected()
                try await connection.declare(AMQPTopology(
                    queues: [.init(name: replyQueue, durable: false, exclusive: true, autoDelete: true), .init(name: notes, durable: false, exclusive: true, autoDelete: true)],
                    bindings: [.init(queue: replyQueue, exchange: Names.repliesExchange, routingKey: replyQueue),
                               .init(queue: notes, exchange: Names.notificationsExchange, routingKey: notificationKey)]))
                replies = Collector(try await connection.consume(queue: replyQueue, prefetch: 50))
                notifications = Collector(try await connection.consume(queue: notes, prefetch: 200))
            }

            func send(_ body: String, correlationId: String? = nil) async throws {
                try await connection.publish(
                    AMQPMessage(body: Data(body.utf8), properties: AMQPProperties(correlationId: correlationId, replyTo: replyQueue, userId: "guest")),
                    exchange: Names.requestsExchange, routingKey: "")
            }

            func stop() async {
                await client.stop()
            }
        }

        /// Every message a consumer gets, acked and kept in order.
        final class Collector: Sendable {
            final class Box: Sendable {
                let got = Mutex<[AMQPDelivery]>([])
            }

            private let box: Box
            private let task: Task<Void, Never>

            init(_ consumer: AMQPConsumer) {
                let box = Box()
                self.box = box
                task = Task {
                    do {
                        for try await delivery in consumer {
                            try? await delivery.ack()
                            box.got.withLock { $0.append(delivery) }
                        }
                    } catch {}
                }
            }

            /// The first `count` messages, or all that came before `timeout`.
            func first(_ count: Int, timeout: Duration = .seconds(60)) async -> [AMQPDelivery] {
                let deadline = ContinuousClock.now + timeout
                while ContinuousClock.now < deadline, box.got.withLock({ $0.count }) < count {
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return box.got.withLock { Array($0.prefix(count)) }
            }

            deinit { task.cancel() }
        }

        static func json(_ delivery: AMQPDelivery) -> JSON { (try? JSON.parse(bytes: delivery.body)) ?? .null }

        @Test(.timeLimit(.minutes(4)))
        func aRequestPublishedTwiceCreatesOneChangeAndItsNotificationsArrive() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("actions:\n  deploy: { run: 'true' }\n")
            let client = try await Client(notificationKey: "change.\(repo.project).*.*")
            let requestId = "req-\(UUID().uuidString)"
            let body: JSON = ["kind": "change", "request_id": .string(requestId), "project": .string(repo.project), "environment": "e", "action": "deploy", "git_rev": "main"]
            try await client.send(body.serialized(), correlationId: "first")
            try await client.send(body.serialized(), correlationId: "second")
            let replies = await client.replies.first(2)
            #expect(replies.count == 2)
            #expect(replies.map(\.properties.correlationId) == ["first", "second"])
            let answers = replies.map(Self.json)
            #expect(answers.map { $0["status"]?.stringValue } == ["created", "existing"])
            let id = try #require(answers.first?["id"]?.stringValue)
            #expect(answers.allSatisfy { $0["id"]?.stringValue == id && $0["kind"] == "change" && $0["request_id"]?.stringValue == requestId })
            let (change, _) = try await fleet.waitForChange(id)
            #expect(change.status == .success)
            #expect(change.user == "guest", "the broker-verified publisher")
            let all = try await fleet.store.read { db in try Store.changes(db, project: repo.project, environment: nil, status: nil, limit: 10) }
            #expect(all.map(\.id) == [id])
            // Its status changes, from the outbox, on the topic exchange.
            let notes = await client.notifications.first(3)
            // The outbox sends a round's rows at once, so their order on the wire is not fixed.
            #expect(Set(notes.map(\.routingKey)) == Set(["pending", "running", "success"].map { "change.\(repo.project).e.\($0)" }))
            #expect(notes.allSatisfy { Self.json($0)["id"]?.stringValue == id })
            await client.stop()
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(3)))
        func malformedRequestsAreAnsweredWithTheReasonAndDeadLettered() async throws {
            let fleet = try await FleetHarness(workers: 0)
            let repo = try await fleet.project("actions:\n  deploy: { run: 'true' }\n")
            let client = try await Client(notificationKey: "change.\(repo.project).*.*")
            let marker = UUID().uuidString
            let cases: [(String, String)] = [
                ("not json \(marker)", "the request is not valid JSON"),
                (#"{"kind":"change","project":"\#(repo.project)","environment":"e","action":"deploy","marker":"\#(marker)"}"#, "missing \"request_id\""),
                (#"{"kind":"rocket","request_id":"r-\#(marker)"}"#, "\"kind\" must be \"change\" or \"batch\""),
                (#"{"kind":"batch","request_id":"b-\#(marker)","project":"\#(repo.project)","environments":7,"action":"deploy"}"#, "\"environments\" must be a list"),
            ]
            for (index, (body, _)) in cases.enumerated() { try await client.send(body, correlationId: "case-\(index)") }
            let replies = await client.replies.first(cases.count)
            #expect(replies.count == cases.count)
            for (reply, (body, reason)) in zip(replies, cases) {
                let answer = Self.json(reply)
                #expect(answer["status"] == "malformed", "\(body): \(answer.serialized())")
                #expect(answer["error"]?.stringValue?.contains(reason) == true, "\(body): \(answer.serialized())")
            }
            // A refused request (an unknown environment) is answered and creates nothing, but is not poison.
            try await client.send(#"{"kind":"change","request_id":"x-\#(marker)","project":"\#(repo.project)","environment":"nope","action":"deploy"}"#)
            let refused = await client.replies.first(cases.count + 1).dropFirst(cases.count).map(Self.json)
            #expect(refused.first?["status"] == "refused")
            #expect(refused.first?["error"]?.stringValue == "project \"\(repo.project)\" has no environment \"nope\"")
            #expect(try await fleet.store.read { db in try Store.changes(db, project: repo.project, environment: nil, status: nil, limit: 10) }.isEmpty)
            // The malformed ones wait in stepfleet.dead for an operator; none is delivered again.
            let dead = Collector(try await client.connection.consume(queue: Names.deadQueue, prefetch: 100))
            let deadLettered = await dead.first(10_000, timeout: .seconds(5)).filter { String(decoding: $0.body, as: UTF8.self).contains(marker) }
            #expect(deadLettered.count == cases.count)
            #expect(deadLettered.allSatisfy { $0.deathReasons.contains("rejected") }, "\(deadLettered.map(\.deathReasons))")
            await client.stop()
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(4)))
        func aBatchRequestedOverTheQueueRunsAndItsEndIsNotified() async throws {
            let fleet = try await FleetHarness(workers: 1, slots: 2)
            let repo = try await fleet.project("actions:\n  deploy: { run: 'true' }\n")
            _ = try await fleet.post("/projects/\(repo.project)/environments", ["code": "f"])
            let client = try await Client(notificationKey: "batch.#")
            let requestId = "batch-\(UUID().uuidString)"
            try await client.send(#"{"kind":"batch","request_id":"\#(requestId)","project":"\#(repo.project)","environments":["e","f"],"action":"deploy","max_parallel":2}"#)
            let answer = await client.replies.first(1).map(Self.json).first
            #expect(answer?["status"] == "created")
            let id = try #require(answer?["id"]?.stringValue)
            let batch = try await BatchRunTests.waitForBatch(fleet, id)
            #expect(batch["status"] == "success")
            // Both notifications went out; the second may lag the batch's end by one outbox round.
            let keys = await client.notifications.first(2, timeout: .seconds(30)).map(\.routingKey)
            #expect(Set(keys) == ["batch.\(id).running", "batch.\(id).success"])
            await client.stop()
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(4)))
        func aClientAccountMayRequestAndFollowButNotTakeJobs() async throws {
            let fleet = try await FleetHarness(workers: 0, broker: try BrokerAccountTests.dispatcher())
            let repo = try await fleet.project("actions:\n  deploy: { run: 'true' }\n")
            let name = "sfa-client\(BrokerAccountTests.suffix)"
            let account = try BrokerAccountTests.account(["client", name], user: name)
            let connection = try await AMQPConnection.open(account)
            let replies = "stepfleet.client.\(name).replies"
            let notes = "stepfleet.client.\(name).notifications"
            try await connection.declare(AMQPTopology(
                queues: [.init(name: replies, durable: false, exclusive: true, autoDelete: true), .init(name: notes, durable: false, exclusive: true, autoDelete: true)],
                bindings: [.init(queue: replies, exchange: Names.repliesExchange, routingKey: replies),
                           .init(queue: notes, exchange: Names.notificationsExchange, routingKey: "change.\(repo.project).#")]))
            let answers = Collector(try await connection.consume(queue: replies, prefetch: 10))
            let notifications = Collector(try await connection.consume(queue: notes, prefetch: 10))
            let request: JSON = ["kind": "change", "request_id": .string(UUID().uuidString), "project": .string(repo.project), "environment": "e", "action": "deploy"]
            try await connection.publish(
                AMQPMessage(body: Data(request.serialized().utf8), properties: AMQPProperties(replyTo: replies, userId: name)), exchange: Names.requestsExchange, routingKey: "")
            let answer = await answers.first(1).map(Self.json).first
            #expect(answer?["status"] == "created", "\(answer?.serialized() ?? "no answer")")
            let id = try #require(answer?["id"]?.stringValue)
            #expect(try await fleet.snapshot(id).0.user == name)
            #expect(await notifications.first(1).first?.routingKey == "change.\(repo.project).e.pending")
            // What the account may not do: take jobs, publish jobs or to the default exchange, touch another client's queues.
            let jobs = try await BrokerAccountTests.refusal(account) { _ = try await $0.consume(queue: Names.stepsQueue(pool: Names.defaultPool), prefetch: 1) }
            #expect(jobs?.contains("403") == true, "\(jobs ?? "consumed")")
            let publish = try await BrokerAccountTests.refusal(account) {
                try await $0.publish(AMQPMessage(body: Data("{}".utf8), properties: AMQPProperties(userId: name)), exchange: Names.jobsExchange, routingKey: Names.defaultPool)
            }
            #expect(publish?.contains("403") == true, "\(publish ?? "published")")
            let direct = try await BrokerAccountTests.refusal(account) {
                try await $0.publish(AMQPMessage(body: Data("{}".utf8), properties: AMQPProperties(userId: name)), routingKey: Names.requestsQueue)
            }
            #expect(direct?.contains("403") == true, "\(direct ?? "published")")
            let other = try await BrokerAccountTests.refusal(account) {
                try await $0.declare(AMQPTopology(queues: [.init(name: "stepfleet.client.someone-else.replies", durable: false, autoDelete: true)]))
            }
            #expect(other?.contains("403") == true, "\(other ?? "declared")")
            await connection.close()
            await fleet.stop()
        }
    }
}
