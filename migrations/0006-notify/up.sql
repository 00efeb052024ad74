-- Notifications: the durable outbox, Telegram chat links, one-time link codes and
-- admin-edited templates. Rules and channel settings live in `settings`.

-- One row per (cause, channel, recipient). Written in the same transaction as the change
-- that causes it; the worker delivers it later. `dedupe_key` names the cause, so the same
-- event queued twice for the same recipient is stored (and sent) once.
CREATE TABLE notify_outbox (
    id              INTEGER PRIMARY KEY,
    event           TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'telegram')),
    recipient       TEXT NOT NULL,
    user_id         INTEGER REFERENCES users(id) ON DELETE SET NULL,
    language        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    -- pending → sending → sent; failed = permanent error; dead = gave up after the cap.
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Unix milliseconds: backoff and retry_after need sub-second precision in tests.
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (dedupe_key, channel, recipient)
);
CREATE INDEX notify_outbox_due ON notify_outbox(channel, state, next_attempt_at);
CREATE INDEX notify_outbox_state ON notify_outbox(state, updated_at);

-- A Telegram private chat that talked to the bot, linked to a staff user and/or a
-- customer. customer_id has no foreign key: customers belong to the core's migration.
CREATE TABLE telegram_chats (
    chat_id     INTEGER PRIMARY KEY,
    user_id     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    customer_id INTEGER,
    language    TEXT,
    -- Set when Telegram says the user blocked the bot; sending stops until they write again.
    blocked_at  INTEGER,
    linked_at   INTEGER NOT NULL
);
CREATE INDEX telegram_chats_user ON telegram_chats(user_id);
CREATE INDEX telegram_chats_customer ON telegram_chats(customer_id);

-- One-time deep-link codes (`/start <code>`) that link a staff member's chat.
CREATE TABLE telegram_link_codes (
    code       TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Admin overrides of the built-in templates (src/i18n/catalog/notify.*.toml).
CREATE TABLE notify_templates (
    event      TEXT NOT NULL,
    language   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (event, language)
) WITHOUT ROWID;
