import Foundation
import GRDB
import Protocol

/// The dispatcher's state in one SQLite file (WAL). Every change of state happens in one
/// transaction, together with the outbox rows it causes.
///
/// Secret values are encrypted at rest (`SecretsCipher`) with a key kept outside the database
/// (`SecretsKey`, `<database>.key` by default).
public final class Store: Sendable {
    let database: DatabasePool
    /// Seals secrets on write and opens them on read; nil for tools that never touch them.
    let cipher: SecretsCipher?

    /// Opens (and migrates) the database; with a key source, loads or makes the key, checks it
    /// opens what the database holds, and encrypts secrets an older version left in clear.
    public init(path: String, secretsKey: SecretsKeySource = .nextToDatabase) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        switch secretsKey {
        case .nextToDatabase: cipher = SecretsCipher(key: try SecretsKey.load(path + ".key"))
        case .file(let keyPath): cipher = SecretsCipher(key: try SecretsKey.load(keyPath))
        case .none: cipher = nil
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        // Freed pages are zeroed: a secret once written in clear does not linger in the file.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA secure_delete = ON") }
        database = try DatabasePool(path: path, configuration: configuration)
        do {
            try Schema.migrator.migrate(database)
        } catch {
            // Another process (a second dispatcher, `stepfleet token create`) may have migrated
            // the same new file between our check and our write; what it applied is not applied
            // again on the second try.
            Thread.sleep(forTimeInterval: 0.2)
            try Schema.migrator.migrate(database)
        }
        if let cipher {
            try database.write { db in try SecretsCipher.$current.withValue(cipher) { try Self.checkKey(db, cipher); try Self.encryptClearSecrets(db, cipher) } }
            try database.writeWithoutTransaction { db in _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let cipher = cipher
        return try await database.read { db in try SecretsCipher.$current.withValue(cipher) { try body(db) } }
    }

    /// Each write transaction, in three parts: waiting for the single writer, the body, and
    /// the commit (`store.wait`, `store.body`, `store.commit`).
    public let timings = PhaseTimings()

    public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let cipher = cipher
        let timings = timings
        let called = PhaseTimings.now
        return try await database.writeWithoutTransaction { db in
            timings.record("store.wait", since: called)
            var result: T?
            var bodyEnded: UInt64 = 0
            let entered = PhaseTimings.now
            try db.inTransaction {
                result = try SecretsCipher.$current.withValue(cipher) { try body(db) }
                bodyEnded = PhaseTimings.now
                timings.record("store.body", since: entered)
                return .commit
            }
            timings.record("store.commit", since: bodyEnded)
            return result!
        }
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: Projects and environments

    static func project(_ db: Database, _ code: String) throws -> Project {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM projects WHERE code = ?", arguments: [code]) else {
            throw StoreError.notFound("no project \"\(code)\"")
        }
        return Project(code: row["code"], name: row["name"], gitRemote: row["git_remote"])
    }

    static func createProject(_ db: Database, _ project: Project) throws {
        guard try Row.fetchOne(db, sql: "SELECT 1 FROM projects WHERE code = ?", arguments: [project.code]) == nil else {
            throw StoreError.conflict("project \"\(project.code)\" exists already")
        }
        try db.execute(sql: "INSERT INTO projects (code, name, git_remote, created_at) VALUES (?, ?, ?, ?)",
                       arguments: [project.code, project.name, project.gitRemote, now()])
        try insertProperties(db, project.code, "", version: 1, document: .emptyObject, step: nil)
    }

    static func projects(_ db: Database) throws -> [Project] {
        try Row.fetchAll(db, sql: "SELECT * FROM projects ORDER BY code").map {
            Project(code: $0["code"], name: $0["name"], gitRemote: $0["git_remote"])
        }
    }

    static func environment(_ db: Database, _ project: String, _ code: String) throws -> Environment {
        _ = try self.project(db, project)
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM environments WHERE project_code = ? AND code = ?", arguments: [project, code]) else {
            throw StoreError.notFound("project \"\(project)\" has no environment \"\(code)\"")
        }
        return Environment(projectCode: row["project_code"], code: row["code"], name: row["name"])
    }

    static func createEnvironment(_ db: Database, _ environment: Environment) throws {
        _ = try project(db, environment.projectCode)
        guard try Row.fetchOne(db, sql: "SELECT 1 FROM environments WHERE project_code = ? AND code = ?", arguments: [environment.projectCode, environment.code]) == nil else {
            throw StoreError.conflict("environment \"\(environment.code)\" of project \"\(environment.projectCode)\" exists already")
        }
        try db.execute(sql: "INSERT INTO environments (project_code, code, name, created_at) VALUES (?, ?, ?, ?)",
                       arguments: [environment.projectCode, environment.code, environment.name, now()])
        try insertProperties(db, environment.projectCode, environment.code, version: 1, document: .emptyObject, step: nil)
    }

