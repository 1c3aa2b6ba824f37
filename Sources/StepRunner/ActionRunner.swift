import Foundation
import HostCommand
import Protocol

/// `opschain-action ACTION`: runs one action of the project inside the step container and
/// writes `step_result.json`.
///
/// It reads `step_context.json`, writes the `files` properties with their modes, exports the
/// `env` properties (environment over project), gives the command writable copies of the
/// project and environment properties (`OPSCHAIN_PROJECT_PROPERTIES`,
/// `OPSCHAIN_ENVIRONMENT_PROPERTIES`) and a file for child steps added at run time
/// (`OPSCHAIN_CHILD_STEPS`), runs the command with `/bin/sh -c` in the repository, then writes
/// the RFC 6902 diffs of the copies, the merged properties and the children.
public struct ActionRunner: Sendable {
    /// The repository root (`/opt/opschain` in a container).
    public var root: String
    /// Prefix for `files` property paths (`/` in a container; a folder in tests).
    public var filesRoot: String
    /// What a `files` path's leading `~/` stands for: the step user's home.
    public var home: String
    public var shell: String

    public init(
        root: String = "/opt/opschain", filesRoot: String = "/", home: String = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory(),
        shell: String = "/bin/sh"
    ) {
        self.root = root
        self.filesRoot = filesRoot
        self.home = home
        self.shell = shell
    }

    public var contextPath: String { root + "/.opschain/step_context.json" }
    public var resultPath: String { root + "/.opschain/step_result.json" }

    /// A failure that ends the step; its text goes to stderr and into `step_result.json`.
    struct Failure: Error {
        let message: String
        var exitStatus: Int32 = 1
    }

    /// The work every run does before its action is known: the YAML reader's rules and the
    /// result's encoder set up (`opschain-action --wait` does it while it waits).
    public static func prepare() {
        _ = try? ActionsFile.parse("actions:\n  a: { run: 'true', steps: [], strategy: serial, timeout: 1, ignore_failure: false, retries: 0 }\n")
        _ = try? JSONEncoder().encode(StepResult())
    }

    /// Runs the action and returns the process's exit status.
    public func run(action name: String) -> Int32 {
        var result = StepResult()
        do {
            let context = try readContext()
            let merged = context.mergedProperties
            result.step = StepResult.StepProperties(properties: merged)
            let actions: ActionsFile
            do {
                actions = try ActionsFile.load(repositoryRoot: root)
            } catch {
                throw Failure(message: "cannot read the actions: \(error)")
            }
            guard let action = actions.actions[name] else {
                throw Failure(message: "unknown action \"\(name)\" (defined: \(actions.actions.keys.sorted().joined(separator: ", ")))")
            }
            result.steps = try execute(action, named: name, context: context, actions: actions, result: &result)
            try write(result)
            return 0
        } catch let failure as Failure {
            report(failure.message)
            result.error = failure.message
            try? write(result)
            return failure.exitStatus
        } catch {
            report("\(error)")
            result.error = "\(error)"
            try? write(result)
            return 1
        }
    }

