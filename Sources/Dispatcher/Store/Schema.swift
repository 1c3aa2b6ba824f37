import GRDB

/// The store's schema, one migration per version; a database is migrated on open.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: projects, environments, properties, changes, steps, logs, outbox") { db in
            try db.execute(sql: """
                CREATE TABLE projects (
                    code TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    git_remote TEXT NOT NULL,
                    created_at REAL NOT NULL
                );
                CREATE TABLE environments (
                    project_code TEXT NOT NULL REFERENCES projects(code),
                    code TEXT NOT NULL,
                    name TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    PRIMARY KEY (project_code, code)
                );
                -- Every version of every properties document; environment_code '' for a project's.
                CREATE TABLE properties (
                    project_code TEXT NOT NULL,
                    environment_code TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    document TEXT NOT NULL,
                    written_by_step TEXT,
                    created_at REAL NOT NULL,
                    PRIMARY KEY (project_code, environment_code, version)
                );
                CREATE TABLE changes (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    project_code TEXT NOT NULL,
                    environment_code TEXT NOT NULL,
                    action TEXT NOT NULL,
                    git_rev TEXT NOT NULL,
                    git_sha TEXT NOT NULL,
                    status TEXT NOT NULL,
                    user TEXT NOT NULL,
                    retry_of TEXT,
                    created_at REAL NOT NULL,
                    started_at REAL,
                    finished_at REAL
                );
                CREATE INDEX changes_by_environment ON changes (project_code, environment_code, status, seq);
                CREATE TABLE steps (
                    id TEXT PRIMARY KEY,
                    change_id TEXT NOT NULL,
                    record TEXT NOT NULL,
                    status TEXT NOT NULL,
                    lease_expires_at REAL,
                    result TEXT,
                    context TEXT
                );
                CREATE INDEX steps_by_change ON steps (change_id);
                CREATE INDEX steps_by_lease ON steps (status, lease_expires_at);
                CREATE TABLE log_lines (
                    change_id TEXT NOT NULL,
                    step_id TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    seq INTEGER NOT NULL,
                    stream TEXT NOT NULL,
                    text TEXT NOT NULL,
                    at INTEGER NOT NULL,
                    PRIMARY KEY (step_id, attempt, seq)
                );
                CREATE INDEX log_lines_by_change ON log_lines (change_id, at);
                CREATE TABLE outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    exchange TEXT NOT NULL,
                    routing_key TEXT NOT NULL,
                    reply_to TEXT,
                    message_type TEXT NOT NULL,
                    body BLOB NOT NULL,
                    created_at REAL NOT NULL,
                    sent_at REAL
                );
                CREATE INDEX outbox_unsent ON outbox (sent_at, id);
                """)
        }
        migrator.registerMigration("v2: attempt history") { db in
            try db.execute(sql: """
                CREATE TABLE attempts (
                    step_id TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    change_id TEXT NOT NULL,
                    worker TEXT,
                    status TEXT NOT NULL,
                    run_started INTEGER NOT NULL DEFAULT 0,
                    error TEXT,
                    queued_at REAL,
                    ended_at REAL,
                    PRIMARY KEY (step_id, attempt)
                );
                CREATE INDEX attempts_by_change ON attempts (change_id);
                """)
        }
        migrator.registerMigration("v3: API tokens") { db in
            try db.execute(sql: """
                -- Only the SHA-256 of a token is kept; the token itself is shown once, at creation.
                CREATE TABLE api_tokens (
                    name TEXT PRIMARY KEY,
                    sha256 TEXT NOT NULL UNIQUE,
                    created_at REAL NOT NULL
                );
                """)
        }
        migrator.registerMigration("v4: token scopes and expiry") { db in
            try db.execute(sql: """
                -- Tokens made before v4 keep what they could do: everything, for ever.
                ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'operator';
                ALTER TABLE api_tokens ADD COLUMN expires_at REAL;
                """)
        }
        migrator.registerMigration("v5-batches") { db in try Store.migrateBatches(db) }
        migrator.registerMigration("v6-web-sessions") { db in try WebSessionSchema.create(db) }
        migrator.registerMigration("v7-properties-written-by-user") { db in
            // The API token a version written through the API came with (versions before v7: unknown).
            try db.execute(sql: "ALTER TABLE properties ADD COLUMN written_by_user TEXT")
        }
        return migrator
    }
}
