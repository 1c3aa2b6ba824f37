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
            if let integer = Int64(number.literal) {
                try single.encode(integer)
            } else if let integer = UInt64(number.literal) {
                try single.encode(integer)
            } else if let decimal = Decimal(string: number.literal), JSONNumber(literal: decimal.description) == number {
                try single.encode(decimal)
            } else {
                try single.encode(number.doubleValue)
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

/// A coding key for free-form object members.
struct AnyKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}
