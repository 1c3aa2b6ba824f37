import Foundation

/// `JSON` inside `Codable` types. Through Foundation's coders numbers travel as `Int64`,
/// `UInt64` or `Decimal` (38 significant digits), so integers and decimals stay exact; only
/// numbers beyond `Decimal`'s range fall back to `Double`. `JSON.parse` and `serialized()`
/// are exact for every number.
extension JSON: Codable {
    public init(from decoder: Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            var elements: [JSON] = []
            if let count = array.count { elements.reserveCapacity(count) }
            while !array.isAtEnd { elements.append(try array.decode(JSON.self)) }
            self = .array(elements)
            return
        }
        if let object = try? decoder.container(keyedBy: AnyKey.self) {
            var members: [String: JSON] = [:]
            for key in object.allKeys { members[key.stringValue] = try object.decode(JSON.self, forKey: key) }
            self = .object(members)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let flag = try? single.decode(Bool.self) {
            self = .bool(flag)
        } else if let text = try? single.decode(String.self) {
            self = .string(text)
        } else if let integer = try? single.decode(Int64.self) {
            self = .number(JSONNumber(literal: String(integer))!)
        } else if let integer = try? single.decode(UInt64.self) {
            self = .number(JSONNumber(literal: String(integer))!)
        } else if let decimal = try? single.decode(Decimal.self), let number = JSONNumber(literal: decimal.description) {
            self = .number(number)
        } else {
            let double = try single.decode(Double.self)
            guard double.isFinite else {
                throw DecodingError.dataCorruptedError(in: single, debugDescription: "number out of range")
            }
            self = .number(JSONNumber(double))
        }
    }

    public func encode(to encoder: Encoder) throws {
        switch self {
        case .null:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case .bool(let flag):
            var single = encoder.singleValueContainer()
            try single.encode(flag)
        case .string(let text):
            var single = encoder.singleValueContainer()
            try single.encode(text)
        case .number(let number):
            var single = encoder.singleValueContainer()
            switch number.codableForm {
            case .int(let integer): try single.encode(integer)
            case .uint(let integer): try single.encode(integer)
            case .decimal(let decimal): try single.encode(decimal)
            case .double(let double): try single.encode(double)
            case nil:
                // Only a stored document from before the API refused such numbers gets here; the
                // number itself stays out of the error (it may be a secret property, and this
                // error reaches logs).
                throw EncodingError.invalidValue("a number", EncodingError.Context(
                    codingPath: encoder.codingPath,
                    debugDescription: "a number out of range (not a 64-bit integer, a 38-digit decimal or an exact double); fix the document that holds it"))
            }
        case .array(let elements):
            var array = encoder.unkeyedContainer()
            for element in elements { try array.encode(element) }
        case .object(let members):
            var object = encoder.container(keyedBy: AnyKey.self)
            for (key, value) in members { try object.encode(value, forKey: AnyKey(key)) }
        }
    }
}

extension JSONNumber {
    /// How Foundation's coders carry this number exactly; nil when they cannot (`1e400`,
    /// `1e-400`, 50 significant digits): such a number is refused where JSON comes in.
    enum CodableForm {
        case int(Int64)
        case uint(UInt64)
        case decimal(Decimal)
        case double(Double)
    }

    var codableForm: CodableForm? {
        if let integer = Int64(literal) { return .int(integer) }
        if let integer = UInt64(literal) { return .uint(integer) }
        if let decimal = Decimal(string: literal), decimal.isFinite, JSONNumber(literal: decimal.description) == self { return .decimal(decimal) }
        if let double = Double(literal), double.isFinite, JSONNumber(double) == self { return .double(double) }
        return nil
    }

    /// Whether the number travels exactly through every coder the fleet uses (the wire, the
    /// store's step records, contexts and results).
    public var isCarriable: Bool { codableForm != nil }
}

extension JSON {
    /// The first number the fleet cannot carry exactly, with its JSON Pointer; nil when there is none.
    public func uncarriableNumber() -> JSONNumberRangeError? {
        func walk(_ value: JSON, _ path: [String]) -> JSONNumberRangeError? {
            switch value {
            case .number(let number) where !number.isCarriable:
                return JSONNumberRangeError(path: JSONPointer(tokens: path).description, literal: number.literal)
            case .array(let items):
                for (index, item) in items.enumerated() { if let found = walk(item, path + [String(index)]) { return found } }
            case .object(let members):
                for key in members.keys.sorted() { if let found = walk(members[key]!, path + [key]) { return found } }
            default:
                break
            }
            return nil
        }
        return walk(self, [])
    }
}

/// A number in a document that the fleet cannot carry exactly: where it is and what it is.
public struct JSONNumberRangeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// JSON Pointer of the number (`""` for a document that is the number).
    public let path: String
    public let literal: String

    public var description: String { "\(path.isEmpty ? "the document" : path): \(Self.reason(literal))" }

    static func reason(_ literal: String) -> String {
        let shown = literal.count > 60 ? String(literal.prefix(60)) + "…" : literal
        return "the number \(shown) is out of range (numbers must be 64-bit integers, decimals of at most 38 significant digits with an exponent within ±128, or doubles written exactly)"
    }
}

/// A coding key for free-form object members.
struct AnyKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}
