/// A JSON Patch (RFC 6902): a sequence of operations applied in order, atomically.
public struct JSONPatch: Sendable, Hashable {
    public var operations: [Operation]

    public init(_ operations: [Operation] = []) {
        self.operations = operations
    }

    public enum Operation: Sendable, Hashable {
        case add(path: JSONPointer, value: JSON)
        case remove(path: JSONPointer)
        case replace(path: JSONPointer, value: JSON)
        case move(from: JSONPointer, path: JSONPointer)
        case copy(from: JSONPointer, path: JSONPointer)
        case test(path: JSONPointer, value: JSON)

        public var name: String {
            switch self {
            case .add: "add"
            case .remove: "remove"
            case .replace: "replace"
            case .move: "move"
            case .copy: "copy"
            case .test: "test"
            }
        }

        public var path: JSONPointer {
            switch self {
            case .add(let path, _), .remove(let path), .replace(let path, _), .move(_, let path),
                .copy(_, let path), .test(let path, _):
                path
            }
        }
    }

    public var isEmpty: Bool { operations.isEmpty }
}

/// Why a patch could not be read or applied: which operation, which path, and why.
public struct JSONPatchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Zero-based index of the failing operation in the patch.
    public let operationIndex: Int
    /// The operation's name (`add`, …), or `?` when it could not be read.
    public let operation: String
    public let path: String
    public let reason: String

    public var description: String {
        "patch operation \(operationIndex) (\(operation) \(path.isEmpty ? "\"\"" : path)): \(reason)"
    }
}

extension JSONPatch {
    /// Reads a patch document: an array of operation objects.
    public init(json: JSON) throws(JSONPatchError) {
        guard case .array(let elements) = json else {
            throw JSONPatchError(operationIndex: 0, operation: "?", path: "", reason: "a patch must be a JSON array, not \(json.typeName)")
        }
        var operations: [Operation] = []
        for (index, element) in elements.enumerated() {
            operations.append(try Operation(json: element, index: index))
        }
        self.init(operations)
    }

    /// Reads patch text.
    public init(text: String) throws(JSONPatchError) {
        let json: JSON
        do {
            json = try JSON.parse(text)
        } catch {
            throw JSONPatchError(operationIndex: 0, operation: "?", path: "", reason: error.description)
        }
        try self.init(json: json)
    }

    /// The patch as a JSON array.
    public var json: JSON { .array(operations.map(\.json)) }
}

extension JSONPatch.Operation {
    init(json: JSON, index: Int) throws(JSONPatchError) {
        guard case .object(let members) = json else {
            throw JSONPatchError(operationIndex: index, operation: "?", path: "", reason: "an operation must be an object, not \(json.typeName)")
        }
        guard case .string(let name)? = members["op"] else {
            throw JSONPatchError(operationIndex: index, operation: "?", path: "", reason: "missing or non-string member \"op\"")
        }
        func pointer(_ member: String) throws(JSONPatchError) -> JSONPointer {
            guard case .string(let text)? = members[member] else {
                throw JSONPatchError(operationIndex: index, operation: name, path: members["path"]?.stringValue ?? "", reason: "missing or non-string member \"\(member)\"")
            }
            do {
                return try JSONPointer(text)
            } catch {
                throw JSONPatchError(operationIndex: index, operation: name, path: text, reason: error.description)
            }
        }
        func value() throws(JSONPatchError) -> JSON {
            guard let value = members["value"] else {
                throw JSONPatchError(operationIndex: index, operation: name, path: members["path"]?.stringValue ?? "", reason: "missing member \"value\"")
            }
            return value
        }
        switch name {
        case "add": self = .add(path: try pointer("path"), value: try value())
        case "remove": self = .remove(path: try pointer("path"))
        case "replace": self = .replace(path: try pointer("path"), value: try value())
        case "move": self = .move(from: try pointer("from"), path: try pointer("path"))
        case "copy": self = .copy(from: try pointer("from"), path: try pointer("path"))
        case "test": self = .test(path: try pointer("path"), value: try value())
        default:
            throw JSONPatchError(operationIndex: index, operation: name, path: members["path"]?.stringValue ?? "", reason: "unknown operation \"\(name)\"")
        }
    }

    var json: JSON {
        switch self {
        case .add(let path, let value): ["op": "add", "path": .string(path.description), "value": value]
        case .remove(let path): ["op": "remove", "path": .string(path.description)]
        case .replace(let path, let value): ["op": "replace", "path": .string(path.description), "value": value]
        case .move(let from, let path): ["op": "move", "from": .string(from.description), "path": .string(path.description)]
        case .copy(let from, let path): ["op": "copy", "from": .string(from.description), "path": .string(path.description)]
        case .test(let path, let value): ["op": "test", "path": .string(path.description), "value": value]
        }
    }
}

extension JSONPatch: Codable {
    public init(from decoder: Decoder) throws {
        try self.init(json: try JSON(from: decoder))
    }

    public func encode(to encoder: Encoder) throws {
        try json.encode(to: encoder)
    }
}
