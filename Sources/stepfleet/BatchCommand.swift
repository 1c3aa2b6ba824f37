import ArgumentParser
import Foundation
import Protocol

struct BatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch", abstract: "Run one action at one git revision across many environments of a project.",
        subcommands: [Create.self, List.self, Show.self, Cancel.self, Retry.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a batch: the environments' changes start in order, at most --parallel at once; past --max-failures failures the rest are skipped.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Project code.") var project: String
        @Option(help: "The environments: a glob over the project's codes ('prod-*', quoted), or codes separated by commas.") var environments: String
        @Option(help: "The action to run.") var action: String
        @Option(help: "Git revision (branch, tag, full or short SHA), resolved to one SHA for the whole batch; default: the remote's HEAD.")
        var gitRev: String?
        @Option(help: "At most this many of the batch's changes running at once.") var parallel = 1
        @Option(help: "Stop starting changes once more than this many have failed; the rest end skipped.") var maxFailures = 0
        @Option(help: "Run the first N environments first; the rest start only when all of them succeeded.") var canary = 0
        @Option(help: "An id that makes the request idempotent: sending it again returns the same batch.") var requestId: String?
        @Option(help: "Who asks.") var user = ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        @Flag(help: "Show progress until the batch ends, then each environment's result; exit non-zero unless all succeeded.") var follow = false

        func run() async throws {
            let selector: JSON = environments.contains("*") || environments.contains("?")
                ? .string(environments)
                : .array(environments.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) })
            var body: [String: JSON] = [
                "project": .string(project), "environments": selector, "action": .string(action), "max_parallel": JSON(parallel),
                "max_failures": JSON(maxFailures), "canary": JSON(canary), "user": .string(user),
            ]
            if let gitRev { body["git_rev"] = .string(gitRev) }
            if let requestId { body["request_id"] = .string(requestId) }
            let batch = try await options.client.request("POST", "/batches", body: .object(body))
            let id = batch["id"]?.stringValue ?? ""
            say("created batch \(id): \(batch["counts"]?["total"]?.intValue ?? 0) environments, \(action) at \(batch["git_rev"]?.stringValue ?? "") = \(batch["git_sha"]?.stringValue ?? "")")
            if follow { try await BatchCommand.follow(id, options.client) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List batches, newest first.")
        @OptionGroup var options: ServerOptions
        @Option(help: "Only this project.") var project: String?
        @Option(help: "Only this status (running, success, error, cancelled).") var status: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            var query: [String] = []
            if let project { query.append("project=\(project.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")") }
            if let status { query.append("status=\(status.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")") }
            let batches = try await options.client.request("GET", "/batches" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
            if json { return say(batches.serialized(pretty: true)) }
            for batch in batches.arrayValue ?? [] {
                say([batch["id"]?.stringValue, batch["project"]?.stringValue, batch["action"]?.stringValue, batch["status"]?.stringValue,
                     BatchProgress(batch).summary, batch["created_at"]?.stringValue].map { $0 ?? "" }.joined(separator: "\t"))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a batch: status, counts, timings and each environment's result.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Batch id.") var id: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let batch = try await options.client.request("GET", "/batches/\(try pathSegment(id))")
            say(json ? batch.serialized(pretty: true) : BatchProgress(batch).report)
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a batch: its running changes are cancelled, the rest skipped.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Batch id.") var id: String

        func run() async throws {
            let batch = try await options.client.request("POST", "/batches/\(try pathSegment(id))/cancel")
            say("batch \(id): \(batch["status"]?.stringValue ?? "") (\(BatchProgress(batch).summary))")
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a finished batch's failed, cancelled and skipped environments again, as a new batch.")
        @OptionGroup var options: ServerOptions
        @Argument(help: "Batch id.") var id: String
        @Option(help: "Who asks.") var user = ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        @Flag(help: "Follow the new batch (as batch create --follow).") var follow = false

        func run() async throws {
            let batch = try await options.client.request("POST", "/batches/\(try pathSegment(id))/retry", body: ["user": .string(user)])
            let newId = batch["id"]?.stringValue ?? ""
            say("created batch \(newId), retrying \(id): \(batch["counts"]?["total"]?.intValue ?? 0) environments")
            if follow { try await BatchCommand.follow(newId, options.client) }
        }
    }

    /// A batch id as one URL path segment (it is hostile input like any other).
    static func pathSegment(_ id: String) throws -> String {
        guard !id.isEmpty, let encoded = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_"))) else {
            throw CLIError("a batch id is not empty")
        }
        return encoded
    }

    /// Shows progress until the batch ends: one line rewritten in place on a terminal, a line
    /// every few seconds (when something moved) otherwise; then each environment's result.
    /// Fails unless every environment succeeded.
    static func follow(_ id: String, _ client: APIClient) async throws {
        let terminal = isatty(STDOUT_FILENO) == 1
        let started = ContinuousClock.now
        var lastLine = ""
        var lastPrinted = ContinuousClock.now - .seconds(60)
        while true {
            let batch = try await client.request("GET", "/batches/\(try pathSegment(id))")
            let progress = BatchProgress(batch)
            let since = ContinuousClock.now - started
            let elapsed = Double(since.components.seconds) + Double(since.components.attoseconds) / 1e18
            let line = progress.line(elapsed: elapsed)
            if terminal {
                writeInPlace(line)
            } else if progress.finished || (progress.summary != lastLine && ContinuousClock.now - lastPrinted >= .seconds(2))
                || ContinuousClock.now - lastPrinted >= .seconds(30) {
                say(line)
                lastLine = progress.summary
                lastPrinted = ContinuousClock.now
            }
            if progress.finished {
                if terminal { writeInPlace(line + "\n") }
                say(progress.report)
                if batch["status"]?.stringValue != "success" { throw ExitCode(1) }
                return
            }
            try await Task.sleep(for: .milliseconds(terminal ? 250 : 1000))
        }
    }

    /// Rewrites the terminal's current line.
    private static func writeInPlace(_ text: String) {
        let bytes = Array(("\r\u{1B}[K" + text).utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written > 0 { offset += written } else if errno != EINTR && errno != EAGAIN { return }
        }
    }
}

/// A batch's counts, read from the API's answer, and how to show them.
struct BatchProgress {
    let batch: JSON
    let total, success, error, cancelled, skipped, running, waiting: Int

    init(_ batch: JSON) {
        self.batch = batch
        let counts = batch["counts"]
        total = counts?["total"]?.intValue ?? 0
        success = counts?["success"]?.intValue ?? 0
        error = counts?["error"]?.intValue ?? 0
        cancelled = counts?["cancelled"]?.intValue ?? 0
        skipped = counts?["skipped"]?.intValue ?? 0
        running = counts?["running"]?.intValue ?? 0
        waiting = counts?["waiting"]?.intValue ?? 0
    }

    var done: Int { success + error + cancelled + skipped }
    var finished: Bool { (batch["status"]?.stringValue ?? "running") != "running" }

    var summary: String {
        "\(done)/\(total) done, \(running) running, \(error + cancelled) failed, \(skipped) skipped"
    }

    /// The progress line: counts, elapsed time and, while running, an estimate of the time left
    /// from the pace so far.
    func line(elapsed: Double) -> String {
        var text = "batch \(batch["status"]?.stringValue ?? ""): \(summary), \(Self.duration(elapsed)) elapsed"
        let finishedChanges = success + error + cancelled
        if !finished, finishedChanges > 0, done < total {
            text += ", ETA \(Self.duration(elapsed / Double(finishedChanges) * Double(total - done)))"
        }
        return text
    }

    /// The batch, its stop reason and a table of its environments.
    var report: String {
        var lines = [
            "batch \(batch["id"]?.stringValue ?? "") \(batch["action"]?.stringValue ?? "") on \(batch["project"]?.stringValue ?? "") at \(String((batch["git_sha"]?.stringValue ?? "").prefix(12))): \(batch["status"]?.stringValue ?? "") (\(summary))",
        ]
        if let reason = batch["stop_reason"]?.stringValue { lines.append("stopped: \(reason)") }
        let rows = (batch["results"]?.arrayValue ?? []).map { result in
            [result["environment"]?.stringValue ?? "", result["status"]?.stringValue ?? "",
             result["duration_ms"]?.intValue.map { Self.duration(Double($0) / 1000) } ?? "", result["change"]?.stringValue ?? "",
             result["reason"]?.stringValue ?? ""]
        }
        guard !rows.isEmpty else { return lines.joined(separator: "\n") }
        let header = ["ENVIRONMENT", "RESULT", "TIME", "CHANGE", "REASON"]
        let widths = (0..<4).map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            lines.append((0..<4).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") + "  " + row[4])
        }
        return lines.map { $0.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }.joined(separator: "\n")
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded())
        if whole < 60 { return String(format: "%.1fs", seconds) }
        if whole < 3600 { return "\(whole / 60)m\(String(format: "%02d", whole % 60))s" }
        return "\(whole / 3600)h\(String(format: "%02d", whole / 60 % 60))m"
    }
}