    static func environments(_ db: Database, _ project: String) throws -> [Environment] {
        _ = try self.project(db, project)
        return try Row.fetchAll(db, sql: "SELECT * FROM environments WHERE project_code = ? ORDER BY code", arguments: [project]).map {
            Environment(projectCode: $0["project_code"], code: $0["code"], name: $0["name"])
        }
    }

    // MARK: Properties

    /// The current properties of a project (`environment` nil) or an environment.
    static func properties(_ db: Database, _ project: String, _ environment: String?) throws -> PropertiesVersion {
        if let environment { _ = try self.environment(db, project, environment) } else { _ = try self.project(db, project) }
        guard let row = try Row.fetchOne(db, sql: """
            SELECT version, document FROM properties WHERE project_code = ? AND environment_code = ? ORDER BY version DESC LIMIT 1
            """, arguments: [project, environment ?? ""])
        else { throw StoreError.notFound("no properties") }
        let document = try JSON.parse(row["document"] as String)
        return PropertiesVersion(version: row["version"], properties: try SecretsCipher.mapSecretLeaves(document) { try SecretsCipher.openLeaf($0, with: SecretsCipher.current) })
    }

    /// Writes a new version; with `ifVersion`, only if that is still the current one. Its writer
    /// is a step (`step`) or an API token's holder (`user`, the token's name).
    @discardableResult
    static func setProperties(
        _ db: Database, _ project: String, _ environment: String?, _ document: JSON, ifVersion: Int?, step: String?, user: String? = nil
    ) throws -> PropertiesVersion {
        guard case .object = document else { throw StoreError.invalid("properties must be a JSON object, not \(document.typeName)") }
        let current = try properties(db, project, environment)
        if let ifVersion, ifVersion != current.version {
            throw StoreError.conflict("the properties are at version \(current.version), not \(ifVersion)")
        }
        if current.properties == document { return current }
        try insertProperties(db, project, environment ?? "", version: current.version + 1, document: document, step: step, user: user)
        return PropertiesVersion(version: current.version + 1, properties: document)
    }

    private static func insertProperties(_ db: Database, _ project: String, _ environment: String, version: Int, document: JSON, step: String?, user: String? = nil) throws {
        try db.execute(sql: """
            INSERT INTO properties (project_code, environment_code, version, document, written_by_step, written_by_user, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [project, environment, version, try sealed(document).serialized(), step, user, now()])
    }

    // MARK: Changes and steps

    static func change(_ db: Database, _ id: String) throws -> ChangeRecord {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM changes WHERE id = ?", arguments: [id]) else {
            throw StoreError.notFound("no change \"\(id)\"")
        }
        return changeRecord(row)
    }

    static func changeRecord(_ row: Row) -> ChangeRecord {
        ChangeRecord(
            id: row["id"], projectCode: row["project_code"], environmentCode: row["environment_code"], action: row["action"],
            gitRev: row["git_rev"], gitSha: row["git_sha"], status: ChangeStatus(rawValue: row["status"]) ?? .error, user: row["user"],
            retryOf: row["retry_of"], createdAt: row["created_at"], startedAt: row["started_at"], finishedAt: row["finished_at"])
    }

    static func changes(_ db: Database, project: String?, environment: String?, status: String?, limit: Int) throws -> [ChangeRecord] {
        var clauses: [String] = []
        var arguments: [DatabaseValueConvertible?] = []
        if let project { clauses.append("project_code = ?"); arguments.append(project) }
        if let environment { clauses.append("environment_code = ?"); arguments.append(environment) }
        if let status { clauses.append("status = ?"); arguments.append(status) }
        let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        return try Row.fetchAll(db, sql: "SELECT * FROM changes \(filter) ORDER BY seq DESC LIMIT \(limit)", arguments: StatementArguments(arguments)!)
            .map(changeRecord)
    }

    static func insertChange(_ db: Database, _ change: ChangeRecord) throws {
        try db.execute(sql: """
            INSERT INTO changes (id, project_code, environment_code, action, git_rev, git_sha, status, user, retry_of, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [change.id, change.projectCode, change.environmentCode, change.action, change.gitRev, change.gitSha,
                             change.status.rawValue, change.user, change.retryOf, change.createdAt])
        try Notifications.changeStatus(db, change.id)
    }

    static func updateChange(_ db: Database, _ id: String, status: ChangeStatus, now: Double) throws {
        switch status {
        case .running:
            try db.execute(sql: "UPDATE changes SET status = ?, started_at = COALESCE(started_at, ?) WHERE id = ?", arguments: [status.rawValue, now, id])
        case .success, .error, .cancelled:
            try db.execute(sql: "UPDATE changes SET status = ?, finished_at = ? WHERE id = ?", arguments: [status.rawValue, now, id])
        case .pending:
            try db.execute(sql: "UPDATE changes SET status = ? WHERE id = ?", arguments: [status.rawValue, id])
        }
        try Notifications.changeStatus(db, id)
    }

    static func tree(_ db: Database, changeId: String, leaseSeconds: Double) throws -> ChangeTree {
        let records = try Row.fetchAll(db, sql: "SELECT record FROM steps WHERE change_id = ?", arguments: [changeId]).map { row in
            try JSONDecoder().decode(StepRecord.self, from: Data((row["record"] as String).utf8))
        }
        return ChangeTree(changeId: changeId, steps: records, leaseSeconds: leaseSeconds)
    }

    /// One step's record, without the rest of its change's tree.
    static func step(_ db: Database, _ stepId: String) throws -> StepRecord? {
        guard let record = try String.fetchOne(db, sql: "SELECT record FROM steps WHERE id = ?", arguments: [stepId]) else { return nil }
        return try JSONDecoder().decode(StepRecord.self, from: Data(record.utf8))
    }

    static func changeId(_ db: Database, ofStep stepId: String) throws -> String? {
        try String.fetchOne(db, sql: "SELECT change_id FROM steps WHERE id = ?", arguments: [stepId])
    }

    /// Writes every step of the tree that differs from what is stored, and its attempt history.
    static func save(_ db: Database, _ tree: ChangeTree, before: ChangeTree?) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        for step in tree.steps.values where before?.steps[step.id] != step {
            let record = String(decoding: try encoder.encode(step), as: UTF8.self)
            try db.execute(sql: """
                INSERT INTO steps (id, change_id, record, status, lease_expires_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET record = excluded.record, status = excluded.status, lease_expires_at = excluded.lease_expires_at
                """, arguments: [step.id, step.changeId, record, step.status.rawValue, step.leaseExpiresAt])
            try recordAttempts(db, step, previous: before?.steps[step.id])
        }
    }

