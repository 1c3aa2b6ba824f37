import Foundation
import Protocol

/// A worker message about one attempt of one step: what the dispatcher fails when the message
/// can never be processed.
protocol AttemptMessage: WireMessage {
    var ref: AttemptRef { get }
    var worker: String { get }
    /// The action's policy, when the message carries it (an outcome does).
    var policy: ActionPolicy? { get }
    /// The message in an operator's words ("the outcome").
    var what: String { get }
    /// The kind of message, for one that does not decode.
    static var described: String { get }
}

extension WorkerEvent: AttemptMessage {
    var what: String { "a \(kind.rawValue) event" }
    static var described: String { "a worker event" }
}

extension LogBatch: AttemptMessage {
    var policy: ActionPolicy? { nil }
    var what: String { "a log batch" }
    static var described: String { "a log batch" }
}

extension StepOutcome: AttemptMessage {
    var what: String { "the outcome" }
    static var described: String { "the outcome" }
}

/// The step, attempt and worker of a body that does not decode as a whole, when those parts
/// still do.
struct AttemptPeek: Decodable {
    let ref: AttemptRef
    let worker: String

    static func read(_ body: Data) -> AttemptPeek? {
        guard body.count <= WireCodec.maximumBodySize else { return nil }
        return try? JSONDecoder().decode(AttemptPeek.self, from: body)
    }
}
