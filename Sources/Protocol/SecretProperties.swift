/// Properties marked secret: everything under `opschain.secrets` in a project's or an
/// environment's properties. Steps get the real values; every API listing shows `****`, and
/// workers mask the values in step logs.
public enum SecretProperties {
    public static let mask = SecretMask.replacement

    /// `properties` with every value under `opschain.secrets` replaced by `****`.
    public static func masked(_ properties: JSON) -> JSON {
        guard let secrets = properties["opschain"]?["secrets"] else { return properties }
        return replacing(properties, at: ["opschain", "secrets"][...], with: maskLeaves(secrets))
    }

    /// The secret values (strings and numbers, as text) for masking in logs.
    public static func values(_ properties: JSON) -> [String] {
        guard let secrets = properties["opschain"]?["secrets"] else { return [] }
        var found: [String] = []
        func walk(_ value: JSON) {
            switch value {
            case .string(let text): found.append(text)
            case .number(let number): found.append(number.description)
            case .array(let items): items.forEach(walk)
            case .object(let members): members.values.forEach(walk)
            default: break
            }
        }
        walk(secrets)
        return found
    }

    /// `text` with every secret value of `documents` replaced, in each form `SecretMask` knows
    /// (as is, JSON-escaped, line by line).
    public static func maskValues(in text: String, of documents: [JSON]) -> String {
        SecretMask(documents.flatMap(values)).apply(to: text)
    }

    /// For a write of a document read from the API: a secret still reading `****` keeps its
    /// stored value instead of becoming `****`.
    public static func restoringMasked(_ incoming: JSON, from current: JSON) -> JSON {
        guard let secrets = incoming["opschain"]?["secrets"] else { return incoming }
        func restore(_ new: JSON, _ old: JSON?) -> JSON {
            switch new {
            case .string(mask): return old ?? new
            case .object(let members):
                return .object(members.reduce(into: [:]) { result, member in result[member.key] = restore(member.value, old?[member.key]) })
            case .array(let items):
                return .array(items.enumerated().map { index, item in restore(item, old?.arrayValue.flatMap { index < $0.count ? $0[index] : nil }) })
            default: return new
            }
        }
        return replacing(incoming, at: ["opschain", "secrets"][...], with: restore(secrets, current["opschain"]?["secrets"]))
    }

    private static func maskLeaves(_ value: JSON) -> JSON {
        switch value {
        case .object(let members): .object(members.mapValues(maskLeaves))
        case .array(let items): .array(items.map(maskLeaves))
        case .null: .null
        default: .string(mask)
        }
    }

    private static func replacing(_ document: JSON, at path: ArraySlice<String>, with value: JSON) -> JSON {
        guard let key = path.first else { return value }
        guard case .object(var members) = document, let child = members[key] else { return document }
        members[key] = replacing(child, at: path.dropFirst(), with: value)
        return .object(members)
    }
}
