import GRDB
import Protocol

extension Store {
    /// Deletes a project, its environments and every version of their properties (secrets
    /// included). Its changes stay, with their steps and logs, as the record of what ran: they
    /// are still listed and shown by id. Refused while one of its changes is pending or running.
    static func deleteProject(_ db: Database, _ code: String) throws -> JSON {
        _ = try project(db, code)
        try refuseWhileActive(db, "project \"\(code)\"", where: "project_code = ?", [code])
        let kept = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE project_code = ?", arguments: [code]) ?? 0
        let environments = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM environments WHERE project_code = ?", arguments: [code]) ?? 0
        try db.execute(sql: "DELETE FROM properties WHERE project_code = ?", arguments: [code])
        try db.execute(sql: "DELETE FROM environments WHERE project_code = ?", arguments: [code])
        try db.execute(sql: "DELETE FROM projects WHERE code = ?", arguments: [code])
        return ["deleted": ["project": .string(code)], "environments_deleted": JSON(environments), "changes_kept": JSON(kept)]
    }

    /// Deletes an environment and every version of its properties; its changes stay (see
    /// `deleteProject`). Refused while one of its changes is pending or running.
    static func deleteEnvironment(_ db: Database, _ project: String, _ code: String) throws -> JSON {
        _ = try environment(db, project, code)
        try refuseWhileActive(db, "environment \"\(project)/\(code)\"", where: "project_code = ? AND environment_code = ?", [project, code])
        let kept = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM changes WHERE project_code = ? AND environment_code = ?", arguments: [project, code]) ?? 0
        try db.execute(sql: "DELETE FROM properties WHERE project_code = ? AND environment_code = ?", arguments: [project, code])
        try db.execute(sql: "DELETE FROM environments WHERE project_code = ? AND code = ?", arguments: [project, code])
        return ["deleted": ["project": .string(project), "environment": .string(code)], "changes_kept": JSON(kept)]
    }

    private static func refuseWhileActive(_ db: Database, _ what: String, where clause: String, _ arguments: [String]) throws {
        let active = try String.fetchAll(
            db, sql: "SELECT id FROM changes WHERE \(clause) AND status IN ('pending', 'running') ORDER BY seq LIMIT 5",
            arguments: StatementArguments(arguments))
        guard active.isEmpty else {
            throw StoreError.conflict(
                "\(what) has changes pending or running (\(active.joined(separator: ", "))); cancel them (stepfleet change cancel ID) or let them finish, then delete it")
        }
    }
}
