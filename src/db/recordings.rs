//! SQL for call recording: the policies and the recordings made.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

/// (kind, ref, mode) of every policy that is not off.
pub fn policies(c: &Connection) -> DbResult<Vec<(String, String, String)>> {
    let mut st =
        c.prepare_cached("SELECT kind, ref, mode FROM recording_policies ORDER BY kind, ref")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets a policy ('off' removes the row). True when it changed.
pub fn set_policy(c: &Connection, kind: &str, r: &str, mode: &str, now: i64) -> DbResult<bool> {
    let old: Option<String> = c
        .query_row(
            "SELECT mode FROM recording_policies WHERE kind = ?1 AND ref = ?2",
            params![kind, r],
            |x| x.get(0),
        )
        .optional()?;
    if old.as_deref().unwrap_or("off") == mode {
        return Ok(false);
    }
    if mode == "off" {
        c.execute(
            "DELETE FROM recording_policies WHERE kind = ?1 AND ref = ?2",
            params![kind, r],
        )?;
    } else {
        c.execute(
            "INSERT INTO recording_policies (kind, ref, mode, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(kind, ref) DO UPDATE SET mode = excluded.mode, updated_at = excluded.updated_at",
            params![kind, r, mode, now],
        )?;
    }
    Ok(true)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordingRow {
    pub id: i64,
    pub call_id: String,
    pub path: String,
    pub started_ms: i64,
    pub duration_ms: i64,
    pub bytes: i64,
}

const SELECT: &str = "SELECT id, call_id, path, started_ms, duration_ms, bytes FROM recordings";

fn row(r: &rusqlite::Row) -> rusqlite::Result<RecordingRow> {
    Ok(RecordingRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        path: r.get(2)?,
        started_ms: r.get(3)?,
        duration_ms: r.get(4)?,
        bytes: r.get(5)?,
    })
}

pub fn insert(c: &Connection, n: &RecordingRow, now: i64) -> DbResult<i64> {
    c.execute(
        "INSERT INTO recordings (call_id, path, started_ms, duration_ms, bytes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![n.call_id, n.path, n.started_ms, n.duration_ms, n.bytes, now],
    )?;
    Ok(c.last_insert_rowid())
}

/// The recording of the call-log row `call` (calls.id).
pub fn of_call(c: &Connection, call: i64) -> DbResult<Option<RecordingRow>> {
    Ok(c.query_row(
        &format!("{SELECT} WHERE call_id = (SELECT call_id FROM calls WHERE id = ?1)"),
        [call],
        row,
    )
    .optional()?)
}

/// Recordings that started before `before_ms`, oldest first, at most `limit`.
pub fn older_than(c: &Connection, before_ms: i64, limit: i64) -> DbResult<Vec<RecordingRow>> {
    let mut st = c.prepare_cached(&format!(
        "{SELECT} WHERE started_ms < ?1 ORDER BY started_ms LIMIT ?2"
    ))?;
    let rows = st.query_map(params![before_ms, limit], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete(c: &Connection, id: i64) -> DbResult<()> {
    c.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
    Ok(())
}

/// The call-log row id of a call id, when the call is logged.
pub fn call_row_id(c: &Connection, call_id: &str) -> DbResult<Option<i64>> {
    Ok(
        c.query_row("SELECT id FROM calls WHERE call_id = ?1", [call_id], |r| {
            r.get(0)
        })
        .optional()?,
    )
}
