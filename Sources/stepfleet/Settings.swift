import ArgumentParser
import Configuration
import Foundation
import Synchronization
import SystemPackage

/// The settings of a long-running process (`dispatcher`, `worker`), read once at start from,
/// highest first: its command line (swift-argument-parser), the environment (`STEPFLEET_` and
/// the option's name in capitals, dashes as underscores: `--max-steps-in-flight` is
/// `STEPFLEET_MAX_STEPS_IN_FLIGHT`), the JSON file given with `--config` (the option's name
/// without its dashes as the key: `{"max-steps-in-flight": 20}`), then the built-in default.
/// The environment and the file are read through swift-configuration.
///
/// A value that is not of the setting's kind, or out of its range, stops the process at start
/// with the setting's names and what it expects; so does a key in the file that is no setting.
struct Settings {
    /// Refused at start; says which setting, where the value came from, and what is expected.
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    private let reader: ConfigReader
    /// What swift-configuration reports of each read: whether a value was there but not of the
    /// kind asked for (a read returns nil both then and when the value is missing).
    private let access = LastAccess()
    private let environment: [String: String]
    private let file: String?
    /// Keys the file has: each must be a setting some read asks for.
    private let fileKeys: Set<String>
    /// The settings read so far, for `refuseUnknownFileKeys`.
    private var known: Set<String> = []

    init(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        self.environment = environment
        self.file = file
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .dynamic { key, _ in Self.secret(key) })
                .prefixKeys(with: "stepfleet")
        ]
        var keys: Set<String> = []
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw Problem(description: "--config: cannot read \(file)")
            }
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw Problem(description: "--config: \(file) is not a JSON object of settings (e.g. {\"slots\": 4})")
            }
            keys = Set(object.keys)
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(file)))
            } catch {
                throw Problem(description: "--config: \(file) cannot be read as JSON settings")
            }
        }
        fileKeys = keys
        reader = ConfigReader(providers: providers, accessReporter: access)
    }

    /// Settings whose values never appear in an error or a log.
    static func secret(_ key: String) -> Bool { key == "STEPFLEET_AMQP" }

    /// `--name`'s environment variable.
    static func variable(_ name: String) -> String {
        "STEPFLEET_" + name.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }

    /// The setting's three names, for messages.
    private func names(_ name: String) -> String {
        "--\(name), \(Self.variable(name))" + (file.map { " or \"\(name)\" in \($0)" } ?? "")
    }

    /// Where a value that is not on the command line came from.
    private func source(_ name: String) -> String {
        environment[Self.variable(name)] != nil ? Self.variable(name) : "\"\(name)\" in \(file ?? "the configuration file")"
    }

    /// The value from the environment or the file (nil: neither has it), or a problem naming
    /// the setting when the value there is not of its kind.
    private func lookUp<Value>(_ name: String, _ kind: String, _ read: (ConfigReader, ConfigKey) -> Value?) throws -> Value? {
        access.clear()
        let value = read(reader, ConfigKey(name))
        guard value == nil, access.sawBadValue else { return value }
        throw Problem(description: "\(source(name)) must be \(kind) (the setting \(name): \(names(name)))")
    }

    private mutating func value<Value>(
        _ name: String, _ commandLine: Value?, default defaultValue: Value, kind: String, check: (Value) -> String?,
        read: (ConfigReader, ConfigKey) -> Value?
    ) throws -> Value {
        known.insert(name)
        let (value, from): (Value, String)
        if let commandLine {
            (value, from) = (commandLine, "--\(name)")
        } else if let found = try lookUp(name, kind, read) {
            (value, from) = (found, source(name))
        } else {
            return defaultValue
        }
        if let expected = check(value) {
            let shown = Self.secret(Self.variable(name)) ? "" : " (got \(value))"
            throw Problem(description: "\(from) must be \(expected)\(shown) (the setting \(name): \(names(name)))")
        }
        return value
    }

    mutating func int(_ name: String, _ commandLine: Int?, default defaultValue: Int, atLeast minimum: Int? = nil) throws -> Int {
        try value(name, commandLine, default: defaultValue, kind: "a whole number", check: { value in
            minimum.flatMap { value < $0 ? "at least \($0)" : nil }
        }) { $0.int(forKey: $1) }
    }

    mutating func double(_ name: String, _ commandLine: Double?, default defaultValue: Double, above minimum: Double) throws -> Double {
        try value(name, commandLine, default: defaultValue, kind: "a number", check: { $0 > minimum && $0.isFinite ? nil : "more than \(minimum)" }) {
            $0.double(forKey: $1)
        }
    }

    mutating func string(_ name: String, _ commandLine: String?, default defaultValue: String, check: (String) -> String? = { _ in nil }) throws -> String {
        try value(name, commandLine, default: defaultValue, kind: "a string", check: check) { $0.string(forKey: $1, isSecret: Self.secret(Self.variable(name))) }
    }

    /// A setting with no default (nil: not set anywhere).
    mutating func optionalString(_ name: String, _ commandLine: String?, check: (String) -> String? = { _ in nil }) throws -> String? {
        known.insert(name)
        let value = try string(name, commandLine, default: "", check: { $0.isEmpty ? nil : check($0) })
        return value.isEmpty ? nil : value
    }

    /// A flag: on when given on the command line, or `true` in the environment or the file.
    mutating func bool(_ name: String, _ commandLine: Bool) throws -> Bool {
        try value(name, commandLine ? true : nil, default: false, kind: "true or false", check: { _ in nil }) { $0.bool(forKey: $1) }
    }

    /// A `--config` file key that no setting of this command reads is refused: a misspelt
    /// setting must not be ignored silently.
    func refuseUnknownFileKeys() throws {
        let unknown = fileKeys.subtracting(known).sorted()
        guard let first = unknown.first, let file else { return }
        throw Problem(description: "\(file): \"\(first)\" is not a setting of this command (settings: \(known.sorted().joined(separator: ", ")))")
    }
}

/// Keeps whether the last read found a value it could not convert (or a provider failed).
private final class LastAccess: AccessReporter {
    private let bad = Mutex(false)

    func report(_ event: AccessEvent) {
        var failed = event.conversionError != nil
        if case .failure = event.result { failed = true }
        for provider in event.providerResults { if case .failure = provider.result { failed = true } }
        bad.withLock { $0 = $0 || failed }
    }

    func clear() { bad.withLock { $0 = false } }
    var sawBadValue: Bool { bad.withLock { $0 } }
}

/// `--config FILE`, the one option that is read from the command line only.
struct ConfigFileOption: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "A JSON file of settings: {\"option-name\": value, …}. Precedence: command line, then STEPFLEET_… environment variables, then this file, then the default.",
            valueName: "file"))
    var path: String?
}
