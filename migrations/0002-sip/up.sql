-- SIP: extensions (desk phones), ring groups, and persisted registrations.

CREATE TABLE sip_extensions (
    id           INTEGER PRIMARY KEY,
    number       TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    user_id      INTEGER REFERENCES users(id) ON DELETE SET NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    -- Digest needs the shared secret (or a realm-bound hash of it); kept as the secret so
    -- a realm change and both MD5 and SHA-256 keep working. The data dir is the trust unit.
    secret       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE sip_ring_groups (
    id                   INTEGER PRIMARY KEY,
    number               TEXT NOT NULL UNIQUE,
    name                 TEXT NOT NULL DEFAULT '',
    strategy             TEXT NOT NULL CHECK (strategy IN ('ring_all', 'sequential')),
    member_timeout_secs  INTEGER NOT NULL DEFAULT 20,
    overall_timeout_secs INTEGER NOT NULL DEFAULT 60,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE sip_ring_group_members (
    group_id     INTEGER NOT NULL REFERENCES sip_ring_groups(id) ON DELETE CASCADE,
    extension_id INTEGER NOT NULL REFERENCES sip_extensions(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    PRIMARY KEY (group_id, extension_id)
);

-- Registrations survive a restart; expired rows are swept.
CREATE TABLE sip_bindings (
    extension  TEXT NOT NULL,
    contact    TEXT NOT NULL,
    transport  TEXT NOT NULL CHECK (transport IN ('UDP', 'TCP')),
    source     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    call_id    TEXT NOT NULL,
    cseq       INTEGER NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (extension, contact)
) WITHOUT ROWID;
