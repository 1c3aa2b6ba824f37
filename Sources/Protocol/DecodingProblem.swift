import Foundation

/// A `DecodingError` (or a JSON syntax error) as an operator reads it: which file, which
/// field (a JSON Pointer), the value found, what is allowed, and for a syntax error where in
/// the file. Never Swift's own words (`keyNotFound`, `CodingKeys`, `dataCorrupted`).
///
/// `DecodingProblem(error, file: "step_result.json", data: bytes).description`:
/// - `step_result.json is not valid JSON: line 3, column 7 (byte 41): expected ',' or '}'`
/// - `step_result.json: the member "children" is missing from /steps`
/// - `step_result.json: /steps/child_execution_strategy is "sideways"; allowed: serial, parallel`
/// - `step_result.json: /steps/children is a string ("x"); it must be a list`
public struct DecodingProblem: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was read (`step_result.json`, `the request body`); nil: "the document".
    public var file: String?
    /// The sentence after the file's name.
    public var detail: String

    public init(file: String?, detail: String) {
        self.file = file
        self.detail = detail
    }

    /// Allowed values of the fleet's enumerations, by Swift type name, for "allowed: …".
    public static let knownValues: [String: [String]] = [
        "ExecutionStrategy": ExecutionStrategy.allCases.map(\.rawValue),
    ]

    /// Describes `error`; with the `data` that was decoded, also the value found at the
    /// field and, for a syntax error, its line, column and byte offset.
    public init(_ error: DecodingError, file: String? = nil, data: Data? = nil, allowed: [String: [String]] = [:]) {
        self.file = file
        let document = data.flatMap { try? JSON.parse(bytes: $0) }
        func pointer(_ context: DecodingError.Context) -> String {
            JSONPointer(tokens: context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }).description
        }
        func found(_ context: DecodingError.Context) -> JSON? {
            guard let document else { return nil }
            return (try? JSONPointer(pointer(context))).flatMap { document.value(at: $0) }
        }
        func place(_ path: String) -> String { path.isEmpty ? "the top level" : path }
        switch error {
        case .keyNotFound(let key, let context):
            detail = "the member \"\(key.stringValue)\" is missing from \(place(pointer(context)))"
        case .valueNotFound(let type, let context):
            detail = "\(place(pointer(context))) is null; it must be \(Self.jsonKind(type))"
        case .typeMismatch(let type, let context):
            let value = found(context).map { " \(Self.show($0))" } ?? ""
            detail = "\(place(pointer(context))) is\(value.isEmpty ? " of the wrong type" : value); it must be \(Self.jsonKind(type))"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                if let data {
                    do {
                        _ = try JSON.parse(bytes: data)
                    } catch {
                        self = Self.syntax(error, file: file, data: data)
                        return
                    }
                }
                detail = "is not valid JSON"
                return
            }
            let path = pointer(context)
            let value = found(context)
            if let typeName = Self.enumTypeName(context.debugDescription) {
                let values = allowed[typeName] ?? Self.knownValues[typeName]
                let shown = value.flatMap { $0.stringValue.map { JSON.string($0).serialized() } } ?? value.map(Self.show)
                detail = "\(path) is \(shown ?? "not an allowed value")"
                    + (values.map { "; allowed: \($0.joined(separator: ", "))" } ?? "; that value is not allowed")
            } else {
                detail = "\(path) is \(value.map(Self.show) ?? "invalid"): \(context.debugDescription)"
            }
        @unknown default:
            detail = "cannot be read"
        }
    }

    /// A JSON syntax error with its line and column (both from 1) and byte offset.
    public static func syntax(_ error: JSONParseError, file: String?, data: some Collection<UInt8>) -> DecodingProblem {
        DecodingProblem(file: file, detail: "is not valid JSON: \(location(ofByte: error.offset, in: data)): \(error.reason)")
    }

    /// `line L, column C (byte B)` for a byte offset.
    public static func location(ofByte offset: Int, in data: some Collection<UInt8>) -> String {
        var line = 1
        var column = 1
        for byte in data.prefix(offset) {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                // A UTF-8 continuation byte does not start a new column.
                column += 1
            }
        }
        return "line \(line), column \(column) (byte \(offset))"
    }

    public var description: String {
        let name = file ?? "the document"
        return detail.hasPrefix("is ") ? "\(name) \(detail)" : "\(name): \(detail)"
    }

    /// Foundation's "Cannot initialize T from invalid String value v" names an enumeration.
    static func enumTypeName(_ text: String) -> String? {
        let prefix = "Cannot initialize "
        guard text.hasPrefix(prefix), let range = text.range(of: " from invalid ") else { return nil }
        return String(text[text.index(text.startIndex, offsetBy: prefix.count)..<range.lowerBound])
    }

    /// A Swift type as the JSON it wants.
    static func jsonKind(_ type: Any.Type) -> String {
        let name = "\(type)"
        if name.hasPrefix("Array") || name.hasPrefix("[") && !name.contains(":") { return "a list" }
        if name.hasPrefix("Dictionary") || name.hasPrefix("[") { return "an object" }
        if name == "String" || name == "Substring" { return "a string" }
        if name == "Bool" { return "true or false" }
        if name.hasPrefix("Int") || name.hasPrefix("UInt") { return "a whole number" }
        if ["Double", "Float", "Decimal"].contains(name) { return "a number" }
        if let values = knownValues[name] { return "one of \(values.joined(separator: ", "))" }
        return "an object"
    }

    /// The value found, briefly: scalars as written (long strings cut), containers by kind.
    static func show(_ value: JSON) -> String {
        switch value {
        case .string(let text):
            let cut = text.count > 40 ? String(text.prefix(40)) + "…" : text
            return "a string (\(JSON.string(cut).serialized()))"
        case .number(let number): return "the number \(number.literal.count > 40 ? String(number.literal.prefix(40)) + "…" : number.literal)"
        case .bool(let flag): return "\(flag)"
        case .null: return "null"
        case .array(let items): return "a list of \(items.count) item\(items.count == 1 ? "" : "s")"
        case .object: return "an object"
        }
    }
}
