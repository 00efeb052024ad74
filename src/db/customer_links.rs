//! One-time codes that link a customer's Telegram chat to an order (stored hashed).

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

/// Stores a new code; drops the expired ones on the way.
pub fn insert(
    c: &Connection,
    code_hash: &[u8],
    order_number: &str,
    expires_at: i64,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "DELETE FROM customer_link_codes WHERE expires_at <= ?1",
        [now],
    )?;
    c.execute(
        "INSERT INTO customer_link_codes (code_hash, order_number, expires_at) VALUES (?1, ?2, ?3)",
        params![code_hash, order_number, expires_at],
    )?;
    Ok(())
}

/// Uses a code up: its order number when it existed and had not expired.
pub fn consume(c: &Connection, code_hash: &[u8], now: i64) -> DbResult<Option<String>> {
    let row: Option<(String, i64)> = c
        .query_row(
            "DELETE FROM customer_link_codes WHERE code_hash = ?1 RETURNING order_number, expires_at",
            [code_hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(n, exp)| (exp > now).then_some(n)))
}
