import Protocol

/// A change or batch asked for, over HTTP or the request queue: the same fields and the same
/// checks either way. Parsing checks the shape; `Submitter` checks it against the store and
/// the repository.
enum WorkRequest: Sendable, Equatable {
    case change(ChangeRequest)
    case batch(BatchRequest)

    struct ChangeRequest: Sendable, Equatable {
        var project: String
        var environment: String
        var action: String
        var gitRev: String?
        var user: String?

        init(_ body: JSON) throws {
            guard case .object = body else { throw APIError.badRequest("the body must be a JSON object") }
            project = try body.requiredString("project")
            environment = try body.requiredString("environment")
            action = try body.requiredString("action")
            gitRev = try body.optionalString("git_rev")
            user = try body.optionalString("user")
        }
    }

    struct BatchRequest: Sendable, Equatable {
        var project: String
        var environments: EnvironmentSelector
        var action: String
        var gitRev: String?
        var maxParallel: Int
        var maxFailures: Int
        var canary: Int
        var user: String?

        static let maximumEnvironments = 10_000

        init(_ body: JSON) throws {
            guard case .object = body else { throw APIError.badRequest("the body must be a JSON object") }
            project = try body.requiredString("project")
            environments = try EnvironmentSelector(body["environments"])
            action = try body.requiredString("action")
            gitRev = try body.optionalString("git_rev")
            maxParallel = try body.optionalInt("max_parallel", 1...1000) ?? 1
            maxFailures = try body.optionalInt("max_failures", 0...Self.maximumEnvironments) ?? 0
            canary = try body.optionalInt("canary", 0...Self.maximumEnvironments) ?? 0
            user = try body.optionalString("user")
        }
    }

    /// `"environments"`: a list of codes, or one glob over the project's codes (`*`, `?`).
    enum EnvironmentSelector: Sendable, Equatable {
        case list([String])
        case glob(String)

        init(_ value: JSON?) throws {
            switch value {
            case nil, .null?:
                throw APIError.badRequest("missing \"environments\": a list of environment codes, or a glob such as \"prod-*\"")
            case .string(let pattern)?:
                let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_*?")
                guard !pattern.isEmpty, pattern.count <= 64, pattern.allSatisfy(allowed.contains) else {
                    throw APIError.badRequest("the environments glob \(pattern.prefix(80).debugDescription) must be 1 to 64 lowercase letters, digits, '-', '_', '*' or '?'")
                }
                self = .glob(pattern)
            case .array(let items)?:
                guard !items.isEmpty, items.count <= BatchRequest.maximumEnvironments else {
                    throw APIError.badRequest("\"environments\" lists 1 to \(BatchRequest.maximumEnvironments) environment codes, not \(items.count)")
                }
                var codes: [String] = []
                var seen: Set<String> = []
                for item in items {
                    guard let code = item.stringValue else { throw APIError.badRequest("\"environments\" must hold environment codes (strings), not \(item.typeName)") }
                    try validateCode(code, "environment")
                    guard seen.insert(code).inserted else { throw APIError.badRequest("\"environments\" lists \(code) twice") }
                    codes.append(code)
                }
                self = .list(codes)
            case let other?:
                throw APIError.badRequest("\"environments\" must be a list of environment codes or a glob string, not \(other.typeName)")
            }
        }

        /// As stored with the batch.
        var description: String {
            switch self {
            case .list(let codes): codes.joined(separator: ",")
            case .glob(let pattern): pattern
            }
        }

        /// The environments to run, in order: a list as given, a glob's matches by code.
        func resolve(among existing: [String], project: String) throws -> [String] {
            switch self {
            case .list(let codes):
                let known = Set(existing)
                let missing = codes.filter { !known.contains($0) }
                guard missing.isEmpty else {
                    throw StoreError.notFound("project \"\(project)\" has no environment \(missing.prefix(10).joined(separator: ", "))\(missing.count > 10 ? " (and \(missing.count - 10) more)" : "")")
                }
                return codes
            case .glob(let pattern):
                let matches = existing.filter { Glob.matches(pattern, $0) }.sorted()
                guard !matches.isEmpty else { throw StoreError.notFound("no environment of project \"\(project)\" matches \"\(pattern)\"") }
                guard matches.count <= BatchRequest.maximumEnvironments else {
                    throw APIError.badRequest("\"\(pattern)\" matches \(matches.count) environments; a batch runs at most \(BatchRequest.maximumEnvironments)")
                }
                return matches
            }
        }
    }
}

/// Shell-style matching of `*` (any run) and `?` (one character), whole string, in time
/// proportional to pattern × text (no backtracking blow-up on hostile patterns).
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern), t = Array(text)
        var row = [Bool](repeating: false, count: t.count + 1)
        row[0] = true
        for char in p {
            var next = [Bool](repeating: false, count: t.count + 1)
            next[0] = char == "*" && row[0]
            for j in t.indices.map({ $0 + 1 }) {
                next[j] = char == "*" ? next[j - 1] || row[j] : row[j - 1] && (char == "?" || char == t[j - 1])
            }
            row = next
        }
        return row[t.count]
    }
}

extension JSON {
    /// An optional whole-number member of a request body, within `range`.
    func optionalInt(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let value = self[key], value != .null else { return nil }
        guard let number = value.intValue, range.contains(number) else {
            throw APIError.badRequest("\"\(key)\" must be a whole number from \(range.lowerBound) to \(range.upperBound), not \(value.serialized().prefix(40))")
        }
        return number
    }
}

extension JSON {
    /// `"request_id"`: what makes a request idempotent (1 to 200 printable characters).
    func requestId() throws -> String? {
        guard let id = try optionalString("request_id") else { return nil }
        guard !id.isEmpty, id.count <= 200, id.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw APIError.badRequest("\"request_id\" must be 1 to 200 printable characters")
        }
        return id
    }
}
