import Protocol

/// What an API patch may not do with secret properties (everything under `/opschain/secrets`):
/// read them. A `test` compares values (its failure would print them, its success confirms a
/// guess) and `copy`/`move` take them somewhere the API shows; so a `test` whose path, or a
/// `copy`/`move` whose `from`, is at, under or above `/opschain/secrets` is refused. Writing
/// (`add`, `replace`, `remove`, a `move`/`copy` *into* it) stays allowed.
enum SecretPatchGuard {
    static let secrets = ["opschain", "secrets"]

    /// The refusal for the first operation that would read a secret; nil when none would.
    static func refusal(_ patch: JSONPatch) -> String? {
        for (index, operation) in patch.operations.enumerated() {
            switch operation {
            case .test(let path, _) where touches(path):
                return "patch operation \(index) (test \(shown(path))): a test at, under or above /opschain/secrets would compare secret values; test other paths"
            case .copy(let from, _) where touches(from), .move(let from, _) where touches(from):
                return "patch operation \(index) (\(operation.name) from \(shown(from))): secret properties cannot be copied or moved out of /opschain/secrets; set the new value instead"
            default:
                continue
            }
        }
        return nil
    }

    /// Whether `pointer` is `/opschain/secrets`, inside it, or one of its parents (`/opschain`, the root).
    static func touches(_ pointer: JSONPointer) -> Bool {
        let tokens = pointer.tokens
        let common = min(tokens.count, secrets.count)
        return Array(tokens.prefix(common)) == Array(secrets.prefix(common))
    }

    private static func shown(_ pointer: JSONPointer) -> String {
        pointer.isRoot ? "\"\"" : pointer.description
    }
}
