//! The notification outbox: rows queued inside the causing transaction, claimed and
//! settled by the delivery worker.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

/// A row to queue; rendered text, resolved address.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub event: &'a str,
    pub dedupe_key: &'a str,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub user_id: Option<i64>,
    pub language: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Inserts a message unless the same (dedupe_key, channel, recipient) is already queued.
/// Returns the new row's id, or None for a duplicate.
pub fn insert(c: &Connection, m: &NewMessage<'_>, now_ms: i64) -> DbResult<Option<i64>> {
    let mut st = c.prepare_cached(
        "INSERT INTO notify_outbox (event, dedupe_key, channel, recipient, user_id, language, subject, body,
                                    next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT (dedupe_key, channel, recipient) DO NOTHING",
    )?;
    let n = st.execute(params![
        m.event,
        m.dedupe_key,
        m.channel,
        m.recipient,
        m.user_id,
        m.language,
        m.subject,
        m.body,
        now_ms,
        now_ms / 1000
    ])?;
    Ok((n == 1).then(|| c.last_insert_rowid()))
}

/// [`insert`] with what a Telegram message carries besides its text (a file, a reply
/// keyboard), as JSON.
pub fn insert_with(
    c: &Connection,
    m: &NewMessage<'_>,
    extra: Option<&str>,
    now_ms: i64,
) -> DbResult<Option<i64>> {
    let id = insert(c, m, now_ms)?;
    if let (Some(id), Some(extra)) = (id, extra) {
        c.prepare_cached("UPDATE notify_outbox SET extra = ?2 WHERE id = ?1")?
            .execute(params![id, extra])?;
    }
    Ok(id)
}

pub fn set_event(c: &Connection, id: i64, event: &str) -> DbResult<()> {
    c.prepare_cached("UPDATE notify_outbox SET event = ?2 WHERE id = ?1")?
        .execute(params![id, event])?;
    Ok(())
}

/// A message handed to a sender.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Claimed {
    pub id: i64,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
    /// JSON: a file to send (`photo`/`document` with `name`) or a reply keyboard
    /// (`request_contact`).
    pub extra: Option<String>,
}

/// Marks up to `limit` due messages of a channel as being sent and returns them.
pub fn claim_due(c: &Connection, channel: &str, now_ms: i64, limit: i64) -> DbResult<Vec<Claimed>> {
    let mut st = c.prepare_cached(
        "UPDATE notify_outbox SET state = 'sending', updated_at = ?3 / 1000
         WHERE id IN (SELECT id FROM notify_outbox
                      WHERE channel = ?1 AND state = 'pending' AND next_attempt_at <= ?3
                      ORDER BY next_attempt_at, id LIMIT ?2)
         RETURNING id, event, channel, recipient, subject, body, attempts, extra",
    )?;
    let rows = st.query_map(params![channel, limit, now_ms], |r| {
        Ok(Claimed {
            id: r.get(0)?,
            event: r.get(1)?,
            channel: r.get(2)?,
            recipient: r.get(3)?,
            subject: r.get(4)?,
            body: r.get(5)?,
            attempts: r.get(6)?,
            extra: r.get(7)?,
        })
    })?;
    let mut v: Vec<Claimed> = rows.collect::<Result<_, _>>()?;
    v.sort_by_key(|m| m.id);
    Ok(v)
}

/// After a restart, messages caught mid-send go back to the queue. (A crash between the
/// peer accepting a message and this row being marked sent is the one case that can
/// repeat a delivery; a graceful stop waits for in-flight sends to settle.)
pub fn release_in_flight(c: &Connection, now_ms: i64) -> DbResult<usize> {
    Ok(c.execute(
        "UPDATE notify_outbox SET state = 'pending', updated_at = ?1 / 1000 WHERE state = 'sending'",
        [now_ms],
    )?)
}

/// Attempts made so far.
pub fn attempts(c: &Connection, id: i64) -> DbResult<i64> {
    Ok(
        c.prepare_cached("SELECT attempts FROM notify_outbox WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?,
    )
}

pub fn mark_sent(c: &Connection, id: i64, now_ms: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE notify_outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?2 / 1000,
                updated_at = ?2 / 1000, last_error = NULL WHERE id = ?1",
    )?
    .execute(params![id, now_ms])?;
    Ok(())
}

