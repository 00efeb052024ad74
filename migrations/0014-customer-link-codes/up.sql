-- One-time codes that link a customer's Telegram chat to their order (issue 14, point 6).
-- A code is printed on the intake receipt and carried by its QR code as the bot's deep
-- link (https://t.me/<bot>?start=o<code>); the order number alone links nothing. Only the
-- code's sha256 is kept. Chats linked before stay linked (telegram_chats is untouched).
CREATE TABLE customer_link_codes (
    code_hash    BLOB PRIMARY KEY,
    order_number TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX customer_link_codes_expiry ON customer_link_codes(expires_at);
