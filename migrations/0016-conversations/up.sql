-- Conversations with customers (issue 17): a thread per Telegram chat or web-widget
-- visitor, its messages, canned replies and the shop's procedures.

CREATE TABLE conversations (
    id               INTEGER PRIMARY KEY,
    channel          TEXT NOT NULL CHECK (channel IN ('telegram', 'web')),
    -- The Telegram chat (channel 'telegram') or the widget visitor's id (channel 'web').
    address          TEXT NOT NULL,
    customer_id      INTEGER REFERENCES customers(id) ON DELETE SET NULL,
    -- The sender's own name as Telegram gives it, for threads not yet linked to a customer.
    title            TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    assignee_id      INTEGER REFERENCES users(id) ON DELETE SET NULL,
    -- Customer messages not yet read by staff (the thread is shared: one reader reads it).
    unread           INTEGER NOT NULL DEFAULT 0,
    -- The first customer message staff have not answered yet; NULL once answered.
    waiting_since    INTEGER,
    last_message_at  INTEGER NOT NULL,
    last_preview     TEXT NOT NULL DEFAULT '',
    -- Set once the contact-request button was offered to an unknown sender.
    asked_contact_at INTEGER,
    opened_at        INTEGER NOT NULL,
    first_response_at INTEGER,
    closed_at        INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (channel, address)
);
-- The inbox: newest first within a state, per assignee and unassigned.
CREATE INDEX conversations_inbox ON conversations(state, last_message_at DESC, id DESC);
CREATE INDEX conversations_assignee ON conversations(assignee_id, state, last_message_at DESC);
CREATE INDEX conversations_customer ON conversations(customer_id);
-- The sender's own name, searched by prefix (LIKE 'q%' uses a NOCASE index).
CREATE INDEX conversations_title ON conversations(title COLLATE NOCASE);
CREATE INDEX conversations_unread ON conversations(state, assignee_id) WHERE unread > 0;

CREATE TABLE conversation_messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    -- in: from the customer; out: a reply; note: staff-only; event: assignment, transfer,
    -- close, reopen, link (body is JSON then).
    direction       TEXT NOT NULL CHECK (direction IN ('in', 'out', 'note', 'event')),
    kind            TEXT NOT NULL,
    author_id       INTEGER REFERENCES users(id) ON DELETE SET NULL,
    body            TEXT NOT NULL DEFAULT '',
    -- The order the message is about, when known (a reply about an order, a customer's
    -- message while they have exactly one open order, a public order comment).
    order_id        INTEGER REFERENCES orders(id) ON DELETE SET NULL,
    -- Telegram's update id: each update is stored once, with the poller's offset.
    tg_update_id    INTEGER UNIQUE,
    tg_message_id   INTEGER,
    -- A file: Telegram's file id to fetch it, then the stored copy under
    -- attachments/conversations/<conversation>/.
    file_id         TEXT,
    file_name       TEXT,
    file_mime       TEXT,
    file_size       INTEGER,
    file_path       TEXT,
    -- pending → stored; refused (over the limit or a forbidden type) or failed (after retries).
    file_state      TEXT CHECK (file_state IN ('pending', 'stored', 'refused', 'failed')),
    file_error      TEXT,
    file_attempts   INTEGER NOT NULL DEFAULT 0,
    -- A reply's delivery is its outbox row's state.
    outbox_id       INTEGER REFERENCES notify_outbox(id) ON DELETE SET NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX conversation_messages_thread ON conversation_messages(conversation_id, id);
CREATE INDEX conversation_messages_order ON conversation_messages(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX conversation_messages_outbox ON conversation_messages(outbox_id) WHERE outbox_id IS NOT NULL;
CREATE INDEX conversation_messages_files ON conversation_messages(file_state) WHERE file_state = 'pending';
-- First-response and resolution times per agent.
CREATE INDEX conversation_messages_author ON conversation_messages(author_id, created_at) WHERE direction = 'out';

-- Search over the thread's text (the inbox search box).
CREATE VIRTUAL TABLE conversation_messages_fts USING fts5(
    body, content='conversation_messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER conversation_messages_fts_ai AFTER INSERT ON conversation_messages
WHEN new.direction IN ('in', 'out', 'note') BEGIN
    INSERT INTO conversation_messages_fts(rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER conversation_messages_fts_ad AFTER DELETE ON conversation_messages
WHEN old.direction IN ('in', 'out', 'note') BEGIN
    INSERT INTO conversation_messages_fts(conversation_messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;

-- Canned answers, one text per language, with {variables}.
CREATE TABLE quick_replies (
    id         INTEGER PRIMARY KEY,
    shortcut   TEXT NOT NULL UNIQUE COLLATE NOCASE,
    title      TEXT NOT NULL,
    body_uz    TEXT NOT NULL DEFAULT '',
    body_uz_cyrl TEXT NOT NULL DEFAULT '',
    body_ru    TEXT NOT NULL DEFAULT '',
    body_en    TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
);

-- The shop's procedures (Markdown), searchable.
CREATE TABLE sop_documents (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    updated_at INTEGER NOT NULL
);
CREATE VIRTUAL TABLE sop_documents_fts USING fts5(
    title, body, content='sop_documents', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER sop_documents_fts_ai AFTER INSERT ON sop_documents BEGIN
    INSERT INTO sop_documents_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER sop_documents_fts_ad AFTER DELETE ON sop_documents BEGIN
    INSERT INTO sop_documents_fts(sop_documents_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER sop_documents_fts_au AFTER UPDATE ON sop_documents BEGIN
    INSERT INTO sop_documents_fts(sop_documents_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO sop_documents_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;

-- What a Telegram message carries besides text: a file to send (photo or document) or a
-- reply keyboard (the "share my phone number" button). JSON; NULL for plain text.
ALTER TABLE notify_outbox ADD COLUMN extra TEXT;
