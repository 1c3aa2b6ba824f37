import ArgumentParser
import Foundation
import Protocol

struct ChangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "change", abstract: "Run and follow changes.", subcommands: [Create.self, Show.self, List.self, Logs.self, Cancel.self, Retry.self])

    struct Create: AsyncParsableCommand {
        @OptionGroup var options: ServerOptions
        @Option(help: "Project code.") var project: String
        @Option(help: "Environment code.") var environment: String
        @Option(help: "The action to run.") var action: String
        @Option(help: "Git revision (branch, tag or SHA); resolved to a SHA now.") var gitRev = "main"
        @Option(help: "Who asks.") var user = ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        @Flag(help: "Show the step tree as it runs; exit non-zero if the change fails.") var follow = false

        func run() async throws {
            let change = try await options.client.request("POST", "/changes", body: [
                "project": .string(project), "environment": .string(environment), "action": .string(action), "git_rev": .string(gitRev), "user": .string(user),
            ])
            let id = change["id"]?.stringValue ?? ""
            say("created change \(id) (\(change["git_rev"]?.stringValue ?? "") = \(change["git_sha"]?.stringValue ?? ""))")
            if follow { try await ChangeCommand.follow(id, options.client) }
        }
    }

    struct Show: AsyncParsableCommand {
        @OptionGroup var options: ServerOptions
        @Argument(help: "Change id.") var id: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let change = try await options.client.request("GET", "/changes/\(id)")
            say(json ? change.serialized(pretty: true) : TreeRenderer.render(change))
        }
    }

    struct List: AsyncParsableCommand {
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
        @OptionGroup var options: ServerOptions
        @Argument(help: "Change id.") var id: String

        func run() async throws {
            let change = try await options.client.request("POST", "/changes/\(id)/cancel")
            say("change \(id): \(change["status"]?.stringValue ?? "")")
        }
    }

    struct Retry: AsyncParsableCommand {
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

    /// Prints the tree whenever it changes until the change is final; fails if it did not succeed.
    static func follow(_ id: String, _ client: APIClient) async throws {
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
            if let error = step["error"]?.stringValue { line += " — \(error)" }
            lines.append(line)
            let children = step["children"]?.arrayValue ?? []
            for (index, child) in children.enumerated() { draw(child, prefix + (last ? "   " : "│  "), index == children.count - 1) }
        }
        if let root = change["root"], root != .null { draw(root, "", true) }
        return lines.joined(separator: "\n")
    }
}
