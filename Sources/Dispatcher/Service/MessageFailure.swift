import AMQP
import Foundation
import GRDB
import Protocol

/// What a consumer does with a message it could not handle: deliver it again later (the
/// failure will pass: the database was busy, the broker went away) or give up on it at once
/// (the message can never be processed: retrying it only repeats the failure and blames the
/// worker for it when the lease runs out).
public enum MessageFailure: Sendable, Equatable {
    /// Nack with requeue after a pause; the reason is logged.
    case transient(String)
    /// Ack, count (`stepfleet_unprocessable_messages_total`) and fail the step the message is
    /// about, with the reason in its error and log.
    case unprocessable(String)

    /// Sorts an error a consumer met. Only failures of the machinery are transient; what the
    /// message says (its content, a patch that makes invalid properties, a document the store
    /// refuses) fails the same way every time, so it, and anything not known to be transient,
    /// is unprocessable: a message is never retried for ever.
    public static func classify(_ error: any Error) -> MessageFailure {
        switch error {
        case is CancellationError:
            return .transient("the dispatcher is stopping")
        case let error as DatabaseError:
            return transientCodes.contains(error.resultCode.primaryResultCode)
                ? .transient("the database is unavailable: \(error.resultCode)")
                : .unprocessable("the database refused what the message asks for: \(error.message ?? "\(error.resultCode)")")
        case let error as AMQPError:
            return .transient("the broker is unavailable: \(error)")
        case let error as StoreError:
            return .unprocessable(error.description)
        case let error as WireError:
            return .unprocessable(error.description)
        case let error as DecodingError:
            return .unprocessable(DecodingProblem(error).description)
        case let error as EncodingError:
            if case .invalidValue(_, let context) = error { return .unprocessable("a value cannot be stored: \(context.debugDescription)") }
            return .unprocessable("a value cannot be stored")
        default:
            return .unprocessable("\(error)")
        }
    }

    /// SQLite result codes that say "not now" rather than "never".
    static let transientCodes: [ResultCode] = [
        .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_IOERR, .SQLITE_FULL, .SQLITE_CANTOPEN, .SQLITE_PROTOCOL, .SQLITE_INTERRUPT, .SQLITE_NOMEM,
    ]
}