    private func execute(_ action: ActionsFile.Action, named name: String, context: StepContext, actions: ActionsFile, result: inout StepResult) throws -> StepResult.Children {
        let merged = context.mergedProperties
        try writeFiles(merged)
        let env: [String: String]
        do {
            env = try merged.envProperties()
        } catch {
            throw Failure(message: "the env properties are invalid: \(error)")
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("opschain-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let projectCopy = scratch.appendingPathComponent("project_properties.json")
        let environmentCopy = scratch.appendingPathComponent("environment_properties.json")
        let childSteps = scratch.appendingPathComponent("child_steps.json")
        let projectGuards = scratch.appendingPathComponent("project_guards.json")
        let environmentGuards = scratch.appendingPathComponent("environment_guards.json")
        try Data(context.project.properties.serialized(pretty: true).utf8).write(to: projectCopy)
        try Data(context.environment.properties.serialized(pretty: true).utf8).write(to: environmentCopy)

        var commandStatus: Int32 = 0
        var commandFailure: String?
        if let command = action.run {
            var environment = ProcessInfo.processInfo.environment.merging(env) { _, property in property }
            environment["OPSCHAIN_ACTION"] = name
            environment["OPSCHAIN_STEP_CONTEXT"] = contextPath
            environment["OPSCHAIN_PROJECT_PROPERTIES"] = projectCopy.path
            environment["OPSCHAIN_ENVIRONMENT_PROPERTIES"] = environmentCopy.path
            environment["OPSCHAIN_CHILD_STEPS"] = childSteps.path
            environment["OPSCHAIN_PROJECT_GUARDS"] = projectGuards.path
            environment["OPSCHAIN_ENVIRONMENT_GUARDS"] = environmentGuards.path
            (commandStatus, commandFailure) = try runCommand(command, environment: environment)
        }

        // The diffs are computed whatever the command's status: the dispatcher applies them
        // only for a successful step, but they help to see what a failed step did.
        result.project.propertiesDiff = try guarded(
            diffCopy(projectCopy, against: context.project.properties, what: "project"), guards: projectGuards, original: context.project.properties, what: "project")
        result.environment.propertiesDiff = try guarded(
            diffCopy(environmentCopy, against: context.environment.properties, what: "environment"), guards: environmentGuards,
            original: context.environment.properties, what: "environment")
        var children = StepResult.Children(children: action.steps.map(ChildStep.init(action:)), childExecutionStrategy: action.strategy)
        try addRuntimeChildren(from: childSteps, to: &children, actions: actions)
        if let commandFailure {
            result.steps = children
            throw Failure(message: commandFailure, exitStatus: commandStatus == 0 ? 1 : commandStatus)
        }
        return children
    }

    private func readContext() throws -> StepContext {
        guard let data = FileManager.default.contents(atPath: contextPath) else {
            throw Failure(message: "no step context at \(contextPath)")
        }
        do {
            return try JSONDecoder().decode(StepContext.self, from: data)
        } catch let error as DecodingError {
            throw Failure(message: "the step context is invalid: \(DecodingProblem(error, file: contextPath, data: data))")
        } catch {
            throw Failure(message: "the step context is invalid: \(contextPath): \(error)")
        }
    }

    private func writeFiles(_ merged: JSON) throws {
        let files: [FileProperty]
        do {
            files = try merged.fileProperties()
        } catch {
            throw Failure(message: "the files properties are invalid: \(error)")
        }
        for file in files {
            let path = file.path.hasPrefix("~/") ? (home as NSString).appendingPathComponent(String(file.path.dropFirst(2))) : file.path
            let target = filesRoot == "/" ? path : (filesRoot as NSString).appendingPathComponent(path)
            do {
                try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data(file.content.utf8).write(to: URL(fileURLWithPath: target))
                try FileManager.default.setAttributes([.posixPermissions: NSNumber(value: file.mode)], ofItemAtPath: target)
            } catch {
                var message = "cannot write the file property \(file.path): \(error.localizedDescription)"
                if getuid() != 0, Self.isPermissionDenied(error) {
                    message += " (the step runs as uid \(getuid()), not root: write files under ~/ or /opt/opschain, or switch the image to USER root)"
                }
                throw Failure(message: message)
            }
        }
    }

    private static func isPermissionDenied(_ error: any Error) -> Bool {
        let error = error as NSError
        if error.domain == NSCocoaErrorDomain, error.code == CocoaError.fileWriteNoPermission.rawValue || error.code == CocoaError.fileReadNoPermission.rawValue {
            return true
        }
        let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError
        return (underlying?.domain == NSPOSIXErrorDomain && (underlying?.code == Int(EACCES) || underlying?.code == Int(EPERM)))
            || (error.domain == NSPOSIXErrorDomain && (error.code == Int(EACCES) || error.code == Int(EPERM)))
    }

    /// The command inherits our standard output and error, so the worker's log sees its lines
    /// as it writes them, told apart as it wrote them.
    private func runCommand(_ command: String, environment: [String: String]) throws -> (Int32, String?) {
        guard FileManager.default.isExecutableFile(atPath: shell) else {
            throw Failure(message: "cannot start \(shell): no such executable")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(message: "cannot start the command: its folder \(root) is missing")
        }
        let termination: Spawn.Termination
        do {
            termination = try Spawn.runInheritingStandardStreams(shell, ["-c", command], in: root, environment: environment)
        } catch {
            throw Failure(message: "\(error)")
        }
        switch termination {
        case .signalled(let signal):
            return (128 + signal, "the command was killed by signal \(signal)")
        case .exited(let status):
            return (status, status == 0 ? nil : "the command exited with status \(status)")
        }
    }

    private func diffCopy(_ copy: URL, against original: JSON, what: String) throws -> JSONPatch {
        guard let data = FileManager.default.contents(atPath: copy.path) else {
            throw Failure(message: "the \(what) properties copy ($OPSCHAIN_\(what.uppercased())_PROPERTIES) was deleted")
        }
        do {
            return JSONPatch.diff(from: original, to: try JSON.parse(bytes: data))
        } catch {
            let location = DecodingProblem.location(ofByte: error.offset, in: data)
            throw Failure(
                message: "the \(what) properties copy ($OPSCHAIN_\(what.uppercased())_PROPERTIES) was left as invalid JSON: \(location): \(error.reason) (it must hold a JSON object)")
        }
    }

    /// A non-empty diff prefixed with `test` operations for the JSON pointers listed in the
    /// guards file: the diff then applies only if those values are still what the step saw
    /// (optimistic locking against a parallel sibling's change).
    private func guarded(_ diff: JSONPatch, guards file: URL, original: JSON, what: String) throws -> JSONPatch {
        guard !diff.isEmpty, let data = FileManager.default.contents(atPath: file.path),
            !String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { return diff }
        let variable = "$OPSCHAIN_\(what.uppercased())_GUARDS"
        guard case .array(let entries)? = try? JSON.parse(bytes: data) else {
            throw Failure(message: "the guards file (\(variable)) must hold a JSON list of JSON pointers")
        }
        var tests: [JSONPatch.Operation] = []
        for entry in entries {
            guard let text = entry.stringValue, let pointer = try? JSONPointer(text) else {
                throw Failure(message: "the guards file (\(variable)) has an entry that is not a JSON pointer: \(entry)")
            }
            if let value = original.value(at: pointer) { tests.append(.test(path: pointer, value: value)) }
        }
        return JSONPatch(tests + diff.operations)
    }

    /// `OPSCHAIN_CHILD_STEPS` may hold a list of action names (or `{"action": …}` objects), or
    /// `{"children": [...], "child_execution_strategy": "serial" | "parallel"}`.
    private func addRuntimeChildren(from file: URL, to children: inout StepResult.Children, actions: ActionsFile) throws {
        guard let data = FileManager.default.contents(atPath: file.path),
            !String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { return }
        let json: JSON
        do {
            json = try JSON.parse(bytes: data)
        } catch {
            throw Failure(message: DecodingProblem.syntax(error, file: "the child steps file ($OPSCHAIN_CHILD_STEPS)", data: data).description)
        }
        var entries: [JSON]
        switch json {
        case .array(let list):
            entries = list
        case .object(let object):
            entries = object["children"]?.arrayValue ?? []
            if let strategy = object["child_execution_strategy"], strategy != .null {
                guard let text = strategy.stringValue, let parsed = ExecutionStrategy(rawValue: text) else {
                    let allowed = ExecutionStrategy.allCases.map(\.rawValue).joined(separator: ", ")
                    throw Failure(message: "the child steps file ($OPSCHAIN_CHILD_STEPS): /child_execution_strategy is \(strategy.serialized()); allowed: \(allowed) or null")
                }
                children.childExecutionStrategy = parsed
            }
        default:
            throw Failure(message: "the child steps file ($OPSCHAIN_CHILD_STEPS) must hold a list or an object with \"children\"")
        }
        for entry in entries {
            guard let action = entry.stringValue ?? entry["action"]?.stringValue else {
                throw Failure(message: "the child steps file ($OPSCHAIN_CHILD_STEPS) has an entry that is not an action name: \(entry)")
            }
            guard actions.actions[action] != nil else {
                throw Failure(message: "child step \"\(action)\" added at run time is not a defined action")
            }
            children.children.append(ChildStep(action: action))
        }
    }

    private func write(_ result: StepResult) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(result).write(to: URL(fileURLWithPath: resultPath))
    }

    private func report(_ message: String) {
        FileHandle.standardError.write(Data("opschain-action: \(message)\n".utf8))
    }
}
