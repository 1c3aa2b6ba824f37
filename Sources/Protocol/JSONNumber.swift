/// A JSON number kept as its literal text.
///
/// Equality is numeric: `1`, `1.0` and `10e-1` are equal (RFC 6902 `test` compares numbers by
/// value), but the literal is what is written back, so nothing is rounded on a round trip.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The number exactly as it was read or made, valid JSON number grammar.
    public let literal: String

    /// Sign, significant digits without leading or trailing zeros, and a power of ten:
    /// the value is `digits × 10^exponent`. Zero has no digits.
    private let canonical: Canonical

    private struct Canonical: Hashable, Sendable {
        var negative: Bool
        var digits: String
        var exponent: Int
    }

    /// Makes a number from JSON number text; nil when it is not valid JSON number grammar.
    public init?(literal: String) {
        guard let canonical = JSONNumber.canonicalize(literal) else { return nil }
        self.literal = literal
        self.canonical = canonical
    }

    public init(_ value: Int) {
        self.init(literal: String(value))!
    }

    public init(_ value: Double) {
        precondition(value.isFinite, "JSON has no representation for \(value)")
        var text = "\(value)"
        if text.hasSuffix(".0") { text.removeLast(2) }
        self.init(literal: text)!
    }

    public var description: String { literal }

    public static func == (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        lhs.canonical == rhs.canonical
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(canonical)
    }

    /// True when the value is a whole number (whatever its literal looks like).
    public var isInteger: Bool { canonical.digits.isEmpty || canonical.exponent >= 0 }

    /// The value as an `Int` when it is an integer that fits.
    public var intValue: Int? {
        if let exact = Int(literal) { return exact }
        guard isInteger, canonical.digits.count + canonical.exponent <= 19 else { return nil }
        if canonical.digits.isEmpty { return 0 }
        let text = (canonical.negative ? "-" : "") + canonical.digits
            + String(repeating: "0", count: canonical.exponent)
        return Int(text)
    }

    /// The value as a `Double` (may round).
    public var doubleValue: Double { Double(literal) ?? .nan }

    private static func canonicalize(_ text: String) -> Canonical? {
        let bytes = Array(text.utf8)
        var index = 0
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        // Integer part: "0" or a non-zero digit followed by digits.
        guard index < bytes.count, isDigit(bytes[index]) else { return nil }
        var integerDigits = ""
        if bytes[index] == UInt8(ascii: "0") {
            integerDigits = "0"
            index += 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) {
                integerDigits.unicodeScalars.append(UnicodeScalar(bytes[index]))
                index += 1
            }
        }
        var fractionDigits = ""
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { return nil }
            while index < bytes.count, isDigit(bytes[index]) {
                fractionDigits.unicodeScalars.append(UnicodeScalar(bytes[index]))
                index += 1
            }
        }
        var exponent = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard index < bytes.count, isDigit(bytes[index]) else { return nil }
            var magnitude = 0
            while index < bytes.count, isDigit(bytes[index]) {
                // Saturate: exponents this large are beyond any comparison that matters.
                magnitude = min(magnitude * 10 + Int(bytes[index] - UInt8(ascii: "0")), 1_000_000_000)
                index += 1
            }
            exponent = exponentNegative ? -magnitude : magnitude
        }
        guard index == bytes.count else { return nil }
        var digits = Substring(integerDigits + fractionDigits)
        exponent -= fractionDigits.count
        while digits.first == "0" { digits.removeFirst() }
        while digits.last == "0" {
            digits.removeLast()
            exponent += 1
        }
        if digits.isEmpty { return Canonical(negative: false, digits: "", exponent: 0) }
        return Canonical(negative: negative, digits: String(digits), exponent: exponent)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}
