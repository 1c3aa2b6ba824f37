import Foundation
import GRDB
import Protocol

/// A project's or an environment's properties versions, for the dashboard and the API: who
/// wrote each (a step of a change, or a user through the API: the name of their token), and the RFC 6902 diff between two versions with secret
/// values masked (a changed secret shows as an operation on its path with `****`).
enum PropertiesHistory {
    static func versions(_ db: Database, _ project: String, _ environment: String?) throws -> JSON {
        _ = try Store.properties(db, project, environment)
        let rows = try Row.fetchAll(db, sql: """
            SELECT version, written_by_step, written_by_user, created_at FROM properties WHERE project_code = ? AND environment_code = ? ORDER BY version DESC
            """, arguments: [project, environment ?? ""])
        return .array(try rows.map { row in
            // Versions written before the store kept the token's name (v7) have no user.
            var writer: JSON = ["kind": "api", "user": (row["written_by_user"] as String?).map(JSON.string) ?? .null]
            if let stepId = row["written_by_step"] as String? {
                let step = try Store.step(db, stepId)
                let change = try step.flatMap { try? Store.change(db, $0.changeId) }
                writer = [
                    "kind": "step", "step": .string(stepId), "action": step.map { .string($0.action) } ?? .null,
                    "change": step.map { .string($0.changeId) } ?? .null, "user": change.map { .string($0.user) } ?? .null,
                ]
            }
            return ["version": JSON(row["version"] as Int), "written_by": writer, "created_at": Views.time(row["created_at"])]
        })
    }

    static func diff(_ db: Database, _ project: String, _ environment: String?, from: Int, to: Int) throws -> JSON {
        _ = try Store.properties(db, project, environment)
        let (old, new) = (try document(db, project, environment, from), try document(db, project, environment, to))
        let patch = JSONPatch.diff(from: old, to: new)
        return ["from": JSON(from), "to": JSON(to), "patch": JSONPatch(patch.operations.map(masked)).json]
    }

    /// One version's document, secrets opened (for diffing only: never answered as is).
    static func document(_ db: Database, _ project: String, _ environment: String?, _ version: Int) throws -> JSON {
        guard let text = try String.fetchOne(db, sql: """
            SELECT document FROM properties WHERE project_code = ? AND environment_code = ? AND version = ?
            """, arguments: [project, environment ?? "", version])
        else { throw StoreError.notFound("no properties version \(version)") }
        return try SecretsCipher.mapSecretLeaves(try JSON.parse(text)) { try SecretsCipher.openLeaf($0, with: SecretsCipher.current) }
    }

    /// The operation with its value masked as the document holding it at its path would be.
    static func masked(_ operation: JSONPatch.Operation) -> JSONPatch.Operation {
        func mask(_ value: JSON, at path: JSONPointer) -> JSON {
            var document = value
            for token in path.tokens.reversed() { document = .object([token: document]) }
            var masked = SecretProperties.masked(document)
            for token in path.tokens { masked = masked[token] ?? .null }
            return masked
        }
        switch operation {
        case .add(let path, let value): return .add(path: path, value: mask(value, at: path))
        case .replace(let path, let value): return .replace(path: path, value: mask(value, at: path))
        case .test(let path, let value): return .test(path: path, value: mask(value, at: path))
        case .remove, .move, .copy: return operation
        }
    }
}
