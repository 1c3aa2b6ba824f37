import Foundation
import GRDB
import Protocol

/// A batch as the store keeps it (its members are in `batch_members`).
public struct BatchRecord: Sendable, Equatable {
    public var id: String
    public var projectCode: String
    public var action: String
    public var gitRev: String
    public var gitSha: String
    /// What was asked for: a glob (`prod-*`) or the list of environments, as given.
    public var selector: String
    public var maxParallel: Int
    public var maxFailures: Int
    public var canary: Int
    public var status: BatchStatus
    public var stopReason: String?
    public var cancelRequested: Bool
    public var user: String
    public var retryOf: String?
    public var createdAt: Double
    public var finishedAt: Double?
}

/// Batches, their members and the request ids of work handed over the request queue.
extension Store {
    static func migrateBatches(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE batches (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                project_code TEXT NOT NULL,
                action TEXT NOT NULL,
                git_rev TEXT NOT NULL,
                git_sha TEXT NOT NULL,
                selector TEXT NOT NULL,
                max_parallel INTEGER NOT NULL,
                max_failures INTEGER NOT NULL,
                canary INTEGER NOT NULL,
                status TEXT NOT NULL,
                stop_reason TEXT,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                user TEXT NOT NULL,
                retry_of TEXT,
                created_at REAL NOT NULL,
                finished_at REAL
            );
            CREATE INDEX batches_by_status ON batches (status, seq);
            -- One row per environment of a batch; change_id once its change was made.
            CREATE TABLE batch_members (
                batch_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                environment_code TEXT NOT NULL,
                status TEXT NOT NULL,
                change_id TEXT UNIQUE,
                reason TEXT,
                started_at REAL,
                finished_at REAL,
                PRIMARY KEY (batch_id, position)
            );
            -- Work handed over the request queue: a request id creates its change or batch once.
            CREATE TABLE requests (
                request_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                created_id TEXT NOT NULL,
                user TEXT NOT NULL,
                created_at REAL NOT NULL
            );
            """)
    }

    static func batchRecord(_ row: Row) -> BatchRecord {
        BatchRecord(
            id: row["id"], projectCode: row["project_code"], action: row["action"], gitRev: row["git_rev"], gitSha: row["git_sha"],
            selector: row["selector"], maxParallel: row["max_parallel"], maxFailures: row["max_failures"], canary: row["canary"],
            status: BatchStatus(rawValue: row["status"]) ?? .error, stopReason: row["stop_reason"], cancelRequested: row["cancel_requested"],
            user: row["user"], retryOf: row["retry_of"], createdAt: row["created_at"], finishedAt: row["finished_at"])
    }

    static func batch(_ db: Database, _ id: String) throws -> BatchRecord {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM batches WHERE id = ?", arguments: [id]) else {
            throw StoreError.notFound("no batch \"\(id)\"")
        }
        return batchRecord(row)
    }

    static func batches(_ db: Database, project: String?, status: String?, limit: Int) throws -> [BatchRecord] {
        var clauses: [String] = []
        var arguments: [DatabaseValueConvertible?] = []
        if let project { clauses.append("project_code = ?"); arguments.append(project) }
        if let status { clauses.append("status = ?"); arguments.append(status) }
        let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        return try Row.fetchAll(db, sql: "SELECT * FROM batches \(filter) ORDER BY seq DESC LIMIT \(limit)", arguments: StatementArguments(arguments)!)
            .map(batchRecord)
    }

    static func batchMembers(_ db: Database, _ batchId: String) throws -> [BatchMember] {
        try Row.fetchAll(db, sql: "SELECT * FROM batch_members WHERE batch_id = ? ORDER BY position", arguments: [batchId]).map { row in
            var member = BatchMember(position: row["position"], environment: row["environment_code"])
            member.status = BatchMemberStatus(rawValue: row["status"]) ?? .error
            member.changeId = row["change_id"]
            member.reason = row["reason"]
            member.startedAt = row["started_at"]
            member.finishedAt = row["finished_at"]
            return member
        }
    }

    /// Counts of a batch's members by status (for lists, without loading every member).
    static func batchCounts(_ db: Database, _ batchId: String) throws -> [BatchMemberStatus: Int] {
        var counts: [BatchMemberStatus: Int] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM batch_members WHERE batch_id = ? GROUP BY status", arguments: [batchId]) {
            if let status = BatchMemberStatus(rawValue: row["status"]) { counts[status] = row["n"] }
        }
        return counts
    }

    static func plan(_ db: Database, _ batch: BatchRecord) throws -> BatchPlan {
        BatchPlan(
            batchId: batch.id, maxParallel: batch.maxParallel, maxFailures: batch.maxFailures, canary: batch.canary, members: try batchMembers(db, batch.id),
            status: batch.status, stopReason: batch.stopReason, cancelRequested: batch.cancelRequested, finishedAt: batch.finishedAt)
    }

    static func insertBatch(_ db: Database, _ batch: BatchRecord, _ plan: BatchPlan) throws {
        try db.execute(sql: """
            INSERT INTO batches (id, project_code, action, git_rev, git_sha, selector, max_parallel, max_failures, canary, status, user, retry_of, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [batch.id, batch.projectCode, batch.action, batch.gitRev, batch.gitSha, batch.selector, batch.maxParallel, batch.maxFailures,
                             batch.canary, batch.status.rawValue, batch.user, batch.retryOf, batch.createdAt])
        try savePlan(db, plan, before: nil)
    }

