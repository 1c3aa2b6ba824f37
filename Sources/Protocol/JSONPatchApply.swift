extension JSONPatch {
    /// Applies the patch to `document` and returns the result. Atomic: on any error the
    /// input is untouched (it is a value) and nothing of the patch is returned.
    public func apply(to document: JSON) throws(JSONPatchError) -> JSON {
        var result = document
        for (index, operation) in operations.enumerated() {
            do {
                try operation.apply(to: &result)
            } catch {
                throw JSONPatchError(operationIndex: index, operation: operation.name, path: operation.path.description, reason: error.reason)
            }
        }
        return result
    }
}

/// A failure inside one operation; `JSONPatch.apply` adds which operation it was.
struct PatchStepError: Error {
    let reason: String
}

extension JSONPatch.Operation {
    func apply(to document: inout JSON) throws(PatchStepError) {
        switch self {
        case .add(let path, let value):
            try document.add(value, at: path)
        case .remove(let path):
            _ = try document.remove(at: path)
        case .replace(let path, let value):
            try document.replace(at: path, with: value)
        case .move(let from, let path):
            if from == path { return }
            if from.isProperPrefix(of: path) {
                throw PatchStepError(reason: "cannot move \"\(from)\" into its own child")
            }
            let value = try document.remove(at: from, describing: "from")
            try document.add(value, at: path)
        case .copy(let from, let path):
            guard let value = document.value(at: from) else {
                throw PatchStepError(reason: "\"from\" location \"\(from)\" does not exist")
            }
            try document.add(value, at: path)
        case .test(let path, let expected):
            guard let actual = document.value(at: path) else {
                throw PatchStepError(reason: "test failed: nothing at the path")
            }
            guard actual == expected else {
                throw PatchStepError(reason: "test failed: value is \(actual.serialized()), expected \(expected.serialized())")
            }
        }
    }
}

extension JSON {
    /// Runs `body` on the container that holds the last token of `pointer`, in place.
    fileprivate mutating func withParent<T>(
        of pointer: JSONPointer,
        _ body: (inout JSON, String) throws(PatchStepError) -> T
    ) throws(PatchStepError) -> T {
        try withContainer(tokens: pointer.tokens.dropLast()[...], last: pointer.tokens.last!, body)
    }

    private mutating func withContainer<T>(
        tokens: ArraySlice<String>,
        last: String,
        _ body: (inout JSON, String) throws(PatchStepError) -> T
    ) throws(PatchStepError) -> T {
        guard let token = tokens.first else { return try body(&self, last) }
        let rest = tokens.dropFirst()
        switch self {
        case .object(var members):
            guard var child = members[token] else {
                throw PatchStepError(reason: "parent path does not exist: no member \"\(token)\"")
            }
            self = .null  // keep the storage uniquely referenced while it is edited
            members[token] = .null
            defer {
                members[token] = child
                self = .object(members)
            }
            return try child.withContainer(tokens: rest, last: last, body)
        case .array(var elements):
            guard let index = JSONPointer.arrayIndex(token), index < elements.count else {
                throw PatchStepError(reason: "parent path does not exist: no array element \"\(token)\"")
            }
            var child = elements[index]
            self = .null
            elements[index] = .null
            defer {
                elements[index] = child
                self = .array(elements)
            }
            return try child.withContainer(tokens: rest, last: last, body)
        default:
            throw PatchStepError(reason: "parent path does not exist: \"\(token)\" is inside a \(typeName)")
        }
    }

    fileprivate mutating func add(_ value: JSON, at pointer: JSONPointer) throws(PatchStepError) {
        if pointer.isRoot {
            self = value
            return
        }
        try withParent(of: pointer) { (container: inout JSON, token: String) throws(PatchStepError) in
            switch container {
            case .object(var members):
                container = .null
                members[token] = value
                container = .object(members)
            case .array(var elements):
                let index: Int
                if token == "-" {
                    index = elements.count
                } else if let parsed = JSONPointer.arrayIndex(token) {
                    guard parsed <= elements.count else {
                        throw PatchStepError(reason: "array index \(parsed) is beyond the end (\(elements.count) elements)")
                    }
                    index = parsed
                } else {
                    throw PatchStepError(reason: "\"\(token)\" is not a valid array index")
                }
                container = .null
                elements.insert(value, at: index)
                container = .array(elements)
            default:
                throw PatchStepError(reason: "cannot add a member to a \(container.typeName)")
            }
        }
    }

    fileprivate mutating func remove(at pointer: JSONPointer, describing role: String = "path") throws(PatchStepError) -> JSON {
        if pointer.isRoot {
            throw PatchStepError(reason: "cannot remove the whole document")
        }
        return try withParent(of: pointer) { (container: inout JSON, token: String) throws(PatchStepError) -> JSON in
            switch container {
            case .object(var members):
                guard let removed = members.removeValue(forKey: token) else {
                    throw PatchStepError(reason: "\(role) does not exist: no member \"\(token)\"")
                }
                container = .object(members)
                return removed
            case .array(var elements):
                guard let index = JSONPointer.arrayIndex(token) else {
                    throw PatchStepError(reason: "\"\(token)\" is not a valid array index")
                }
                guard index < elements.count else {
                    throw PatchStepError(reason: "\(role) does not exist: array index \(index) with \(elements.count) elements")
                }
                container = .null
                let removed = elements.remove(at: index)
                container = .array(elements)
                return removed
            default:
                throw PatchStepError(reason: "\(role) does not exist: a \(container.typeName) has no members")
            }
        }
    }

    fileprivate mutating func replace(at pointer: JSONPointer, with value: JSON) throws(PatchStepError) {
        if pointer.isRoot {
            self = value
            return
        }
        try withParent(of: pointer) { (container: inout JSON, token: String) throws(PatchStepError) in
            switch container {
            case .object(var members):
                guard members[token] != nil else {
                    throw PatchStepError(reason: "path does not exist: no member \"\(token)\"")
                }
                container = .null
                members[token] = value
                container = .object(members)
            case .array(var elements):
                guard let index = JSONPointer.arrayIndex(token), index < elements.count else {
                    throw PatchStepError(reason: "path does not exist: no array element \"\(token)\" with \(elements.count) elements")
                }
                container = .null
                elements[index] = value
                container = .array(elements)
            default:
                throw PatchStepError(reason: "path does not exist: a \(container.typeName) has no members")
            }
        }
    }
}
