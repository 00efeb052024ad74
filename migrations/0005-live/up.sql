-- Live updates: admin broadcast notices, kept for the record and for late joiners.
CREATE TABLE notices (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    author_id  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    text       TEXT NOT NULL
);
CREATE INDEX notices_at ON notices(at);
