import Foundation
import Protocol
import Yams

/// `.opschain/actions.yml` (or `.yaml`, `.json`): the project's actions.
///
/// ```yaml
/// actions:
///   build:   { run: "make build" }
///   deploy:  { run: "./deploy.sh", steps: [build, test], strategy: parallel, timeout: 600 }
///   notify:  { run: "./notify.sh", ignore_failure: true, retries: 2 }
/// ```
public struct ActionsFile: Sendable, Hashable {
    public var actions: [String: Action]

    public struct Action: Sendable, Hashable {
        /// Run with `/bin/sh -c` in `/opt/opschain`; an action may have only child steps.
        public var run: String?
        /// Child steps, by action name, run after this action's own command.
        public var steps: [String]
        public var strategy: ExecutionStrategy?
        /// Seconds before the step's container is killed.
        public var timeout: Int?
        /// A failure of this step does not fail its parent.
        public var ignoreFailure: Bool
        /// How many times a failed (or lost) attempt is run again.
        public var retries: Int

        public init(run: String?, steps: [String] = [], strategy: ExecutionStrategy? = nil, timeout: Int? = nil, ignoreFailure: Bool = false, retries: Int = 0) {
            self.run = run
            self.steps = steps
            self.strategy = strategy
            self.timeout = timeout
            self.ignoreFailure = ignoreFailure
            self.retries = retries
        }

        public var policy: ActionPolicy {
            ActionPolicy(ignoreFailure: ignoreFailure, retries: retries, timeoutSeconds: timeout)
        }
    }

    /// The places looked at, in order, relative to the repository root.
    public static let candidatePaths = [".opschain/actions.yml", ".opschain/actions.yaml", ".opschain/actions.json"]

    /// The largest actions file read: far more than any real one, small enough that parsing it
    /// costs nothing worth attacking.
    public static let maximumBytes = 256 * 1024
    /// The most YAML nodes a file may expand to, an alias counted each time it is used: a
    /// "billion laughs" document of a few hundred bytes expands to billions and is refused
    /// before anything is built from it.
    public static let maximumNodes = 50_000
    /// The deepest nesting parsed: the YAML parser recurses per level, and a few hundred
    /// kilobytes of `[` would overflow the worker's stack.
    public static let maximumDepth = 256

    /// Loads the actions file of the repository at `root`. Only regular files are read (a
    /// symbolic link, to `/dev/zero` or anywhere else, is refused), and only up to
    /// `maximumBytes`.
    public static func load(repositoryRoot root: String) throws(ActionsFileError) -> ActionsFile {
        for path in candidatePaths {
            let full = (root as NSString).appendingPathComponent(path)
            var status = stat()
            guard lstat(full, &status) == 0 else { continue }
            guard status.st_mode & S_IFMT == S_IFREG else {
                throw ActionsFileError(file: path, reason: "is not a regular file (a symbolic link, a device or a directory); commit the file itself")
            }
            guard Int(status.st_size) <= maximumBytes else {
                throw ActionsFileError(file: path, reason: "is \(status.st_size) bytes, more than the limit of \(maximumBytes) bytes")
            }
            guard let data = FileManager.default.contents(atPath: full) else { continue }
            return try parse(String(decoding: data, as: UTF8.self), file: path)
        }
        throw ActionsFileError(file: candidatePaths[0], reason: "the repository has no \(candidatePaths.joined(separator: ", ")) file")
    }

    /// Parses YAML (JSON is YAML too), refusing more than `maximumBytes`. The document is
    /// composed into nodes first (an alias is then a shared reference, not a copy) and counted
    /// against `maximumNodes` before any value is built from it.
    public static func parse(_ text: String, file: String = ".opschain/actions.yml") throws(ActionsFileError) -> ActionsFile {
        guard text.utf8.count <= maximumBytes else {
            throw ActionsFileError(file: file, reason: "is \(text.utf8.count) bytes, more than the limit of \(maximumBytes) bytes")
        }
        guard nestingBound(text) <= maximumDepth else {
            throw ActionsFileError(file: file, reason: "nests deeper than \(maximumDepth) levels")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ActionsFileError(file: file, reason: "not valid YAML: \(error)")
        }
        var budget = maximumNodes
        if let root, !fits(root, budget: &budget) {
            throw ActionsFileError(
                file: file, reason: "expands to more than \(maximumNodes) YAML nodes (an alias counts each time it is used); write the actions out plainly")
        }
        let loaded = root.map { Constructor.default.any(from: $0) }
        guard let top = loaded as? [String: Any] else {
            throw ActionsFileError(file: file, reason: "must be a mapping with an \"actions\" key")
        }
        guard let definitions = top["actions"] as? [String: Any] else {
            throw ActionsFileError(file: file, reason: "\"actions\" must be a mapping of action names to definitions")
        }
        var actions: [String: Action] = [:]
        for (name, raw) in definitions {
            actions[name] = try parseAction(name, raw, file: file)
        }
        for (name, action) in actions {
            for child in action.steps where actions[child] == nil {
                throw ActionsFileError(file: file, reason: "action \"\(name)\" has child step \"\(child)\", which is not defined")
            }
        }
        return ActionsFile(actions: actions)
    }

