import Foundation
import Protocol

/// The JSON shapes of batches in the API (and in batch notifications).
extension Views {
    /// A batch with its counts by member status (`waiting`, `running`, `success`, `error`,
    /// `cancelled`, `skipped`, and `total`) and its timings.
    static func batch(_ batch: BatchRecord, counts: [BatchMemberStatus: Int]) -> JSON {
        var countsJSON: [String: JSON] = Dictionary(uniqueKeysWithValues: BatchMemberStatus.allCases.map { ($0.rawValue, JSON(counts[$0] ?? 0)) })
        countsJSON["total"] = JSON(counts.values.reduce(0, +))
        let end = batch.finishedAt ?? Date().timeIntervalSince1970
        return [
            "id": .string(batch.id), "project": .string(batch.projectCode), "action": .string(batch.action), "git_rev": .string(batch.gitRev),
            "git_sha": .string(batch.gitSha), "environments": .string(batch.selector), "max_parallel": JSON(batch.maxParallel),
            "max_failures": JSON(batch.maxFailures), "canary": JSON(batch.canary), "status": .string(batch.status.rawValue),
            "stop_reason": batch.stopReason.map(JSON.string) ?? .null, "user": .string(batch.user), "retry_of": batch.retryOf.map(JSON.string) ?? .null,
            "counts": .object(countsJSON), "created_at": time(batch.createdAt), "finished_at": time(batch.finishedAt),
            "duration_ms": JSON(Int((end - batch.createdAt) * 1000)),
        ]
    }

    /// A batch with every environment: its change, status, reason and timings.
    static func batchWithMembers(_ batch: BatchRecord, _ members: [BatchMember]) -> JSON {
        let counts = Dictionary(grouping: members, by: \.status).mapValues(\.count)
        guard case .object(var object) = self.batch(batch, counts: counts) else { return .null }
        object["results"] = .array(members.map { member in
            var duration: JSON = .null
            if let started = member.startedAt { duration = JSON(Int(((member.finishedAt ?? Date().timeIntervalSince1970) - started) * 1000)) }
            return [
                "environment": .string(member.environment), "status": .string(member.status.rawValue), "change": member.changeId.map(JSON.string) ?? .null,
                "reason": member.reason.map(JSON.string) ?? .null, "started_at": time(member.startedAt), "finished_at": time(member.finishedAt),
                "duration_ms": duration,
            ]
        })
        return .object(object)
    }
}
