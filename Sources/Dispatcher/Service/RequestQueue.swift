import AMQP
import Foundation
import Logging
import Protocol

/// Work other systems hand the fleet over `stepfleet.requests`: JSON bodies with the HTTP API's
/// fields plus `kind` (`change` or `batch`) and `request_id`. Each request is answered on its
/// `reply_to` (through `stepfleet.replies`, with its `correlation_id`, or its request id when it
/// has none) with the created id or why it was refused.
///
/// A request id creates its change or batch once (the id is stored in the transaction that
/// creates it): a redelivery, a retrying client or a dispatcher restart between create and ack
/// gets the same answer again. A request that cannot be read (not JSON, no request id, an
/// unknown kind, a field of the wrong shape) is answered `malformed` and rejected, so the broker
/// dead-letters it to `stepfleet.dead`; one the store or the repository refuses is answered
/// `refused` and acked; one that cannot be handled for now is delivered again, up to the
/// queue's delivery limit, then dead-lettered.
struct RequestQueue: Sendable {
    let submitter: Submitter
    let client: AMQPClient
    /// The dispatcher's broker user, stamped on replies.
    let brokerUser: String
    let logger: Logger
    /// Wakes the outbox publisher after a change or batch was created.
    let wake: @Sendable () -> Void

    func serve(_ subscription: AMQPSubscription) async {
        for await delivery in subscription { await handle(delivery) }
    }

    /// The answer to one request.
    struct Reply: Sendable, Equatable {
        enum Status: String, Sendable { case created, existing, refused, malformed }
        var status: Status
        var requestId: String?
        var kind: String?
        var id: String?
        var error: String?

        var json: JSON {
            [
                "schema": 1, "status": .string(status.rawValue), "request_id": requestId.map(JSON.string) ?? .null, "kind": kind.map(JSON.string) ?? .null,
                "id": id.map(JSON.string) ?? .null, "error": error.map(JSON.string) ?? .null,
            ]
        }
    }

    /// A request read from its body: malformed ones throw an `APIError` with the reason.
    static func parse(_ body: Data) throws -> (requestId: String, request: WorkRequest) {
        guard body.count <= 1 << 20 else { throw APIError.badRequest("the request is over 1 MiB") }
        let json: JSON
        do {
            json = try JSON.parse(bytes: body)
        } catch {
            throw APIError.badRequest("the request is not valid JSON: \(error)")
        }
        guard case .object = json else { throw APIError.badRequest("a request is a JSON object, not \(json.typeName)") }
        if let number = json.uncarriableNumber() { throw APIError.badRequest(number.description) }
        guard let requestId = try json.requestId() else { throw APIError.badRequest("missing \"request_id\": every request needs one, so that sending it twice creates one change") }
        switch json["kind"]?.stringValue {
        case "change": return (requestId, .change(try WorkRequest.ChangeRequest(json)))
        case "batch": return (requestId, .batch(try WorkRequest.BatchRequest(json)))
        default: throw APIError.badRequest("\"kind\" must be \"change\" or \"batch\"")
        }
    }

    private func handle(_ delivery: AMQPDelivery) async {
        let properties = delivery.properties
        let parsed: (requestId: String, request: WorkRequest)
        do {
            parsed = try Self.parse(delivery.body)
        } catch {
            let reason = (error as? APIError)?.message ?? "\(error)"
            submitter.engine.metrics.unprocessableMessages.increment()
            logger.warning("dead-lettering a malformed request", metadata: ["reason": "\(reason)", "published_by": "\(properties.userId ?? "no user_id")"])
            let peeked = (try? JSON.parse(bytes: delivery.body))?["request_id"]?.stringValue
            _ = await answer(properties, Reply(status: .malformed, requestId: peeked, error: reason), fallbackCorrelation: peeked)
            try? await delivery.reject(requeue: false)
            return
        }
        let (requestId, request) = parsed
        let reply: Reply
        do {
            reply = try await submit(request, requestId: requestId, publishedBy: properties.userId)
            if reply.status == .created { CrashPoint.requestCreated(requestId) }
            wake()
        } catch let error as APIError {
            reply = Reply(status: .refused, requestId: requestId, kind: request.kind, error: error.message)
        } catch let error as StoreError {
            reply = Reply(status: .refused, requestId: requestId, kind: request.kind, error: error.description)
        } catch {
            switch MessageFailure.classify(error) {
            case .transient(let reason):
                logger.error("cannot handle a request for now; it will be delivered again", metadata: ["request_id": "\(requestId)", "error": "\(reason)"])
                try? await Task.sleep(for: .milliseconds(500))
                try? await delivery.nack(requeue: true)
            case .unprocessable(let reason):
                submitter.engine.metrics.unprocessableMessages.increment()
                logger.error("dead-lettering a request that can never be processed", metadata: ["request_id": "\(requestId)", "error": "\(reason)"])
                _ = await answer(properties, Reply(status: .malformed, requestId: requestId, kind: request.kind, error: reason), fallbackCorrelation: requestId)
                try? await delivery.reject(requeue: false)
            }
            return
        }
        // The answer goes out before the ack: a dispatcher that dies in between answers the
        // redelivery with the same id.
        guard await answer(properties, reply, fallbackCorrelation: requestId) else {
            try? await Task.sleep(for: .milliseconds(500))
            try? await delivery.nack(requeue: true)
            return
        }
        try? await delivery.ack()
    }

    private func submit(_ request: WorkRequest, requestId: String, publishedBy userId: String?) async throws -> Reply {
        switch request {
        case .change(let asked):
            let (change, created) = try await submitter.createChange(asked, user: Self.user(asked.user, userId), requestId: requestId)
            return Reply(status: created ? .created : .existing, requestId: requestId, kind: "change", id: change.id)
        case .batch(let asked):
            let (batch, created) = try await submitter.createBatch(asked, user: Self.user(asked.user, userId), requestId: requestId)
            return Reply(status: created ? .created : .existing, requestId: requestId, kind: "batch", id: batch.id)
        }
    }

    /// Who asked: the publisher's broker user when the message carries one (RabbitMQ verified
    /// it), else what the body says, as over HTTP.
    static func user(_ stated: String?, _ userId: String?) -> String {
        if let userId, !userId.isEmpty { return userId }
        return stated ?? "unknown"
    }

    /// Publishes the answer (confirmed) when the request has a `reply_to`; false when that failed.
    private func answer(_ request: AMQPProperties, _ reply: Reply, fallbackCorrelation: String?) async -> Bool {
        guard let replyTo = request.replyTo, !replyTo.isEmpty else { return true }
        do {
            try await client.publish(
                AMQPMessage(body: Data(reply.json.serialized().utf8), properties: AMQPProperties(
                    persistent: false, correlationId: request.correlationId ?? fallbackCorrelation, type: "stepfleet.reply",
                    appId: "stepfleet-dispatcher", userId: brokerUser)),
                exchange: Names.repliesExchange, routingKey: replyTo, timeout: .seconds(5))
            return true
        } catch {
            logger.error("cannot answer a request", metadata: ["reply_to": "\(replyTo)", "error": "\(error)"])
            return false
        }
    }
}

extension WorkRequest {
    var kind: String {
        switch self {
        case .change: "change"
        case .batch: "batch"
        }
    }
}
