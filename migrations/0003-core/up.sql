-- Service-center core: branches, customers, the status workflow, repair orders with their
-- lines, timeline and payments, and full-text search.

CREATE TABLE branches (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    address  TEXT NOT NULL DEFAULT '',
    phone    TEXT NOT NULL DEFAULT '',
    lat      REAL,
    lon      REAL,
    active   INTEGER NOT NULL DEFAULT 1
);
INSERT INTO branches (name, address) VALUES ('Asosiy', '');

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL DEFAULT '',
    telegram    TEXT NOT NULL DEFAULT '',
    address     TEXT NOT NULL DEFAULT '',
    notes       TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '',
    language    TEXT,
    merged_into INTEGER REFERENCES customers(id),
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX customers_name ON customers(name COLLATE NOCASE);

-- Phones in E.164 ("+998901234567"); one customer may have several, the first (lowest
-- rowid) being the main one.
CREATE TABLE customer_phones (
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    e164        TEXT NOT NULL,
    UNIQUE (e164, customer_id)
);
CREATE INDEX customer_phones_customer ON customer_phones(customer_id);

-- The workflow: statuses grouped as new / in_work / waiting / ready / closed.
CREATE TABLE statuses (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    grp         TEXT NOT NULL CHECK (grp IN ('new', 'in_work', 'waiting', 'ready', 'closed')),
    position    INTEGER NOT NULL,
    -- Hours an order may stay in this status before it counts as overdue (NULL: no limit).
    limit_hours INTEGER,
    name_uz     TEXT NOT NULL,
    name_uz_cyrl TEXT NOT NULL,
    name_ru     TEXT NOT NULL,
    name_en     TEXT NOT NULL
);
CREATE TABLE status_transitions (
    from_id INTEGER NOT NULL REFERENCES statuses(id) ON DELETE CASCADE,
    to_id   INTEGER NOT NULL REFERENCES statuses(id) ON DELETE CASCADE,
    PRIMARY KEY (from_id, to_id)
) WITHOUT ROWID;

INSERT INTO statuses (id, code, grp, position, limit_hours, name_uz, name_uz_cyrl, name_ru, name_en) VALUES
 (1, 'new',               'new',     1, 24,   'Yangi',               'Янги',                'Новый',             'New'),
 (2, 'diagnostics',       'in_work', 2, 48,   'Diagnostika',         'Диагностика',         'Диагностика',       'Diagnostics'),
 (3, 'awaiting_approval', 'waiting', 3, 72,   'Tasdiq kutilmoqda',   'Тасдиқ кутилмоқда',   'Ждёт согласования', 'Awaiting approval'),
 (4, 'awaiting_parts',    'waiting', 4, 336,  'Ehtiyot qism kutilmoqda', 'Эҳтиёт қисм кутилмоқда', 'Ждёт запчасти', 'Awaiting parts'),
 (5, 'in_repair',         'in_work', 5, 72,   'Taʼmirda',            'Таъмирда',            'В ремонте',         'In repair'),
 (6, 'ready',             'ready',   6, 168,  'Tayyor',              'Тайёр',               'Готов',             'Ready'),
 (7, 'delivered',         'closed',  7, NULL, 'Topshirildi',         'Топширилди',          'Выдан',             'Delivered'),
 (8, 'cancelled',         'closed',  8, NULL, 'Bekor qilindi',       'Бекор қилинди',       'Отменён',           'Cancelled');

INSERT INTO status_transitions (from_id, to_id) VALUES
 (1, 2), (1, 8),
 (2, 3), (2, 5), (2, 6), (2, 8),
 (3, 4), (3, 5), (3, 6), (3, 8),
 (4, 5), (4, 8),
 (5, 3), (5, 4), (5, 6), (5, 8),
 (6, 5), (6, 7), (6, 8),
 (8, 1);

-- Yearly order-number sequence: never reused, even when an order is cancelled.
CREATE TABLE order_counters (
    year INTEGER PRIMARY KEY,
    last INTEGER NOT NULL
);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    number          TEXT NOT NULL UNIQUE,
    branch_id       INTEGER NOT NULL REFERENCES branches(id),
    customer_id     INTEGER NOT NULL REFERENCES customers(id),
    status_id       INTEGER NOT NULL REFERENCES statuses(id),
    status_since    INTEGER NOT NULL,
    master_id       INTEGER REFERENCES users(id),
    device_category TEXT NOT NULL,
    brand           TEXT NOT NULL DEFAULT '',
    model           TEXT NOT NULL DEFAULT '',
    serial          TEXT NOT NULL DEFAULT '',
    complaint       TEXT NOT NULL,
    condition       TEXT NOT NULL DEFAULT '',
    accessories     TEXT NOT NULL DEFAULT '',
    urgent          INTEGER NOT NULL DEFAULT 0,
    promised_at     INTEGER,
    estimate        INTEGER NOT NULL DEFAULT 0 CHECK (estimate >= 0),
    warranty_days   INTEGER NOT NULL DEFAULT 0 CHECK (warranty_days >= 0),
    -- Sum of the lines, kept in the same transaction as every line change.
    total           INTEGER NOT NULL DEFAULT 0 CHECK (total >= 0),
    -- Payments minus refunds.
    paid            INTEGER NOT NULL DEFAULT 0,
    created_by      INTEGER REFERENCES users(id),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    closed_at       INTEGER,
    version         INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX orders_status ON orders(status_id, created_at);
CREATE INDEX orders_master ON orders(master_id, status_id);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_created ON orders(created_at);
CREATE INDEX orders_closed ON orders(closed_at);

CREATE TABLE order_lines (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('part', 'labour')),
    name       TEXT NOT NULL,
    qty        INTEGER NOT NULL CHECK (qty > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    created_by INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX order_lines_order ON order_lines(order_id);

CREATE TABLE payments (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders(id),
    kind       TEXT NOT NULL CHECK (kind IN ('prepayment', 'payment', 'refund')),
    -- Always positive; refunds subtract.
    amount     INTEGER NOT NULL CHECK (amount > 0),
    method     TEXT NOT NULL DEFAULT 'cash',
    note       TEXT NOT NULL DEFAULT '',
    created_by INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX payments_order ON payments(order_id);
CREATE INDEX payments_created ON payments(created_at);

-- The order's timeline: every change and comment, with who and when.
CREATE TABLE order_events (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    actor_id   INTEGER REFERENCES users(id),
    kind       TEXT NOT NULL,
    -- Comments: 1 when the customer may see it.
    public     INTEGER NOT NULL DEFAULT 0,
    text       TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX order_events_order ON order_events(order_id, at);

-- One search box: names, phones (digits, any format), order numbers, serials, models,
-- complaints. Kept in step by the storage code in the same transaction.
CREATE VIRTUAL TABLE search_index USING fts5(
    kind UNINDEXED, ref UNINDEXED, body, tokenize = 'unicode61 remove_diacritics 2'
);

-- Photos of the device, stored under the data dir's attachments/orders/<order>/.
CREATE TABLE order_photos (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    file       TEXT NOT NULL,
    mime       TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    created_by INTEGER REFERENCES users(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX order_photos_order ON order_photos(order_id);
