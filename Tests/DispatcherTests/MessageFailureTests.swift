import AMQP
import Foundation
import GRDB
import Protocol
import Testing
@testable import Dispatcher

/// Which failures a consumer retries and which fail the message's step at once.
@Suite struct MessageFailureTests {
    @Test(.timeLimit(.minutes(1))) func onlyTheMachineryIsTransient() {
        #expect(MessageFailure.classify(DatabaseError(resultCode: .SQLITE_BUSY)) == .transient("the database is unavailable: \(ResultCode.SQLITE_BUSY)"))
        #expect(isTransient(DatabaseError(resultCode: .SQLITE_LOCKED)))
        #expect(isTransient(DatabaseError(resultCode: .SQLITE_IOERR)))
        #expect(isTransient(DatabaseError(resultCode: .SQLITE_FULL)))
        #expect(isTransient(AMQPError.connectionClosed(reason: "broker went away")))
        #expect(isTransient(AMQPError.publishUnconfirmed(reason: "socket closed")))
        #expect(isTransient(CancellationError()))
    }

    @Test(.timeLimit(.minutes(1))) func whatTheMessageSaysIsUnprocessableWithItsReason() {
        #expect(MessageFailure.classify(StoreError.invalid("properties must be a JSON object, not array"))
            == .unprocessable("properties must be a JSON object, not array"))
        #expect(MessageFailure.classify(StoreError.notFound("no change \"x\"")) == .unprocessable("no change \"x\""))
        #expect(MessageFailure.classify(WireError.malformed("body is a string, not an object")) == .unprocessable("malformed message: body is a string, not an object"))
        #expect(!isTransient(DatabaseError(resultCode: .SQLITE_CONSTRAINT, message: "UNIQUE constraint failed")))
        #expect(!isTransient(DatabaseError(resultCode: .SQLITE_TOOBIG)))
        // Something no one classified is never retried for ever.
        struct Surprise: Error {}
        #expect(!isTransient(Surprise()))
    }

    @Test(.timeLimit(.minutes(1))) func aDecodingErrorIsToldInTheOperatorsWords() throws {
        let body = Data(#"{"steps": {"children": [], "child_execution_strategy": "sideways"}}"#.utf8)
        do {
            _ = try JSONDecoder().decode(StepResult.self, from: body)
            Issue.record("decoded")
        } catch {
            guard case .unprocessable(let reason) = MessageFailure.classify(error) else {
                Issue.record("classified as transient")
                return
            }
            #expect(!reason.contains("CodingKeys") && !reason.contains("keyNotFound") && !reason.contains("dataCorrupted"), "\(reason)")
        }
    }

    private func isTransient(_ error: any Error) -> Bool {
        if case .transient = MessageFailure.classify(error) { return true }
        return false
    }
}
