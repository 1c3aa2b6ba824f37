import Protocol

/// The network a step asks for with `opschain.config.network` in its merged properties:
/// absent, `false` or `"none"` for none (the default: only `lo`), `true` for the engine's
/// default network, or the name of an engine network. A worker runs a step on a network only
/// when its `--step-networks` lists it.
public enum StepNetwork {
    /// The properties' request: nil for no network, else the engine network's name.
    public static func requested(by properties: JSON) throws(StepFailure) -> String? {
        guard let value = properties["opschain"]?["config"]?["network"] else { return nil }
        switch value {
        case .null, .bool(false): return nil
        case .bool(true): return "default"
        case .string(let name) where name == "none": return nil
        case .string(let name) where isNetworkName(name): return name
        default:
            throw StepFailure("opschain.config.network must be true, false or the name of a network, not \(value.serialized())")
        }
    }

    /// The network the step runs on, or a failure naming what the worker allows.
    public static func resolve(_ properties: JSON, allowed: [String]) throws(StepFailure) -> String? {
        guard let name = try requested(by: properties) else { return nil }
        guard allowed.contains(name) else {
            let list = allowed.isEmpty ? "none" : allowed.joined(separator: ", ")
            throw StepFailure("the step asks for the network \"\(name)\" (opschain.config.network), which this worker does not allow (its --step-networks: \(list))")
        }
        return name
    }

    /// Letters, digits, `_`, `.` and `-`, starting with a letter or digit: engine network names.
    public static func isNetworkName(_ name: String) -> Bool {
        func isAlphanumeric(_ character: Character) -> Bool { character.isASCII && (character.isLetter || character.isNumber) }
        guard let first = name.first, isAlphanumeric(first), name.count <= 128 else { return false }
        return name.allSatisfy { isAlphanumeric($0) || "_.-".contains($0) }
    }
}
