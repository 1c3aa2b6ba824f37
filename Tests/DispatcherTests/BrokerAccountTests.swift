import AMQP
import Fleet
import Foundation
import Protocol
import TestSupport
import Testing
@testable import Dispatcher

extension FleetTests {
    /// A fleet whose dispatcher and workers each have a broker account of their own, made by
    /// `ops/broker-account`: what a worker's account (or anyone holding one) can and cannot do.
    @Suite(.timeLimit(.minutes(10))) struct BrokerAccountTests {
        static let vhost = testVhost("stepfleet-accounts-tests")
        static let suffix = ProcessInfo.processInfo.environment["STEPFLEET_TEST_VHOST_SUFFIX"] ?? ""
        static let dispatcherUser = "sfa-dispatcher\(suffix)"
        static let worker1 = "sfa-w1\(suffix)"
        static let worker2 = "sfa-w2\(suffix)"
        static let intruder = "sfa-intruder\(suffix)"
        /// Passwords are kept across tests of one run: remaking them would lock out live connections.
        static let passwords = FileManager.default.temporaryDirectory.appendingPathComponent("stepfleet-accounts\(suffix)").path

        /// An account's URL from `ops/broker-account ARGUMENTS… PASSWORD_FILE` (the password
        /// file after the vhost, as the script takes it).
        static func account(_ role: [String], user: String, extra: [String] = []) throws -> AMQPConfiguration {
            let result = try runProgram(
                repositoryRoot.appendingPathComponent("ops/broker-account").path, role + [vhost, passwords + "/" + user] + extra)
            guard result.status == 0, let url = result.output.split(separator: "\n").last.map(String.init), url.hasPrefix("amqps://\(user):") else {
                throw TestSetupError("ops/broker-account \(role.joined(separator: " ")) failed: \(result.output)")
            }
            return try AMQPConfiguration(url: url + "&heartbeat=5")
        }

        static func dispatcher() throws -> AMQPConfiguration { try account(["dispatcher"], user: dispatcherUser, extra: [dispatcherUser]) }
        static func worker(_ name: String) throws -> AMQPConfiguration { try account(["worker", name, Names.defaultPool], user: name) }
        /// An account with every right on the vhost that is not the dispatcher's (a leaked
        /// operator or other service account).
        static func intruderAccount() throws -> AMQPConfiguration { try account([intruder], user: intruder) }

        /// What the broker answers to `operation` on a fresh connection of `account`.
        static func refusal(_ account: AMQPConfiguration, _ operation: (AMQPConnection) async throws -> Void) async throws -> String? {
            let connection = try await AMQPConnection.open(account)
            defer { Task { await connection.close() } }
            do {
                try await operation(connection)
                return nil
            } catch {
                return "\(error)"
            }
        }

        static func message(_ body: some WireMessage, user: String?) -> AMQPMessage {
            AMQPMessage(body: WireCodec.encode(body), properties: AMQPProperties(type: type(of: body).messageType, userId: user))
        }

        @Test(.timeLimit(.minutes(4))) func aForgedOutcomeChangesNothingAndTheRealOneStillApplies() async throws {
            let fleet = try await FleetHarness(workers: 0, broker: try Self.dispatcher())
            try await fleet.startWorker(0, slots: 1, name: Self.worker1, broker: try Self.worker(Self.worker1), dispatcherUser: Self.dispatcherUser)
            let attacker = try Self.worker(Self.worker2)
            let repo = try await fleet.project(
                "actions:\n  slow: { run: 'sleep 5; printf \"{\\\"real\\\": true}\" > \"$OPSCHAIN_PROJECT_PROPERTIES\"' }")
            let id = try await fleet.createChange(repo, action: "slow")
            let deadline = ContinuousClock.now + .seconds(90)
            while ContinuousClock.now < deadline, try await fleet.snapshot(id).1.root?.worker != Self.worker1 {
                try await Task.sleep(for: .milliseconds(100))
            }
            let root = try #require(try await fleet.snapshot(id).1.root)
            #expect(root.status == .running && root.worker == Self.worker1)

            // The attack: an outcome naming the lease holder (a name the API shows), with a
            // property write, from another worker's account; then without any user_id.
            let forged = StepOutcome(
                ref: root.ref, worker: Self.worker1, status: .success,
                result: StepResult(project: .init(propertiesDiff: JSONPatch([.add(path: JSONPointer(tokens: ["forged"]), value: true)]))), runStarted: true)
            let refusedBefore = fleet.engine.metrics.refusedWorkerMessages.count
            let connection = try await AMQPConnection.open(attacker)
            try await connection.publish(Self.message(forged, user: Self.worker2), exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)
            try await connection.publish(Self.message(forged, user: nil), exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)
            // Claiming to be the holder's account is refused by the broker itself.
            let impersonation = try await Self.refusal(attacker) { connection in
                try await connection.publish(Self.message(forged, user: Self.worker1), exchange: Names.eventsExchange, routingKey: Names.outcomesRoutingKey)
            }
            #expect(impersonation?.contains("PRECONDITION_FAILED") == true, "\(impersonation ?? "published")")
            await connection.close()

            let refusedDeadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < refusedDeadline, fleet.engine.metrics.refusedWorkerMessages.count < refusedBefore + 2 {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(fleet.engine.metrics.refusedWorkerMessages.count == refusedBefore + 2)
            let during = try #require(try await fleet.snapshot(id).1.root)
            #expect(during.status == .running, "the forged outcome moved the step: \(during.status) \(during.error ?? "")")
            #expect(try await fleet.properties(repo).properties["forged"] == nil)

            // The real outcome still applies.
            let (change, _) = try await fleet.waitForChange(id)
            #expect(change.status == .success)
            let properties = try await fleet.properties(repo).properties
            #expect(properties["real"] == .bool(true) && properties["forged"] == nil, "\(properties.serialized())")
            let metrics = try await fleet.raw("GET", "/metrics", nil).1.stringValue ?? ""
            #expect(metrics.contains("stepfleet_refused_worker_messages_total \(refusedBefore + 2)"), "\(metrics)")
            await fleet.stop()
        }

        @Test(.timeLimit(.minutes(2))) func aWorkerAccountCannotPublishJobsOrControlNorBindToTheJobsExchange() async throws {
            // The dispatcher's account declares the fleet, as a dispatcher does at start.
            let setup = try await AMQPConnection.open(try Self.dispatcher())
            try await setup.declare(FleetTopology.common + FleetTopology.pool(Names.defaultPool))
            await setup.close()
            let worker = try Self.worker(Self.worker2)
            let job = Data(#"{"schema":1,"type":"step_job"}"#.utf8)

            let jobs = try await Self.refusal(worker) { try await $0.publish(AMQPMessage(body: job, properties: AMQPProperties(userId: Self.worker2)), exchange: Names.jobsExchange, routingKey: Names.defaultPool) }
            #expect(jobs?.contains("403") == true && jobs?.contains("ACCESS_REFUSED") == true, "\(jobs ?? "published")")
            let control = try await Self.refusal(worker) { try await $0.publish(AMQPMessage(body: job, properties: AMQPProperties(userId: Self.worker2)), exchange: Names.controlExchange, routingKey: "") }
            #expect(control?.contains("403") == true, "\(control ?? "published")")
            let direct = try await Self.refusal(worker) {
                try await $0.publish(AMQPMessage(body: job, properties: AMQPProperties(userId: Self.worker2)), exchange: "", routingKey: Names.stepsQueue(pool: Names.defaultPool))
            }
            #expect(direct?.contains("403") == true, "\(direct ?? "published")")

            // Its own control queue it may declare and bind to the control exchange, but not to the jobs exchange.
            let own = Names.controlQueue(worker: Self.worker2)
            let ownQueue = AMQPTopology.Queue(name: own, durable: false, exclusive: true, autoDelete: true)
            #expect(try await Self.refusal(worker) { try await $0.declare(FleetTopology.worker(controlQueue: own)) } == nil)
            // The exclusive queue of the connection just closed may not be gone yet (405
            // RESOURCE_LOCKED): asked again until it is.
            var spy: String?
            let unlocked = ContinuousClock.now + .seconds(10)
            repeat {
                spy = try await Self.refusal(worker) {
                    try await $0.declare(AMQPTopology(queues: [ownQueue], bindings: [.init(queue: own, exchange: Names.jobsExchange, routingKey: Names.defaultPool)]))
                }
                if spy?.contains("RESOURCE_LOCKED") == true { try await Task.sleep(for: .milliseconds(100)) }
            } while spy?.contains("RESOURCE_LOCKED") == true && ContinuousClock.now < unlocked
            #expect(spy?.contains("403") == true && spy?.contains(Names.jobsExchange) == true, "\(spy ?? "bound")")
            let otherQueue = try await Self.refusal(worker) { try await $0.declare(AMQPTopology(queues: [.init(name: "spy-\(UUID().uuidString.prefix(4))", durable: false, autoDelete: true)])) }
            #expect(otherQueue?.contains("403") == true, "\(otherQueue ?? "declared")")
            let outcomes = try await Self.refusal(worker) { connection in
                let consumer = try await connection.consume(queue: Names.outcomesQueue, prefetch: 1)
                await consumer.cancel()
            }
            #expect(outcomes?.contains("403") == true, "\(outcomes ?? "consumed")")
            // What a worker must do still works: an event to stepfleet.events under its own name.
            let event = WorkerEvent(kind: .heartbeat, ref: AttemptRef(stepId: "none", attempt: 1), worker: Self.worker2, at: 0)
            #expect(try await Self.refusal(worker) { try await $0.publish(Self.message(event, user: Self.worker2), exchange: Names.eventsExchange, routingKey: Names.eventsRoutingKey) } == nil)
        }

        @Test(.timeLimit(.minutes(4))) func aJobNotPublishedByTheDispatchersAccountIsNotRun() async throws {
            let fleet = try await FleetHarness(workers: 0, broker: try Self.dispatcher())
            try await fleet.startWorker(0, slots: 1, name: Self.worker1, broker: try Self.worker(Self.worker1), dispatcherUser: Self.dispatcherUser)
            let repo = try await fleet.project("actions:\n  hello: { run: 'echo hello' }")
            // The worker runs the dispatcher's jobs...
            let (change, _) = try await fleet.waitForChange(try await fleet.createChange(repo, action: "hello"))
            #expect(change.status == .success)

            // ...but not one from another account with every right on the vhost.
            let stepId = "forged-\(UUID().uuidString.prefix(8))"
            let job = StepJob(
                changeId: "forged", stepId: stepId, attempt: 1, action: "hello", git: GitSource(remote: repo.path, rev: "main", sha: repo.sha),
                context: StepContext(
                    context: .init(project: ["code": "x"], environment: ["code": "e"], change: [:], step: [:], user: [:]),
                    project: .init(properties: [:]), environment: .init(properties: [:])),
                runner: fleet.settings.runner)
            let intruder = try await AMQPConnection.open(try Self.intruderAccount())
            defer { Task { await intruder.close() } }
            try await intruder.publish(Self.message(job, user: Self.intruder), exchange: Names.jobsExchange, routingKey: Names.defaultPool)

            // It is dead-lettered, rejected by the worker (and never claimed).
            let dead = try await intruder.consume(queue: Names.deadQueue, prefetch: 50)
            let found = try await withThrowingTaskGroup(of: AMQPDelivery?.self) { group in
                group.addTask {
                    for try await delivery in dead {
                        try await delivery.ack()
                        if (try? WireCodec.decode(StepJob.self, from: delivery.body))?.stepId == stepId { return delivery }
                    }
                    return nil
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(30))
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            await dead.cancel()
            let delivery = try #require(found, "the forged job was not dead-lettered: the worker took it")
            #expect(delivery.deathReasons == ["rejected"])
            await fleet.stop()
        }
    }
}
