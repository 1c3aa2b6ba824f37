import Foundation

/// Replaces secret values in text that is about to be logged or shown, in every form a value
/// takes on the way there: as it is, JSON-escaped (a value with `"`, `\` or a control
/// character, printed inside a serialized document), and line by line (a multi-line value such
/// as a PEM key reaches a line-based log one line at a time).
///
/// Pieces shorter than `minimumLength` characters are not masked: masking every "1" or "ok"
/// would ruin the log and hide nothing worth hiding.
public struct SecretMask: Sendable, Equatable {
    public static let replacement = "****"
    public static let minimumLength = 3

    /// Every form to replace, longest first (so a value is replaced before a line of it).
    public private(set) var forms: [String] = []

    public init(_ values: some Sequence<String> = [String]()) {
        add(values)
    }

    /// Adds values to mask.
    public mutating func add(_ values: some Sequence<String>) {
        var all = Set(forms)
        for value in values {
            for form in Self.forms(of: value) where form.count >= Self.minimumLength { all.insert(form) }
        }
        forms = all.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    public var isEmpty: Bool { forms.isEmpty }

    /// `text` with every form of every value replaced by `****`.
    public func apply(to text: String) -> String {
        guard !forms.isEmpty else { return text }
        return forms.reduce(text) { $0.replacingOccurrences(of: $1, with: Self.replacement) }
    }

    /// The value, its JSON-escaped form, and each of their lines (trimmed of surrounding
    /// blanks, which are not secret and would make a line fail to match).
    static func forms(of value: String) -> [String] {
        let escaped = JSON.string(value).serialized().dropFirst().dropLast()
        var forms = [value, String(escaped)]
        for whole in [value, String(escaped)] {
            let lines = whole.split(whereSeparator: \.isNewline)
            if lines.count > 1 { forms += lines.map { $0.trimmingCharacters(in: .whitespaces) } }
        }
        // The escaped form of a multi-line value is one line with "\n" in it: its pieces.
        if escaped.contains("\\n") {
            forms += escaped.components(separatedBy: "\\n").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        // Foundation's JSONEncoder also escapes "/" (a PEM key's base64 has them).
        return forms + forms.filter { $0.contains("/") }.map { $0.replacingOccurrences(of: "/", with: "\\/") }
    }
}
