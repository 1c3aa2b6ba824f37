import Foundation
import Hummingbird
import GRDB
import Protocol

/// A change's step tree as server-sent events: an `event: change` whenever what the API's
/// `GET /changes/ID` would answer has changed (read from the store every 400 ms), with each
/// step's times in milliseconds for the timeline; `event: end` once the change has finished.
/// A stream lasts at most an hour (the browser's EventSource then opens a new one).
struct ChangeEventStream {
    let store: Store
    let leaseSeconds: Double

    static let interval: Duration = .milliseconds(400)
    static let keepAlive: Duration = .seconds(15)
    static let lifetime: Duration = .seconds(3600)

    func response(changeId id: String) async throws -> Response {
        _ = try await store.read { try Store.change($0, id) }
        let store = store
        let leaseSeconds = leaseSeconds
        let body = ResponseBody { writer in
            let clock = ContinuousClock()
            let deadline = clock.now + Self.lifetime
            var last = ""
            var lastWrite = clock.now
            while clock.now < deadline {
                let (event, finished) = try await store.read { db in try Self.snapshot(db, id, leaseSeconds: leaseSeconds) }
                let text = event.serialized()
                if text != last {
                    try await writer.write(ByteBuffer(string: "event: change\ndata: \(text)\n\n"))
                    last = text
                    lastWrite = clock.now
                } else if clock.now - lastWrite > Self.keepAlive {
                    try await writer.write(ByteBuffer(string: ": still here\n\n"))
                    lastWrite = clock.now
                }
                if finished {
                    try await writer.write(ByteBuffer(string: "event: end\ndata: {}\n\n"))
                    break
                }
                try await Task.sleep(for: Self.interval)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }

    /// The change as `GET /changes/ID` shows it, with `times`: each step's queued, started,
    /// run-started and finished times in epoch milliseconds (the API's are whole seconds).
    static func snapshot(_ db: Database, _ id: String, leaseSeconds: Double) throws -> (JSON, Bool) {
        let change = try Store.change(db, id)
        let tree = try Store.tree(db, changeId: id, leaseSeconds: leaseSeconds)
        let attempts = try Store.attempts(db, changeId: id)
        func ms(_ seconds: Double?) -> JSON { seconds.map { JSON(Int(($0 * 1000).rounded())) } ?? .null }
        var times: [String: JSON] = [:]
        for step in tree.steps.values {
            times[step.id] = [
                "queued": ms(step.queuedAt), "started": ms(step.startedAt), "run_started": ms(step.runStartedAt), "finished": ms(step.finishedAt),
            ]
        }
        let finished = change.status.isFinal
        // A running change's clock moves; a finished one's does not (its last event stays the same).
        let now = finished ? (change.finishedAt ?? Date().timeIntervalSince1970) : Date().timeIntervalSince1970
        return (["change": Views.changeWithSteps(change, tree, attempts: attempts), "times": .object(times), "now": ms(now)], finished)
    }
}