    /// Writes what changed in a batch's plan: its own row and the members that moved.
    static func savePlan(_ db: Database, _ plan: BatchPlan, before: BatchPlan?) throws {
        try db.execute(sql: "UPDATE batches SET status = ?, stop_reason = ?, cancel_requested = ?, finished_at = ? WHERE id = ?",
                       arguments: [plan.status.rawValue, plan.stopReason, plan.cancelRequested, plan.finishedAt, plan.batchId])
        for member in plan.members where before?.members.first(where: { $0.position == member.position }) != member {
            try db.execute(sql: """
                INSERT INTO batch_members (batch_id, position, environment_code, status, change_id, reason, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(batch_id, position) DO UPDATE SET status = excluded.status, change_id = excluded.change_id, reason = excluded.reason,
                    started_at = excluded.started_at, finished_at = excluded.finished_at
                """, arguments: [plan.batchId, member.position, member.environment, member.status.rawValue, member.changeId, member.reason, member.startedAt, member.finishedAt])
        }
    }

    /// The batch a change belongs to, if any.
    static func batchId(_ db: Database, ofChange changeId: String) throws -> String? {
        try String.fetchOne(db, sql: "SELECT batch_id FROM batch_members WHERE change_id = ?", arguments: [changeId])
    }

    static func runningBatches(_ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT id FROM batches WHERE status = 'running' ORDER BY seq")
    }

    /// The status of each change of `ids` that exists.
    static func changeStatuses(_ db: Database, _ ids: [String]) throws -> [String: ChangeStatus] {
        var result: [String: ChangeStatus] = [:]
        for id in ids {
            if let text = try String.fetchOne(db, sql: "SELECT status FROM changes WHERE id = ?", arguments: [id]) {
                result[id] = ChangeStatus(rawValue: text) ?? .error
            }
        }
        return result
    }

    // MARK: Request ids

    /// What a request id created before (its kind, `change` or `batch`, and id), if it was seen.
    static func request(_ db: Database, _ requestId: String) throws -> (kind: String, id: String)? {
        try Row.fetchOne(db, sql: "SELECT kind, created_id FROM requests WHERE request_id = ?", arguments: [requestId]).map { ($0["kind"], $0["created_id"]) }
    }

    static func recordRequest(_ db: Database, _ requestId: String, kind: String, createdId: String, user: String) throws {
        try db.execute(sql: "INSERT INTO requests (request_id, kind, created_id, user, created_at) VALUES (?, ?, ?, ?, ?)",
                       arguments: [requestId, kind, createdId, user, now()])
    }
}
