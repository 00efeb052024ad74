-- Foundation: accounts, sessions, login audit, API tokens, runtime settings, activity log.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'master')),
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    language      TEXT NOT NULL DEFAULT 'uz',
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash   BLOB PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ip           TEXT NOT NULL,
    user_agent   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE login_audit (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    username   TEXT NOT NULL COLLATE NOCASE,
    user_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    success    INTEGER NOT NULL CHECK (success IN (0, 1)),
    reason     TEXT NOT NULL,
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX login_audit_username_at ON login_audit(username, at);
CREATE INDEX login_audit_ip_at ON login_audit(ip, at);
CREATE INDEX login_audit_at ON login_audit(at);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE activity_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    action      TEXT NOT NULL,
    entity      TEXT NOT NULL,
    entity_id   INTEGER,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX activity_log_at ON activity_log(at);
CREATE INDEX activity_log_entity ON activity_log(entity, entity_id);
