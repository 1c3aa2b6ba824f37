import AMQP
import Foundation
import Logging
import Protocol
import Synchronization

/// `stepfleet load --via queue`: each change is a request published to `stepfleet.requests`
/// (as another system would hand the fleet work), answered on a reply queue of the run's own.
///
/// The reply queue is `stepfleet.client.USER.load-ID` (USER: the broker URL's user), exclusive
/// and auto-deleted, bound to `stepfleet.replies` with its own name: a `client` account made by
/// `ops/broker-account client USER …` may declare and consume it. Each request carries a fresh
/// `request_id`, used as its `correlation_id` too, so an answer finds its submission; the
/// submission's latency is publish → answer.
final class LoadQueueSubmitter: LoadSubmitter, Sendable {
    var via: String { "queue" }
    let replyQueue: String
    /// How long one submission waits for its answer.
    let answerTimeout: Duration
    private let user: String
    private let client: AMQPClient
    private let waiting = Mutex<[String: Pending]>([:])

    /// A submission waiting for its answer, and the timer that gives up on it.
    private struct Pending {
        let continuation: CheckedContinuation<JSON?, Never>
        /// Set just after the entry is in `waiting` (so a timer that fires at once finds it).
        var timer: Task<Void, Never>?
    }
    private let listener = Mutex<Task<Void, Never>?>(nil)

    private init(broker: AMQPConfiguration, replyQueue: String, answerTimeout: Duration, logger: Logger) {
        user = broker.user
        self.replyQueue = replyQueue
        self.answerTimeout = answerTimeout
        client = AMQPClient(
            endpoints: [broker],
            topology: AMQPTopology(
                queues: [.init(name: replyQueue, durable: false, exclusive: true, autoDelete: true)],
                bindings: [.init(queue: replyQueue, exchange: Names.repliesExchange, routingKey: replyQueue)]),
            logger: logger)
    }

    /// Connects (within `connectTimeout`), declares the reply queue and starts reading answers.
    static func connect(_ broker: AMQPConfiguration, logger: Logger, answerTimeout: Duration = .seconds(60), connectTimeout: Duration = .seconds(30)) async throws
        -> LoadQueueSubmitter
    {
        let submitter = LoadQueueSubmitter(
            broker: broker, replyQueue: "stepfleet.client.\(broker.user).load-\(UUID().uuidString.prefix(8).lowercased())", answerTimeout: answerTimeout,
            logger: logger)
        await submitter.client.start()
        do {
            _ = try await submitter.client.connected(timeout: connectTimeout)
        } catch {
            await submitter.client.stop()
            throw CLIError("cannot reach the broker at \(broker.description) to submit over the request queue: \(error)")
        }
        let replies = await submitter.client.subscribe(queue: submitter.replyQueue, prefetch: 200)
        submitter.listener.withLock { $0 = Task { await submitter.listen(replies) } }
        return submitter
    }

    func stop() async {
        listener.withLock { $0 }?.cancel()
        await client.stop()
        for pending in waiting.withLock({ waiting in defer { waiting = [:] }; return Array(waiting.values) }) {
            pending.timer?.cancel()
            pending.continuation.resume(returning: nil)
        }
    }

    private func listen(_ replies: AMQPSubscription) async {
        for await delivery in replies {
            try? await delivery.ack()
            guard let correlation = delivery.properties.correlationId, let answer = try? JSON.parse(bytes: delivery.body) else { continue }
            resolve(correlation, answer)
        }
    }

    /// Ends the submission `requestId` waits in (once; later calls find nothing).
    private func resolve(_ requestId: String, _ answer: JSON?) {
        guard let pending = waiting.withLock({ $0.removeValue(forKey: requestId) }) else { return }
        pending.timer?.cancel()
        pending.continuation.resume(returning: answer)
    }

    func submit(project: String, environment: String, action: String, gitRev: String?, user: String) async throws(LoadSubmitError) -> String {
        let requestId = "load-\(UUID().uuidString.lowercased())"
        var request: [String: JSON] = [
            "kind": "change", "request_id": .string(requestId), "project": .string(project), "environment": .string(environment), "action": .string(action),
            "user": .string(user),
        ]
        if let gitRev { request["git_rev"] = .string(gitRev) }
        let body = Data(JSON.object(request).serialized().utf8)
        let answer: JSON? = await withCheckedContinuation { continuation in
            waiting.withLock { $0[requestId] = Pending(continuation: continuation) }
            let timer = Task {
                try? await Task.sleep(for: self.answerTimeout)
                if !Task.isCancelled { self.resolve(requestId, nil) }
            }
            let waits = waiting.withLock { waiting -> Bool in
                guard waiting[requestId] != nil else { return false }
                waiting[requestId]?.timer = timer
                return true
            }
            if !waits { timer.cancel() }  // answered already
            Task {
                do {
                    try await client.publish(
                        AMQPMessage(body: body, properties: AMQPProperties(correlationId: requestId, replyTo: replyQueue, userId: self.user)),
                        exchange: Names.requestsExchange, routingKey: "", timeout: .seconds(30))
                } catch {
                    self.resolve(requestId, .object(["status": "unsent", "error": .string("\(error)")]))
                }
            }
        }
        guard let answer else { throw LoadSubmitError(description: "no answer on \(replyQueue) within \(answerTimeout)") }
        switch answer["status"]?.stringValue {
        case "created", "existing":
            guard let id = answer["id"]?.stringValue else { throw LoadSubmitError(description: "the dispatcher's answer has no change id") }
            return id
        case "unsent":
            throw LoadSubmitError(description: "cannot publish the request: \(answer["error"]?.stringValue ?? "")")
        default:
            throw LoadSubmitError(description: "\(answer["status"]?.stringValue ?? "no status"): \(answer["error"]?.stringValue ?? "no reason given")")
        }
    }
}
