-- Calls: the call log built from the SIP proxy's call events, and missed calls waiting
-- for a callback (one open entry per caller number).

CREATE TABLE calls (
    id               INTEGER PRIMARY KEY,
    -- SIP Call-ID of the caller's INVITE: every event of one call carries it.
    call_id          TEXT NOT NULL UNIQUE,
    direction        TEXT NOT NULL CHECK (direction IN ('internal', 'inbound', 'outbound')),
    from_number      TEXT NOT NULL,
    to_number        TEXT NOT NULL,
    -- The other party's number as matched: E.164 when it parses, else as sent (an
    -- extension). The caller for internal/inbound calls, the callee for outbound ones.
    party_number     TEXT NOT NULL,
    ring_group       TEXT,
    -- Extensions alerted, comma-separated.
    extensions       TEXT NOT NULL DEFAULT '',
    answered_ext     TEXT,
    answered_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    customer_id      INTEGER REFERENCES customers(id) ON DELETE SET NULL,
    -- Open orders of the customer when the call rang: JSON [{"id","number"}].
    open_orders      TEXT NOT NULL DEFAULT '[]',
    -- Unix milliseconds.
    started_ms       INTEGER NOT NULL,
    answered_ms      INTEGER,
    ended_ms         INTEGER,
    ring_ms          INTEGER,
    talk_ms          INTEGER,
    outcome          TEXT NOT NULL DEFAULT 'ringing'
                     CHECK (outcome IN ('ringing', 'answered', 'missed', 'busy', 'no_answer', 'cancelled', 'failed')),
    cause            TEXT
);
CREATE INDEX calls_started ON calls(started_ms);
CREATE INDEX calls_party ON calls(party_number, started_ms);
CREATE INDEX calls_customer ON calls(customer_id, started_ms);
CREATE INDEX calls_user ON calls(answered_user_id, started_ms);

CREATE TABLE missed_calls (
    id              INTEGER PRIMARY KEY,
    -- The caller's number, normalised like calls.party_number.
    number          TEXT NOT NULL,
    customer_id     INTEGER REFERENCES customers(id) ON DELETE SET NULL,
    attempts        INTEGER NOT NULL DEFAULT 1,
    first_ms        INTEGER NOT NULL,
    last_ms         INTEGER NOT NULL,
    last_call       INTEGER REFERENCES calls(id) ON DELETE SET NULL,
    resolved_ms     INTEGER,
    resolved_call   INTEGER REFERENCES calls(id) ON DELETE SET NULL,
    -- 'called_back' (someone called the number and was answered) or 'got_through'
    -- (the caller called again and was answered).
    resolved_how    TEXT CHECK (resolved_how IN ('called_back', 'got_through'))
);
-- One open entry per number.
CREATE UNIQUE INDEX missed_open ON missed_calls(number) WHERE resolved_ms IS NULL;
CREATE INDEX missed_last ON missed_calls(resolved_ms, last_ms);
