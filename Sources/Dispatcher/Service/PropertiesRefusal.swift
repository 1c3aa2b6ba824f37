import Protocol

/// Why a properties document cannot be stored: it is not a JSON object, or it holds a number
/// the fleet cannot carry exactly. Checked before a step's patched document is written, so
/// that the step fails with this reason instead of its outcome failing to apply for ever.
struct PropertiesRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    let description: String

    init?(_ document: JSON) {
        guard case .object = document else {
            description = "the patched properties would be \(document.typeName == "array" ? "an array" : "a \(document.typeName)"), and properties must be a JSON object"
            return
        }
        if let number = document.uncarriableNumber() {
            description = "the patched properties would hold a number out of range at \(number.path.isEmpty ? "the top" : number.path) (numbers must be 64-bit integers, decimals of at most 38 significant digits, or doubles written exactly)"
            return
        }
        return nil
    }
}
