//! Telegram chats linked to staff and customers, one-time link codes, and template overrides.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Chat {
    pub chat_id: i64,
    pub user_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub language: Option<String>,
    pub blocked_at: Option<i64>,
    pub linked_at: i64,
}

fn chat_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        chat_id: r.get(0)?,
        user_id: r.get(1)?,
        customer_id: r.get(2)?,
        language: r.get(3)?,
        blocked_at: r.get(4)?,
        linked_at: r.get(5)?,
    })
}

pub fn chat(c: &Connection, chat_id: i64) -> DbResult<Option<Chat>> {
    Ok(c
        .prepare_cached(
            "SELECT chat_id, user_id, customer_id, language, blocked_at, linked_at FROM telegram_chats WHERE chat_id = ?1",
        )?
        .query_row([chat_id], chat_row)
        .optional()?)
}

/// Chats of a staff member that may receive messages.
pub fn chats_of_user(c: &Connection, user_id: i64) -> DbResult<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT chat_id FROM telegram_chats WHERE user_id = ?1 AND blocked_at IS NULL ORDER BY chat_id",
    )?;
    let rows = st.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn all_chats_of_user(c: &Connection, user_id: i64) -> DbResult<Vec<Chat>> {
    let mut st = c.prepare_cached(
        "SELECT chat_id, user_id, customer_id, language, blocked_at, linked_at FROM telegram_chats WHERE user_id = ?1 ORDER BY chat_id",
    )?;
    let rows = st.query_map([user_id], chat_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Chats of a customer that may receive messages, with the language each chose.
pub fn chats_of_customer(c: &Connection, customer_id: i64) -> DbResult<Vec<(i64, Option<String>)>> {
    let mut st = c.prepare_cached(
        "SELECT chat_id, language FROM telegram_chats WHERE customer_id = ?1 AND blocked_at IS NULL ORDER BY chat_id",
    )?;
    let rows = st.query_map([customer_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records that a chat wrote to the bot: creates it, clears a block, keeps links.
pub fn touch(c: &Connection, chat_id: i64, language: Option<&str>, now: i64) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO telegram_chats (chat_id, language, linked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (chat_id) DO UPDATE SET blocked_at = NULL,
             language = coalesce(telegram_chats.language, excluded.language)",
    )?
    .execute(params![chat_id, language, now])?;
    Ok(())
}

pub fn link_user(c: &Connection, chat_id: i64, user_id: i64, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE telegram_chats SET user_id = ?2, linked_at = ?3 WHERE chat_id = ?1",
        params![chat_id, user_id, now],
    )?;
    Ok(())
}

pub fn link_customer(c: &Connection, chat_id: i64, customer_id: i64, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE telegram_chats SET customer_id = ?2, linked_at = ?3 WHERE chat_id = ?1",
        params![chat_id, customer_id, now],
    )?;
    Ok(())
}

pub fn unlink_customer(c: &Connection, chat_id: i64) -> DbResult<()> {
    c.execute(
        "UPDATE telegram_chats SET customer_id = NULL WHERE chat_id = ?1",
        [chat_id],
    )?;
    Ok(())
}

pub fn unlink_user(c: &Connection, user_id: i64) -> DbResult<usize> {
    Ok(c.execute(
        "UPDATE telegram_chats SET user_id = NULL WHERE user_id = ?1",
        [user_id],
    )?)
}

pub fn mark_blocked(c: &Connection, chat_id: i64, now: i64) -> DbResult<()> {
    c.execute(
        "UPDATE telegram_chats SET blocked_at = ?2 WHERE chat_id = ?1",
        params![chat_id, now],
    )?;
    Ok(())
}

pub fn is_blocked(c: &Connection, chat_id: i64) -> DbResult<bool> {
    Ok(
        c.prepare_cached("SELECT blocked_at IS NOT NULL FROM telegram_chats WHERE chat_id = ?1")?
            .query_row([chat_id], |r| r.get(0))
            .optional()?
            .unwrap_or(false),
    )
}

pub fn insert_link_code(c: &Connection, code: &str, user_id: i64, expires_at: i64) -> DbResult<()> {
    // One live code per user: a new one replaces the old.
    c.execute(
        "DELETE FROM telegram_link_codes WHERE user_id = ?1",
        [user_id],
    )?;
    c.execute(
        "INSERT INTO telegram_link_codes (code, user_id, expires_at) VALUES (?1, ?2, ?3)",
        params![code, user_id, expires_at],
    )?;
    Ok(())
}

/// Uses up a code: returns its user when it existed and had not expired.
pub fn consume_link_code(c: &Connection, code: &str, now: i64) -> DbResult<Option<i64>> {
    let row: Option<(i64, i64)> = c
        .query_row(
            "DELETE FROM telegram_link_codes WHERE code = ?1 RETURNING user_id, expires_at",
            [code],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(u, exp)| (exp > now).then_some(u)))
}

pub fn template(c: &Connection, event: &str, language: &str) -> DbResult<Option<(String, String)>> {
    Ok(c.prepare_cached(
        "SELECT subject, body FROM notify_templates WHERE event = ?1 AND language = ?2",
    )?
    .query_row(params![event, language], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

pub fn set_template(
    c: &Connection,
    event: &str,
    language: &str,
    subject: &str,
    body: &str,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "INSERT INTO notify_templates (event, language, subject, body, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (event, language) DO UPDATE SET subject = excluded.subject, body = excluded.body,
             updated_at = excluded.updated_at",
        params![event, language, subject, body, now],
    )?;
    Ok(())
}

pub fn delete_template(c: &Connection, event: &str, language: &str) -> DbResult<()> {
    c.execute(
        "DELETE FROM notify_templates WHERE event = ?1 AND language = ?2",
        params![event, language],
    )?;
    Ok(())
}

/// A user's language code and display name.
pub fn user_brief(c: &Connection, user_id: i64) -> DbResult<Option<(String, String, bool)>> {
    Ok(
        c.prepare_cached("SELECT language, display_name, active FROM users WHERE id = ?1")?
            .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?,
    )
}
