import Foundation
import Protocol

/// The JSON shapes of the API's answers.
enum Views {
    static func project(_ project: Project) -> JSON {
        ["code": .string(project.code), "name": .string(project.name), "git_remote": .string(project.gitRemote)]
    }

    static func environment(_ environment: Environment) -> JSON {
        ["project": .string(environment.projectCode), "code": .string(environment.code), "name": .string(environment.name)]
    }

    static func properties(_ version: PropertiesVersion) -> JSON {
        // Secret properties (under opschain.secrets) are never listed.
        ["version": JSON(version.version), "properties": SecretProperties.masked(version.properties)]
    }

    /// ISO 8601 with milliseconds: latencies read from the API (`stepfleet load`) need them.
    static func time(_ seconds: Double?) -> JSON {
        guard let seconds else { return .null }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return .string(formatter.string(from: Date(timeIntervalSince1970: seconds)))
    }

    static func change(_ change: ChangeRecord) -> JSON {
        [
            "id": .string(change.id), "project": .string(change.projectCode), "environment": .string(change.environmentCode),
            "action": .string(change.action), "git_rev": .string(change.gitRev), "git_sha": .string(change.gitSha),
            "status": .string(change.status.rawValue), "user": .string(change.user), "retry_of": change.retryOf.map(JSON.string) ?? .null,
            "created_at": time(change.createdAt), "started_at": time(change.startedAt), "finished_at": time(change.finishedAt),
        ]
    }

    /// A change with its step tree (and each step's attempts).
    static func changeWithSteps(_ change: ChangeRecord, _ tree: ChangeTree, attempts: [String: [Store.AttemptRow]] = [:]) -> JSON {
        guard case .object(var members) = self.change(change) else { return .null }
        members["root"] = tree.root.map { step(tree, $0, attempts) } ?? .null
        return .object(members)
    }

    static func step(_ tree: ChangeTree, _ step: StepRecord, _ attempts: [String: [Store.AttemptRow]]) -> JSON {
        var duration: JSON = .null
        if let started = step.startedAt {
            duration = JSON(Int(((step.finishedAt ?? Date().timeIntervalSince1970) - started) * 1000))
        }
        return [
            "id": .string(step.id), "action": .string(step.action), "status": .string(step.status.rawValue), "attempt": JSON(step.attempt),
            "child_execution_strategy": step.childStrategy.map { .string($0.rawValue) } ?? .null, "error": step.error.map(JSON.string) ?? .null,
            "worker": step.worker.map(JSON.string) ?? .null, "started_at": time(step.startedAt), "finished_at": time(step.finishedAt),
            "queued_at": time(step.queuedAt), "duration_ms": duration, "phase_durations_ms": phaseDurations(step.phaseDurations), "children": .array(tree.children(of: step.id).map { self.step(tree, $0, attempts) }),
            "attempts": .array((attempts[step.id] ?? []).map { attempt in
                [
                    "attempt": JSON(attempt.attempt), "worker": attempt.worker.map(JSON.string) ?? .null, "status": .string(attempt.status),
                    "run_started": .bool(attempt.runStarted), "error": attempt.error.map(JSON.string) ?? .null,
                ]
            }),
        ]
    }

    /// The parts of the current attempt's phases (`PhaseDurations.parts`), in milliseconds.
    static func phaseDurations(_ durations: PhaseDurations?) -> JSON {
        guard let durations else { return .null }
        return .object(Dictionary(uniqueKeysWithValues: durations.parts.map { ($0.name, JSON($0.ms)) }))
    }

    /// One step with the merged properties it ran with (`properties`, secrets as `****`): those
    /// its result reported, else those its context gave it; null when it never got a context.
    static func stepWithProperties(_ tree: ChangeTree, _ step: StepRecord, _ attempts: [String: [Store.AttemptRow]], result: StepResult?, context: StepContext?) -> JSON {
        guard case .object(var members) = self.step(tree, step, attempts) else { return .null }
        // A result with no merged properties (an old worker's, or a step that failed before
        // reading its context) says less than the context the step was given.
        if let reported = result?.step.properties, reported != .emptyObject {
            members["properties"] = SecretProperties.masked(reported)
            members["properties_source"] = "result"
        } else if let context {
            members["properties"] = SecretProperties.masked(context.mergedProperties)
            members["properties_source"] = "context"
        } else {
            members["properties"] = .null
            members["properties_source"] = .null
        }
        return .object(members)
    }

    static func logLine(_ line: Store.LogLine, actions: [String: String]) -> JSON {
        [
            "step": .string(line.stepId), "action": .string(actions[line.stepId] ?? ""), "attempt": JSON(line.attempt), "seq": JSON(line.seq),
            "stream": .string(line.stream), "text": .string(line.text), "at": .number(JSONNumber(Int(line.at))),
        ]
    }

    static func logText(_ line: Store.LogLine, actions: [String: String]) -> String {
        let time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(line.at) / 1000))
        return "\(time) [\(actions[line.stepId] ?? line.stepId)#\(line.attempt)] \(line.stream == "system" ? "" : line.stream + ": ")\(line.text)"
    }
}
