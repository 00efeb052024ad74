-- Transfers (issue 15): a call that continues another one after a REFER keeps who passed
-- it on (the extension) and the call id of the call it continues, so the log shows the
-- chain and the screen-pop says who transferred it.
ALTER TABLE calls ADD COLUMN transferred_by TEXT;
ALTER TABLE calls ADD COLUMN transferred_from TEXT;

-- Desk-phone provisioning (issue 15): a phone by its MAC address, its model (the file
-- format it fetches) and the extension it carries; `password` is the phone's own HTTP
-- credential for fetching its file (user = the MAC).
CREATE TABLE sip_phones (
    id            INTEGER PRIMARY KEY,
    mac           TEXT NOT NULL UNIQUE CHECK (length(mac) = 12),
    model         TEXT NOT NULL CHECK (model IN ('yealink', 'grandstream', 'fanvil', 'snom')),
    extension     TEXT NOT NULL REFERENCES sip_extensions(number) ON DELETE CASCADE,
    password      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_fetch_at INTEGER
);
