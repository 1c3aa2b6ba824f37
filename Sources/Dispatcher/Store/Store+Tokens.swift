import Crypto
import Foundation
import GRDB
import Protocol

/// API bearer tokens: `sft_` and 32 random bytes in hex, stored as their SHA-256 only.
extension Store {
    public struct TokenInfo: Sendable {
        public let name: String
        public let createdAt: Double
    }

    /// Creates a token named `name` and returns it (the only time it is seen).
    public func createToken(name: String) async throws -> String {
        guard !name.isEmpty, name.count <= 64 else { throw StoreError.invalid("a token name is 1 to 64 characters") }
        let token = "sft_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.hexString }
        let digest = Self.digest(token)
        try await write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM api_tokens WHERE name = ?", arguments: [name]) == nil else {
                throw StoreError.conflict("a token named \"\(name)\" exists already")
            }
            try db.execute(sql: "INSERT INTO api_tokens (name, sha256, created_at) VALUES (?, ?, ?)", arguments: [name, digest, Self.now()])
        }
        return token
    }

    public func tokens() async throws -> [TokenInfo] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT name, created_at FROM api_tokens ORDER BY name").map { TokenInfo(name: $0["name"], createdAt: $0["created_at"]) }
        }
    }

    public func revokeToken(name: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM api_tokens WHERE name = ?", arguments: [name])
            guard db.changesCount > 0 else { throw StoreError.notFound("no token named \"\(name)\"") }
        }
    }

    /// The name of the token, if it is one.
    func tokenName(for token: String) async throws -> String? {
        let digest = Self.digest(token)
        return try await read { db in try String.fetchOne(db, sql: "SELECT name FROM api_tokens WHERE sha256 = ?", arguments: [digest]) }
    }

    static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).hexString
    }
}