    /// An upper bound of the document's nesting, read from the text: per line, its indentation
    /// plus the compact `- ` and `? ` entries it opens, plus the open flow collections (`[`,
    /// `{`) outside quotes and comments.
    static func nestingBound(_ text: String) -> Int {
        let space = UInt8(ascii: " ")
        var deepest = 0
        var flow = 0
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init) {
            var index = 0
            var block = 0
            while index < line.count, line[index] == space {
                block += 1
                index += 1
            }
            while index < line.count, line[index] == UInt8(ascii: "-") || line[index] == UInt8(ascii: "?"), index + 1 == line.count || line[index + 1] == space {
                block += 2
                index += 1
                while index < line.count, line[index] == space { index += 1 }
            }
            var quote: UInt8?
            var previous = space
            while index < line.count {
                let byte = line[index]
                if let open = quote {
                    if byte == open { quote = nil }
                } else if byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\"") {
                    quote = byte
                } else if byte == UInt8(ascii: "#"), previous == space {
                    break
                } else if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                    flow += 1
                    deepest = max(deepest, block + flow)
                } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    flow = max(0, flow - 1)
                }
                previous = byte
                index += 1
            }
            deepest = max(deepest, block + flow)
        }
        return deepest
    }

    /// Walks the nodes, spending one unit of `budget` per node; false as soon as it is spent.
    private static func fits(_ node: Node, budget: inout Int) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        switch node {
        case .scalar:
            return true
        case .sequence(let sequence):
            for child in sequence where !fits(child, budget: &budget) { return false }
            return true
        case .mapping(let mapping):
            for (key, value) in mapping where !fits(key, budget: &budget) || !fits(value, budget: &budget) { return false }
            return true
        }
    }

    private static let knownKeys: Set<String> = ["run", "steps", "strategy", "timeout", "ignore_failure", "retries"]

    private static func parseAction(_ name: String, _ raw: Any, file: String) throws(ActionsFileError) -> Action {
        func fail(_ reason: String) -> ActionsFileError { ActionsFileError(file: file, reason: "action \"\(name)\": \(reason)") }
        if let command = raw as? String { return Action(run: command) }
        guard let fields = raw as? [String: Any] else { throw fail("must be a command string or a mapping") }
        if let unknown = fields.keys.first(where: { !knownKeys.contains($0) }) {
            throw fail("unknown key \"\(unknown)\" (known: \(knownKeys.sorted().joined(separator: ", ")))")
        }
        var action = Action(run: nil)
        if let run = fields["run"] {
            guard let text = run as? String else { throw fail("\"run\" must be a string") }
            action.run = text
        }
        if let steps = fields["steps"] {
            guard let list = steps as? [Any] else { throw fail("\"steps\" must be a list of action names") }
            for entry in list {
                if let child = entry as? String {
                    action.steps.append(child)
                } else if let object = entry as? [String: Any], let child = object["action"] as? String {
                    action.steps.append(child)
                } else {
                    throw fail("\"steps\" entries must be action names")
                }
            }
        }
        if let strategy = fields["strategy"] {
            guard let text = strategy as? String, let parsed = ExecutionStrategy(rawValue: text) else {
                throw fail("\"strategy\" must be serial or parallel")
            }
            action.strategy = parsed
        }
        if let timeout = fields["timeout"] {
            guard let seconds = timeout as? Int, seconds > 0 else { throw fail("\"timeout\" must be a positive number of seconds") }
            action.timeout = seconds
        }
        if let ignore = fields["ignore_failure"] {
            guard let flag = ignore as? Bool else { throw fail("\"ignore_failure\" must be true or false") }
            action.ignoreFailure = flag
        }
        if let retries = fields["retries"] {
            guard let count = retries as? Int, count >= 0 else { throw fail("\"retries\" must be a whole number, 0 or more") }
            action.retries = count
        }
        guard action.run != nil || !action.steps.isEmpty else { throw fail("needs \"run\" or \"steps\"") }
        return action
    }
}

public struct ActionsFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let reason: String

    public var description: String { "\(file): \(reason)" }
}
