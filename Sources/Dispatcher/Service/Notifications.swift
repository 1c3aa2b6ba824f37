import Foundation
import GRDB
import Protocol

/// Status notifications for other systems, written to the outbox in the transaction that
/// changes the status, so none is lost when the dispatcher dies (one may be sent twice: a
/// dispatcher killed between the broker's confirm and marking the row sent sends it again).
///
/// Published on `Names.notificationsExchange` with routing keys `change.PROJECT.ENVIRONMENT.STATUS`
/// and `batch.ID.STATUS`; bodies are JSON with `"schema": 1` and `"kind": "change"` or `"batch"`.
enum Notifications {
    static let messageType = "stepfleet.notification"

    /// A change's current status (after its row was inserted or its status written).
    static func changeStatus(_ db: Database, _ changeId: String) throws {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM changes WHERE id = ?", arguments: [changeId]) else { return }
        let change = Store.changeRecord(row)
        let batch = try Store.batchId(db, ofChange: changeId)
        let body: JSON = [
            "schema": 1, "kind": "change", "id": .string(change.id), "project": .string(change.projectCode), "environment": .string(change.environmentCode),
            "action": .string(change.action), "git_sha": .string(change.gitSha), "status": .string(change.status.rawValue), "batch": batch.map(JSON.string) ?? .null,
            "at": Views.time(Store.now()),
        ]
        try publish(db, "change.\(change.projectCode).\(change.environmentCode).\(change.status.rawValue)", body)
    }

    /// A batch's current status, with its counts.
    static func batchStatus(_ db: Database, _ batchId: String) throws {
        let batch = try Store.batch(db, batchId)
        let counts = try Store.batchCounts(db, batchId)
        var body = Views.batch(batch, counts: counts)
        if case .object(var members) = body {
            members["schema"] = 1
            members["kind"] = "batch"
            members["at"] = Views.time(Store.now())
            body = .object(members)
        }
        try publish(db, "batch.\(batch.id).\(batch.status.rawValue)", body)
    }

    private static func publish(_ db: Database, _ routingKey: String, _ body: JSON) throws {
        try Store.addToOutbox(db, exchange: Names.notificationsExchange, routingKey: routingKey, replyTo: nil, messageType: messageType, body: Data(body.serialized().utf8))
    }
}
