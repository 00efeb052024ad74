-- The device's unlock code or pattern, taken at intake so the master can test the
-- repaired device. Kept out of the orders row on purpose: that row goes into lists, the
-- API, live events, exports and the search index, and this must reach none of them.
CREATE TABLE order_unlock (
    order_id   INTEGER PRIMARY KEY REFERENCES orders(id) ON DELETE CASCADE,
    -- A PIN or password as the customer gave it; '' when none.
    code       TEXT NOT NULL DEFAULT '',
    -- An Android pattern as the dots in the order drawn, numbered 1-9 row by row
    -- ("14789"); '' when none.
    pattern    TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    updated_by INTEGER REFERENCES users(id) ON DELETE SET NULL
);
