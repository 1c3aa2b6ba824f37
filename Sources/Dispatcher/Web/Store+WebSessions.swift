import Crypto
import Foundation
import GRDB
import Protocol

/// Dashboard sessions: an API token exchanged for a random cookie. The store keeps the cookie's
/// SHA-256 only; a session carries its token's name and scope, a CSRF token of its own, and ends
/// at its expiry, at sign-out, or when its token is revoked or expires.
extension Store {
    /// A live dashboard session.
    struct WebSession: Sendable, Equatable {
        let tokenName: String
        let scope: TokenScope
        /// Sent back in `X-CSRF-Token` with every request that changes state.
        let csrf: String
        /// Seconds since 1970.
        let expiresAt: Double
    }

    /// How long a session lasts at most (less when its token expires sooner).
    static let webSessionSeconds: Double = 12 * 3600

    /// Exchanges an API token for a session: the cookie value (seen only here) and the
    /// session; nil when the token is unknown or has expired.
    func startWebSession(token: String) async throws -> (cookie: String, session: WebSession)? {
        let tokenDigest = Self.digest(token)
        let cookie = Self.randomHex()
        let csrf = Self.randomHex()
        let now = Self.now()
        return try await write { db -> (cookie: String, session: WebSession)? in
            try db.execute(sql: "DELETE FROM web_sessions WHERE expires_at <= ?", arguments: [now])
            guard let row = try Row.fetchOne(db, sql: "SELECT name, scope, expires_at FROM api_tokens WHERE sha256 = ?", arguments: [tokenDigest]) else {
                return nil
            }
            let tokenExpiry: Double? = row["expires_at"]
            if let tokenExpiry, tokenExpiry <= now { return nil }
            let session = WebSession(
                tokenName: row["name"], scope: TokenScope(rawValue: row["scope"]) ?? .read, csrf: csrf,
                expiresAt: min(now + Self.webSessionSeconds, tokenExpiry ?? .infinity))
            try db.execute(sql: """
                INSERT INTO web_sessions (sha256, token_sha256, token_name, scope, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [Self.digest(cookie), tokenDigest, session.tokenName, session.scope.rawValue, csrf, now, session.expiresAt])
            return (cookie, session)
        }
    }

    /// The session a cookie names, if it is live and its token still exists.
    func webSession(cookie: String) async throws -> WebSession? {
        let digest = Self.digest(cookie)
        let now = Self.now()
        return try await read { db in
            try Row.fetchOne(db, sql: """
                SELECT s.token_name, s.scope, s.csrf, s.expires_at FROM web_sessions s JOIN api_tokens t ON t.sha256 = s.token_sha256
                WHERE s.sha256 = ? AND s.expires_at > ? AND (t.expires_at IS NULL OR t.expires_at > ?)
                """, arguments: [digest, now, now]).map {
                WebSession(tokenName: $0["token_name"], scope: TokenScope(rawValue: $0["scope"]) ?? .read, csrf: $0["csrf"], expiresAt: $0["expires_at"])
            }
        }
    }

    /// Ends the session a cookie names (signing out).
    func endWebSession(cookie: String) async throws {
        let digest = Self.digest(cookie)
        try await write { db in try db.execute(sql: "DELETE FROM web_sessions WHERE sha256 = ?", arguments: [digest]) }
    }

    /// 32 random bytes in hex.
    static func randomHex() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { $0.hexString }
    }
}
