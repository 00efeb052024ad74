-- Call recording: the policy of each extension, ring group and trunk, and the
-- recordings made (files under <data dir>/recordings, by their path there).

CREATE TABLE recording_policies (
    kind       TEXT NOT NULL CHECK (kind IN ('extension', 'group', 'trunk')),
    -- The extension or ring-group number, or the trunk's id.
    ref        TEXT NOT NULL,
    mode       TEXT NOT NULL CHECK (mode IN ('off', 'on_demand', 'all')),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, ref)
) WITHOUT ROWID;

CREATE TABLE recordings (
    id          INTEGER PRIMARY KEY,
    -- The SIP call id of the call (calls.call_id; the call row may come later).
    call_id     TEXT NOT NULL UNIQUE,
    -- Relative to the recordings directory: YYYY/MM/name.wav.
    path        TEXT NOT NULL UNIQUE,
    -- Unix milliseconds of the first frame.
    started_ms  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX recordings_started ON recordings(started_ms);
