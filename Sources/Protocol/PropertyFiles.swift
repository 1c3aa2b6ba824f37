/// A file an action expects on disk, from the `files` properties.
public struct FileProperty: Sendable, Hashable {
    public var path: String
    /// Octal permission bits, e.g. 0o600.
    public var mode: UInt32
    public var content: String
}

/// A `files` or `env` property that is not of the documented shape.
public struct PropertyShapeError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let reason: String

    public var description: String { "property \(path): \(reason)" }
}

extension JSON {
    /// The `files` member of a properties document: `{"/path": {"mode": "0600", "content": "…"}}`.
    public func fileProperties() throws(PropertyShapeError) -> [FileProperty] {
        guard let files = self["files"] else { return [] }
        guard case .object(let entries) = files else {
            throw PropertyShapeError(path: "/files", reason: "must be an object of paths, not \(files.typeName)")
        }
        var result: [FileProperty] = []
        for path in entries.keys.sorted() {
            let pointer = JSONPointer.root.appending("files").appending(path).description
            guard case .object(let entry) = entries[path]! else {
                throw PropertyShapeError(path: pointer, reason: "must be an object with \"mode\" and \"content\"")
            }
            guard path.hasPrefix("/") || path.hasPrefix("~/") else {
                throw PropertyShapeError(path: pointer, reason: "file path must be absolute or start with ~/ (the step user's home)")
            }
            guard case .string(let content)? = entry["content"] else {
                throw PropertyShapeError(path: pointer, reason: "\"content\" must be a string")
            }
            var mode: UInt32 = 0o644
            if let modeValue = entry["mode"] {
                guard case .string(let text) = modeValue, let parsed = UInt32(text, radix: 8), parsed <= 0o7777 else {
                    throw PropertyShapeError(path: pointer, reason: "\"mode\" must be an octal string such as \"0600\"")
                }
                mode = parsed
            }
            result.append(FileProperty(path: path, mode: mode, content: content))
        }
        return result
    }

    /// The `env` member of a properties document as variables. Numbers and booleans are
    /// written as their JSON text; objects and arrays are refused.
    public func envProperties() throws(PropertyShapeError) -> [String: String] {
        guard let env = self["env"] else { return [:] }
        guard case .object(let entries) = env else {
            throw PropertyShapeError(path: "/env", reason: "must be an object of variable names, not \(env.typeName)")
        }
        var result: [String: String] = [:]
        for (name, value) in entries {
            guard !name.isEmpty, !name.contains("="), !name.contains("\0") else {
                throw PropertyShapeError(path: "/env/\(name)", reason: "not a valid environment variable name")
            }
            switch value {
            case .string(let text): result[name] = text
            case .number(let number): result[name] = number.literal
            case .bool(let flag): result[name] = flag ? "true" : "false"
            case .null: continue
            default:
                throw PropertyShapeError(path: "/env/\(name)", reason: "must be a string, not \(value.typeName)")
            }
        }
        return result
    }
}
