import Foundation

/// A message body that travels through the broker.
public protocol WireMessage: Codable, Sendable {
    /// The `type` member every body carries, so a message on the wrong queue is recognised.
    static var messageType: String { get }
}

/// Why a body was refused. Consumers reject such a message without requeue, with this text
/// as the dead-letter reason.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case tooLarge(bytes: Int, limit: Int)
    case malformed(String)
    case unsupportedSchema(Int?)
    case wrongType(expected: String, found: String?)
    case invalid(String)

    public var description: String {
        switch self {
        case .tooLarge(let bytes, let limit): "message of \(bytes) bytes is over the \(limit)-byte limit"
        case .malformed(let reason): "malformed message: \(reason)"
        case .unsupportedSchema(let schema?): "unsupported schema \(schema) (this build speaks schema \(WireCodec.schema))"
        case .unsupportedSchema(nil): "message has no integer \"schema\" member"
        case .wrongType(let expected, let found?): "expected a \(expected) message, got \(found)"
        case .wrongType(let expected, nil): "expected a \(expected) message, got one with no \"type\""
        case .invalid(let reason): "invalid message: \(reason)"
        }
    }
}

public enum WireCodec {
    /// The schema version this build writes and reads.
    public static let schema = 1
    /// Bodies above this size are refused before parsing.
    public static let maximumBodySize = 16 * 1024 * 1024

    public static func encode<Message: WireMessage>(_ message: Message) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            var body = try JSON.parse(bytes: try encoder.encode(message))
            guard case .object(var members) = body else { preconditionFailure("wire messages are objects") }
            members["schema"] = JSON(schema)
            members["type"] = JSON(Message.messageType)
            body = .object(members)
            return Data(body.serialized().utf8)
        } catch {
            preconditionFailure("\(Message.self) failed to encode: \(error)")
        }
    }

    /// Reads a body; every failure is a `WireError`, never a crash.
    public static func decode<Message: WireMessage>(_ type: Message.Type, from body: Data) throws(WireError) -> Message {
        guard body.count <= maximumBodySize else { throw .tooLarge(bytes: body.count, limit: maximumBodySize) }
        let json: JSON
        do {
            json = try JSON.parse(bytes: body)
        } catch {
            throw .malformed(error.description)
        }
        guard case .object(let members) = json else { throw .malformed("body is a \(json.typeName), not an object") }
        // Refused here with its path, not half-decoded through a Double: such a number could
        // not be carried on (a step context, a stored result).
        if let number = json.uncarriableNumber() { throw .invalid(number.description) }
        guard let schemaValue = members["schema"]?.intValue else { throw .unsupportedSchema(nil) }
        guard schemaValue == schema else { throw .unsupportedSchema(schemaValue) }
        guard members["type"]?.stringValue == Message.messageType else {
            throw .wrongType(expected: Message.messageType, found: members["type"]?.stringValue)
        }
        do {
            return try JSONDecoder().decode(Message.self, from: body)
        } catch let error as DecodingError {
            throw .invalid(DecodingProblem(error, data: body).detail)
        } catch {
            throw .invalid("\(error)")
        }
    }

    /// The `type` member of a body, if it has one (for routing and dead-letter reasons).
    public static func peekType(_ body: Data) -> String? {
        guard body.count <= maximumBodySize, let json = try? JSON.parse(bytes: body) else { return nil }
        return json["type"]?.stringValue
    }
}
