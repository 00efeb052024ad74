-- SIP trunks (upstream provider accounts), the numbers they deliver and where those
-- calls go, and the outbound (toll-fraud) policy of each extension.

CREATE TABLE sip_trunks (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    host          TEXT NOT NULL,
    port          INTEGER NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport     TEXT NOT NULL DEFAULT 'UDP' CHECK (transport IN ('UDP', 'TCP')),
    username      TEXT NOT NULL,
    -- Digest needs the secret itself to answer the provider's challenges.
    secret        TEXT NOT NULL,
    auth_username TEXT NOT NULL DEFAULT '',
    from_domain   TEXT NOT NULL DEFAULT '',
    register      INTEGER NOT NULL DEFAULT 1,
    expires       INTEGER NOT NULL DEFAULT 600,
    caller_id     TEXT NOT NULL DEFAULT '',
    -- Further provider addresses allowed to send calls in (comma-separated IPs).
    allow         TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sip_dids (
    trunk_id    INTEGER NOT NULL REFERENCES sip_trunks(id) ON DELETE CASCADE,
    did         TEXT NOT NULL,
    destination TEXT NOT NULL,
    after_hours TEXT,
    PRIMARY KEY (trunk_id, did)
) WITHOUT ROWID;

ALTER TABLE sip_extensions ADD COLUMN outbound_allowed INTEGER NOT NULL DEFAULT 0;
-- Empty: national numbers only.
ALTER TABLE sip_extensions ADD COLUMN outbound_prefixes TEXT NOT NULL DEFAULT '';
ALTER TABLE sip_extensions ADD COLUMN max_calls_per_hour INTEGER NOT NULL DEFAULT 20;
ALTER TABLE sip_extensions ADD COLUMN auto_answer INTEGER NOT NULL DEFAULT 0;
