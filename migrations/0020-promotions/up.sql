-- Outbound work (issue 18), part three: SMS as a channel (gateway ids, delivery reports,
-- cost), promotions applied to orders, broadcasts to segments, and archived orders.

-- The outbox takes a third channel, 'sms'. SQLite cannot change a CHECK in place, so the
-- table is rebuilt with its rows and ids; the conversation replies that point at their
-- outbox row (ON DELETE SET NULL, which the drop would trigger) get their links back.
-- New columns: what the SMS gateway said about a message — its own id (to match delivery
-- reports), the report ('delivered', 'undelivered', 'expired', 'rejected'), when, how many
-- parts and what it cost (so'm, where the gateway reports a price) — and the broadcast and
-- customer a broadcast message was for.
CREATE TABLE notify_outbox_new (
    id              INTEGER PRIMARY KEY,
    event           TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'telegram', 'sms')),
    recipient       TEXT NOT NULL,
    user_id         INTEGER REFERENCES users(id) ON DELETE SET NULL,
    language        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    extra           TEXT,
    provider        TEXT,
    provider_id     TEXT,
    delivery        TEXT,
    delivered_at    INTEGER,
    parts           INTEGER,
    cost            INTEGER,
    broadcast_id    INTEGER,
    customer_id     INTEGER,
    UNIQUE (dedupe_key, channel, recipient)
);
INSERT INTO notify_outbox_new (id, event, dedupe_key, channel, recipient, user_id, language,
    subject, body, state, attempts, next_attempt_at, last_error, created_at, updated_at, sent_at, extra)
SELECT id, event, dedupe_key, channel, recipient, user_id, language,
    subject, body, state, attempts, next_attempt_at, last_error, created_at, updated_at, sent_at, extra
FROM notify_outbox;
CREATE TEMP TABLE outbox_links AS
    SELECT id, outbox_id FROM conversation_messages WHERE outbox_id IS NOT NULL;
DROP TABLE notify_outbox;
ALTER TABLE notify_outbox_new RENAME TO notify_outbox;
UPDATE conversation_messages
   SET outbox_id = (SELECT l.outbox_id FROM outbox_links l WHERE l.id = conversation_messages.id)
 WHERE id IN (SELECT id FROM outbox_links);
DROP TABLE outbox_links;
CREATE INDEX notify_outbox_due ON notify_outbox(channel, state, next_attempt_at);
CREATE INDEX notify_outbox_state ON notify_outbox(state, updated_at);
CREATE INDEX notify_outbox_provider ON notify_outbox(provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX notify_outbox_broadcast ON notify_outbox(broadcast_id, state) WHERE broadcast_id IS NOT NULL;
CREATE INDEX notify_outbox_sms_to ON notify_outbox(recipient) WHERE channel = 'sms';
-- A delivery report that came before the gateway's id was written on its row (the sender
-- writes ids in batches): kept here and applied when the id is written; a day at most.
CREATE TABLE sms_early_reports (
    provider    TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    delivery    TEXT NOT NULL,
    parts       INTEGER,
    cost        INTEGER,
    at          INTEGER NOT NULL,
    PRIMARY KEY (provider, provider_id)
) WITHOUT ROWID;

-- A promotion: a code the desk types on an order. `value` is a percent (1..100) or an
-- amount in so'm; it applies to labour lines, part lines or both. Valid from `starts_on`
-- to `ends_on` inclusive (shop days, YYYY-MM-DD). `usage_limit` NULL is unlimited; `used`
-- counts the orders it is applied to, and an UPDATE that checks it takes the last use.
CREATE TABLE promotions (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('percent', 'amount')),
    value       INTEGER NOT NULL CHECK (value > 0),
    applies_to  TEXT NOT NULL CHECK (applies_to IN ('labour', 'parts', 'both')),
    starts_on   TEXT NOT NULL,
    ends_on     TEXT NOT NULL,
    usage_limit INTEGER CHECK (usage_limit IS NULL OR usage_limit > 0),
    used        INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    active      INTEGER NOT NULL DEFAULT 1,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CHECK (usage_limit IS NULL OR used <= usage_limit),
    CHECK (kind = 'amount' OR value <= 100)
);

-- Orders a promotion was applied to (one promotion per order), with who and when.
CREATE TABLE promotion_uses (
    id           INTEGER PRIMARY KEY,
    promotion_id INTEGER NOT NULL REFERENCES promotions(id),
    order_id     INTEGER NOT NULL UNIQUE REFERENCES orders(id),
    created_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX promotion_uses_promotion ON promotion_uses(promotion_id, created_at);

-- The discount an order gets from its promotion, kept with every line change; what the
-- order owes is (lines or estimate) - discount - paid (`model::money::due`).
ALTER TABLE orders ADD COLUMN promotion_id INTEGER REFERENCES promotions(id);
ALTER TABLE orders ADD COLUMN discount INTEGER NOT NULL DEFAULT 0 CHECK (discount >= 0);
-- Archived orders are out of lists and search, kept with their history.
ALTER TABLE orders ADD COLUMN archived_at INTEGER;
CREATE INDEX orders_archived ON orders(archived_at) WHERE archived_at IS NOT NULL;

-- A message to a segment's opted-in customers: a promotion or a reminder, on each
-- customer's channel (Telegram when linked, else SMS, else e-mail, among the allowed ones).
CREATE TABLE broadcasts (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    segment_id   INTEGER REFERENCES segments(id) ON DELETE SET NULL,
    promotion_id INTEGER REFERENCES promotions(id),
    body         TEXT NOT NULL,
    channels     TEXT NOT NULL,
    per_second   INTEGER NOT NULL,
    queued_n     INTEGER NOT NULL DEFAULT 0,
    skipped_n    INTEGER NOT NULL DEFAULT 0,
    created_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL
);

-- Who asked not to hear from the shop again, how (`/stop`, an e-mail link, an SMS reply).
CREATE TABLE marketing_stops (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    via         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX marketing_stops_customer ON marketing_stops(customer_id);