    /// One row per attempt: a superseded attempt ends `retried` with the reason; the current
    /// one mirrors the step.
    private static func recordAttempts(_ db: Database, _ step: StepRecord, previous: StepRecord?) throws {
        if let previous, previous.attempt > 0, previous.attempt != step.attempt {
            try db.execute(sql: """
                UPDATE attempts SET status = 'retried', error = ?, ended_at = ? WHERE step_id = ? AND attempt = ?
                """, arguments: [step.error, now(), step.id, previous.attempt])
        }
        guard step.attempt > 0, step.status != .pending else { return }
        try db.execute(sql: """
            INSERT INTO attempts (step_id, attempt, change_id, worker, status, run_started, error, queued_at, ended_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(step_id, attempt) DO UPDATE SET worker = COALESCE(excluded.worker, attempts.worker), status = excluded.status,
                run_started = MAX(attempts.run_started, excluded.run_started), error = excluded.error, ended_at = excluded.ended_at
            """, arguments: [step.id, step.attempt, step.changeId, step.worker, step.status.rawValue, step.runStarted, step.status.isFinal ? step.error : nil,
                               step.queuedAt, step.status.isFinal ? step.finishedAt : nil])
    }

    public struct AttemptRow: Sendable, Equatable {
        public var stepId: String
        public var attempt: Int
        public var worker: String?
        public var status: String
        public var runStarted: Bool
        public var error: String?
    }

    static func attempts(_ db: Database, changeId: String) throws -> [String: [AttemptRow]] {
        let rows = try Row.fetchAll(db, sql: "SELECT * FROM attempts WHERE change_id = ? ORDER BY step_id, attempt", arguments: [changeId]).map {
            AttemptRow(stepId: $0["step_id"], attempt: $0["attempt"], worker: $0["worker"], status: $0["status"], runStarted: $0["run_started"], error: $0["error"])
        }
        return Dictionary(grouping: rows, by: \.stepId)
    }

    /// The step's result (it holds the merged properties, secrets included: sealed whole).
    static func setStepResult(_ db: Database, _ stepId: String, result: StepResult?) throws {
        let text = try result.map { try sealed(String(decoding: try JSONEncoder().encode($0), as: UTF8.self)) }
        try db.execute(sql: "UPDATE steps SET result = ? WHERE id = ?", arguments: [text, stepId])
    }

    static func stepResult(_ db: Database, _ stepId: String) throws -> StepResult? {
        guard let text = try String.fetchOne(db, sql: "SELECT result FROM steps WHERE id = ?", arguments: [stepId]) else { return nil }
        return try JSONDecoder().decode(StepResult.self, from: Data(try opened(text).utf8))
    }

    /// The step context an attempt was given (for patch-conflict reports); sealed whole.
    static func setStepContext(_ db: Database, _ stepId: String, _ context: StepContext) throws {
        let text = try sealed(String(decoding: try JSONEncoder().encode(context), as: UTF8.self))
        try db.execute(sql: "UPDATE steps SET context = ? WHERE id = ?", arguments: [text, stepId])
    }