/// A failed attempt that may succeed later: back to pending at `next_ms`, or dead once
/// `max_attempts` is reached. Returns true when the message was dead-lettered.
pub fn mark_retry(
    c: &Connection,
    id: i64,
    error: &str,
    next_ms: i64,
    max_attempts: i64,
    now_ms: i64,
) -> DbResult<bool> {
    let state: String = c
        .prepare_cached(
            "UPDATE notify_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                    updated_at = ?5 / 1000,
                    state = CASE WHEN attempts + 1 >= ?4 THEN 'dead' ELSE 'pending' END
             WHERE id = ?1 RETURNING state",
        )?
        .query_row(params![id, error, next_ms, max_attempts, now_ms], |r| r.get(0))?;
    Ok(state == "dead")
}

/// Not an attempt (rate limit, 429): back to pending at `next_ms` without counting.
pub fn defer(c: &Connection, id: i64, note: &str, next_ms: i64, now_ms: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE notify_outbox SET state = 'pending', next_attempt_at = ?3, last_error = ?2,
                updated_at = ?4 / 1000 WHERE id = ?1",
    )?
    .execute(params![id, note, next_ms, now_ms])?;
    Ok(())
}

/// A permanent error: the message stops and is shown to the admin.
pub fn mark_failed(c: &Connection, id: i64, error: &str, now_ms: i64) -> DbResult<()> {
    c.prepare_cached(
        "UPDATE notify_outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2,
                updated_at = ?3 / 1000 WHERE id = ?1",
    )?
    .execute(params![id, error, now_ms])?;
    Ok(())
}

/// Puts a failed or dead message back in the queue, due now, with a fresh attempt count.
/// Returns false when the message is not failed or dead.
pub fn requeue(c: &Connection, id: i64, now_ms: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE notify_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                updated_at = ?2 / 1000 WHERE id = ?1 AND state IN ('failed', 'dead')",
        params![id, now_ms],
    )? == 1)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OutboxRow {
    pub id: i64,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        event: r.get(1)?,
        channel: r.get(2)?,
        recipient: r.get(3)?,
        subject: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        last_error: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        sent_at: r.get(10)?,
    })
}

const COLUMNS: &str = "id, event, channel, recipient, subject, state, attempts, last_error, created_at, updated_at, sent_at";

/// Messages that stopped: permanent failures and dead letters, newest first.
pub fn list_stopped(c: &Connection, limit: i64) -> DbResult<Vec<OutboxRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notify_outbox WHERE state IN ('failed', 'dead')
         ORDER BY updated_at DESC, id DESC LIMIT ?1"
    ))?;
    let rows = st.query_map([limit], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Messages in the given states (all when empty), newest first.
pub fn list_in_states(c: &Connection, states: &[&str], limit: i64) -> DbResult<Vec<OutboxRow>> {
    let all = states.is_empty();
    let wanted = states.join(",");
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notify_outbox
         WHERE ?1 OR instr(',' || ?2 || ',', ',' || state || ',') > 0
         ORDER BY updated_at DESC, id DESC LIMIT ?3"
    ))?;
    let rows = st.query_map(params![all, wanted, limit], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<OutboxRow>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notify_outbox WHERE id = ?1"
    ))?
    .query_row([id], row)
    .optional()?)
}

/// Row counts per state, for the admin page and /metrics-style gauges.
pub fn counts(c: &Connection) -> DbResult<Vec<(String, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT state, count(*) FROM notify_outbox GROUP BY state ORDER BY state",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending message of a channel is due (Unix ms), if any.
pub fn next_due(c: &Connection, channel: &str) -> DbResult<Option<i64>> {
    Ok(c.prepare_cached(
        "SELECT min(next_attempt_at) FROM notify_outbox WHERE channel = ?1 AND state = 'pending'",
    )?
    .query_row([channel], |r| r.get(0))?)
}

/// Deletes delivered messages older than `before` (Unix seconds).
pub fn purge_sent(c: &Connection, before: i64) -> DbResult<usize> {
    Ok(c.execute(
        "DELETE FROM notify_outbox WHERE state = 'sent' AND sent_at < ?1",
        [before],
    )?)
}
