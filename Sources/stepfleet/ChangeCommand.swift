import ArgumentParser
import Foundation
import Protocol

struct ChangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "change", abstract: "Run and follow changes.", subcommands: [Create.self, Show.self, List.self, Logs.self, Cancel.self, Retry.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a change: run an action on a project's environment at a git revision.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Project code.") var project: String
        @Option(help: "Environment code.") var environment: String
        @Option(help: "The action to run.") var action: String
        @Option(help: "Git revision (branch, tag, full or short SHA), resolved to a SHA now; default: the remote's default branch (HEAD).")
        var gitRev: String?
        @Option(help: "Who asks.") var user = ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        @Flag(help: "Show the step tree as it runs; exit non-zero if the change fails.") var follow = false
        @Flag(help: "With --follow: also print the steps' log lines as they come.") var logs = false

        func validate() throws {
            if logs && !follow { throw ValidationError("--logs goes with --follow") }
        }

        func run() async throws {
            var body: [String: JSON] = ["project": .string(project), "environment": .string(environment), "action": .string(action), "user": .string(user)]
            if let gitRev { body["git_rev"] = .string(gitRev) }
            let change = try await options.client.request("POST", "/changes", body: .object(body))
            let id = change["id"]?.stringValue ?? ""
            say("created change \(id) (\(change["git_rev"]?.stringValue ?? "") = \(change["git_sha"]?.stringValue ?? ""))")
            if follow { try await ChangeCommand.follow(id, options.client, logs: logs) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a change and its step tree, or one step (--step), with the properties it ran with (--properties).")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Change id.") var id: String
        @Option(help: "One step: its id, or its action's name when only one step runs that action.") var step: String?
        @Flag(help: "With --step: print the merged properties the step ran with (secrets as ****).") var properties = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if properties && step == nil { throw ValidationError("--properties goes with --step") }
        }

        func run() async throws {
            let change = try await options.client.request("GET", "/changes/\(id)")
            guard let step else { return say(json ? change.serialized(pretty: true) : TreeRenderer.render(change)) }
            let stepId = try Self.stepId(step, in: change)
            let shown = try await options.client.request("GET", "/changes/\(id)/steps/\(stepId)")
            if properties { return say((shown["properties"] ?? .null).serialized(pretty: true)) }
            if json { return say(shown.serialized(pretty: true)) }
            say(TreeRenderer.render(["id": change["id"] ?? .null, "action": change["action"] ?? .null, "project": change["project"] ?? .null,
                                     "environment": change["environment"] ?? .null, "status": change["status"] ?? .null, "root": shown]))
        }

        /// A step id, or the one step running `name`.
        static func stepId(_ name: String, in change: JSON) throws -> String {
            var all: [JSON] = []
            func walk(_ step: JSON) {
                all.append(step)
                for child in step["children"]?.arrayValue ?? [] { walk(child) }
            }
            if let root = change["root"], root != .null { walk(root) }
            if all.contains(where: { $0["id"]?.stringValue == name }) { return name }
            let matching = all.filter { $0["action"]?.stringValue == name }.compactMap { $0["id"]?.stringValue }
            switch matching.count {
            case 1: return matching[0]
            case 0:
                let actions = Swift.Set(all.compactMap { $0["action"]?.stringValue }).sorted()
                throw CLIError("change \(change["id"]?.stringValue ?? "") has no step \"\(name)\" (its steps run: \(actions.joined(separator: ", ")))")
            default:
                throw CLIError("\(matching.count) steps of this change run \"\(name)\": give one of their ids (\(matching.joined(separator: ", ")))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List changes, newest first.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Only this project.") var project: String?
        @Option(help: "Only this environment.") var environment: String?
        @Option(help: "Only this status.") var status: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            var query: [String] = []
            if let project { query.append("project=\(project)") }
            if let environment { query.append("environment=\(environment)") }
            if let status { query.append("status=\(status)") }
            let changes = try await options.client.request("GET", "/changes" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
            if json { return say(changes.serialized(pretty: true)) }
            for change in changes.arrayValue ?? [] {
                say([change["id"], change["project"], change["environment"], change["action"], change["status"], change["created_at"]].map { $0?.stringValue ?? "" }.joined(separator: "\t"))
            }
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a change's log (all its steps).")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Change id.") var id: String
        @Flag(help: "Keep printing until the change has finished.") var follow = false
        @Flag(help: "JSON lines.") var json = false

        func run() async throws {
            let path = "/changes/\(id)/logs?follow=\(follow)" + (json ? "&format=json" : "")
            for try await line in try await options.client.lines(path) { say(line) }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a change: running steps are killed, queued ones cancelled.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Change id.") var id: String

        func run() async throws {
            let change = try await options.client.request("POST", "/changes/\(id)/cancel")
            say("change \(id): \(change["status"]?.stringValue ?? "")")
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run what did not succeed in a failed or cancelled change again, as a new change.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Change id.") var id: String
        @Flag(help: "Resolve the change's git revision again instead of reusing its SHA.") var refreshSha = false
        @Flag(help: "Show the new change's step tree as it runs.") var follow = false

        func run() async throws {
            let change = try await options.client.request("POST", "/changes/\(id)/retry", body: ["refresh_sha": .bool(refreshSha)])
            let newId = change["id"]?.stringValue ?? ""
            say("created change \(newId), retrying \(id)")
            if follow { try await ChangeCommand.follow(newId, options.client) }
        }
    }

    /// Prints the tree whenever it changes until the change is final (and, with `logs`, the
    /// steps' log lines as they come); fails if it did not succeed.
    static func follow(_ id: String, _ client: APIClient, logs: Bool = false) async throws {
        let logPrinter = logs ? Task { for try await line in try await client.lines("/changes/\(id)/logs?follow=true") { say(line) } } : nil
        defer { logPrinter?.cancel() }
        var last = ""
        while true {
            let change = try await client.request("GET", "/changes/\(id)")
            let rendered = TreeRenderer.render(change, durations: false)
            if rendered != last {
                say(rendered)
                last = rendered
            }
            let status = change["status"]?.stringValue ?? ""
            if ["success", "error", "cancelled"].contains(status) {
                // The log stream ends by itself once the change has finished: print all of it first.
                try? await logPrinter?.value
                say(TreeRenderer.render(change))
                if status != "success" { throw ExitCode(1) }
                return
            }
            try await Task.sleep(for: .milliseconds(400))
        }
    }
}

/// Draws a change's step tree: status and duration per step.
enum TreeRenderer {
    static func render(_ change: JSON, durations: Bool = true) -> String {
        var lines = ["change \(change["id"]?.stringValue ?? "") \(change["action"]?.stringValue ?? "") on \(change["project"]?.stringValue ?? "")/\(change["environment"]?.stringValue ?? ""): \(change["status"]?.stringValue ?? "")"]
        func draw(_ step: JSON, _ prefix: String, _ last: Bool) {
            var line = prefix + (last ? "└─ " : "├─ ") + (step["action"]?.stringValue ?? "?") + " [\(step["status"]?.stringValue ?? "?")]"
            if durations, let ms = step["duration_ms"]?.intValue { line += String(format: " %.1fs", Double(ms) / 1000) }
            if let attempt = step["attempt"]?.intValue, attempt > 1 { line += " attempt \(attempt)" }
            if let strategy = step["child_execution_strategy"]?.stringValue { line += " (\(strategy))" }
            if durations, let phases = step["phase_durations_ms"]?.objectValue { line += phaseLine(phases) }
            if let error = step["error"]?.stringValue { line += " — \(error)" }
            lines.append(line)
            let children = step["children"]?.arrayValue ?? []
            for (index, child) in children.enumerated() { draw(child, prefix + (last ? "   " : "│  "), index == children.count - 1) }
        }
        if let root = change["root"], root != .null { draw(root, "", true) }
        return lines.joined(separator: "\n")
    }

    /// ` {build 0.9s: init 0.1s · run 0.6s: init 0.2s, ran 0.3s, completing 0.1s}`: where the
    /// step's time went.
    static func phaseLine(_ phases: [String: JSON]) -> String {
        func seconds(_ key: String) -> String? { phases[key]?.intValue.map { String(format: "%.1fs", Double($0) / 1000) } }
        var parts: [String] = []
        if let build = seconds("build") ?? seconds("build.initialise") {
            parts.append("build \(build)" + (seconds("build.initialise").map { ": init \($0)" } ?? ""))
        }
        if let run = seconds("run") {
            let pieces = [("init", "run.initialise"), ("ran", "run.running"), ("completing", "run.completing")].compactMap { label, key in seconds(key).map { "\(label) \($0)" } }
            parts.append("run \(run)" + (pieces.isEmpty ? "" : ": " + pieces.joined(separator: ", ")))
        }
        return parts.isEmpty ? "" : " {" + parts.joined(separator: " · ") + "}"
    }
}