    static func stepContext(_ db: Database, _ stepId: String) throws -> StepContext? {
        guard let text = try String.fetchOne(db, sql: "SELECT context FROM steps WHERE id = ?", arguments: [stepId]) else { return nil }
        return try JSONDecoder().decode(StepContext.self, from: Data(try opened(text).utf8))
    }

    /// Changes with a step running right now.
    static func changesWithRunningSteps(_ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT DISTINCT change_id FROM steps WHERE status = 'running'")
    }

    /// Gives every running attempt a fresh lease (after a dispatcher restart, so that workers
    /// have time to be heard again).
    /// Each change in a savepoint of its own: one that cannot be read or saved is reported to
    /// `failed` and skipped; the others are renewed.
    static func renewAllLeases(_ db: Database, until: Double, failed: (String, any Error) -> Void) {
        let changes: [String]
        do {
            changes = try String.fetchAll(db, sql: "SELECT DISTINCT change_id FROM steps WHERE status = 'running' AND lease_expires_at IS NOT NULL")
        } catch {
            failed("*", error)
            return
        }
        for changeId in changes {
            do {
                try db.inSavepoint {
                    let before = try tree(db, changeId: changeId, leaseSeconds: 0)
                    var after = before
                    after.renewLeases(until: until)
                    try save(db, after, before: before)
                    return .commit
                }
            } catch {
                failed(changeId, error)
            }
        }
    }

    // MARK: Logs

    static func appendLogs(_ db: Database, changeId: String, _ batch: LogBatch) throws {
        for line in batch.lines {
            try db.execute(sql: """
                INSERT OR IGNORE INTO log_lines (change_id, step_id, attempt, seq, stream, text, at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [changeId, batch.ref.stepId, batch.ref.attempt, line.seq, line.stream.rawValue, line.text, line.at])
        }
    }

    /// A line StepFleet writes itself into a step's log (dispatcher-side events).
    static func appendSystemLog(_ db: Database, changeId: String, stepId: String, attempt: Int, _ text: String) throws {
        // Dispatcher lines use negative sequence numbers so they never collide with a worker's.
        let lowest = try Int.fetchOne(db, sql: "SELECT MIN(seq) FROM log_lines WHERE step_id = ? AND attempt = ?", arguments: [stepId, attempt]) ?? 0
        try db.execute(sql: """
            INSERT INTO log_lines (change_id, step_id, attempt, seq, stream, text, at) VALUES (?, ?, ?, ?, 'system', ?, ?)
            """, arguments: [changeId, stepId, attempt, min(lowest, 0) - 1, text, Int64(now() * 1000)])
    }

    public struct LogLine: Codable, Sendable, Equatable {
        public var stepId: String
        public var attempt: Int
        public var seq: Int
        public var stream: String
        public var text: String
        public var at: Int64
    }

    static func logs(_ db: Database, changeId: String, afterRow: Int64 = 0) throws -> [(row: Int64, line: LogLine)] {
        try Row.fetchAll(db, sql: """
            SELECT rowid, step_id, attempt, seq, stream, text, at FROM log_lines WHERE change_id = ? AND rowid > ? ORDER BY at, rowid
            """, arguments: [changeId, afterRow]).map {
            ($0["rowid"], LogLine(stepId: $0["step_id"], attempt: $0["attempt"], seq: $0["seq"], stream: $0["stream"], text: $0["text"], at: $0["at"]))
        }
    }

    // MARK: Outbox

    public struct OutboxRow: Sendable {
        public let id: Int64
        public let exchange: String
        public let routingKey: String
        public let replyTo: String?
        public let messageType: String
        public let body: Data
    }

    static func addToOutbox(_ db: Database, exchange: String, routingKey: String, replyTo: String?, messageType: String, body: Data) throws {
        try db.execute(sql: """
            INSERT INTO outbox (exchange, routing_key, reply_to, message_type, body, created_at) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [exchange, routingKey, replyTo, messageType, try sealed(body), now()])
    }

    static func unsentOutbox(_ db: Database, limit: Int) throws -> [OutboxRow] {
        try Row.fetchAll(db, sql: "SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?", arguments: [limit]).map {
            OutboxRow(id: $0["id"], exchange: $0["exchange"], routingKey: $0["routing_key"], replyTo: $0["reply_to"], messageType: $0["message_type"], body: try opened($0["body"] as Data))
        }
    }

    static func markSent(_ db: Database, _ ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        try db.execute(sql: "UPDATE outbox SET sent_at = ? WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ",")))",
                       arguments: StatementArguments([now()] + ids.map { $0 as DatabaseValueConvertible })!)
    }
}
