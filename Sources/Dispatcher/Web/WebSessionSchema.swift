import GRDB

/// The dashboard's sign-in sessions (migration `v6-web-sessions`): only the SHA-256 of a
/// session's cookie is kept, with the token it was made from (by the token's SHA-256: a revoked
/// token ends its sessions), that token's name and scope, the CSRF token bound to it, and its expiry.
enum WebSessionSchema {
    static func create(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE web_sessions (
                sha256 TEXT PRIMARY KEY,
                token_sha256 TEXT NOT NULL,
                token_name TEXT NOT NULL,
                scope TEXT NOT NULL,
                csrf TEXT NOT NULL,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL
            );
            CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
            """)
    }
}
