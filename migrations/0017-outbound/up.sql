-- Outbound work (issue 18), part one: customers get a kind, a company, a birthday, a
-- marketing opt-in and an archive flag; customer imports from CSV and Excel files, kept
-- as batches that can be undone.

-- 'person' or 'company'; the company's name for a company (or a person's employer).
ALTER TABLE customers ADD COLUMN kind TEXT NOT NULL DEFAULT 'person'
    CHECK (kind IN ('person', 'company'));
ALTER TABLE customers ADD COLUMN company TEXT NOT NULL DEFAULT '';
-- ISO date (YYYY-MM-DD) when known.
ALTER TABLE customers ADD COLUMN birthday TEXT;
-- Promotions and broadcasts go only to customers who said yes (0 until they do).
ALTER TABLE customers ADD COLUMN marketing_opt_in INTEGER NOT NULL DEFAULT 0;
-- Archived customers are out of lists and search, kept with their history.
ALTER TABLE customers ADD COLUMN archived_at INTEGER;
CREATE INDEX customers_live ON customers(archived_at, id) WHERE merged_into IS NULL;

-- One uploaded file and what became of it. The file itself is kept only while the batch
-- is a draft (mapping and preview); importing or cancelling drops it.
CREATE TABLE import_batches (
    id          INTEGER PRIMARY KEY,
    file_name   TEXT NOT NULL,
    -- 'csv' or 'excel' (xlsx, xls, ods).
    format      TEXT NOT NULL CHECK (format IN ('csv', 'excel')),
    -- The CSV's text encoding as detected or chosen ('utf-8', 'windows-1251',
    -- 'utf-16le', 'utf-16be'); NULL for workbooks.
    encoding    TEXT,
    -- sha256 of the file: a second import of the same file is pointed out.
    sha256      TEXT NOT NULL,
    content     BLOB,
    -- JSON: {"header": bool, "columns": ["name", "phone", "", ...]}.
    mapping     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('draft', 'imported', 'cancelled', 'undone')),
    rows_total  INTEGER NOT NULL DEFAULT 0,
    created_n   INTEGER NOT NULL DEFAULT 0,
    merged_n    INTEGER NOT NULL DEFAULT 0,
    invalid_n   INTEGER NOT NULL DEFAULT 0,
    -- After an undo: customers it could not take back (edited or with orders since).
    kept_n      INTEGER NOT NULL DEFAULT 0,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    imported_at INTEGER,
    closed_at   INTEGER
);
CREATE INDEX import_batches_sha ON import_batches(sha256);

-- What an import did to each customer, for the undo: created, or merged into (with the
-- customer as it was before, JSON). `version_after` tells whether anyone changed the
-- customer since; an edited customer is kept as it is.
CREATE TABLE import_effects (
    batch_id      INTEGER NOT NULL REFERENCES import_batches(id) ON DELETE CASCADE,
    customer_id   INTEGER NOT NULL,
    created       INTEGER NOT NULL,
    before        TEXT,
    version_after INTEGER NOT NULL,
    PRIMARY KEY (batch_id, customer_id)
) WITHOUT ROWID;

-- Segments: saved filters over customers and their orders (JSON, `domain::segments`),
-- counted live whenever they are shown.
CREATE TABLE segments (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    filter     TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
