-- Issue 13.
--
-- 1. One shop clock: the shop's IANA time zone (`time_zone` in the `shop` settings,
--    default Asia/Tashkent) replaces the call rules' fixed UTC offset `sip.utc_offset`.
--    A box that had set another offset gets the zone with that offset (a whole-hour
--    offset becomes Etc/GMT∓H; the usual half-hour ones their best-known zone); the admin
--    can pick the real zone on the settings page.
INSERT OR IGNORE INTO settings (key, value, updated_at)
SELECT 'shop', '{}', CAST(strftime('%s', 'now') AS INTEGER)
WHERE EXISTS (SELECT 1 FROM settings WHERE key = 'sip.utc_offset'
              AND trim(value) NOT IN ('', '+05:00', '+5:00'));

UPDATE settings
SET value = json_set(value, '$.time_zone', (
    SELECT CASE
        WHEN v IN ('UTC', 'utc', 'Z', '+00:00', '-00:00') THEN 'UTC'
        WHEN v = '+05:30' THEN 'Asia/Kolkata'
        WHEN v = '+05:45' THEN 'Asia/Kathmandu'
        WHEN v = '+04:30' THEN 'Asia/Kabul'
        WHEN v = '+03:30' THEN 'Asia/Tehran'
        WHEN v = '+06:30' THEN 'Asia/Yangon'
        WHEN v = '+09:30' THEN 'Australia/Darwin'
        WHEN v = '-03:30' THEN 'America/St_Johns'
        WHEN v GLOB '[+-][0-9][0-9]:00' AND CAST(substr(v, 2, 2) AS INTEGER) BETWEEN 1 AND 12 THEN
            'Etc/GMT' || (CASE substr(v, 1, 1) WHEN '+' THEN '-' ELSE '+' END)
                      || CAST(CAST(substr(v, 2, 2) AS INTEGER) AS TEXT)
        ELSE 'Asia/Tashkent'
    END
    FROM (SELECT trim(value) AS v FROM settings WHERE key = 'sip.utc_offset')))
WHERE key = 'shop'
  AND EXISTS (SELECT 1 FROM settings WHERE key = 'sip.utc_offset'
              AND trim(value) NOT IN ('', '+05:00', '+5:00'));

DELETE FROM settings WHERE key = 'sip.utc_offset';

-- 2. The CLI and the running server agree: every change that the server keeps in memory
--    (SIP credentials and ring groups, who may sign in, API tokens, the shop clock) leaves
--    a row here, whichever process made it. The server watches `PRAGMA data_version` and
--    applies the rows after the last one it saw (`domain::changes`). Rows older than an
--    hour are pruned. AUTOINCREMENT: ids never go back, even when every row was pruned.
CREATE TABLE change_journal (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'sip' (extensions, ring groups, call rules), 'user' (ref = the user's id) or
    -- 'shop' (the shop settings, among them the time zone).
    kind TEXT NOT NULL CHECK (kind IN ('sip', 'user', 'shop')),
    ref  INTEGER,
    at   INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

CREATE TRIGGER change_journal_ext_insert AFTER INSERT ON sip_extensions
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;
CREATE TRIGGER change_journal_ext_update AFTER UPDATE ON sip_extensions
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;
CREATE TRIGGER change_journal_ext_delete AFTER DELETE ON sip_extensions
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;

CREATE TRIGGER change_journal_group_insert AFTER INSERT ON sip_ring_groups
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;
CREATE TRIGGER change_journal_group_update AFTER UPDATE ON sip_ring_groups
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;
CREATE TRIGGER change_journal_group_delete AFTER DELETE ON sip_ring_groups
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;
CREATE TRIGGER change_journal_member_insert AFTER INSERT ON sip_ring_group_members
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;
CREATE TRIGGER change_journal_member_delete AFTER DELETE ON sip_ring_group_members
BEGIN INSERT INTO change_journal (kind) VALUES ('sip'); END;

CREATE TRIGGER change_journal_user_update AFTER UPDATE OF active, password_hash, role ON users
WHEN OLD.active IS NOT NEW.active OR OLD.password_hash IS NOT NEW.password_hash
     OR OLD.role IS NOT NEW.role
BEGIN INSERT INTO change_journal (kind, ref) VALUES ('user', NEW.id); END;
CREATE TRIGGER change_journal_user_delete AFTER DELETE ON users
BEGIN INSERT INTO change_journal (kind, ref) VALUES ('user', OLD.id); END;

CREATE TRIGGER change_journal_token_revoke AFTER UPDATE OF revoked_at ON api_tokens
WHEN OLD.revoked_at IS NOT NEW.revoked_at
BEGIN INSERT INTO change_journal (kind, ref) VALUES ('user', NEW.user_id); END;
CREATE TRIGGER change_journal_token_delete AFTER DELETE ON api_tokens
BEGIN INSERT INTO change_journal (kind, ref) VALUES ('user', OLD.user_id); END;

CREATE TRIGGER change_journal_settings_insert AFTER INSERT ON settings
WHEN NEW.key = 'shop' OR NEW.key LIKE 'sip.%'
BEGIN INSERT INTO change_journal (kind) VALUES (CASE WHEN NEW.key = 'shop' THEN 'shop' ELSE 'sip' END); END;
CREATE TRIGGER change_journal_settings_update AFTER UPDATE ON settings
WHEN NEW.key = 'shop' OR NEW.key LIKE 'sip.%'
BEGIN INSERT INTO change_journal (kind) VALUES (CASE WHEN NEW.key = 'shop' THEN 'shop' ELSE 'sip' END); END;
