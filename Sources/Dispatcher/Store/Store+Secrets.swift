import Foundation
import GRDB
import Protocol

/// Sealing and opening secrets as rows are written and read (`SecretsCipher`), and the
/// one-time encryption of what an older version stored in clear.
extension Store {
    /// The current store's cipher (bound by `read`/`write`).
    private static var boundCipher: SecretsCipher? { SecretsCipher.current }

    static func sealed(_ document: JSON) throws -> JSON {
        guard let cipher = boundCipher else { return document }
        return try cipher.sealSecrets(in: document)
    }

    static func sealed(_ text: String) throws -> String {
        guard let cipher = boundCipher else { return text }
        return try cipher.seal(text: text)
    }

    static func sealed(_ blob: Data) throws -> Data {
        guard let cipher = boundCipher else { return blob }
        return try cipher.seal(blob: blob)
    }

    static func opened(_ text: String) throws -> String {
        guard SecretsCipher.isSealed(text) else { return text }
        guard let cipher = boundCipher else { throw SecretsKeyError("the database holds encrypted step data and this command has no secrets key") }
        return try cipher.open(text: text)
    }

    static func opened(_ blob: Data) throws -> Data {
        guard SecretsCipher.isSealed(blob) else { return blob }
        guard let cipher = boundCipher else { throw SecretsKeyError("the database holds encrypted outbox messages and this command has no secrets key") }
        return try cipher.open(blob: blob)
    }

    /// Fails (clearly) when the database holds sealed values this key does not open.
    static func checkKey(_ db: Database, _ cipher: SecretsCipher) throws {
        if let text = try String.fetchOne(db, sql: "SELECT context FROM steps WHERE context LIKE 'sfenc:%' LIMIT 1") {
            _ = try cipher.open(text: text)
        }
        if let text = try String.fetchOne(db, sql: "SELECT document FROM properties WHERE instr(document, 'sfenc:v1:') > 0 LIMIT 1") {
            _ = try cipher.openSecrets(in: try JSON.parse(text))
        }
    }

    /// Seals what a database written before secrets were encrypted holds in clear: secret
    /// leaves of property versions, step contexts and results, outbox bodies.
    static func encryptClearSecrets(_ db: Database, _ cipher: SecretsCipher) throws {
        for row in try Row.fetchAll(db, sql: "SELECT rowid, document FROM properties WHERE instr(document, '\"secrets\"') > 0") {
            let document = try JSON.parse(row["document"] as String)
            guard SecretsCipher.hasClearSecrets(document) else { continue }
            try db.execute(sql: "UPDATE properties SET document = ? WHERE rowid = ?",
                           arguments: [try cipher.sealClearSecrets(in: document).serialized(), row["rowid"] as Int64])
        }
        for column in ["context", "result"] {
            for row in try Row.fetchAll(db, sql: "SELECT id, \(column) AS text FROM steps WHERE \(column) IS NOT NULL AND \(column) NOT LIKE 'sfenc:%'") {
                try db.execute(sql: "UPDATE steps SET \(column) = ? WHERE id = ?", arguments: [try cipher.seal(text: row["text"]), row["id"] as String])
            }
        }
        let prefix = SecretsCipher.prefixBytes
        for row in try Row.fetchAll(db, sql: "SELECT id, body FROM outbox WHERE substr(body, 1, ?) <> ?", arguments: [prefix.count, prefix]) {
            try db.execute(sql: "UPDATE outbox SET body = ? WHERE id = ?", arguments: [try cipher.seal(blob: row["body"]), row["id"] as Int64])
        }
    }
}
