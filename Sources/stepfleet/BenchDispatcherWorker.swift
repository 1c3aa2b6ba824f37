import AMQP
import Foundation
import Logging
import Protocol
import Synchronization

/// What the simulated workers saw, on one monotonic clock (nanoseconds): each step's first
/// delivery and the moment its outcome was published.
final class BenchDispatcherRecorder: Sendable {
    struct Seen: Sendable {
        var delivered: [String: UInt64] = [:]
        var outcomeSent: [String: UInt64] = [:]
        var deliveries = 0
        var redeliveries = 0
        var publishFailures = 0
    }

    private let seen = Mutex(Seen())

    func delivered(_ stepId: String, at time: UInt64) {
        seen.withLock { seen in
            seen.deliveries += 1
            if seen.delivered[stepId] == nil { seen.delivered[stepId] = time } else { seen.redeliveries += 1 }
        }
    }

    func outcomeSent(_ stepId: String, at time: UInt64) {
        seen.withLock { $0.outcomeSent[stepId] = time }
    }

    func publishFailed() { seen.withLock { $0.publishFailures += 1 } }

    var snapshot: Seen { seen.withLock { $0 } }

    var outcomes: Int { seen.withLock { $0.outcomeSent.count } }
}

/// A worker without containers: it speaks the real wire protocol over the real broker as
/// `WorkerService` does (a credit subscription on the pool's queue, a confirmed claim with the
/// job's claim token before the ack, the four phase events, a log batch, a confirmed outcome
/// stamped with its broker user) and answers every job at once. A job for `fanAction` returns
/// `fanout` parallel children running `leafAction`; every outcome carries a one-operation
/// patch of the environment's properties.
final class BenchDispatcherWorker: Sendable {
    struct Plan: Sendable {
        var fanAction: String
        var leafAction: String
        var fanout: Int
        var logBatches: Int
    }

    let name: String
    private let client: AMQPClient
    private let slots: Int
    private let plan: Plan
    private let recorder: BenchDispatcherRecorder
    private let brokerUser: String

    init(name: String, broker: AMQPConfiguration, slots: Int, plan: Plan, recorder: BenchDispatcherRecorder, logger: Logger) {
        self.name = name
        self.slots = slots
        self.plan = plan
        self.recorder = recorder
        brokerUser = broker.user
        // No control queue: the bench's steps are never cancelled.
        client = AMQPClient(endpoints: [broker], logger: logger)
    }

    /// Takes jobs until cancelled.
    func run() async {
        await client.start()
        let jobs = await client.subscribe(queue: Names.stepsQueue(pool: Names.defaultPool), capacity: slots)
        await withDiscardingTaskGroup { group in
            for await delivery in jobs {
                group.addTask { await self.handle(delivery, jobs) }
            }
        }
    }

    func stop() async { await client.stop() }

    /// Answers one job; its slot is free again once the outcome is confirmed.
    private func handle(_ delivery: AMQPDelivery, _ jobs: AMQPSubscription) async {
        await answer(delivery)
        await jobs.release()
    }

    private func answer(_ delivery: AMQPDelivery) async {
        let received = DispatchTime.now().uptimeNanoseconds
        guard let job = try? WireCodec.decode(StepJob.self, from: delivery.body) else {
            try? await delivery.reject(requeue: false)
            return
        }
        recorder.delivered(job.stepId, at: received)
        let ref = AttemptRef(stepId: job.stepId, attempt: job.attempt)
        let claimedAt = EpochMilliseconds(Date().timeIntervalSince1970 * 1000)
        do {
            try await publish(WorkerEvent(kind: .claimed, ref: ref, worker: name, at: claimedAt, claimToken: job.claimToken), ref, Names.eventsRoutingKey)
            try await delivery.ack()
            let durations = PhaseDurations(buildInitialiseMs: 0, buildMs: 0)
            for phase in [
                Phase(name: .build, state: .started), Phase(name: .build, state: .finished, durationMs: 0, durations: durations),
                Phase(name: .run, state: .started),
            ] {
                try await publish(WorkerEvent(kind: .phase, ref: ref, worker: name, at: now(), phase: phase, policy: phase.name == .run ? ActionPolicy() : nil), ref, Names.eventsRoutingKey)
            }
            for batch in 0..<plan.logBatches {
                let line = LogBatch.Line(seq: batch, stream: .system, text: "bench: \(job.action) line \(batch)", at: now())
                try await publish(LogBatch(ref: ref, worker: name, lines: [line]), ref, Names.logsRoutingKey)
            }
            let phases = PhaseDurations(buildInitialiseMs: 0, buildMs: 0, runInitialiseMs: 0, runningMs: 0, runCompletingMs: 0, runMs: 0)
            try await publish(WorkerEvent(kind: .phase, ref: ref, worker: name, at: now(), phase: Phase(name: .run, state: .finished, durationMs: 0, durations: phases)), ref, Names.eventsRoutingKey)
            var outcome = StepOutcome(ref: ref, worker: name, status: .success, exitCode: 0, result: result(for: job), runStarted: true, buildMs: 0, runMs: 0, policy: ActionPolicy())
            outcome.claimedAt = claimedAt
            outcome.phases = phases
            outcome.claimToken = job.claimToken
            recorder.outcomeSent(job.stepId, at: DispatchTime.now().uptimeNanoseconds)
            try await publish(outcome, ref, Names.outcomesRoutingKey)
        } catch {
            // The dispatcher's lease brings the step back; the bench counts it.
            recorder.publishFailed()
        }
    }

    private func result(for job: StepJob) -> StepResult {
        // `add` on an existing member replaces it: the environment's document stays one key.
        let patch = (try? JSONPatch(json: [["op": "add", "path": "/last_step", "value": .string(job.stepId)]])) ?? JSONPatch()
        let children = job.action == plan.fanAction ? Array(repeating: ChildStep(action: plan.leafAction), count: plan.fanout) : []
        return StepResult(environment: .init(propertiesDiff: patch), steps: .init(children: children, childExecutionStrategy: children.isEmpty ? nil : .parallel))
    }

    private func now() -> EpochMilliseconds { EpochMilliseconds(Date().timeIntervalSince1970 * 1000) }

    private func publish<Message: WireMessage>(_ body: Message, _ ref: AttemptRef, _ routingKey: String) async throws(AMQPError) {
        let message = AMQPMessage(
            body: WireCodec.encode(body),
            properties: AMQPProperties(messageId: UUID().uuidString, correlationId: ref.description, type: Message.messageType, appId: "stepfleet-bench-worker", userId: brokerUser))
        try await client.publish(message, exchange: Names.eventsExchange, routingKey: routingKey)
    }
}
