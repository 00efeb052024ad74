-- A missed call an operator marks done by hand (the customer was reached another way, or
-- the call was spam): a third way an entry resolves, with who did it. SQLite cannot change
-- a CHECK constraint, so the table is rebuilt with the same rows and indexes.
CREATE TABLE missed_calls_new (
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
    -- 'called_back' (someone called the number and was answered), 'got_through' (the
    -- caller called again and was answered) or 'done' (marked by resolved_user).
    resolved_how    TEXT CHECK (resolved_how IN ('called_back', 'got_through', 'done')),
    resolved_user   INTEGER REFERENCES users(id) ON DELETE SET NULL
);
INSERT INTO missed_calls_new (id, number, customer_id, attempts, first_ms, last_ms, last_call,
        resolved_ms, resolved_call, resolved_how)
    SELECT id, number, customer_id, attempts, first_ms, last_ms, last_call, resolved_ms,
        resolved_call, resolved_how
    FROM missed_calls;
DROP TABLE missed_calls;
ALTER TABLE missed_calls_new RENAME TO missed_calls;
-- One open entry per number.
CREATE UNIQUE INDEX missed_open ON missed_calls(number) WHERE resolved_ms IS NULL;
CREATE INDEX missed_last ON missed_calls(resolved_ms, last_ms);
