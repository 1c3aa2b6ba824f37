import Crypto
import Foundation
import GRDB
import Protocol

/// API bearer tokens: `sft_` and 32 random bytes in hex, stored as their SHA-256 only, each
/// with a scope and an optional expiry.
extension Store {
    /// What a token may do.
    public enum TokenScope: String, Sendable, CaseIterable {
        /// `GET` (and `HEAD`) only: list and show, follow logs.
        case read
        /// Everything.
        case `operator`
    }

    public struct TokenInfo: Sendable {
        public let name: String
        public let createdAt: Double
        public let scope: TokenScope
        /// Seconds since 1970; nil: never.
        public let expiresAt: Double?
    }

    /// A presented token that is known: its name, scope and whether it has expired.
    struct TokenGrant: Sendable {
        let name: String
        let scope: TokenScope
        let expiresAt: Double?
    }

    /// Creates a token named `name` and returns it (the only time it is seen).
    public func createToken(name: String, scope: TokenScope = .operator, expiresAt: Double? = nil) async throws -> String {
        guard !name.isEmpty, name.count <= 64 else { throw StoreError.invalid("a token name is 1 to 64 characters") }
        let token = "sft_" + SymmetricKey(size: .bits256).withUnsafeBytes { $0.hexString }
        let digest = Self.digest(token)
        try await write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM api_tokens WHERE name = ?", arguments: [name]) == nil else {
                throw StoreError.conflict("a token named \"\(name)\" exists already")
            }
            try db.execute(sql: "INSERT INTO api_tokens (name, sha256, created_at, scope, expires_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, digest, Self.now(), scope.rawValue, expiresAt])
        }
        return token
    }

    public func tokens() async throws -> [TokenInfo] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT name, created_at, scope, expires_at FROM api_tokens ORDER BY name").map {
                TokenInfo(name: $0["name"], createdAt: $0["created_at"], scope: TokenScope(rawValue: $0["scope"]) ?? .read, expiresAt: $0["expires_at"])
            }
        }
    }

    public func revokeToken(name: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM api_tokens WHERE name = ?", arguments: [name])
            guard db.changesCount > 0 else { throw StoreError.notFound("no token named \"\(name)\"") }
        }
    }

    /// What the token may do, if it is one. An unknown scope reads as `read` (the narrower).
    func grant(for token: String) async throws -> TokenGrant? {
        let digest = Self.digest(token)
        return try await read { db in
            try Row.fetchOne(db, sql: "SELECT name, scope, expires_at FROM api_tokens WHERE sha256 = ?", arguments: [digest]).map {
                TokenGrant(name: $0["name"], scope: TokenScope(rawValue: $0["scope"]) ?? .read, expiresAt: $0["expires_at"])
            }
        }
    }

    static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).hexString
    }
}
