//! Runtime settings edited in the UI: a key/value table. Typed access lives in the domain.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

pub fn get(c: &Connection, key: &str) -> DbResult<Option<String>> {
    Ok(
        c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub fn set(c: &Connection, key: &str, value: &str, now: i64) -> DbResult<()> {
    c.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value, now],
    )?;
    Ok(())
}

pub fn all(c: &Connection) -> DbResult<Vec<(String, String)>> {
    let mut st = c.prepare_cached("SELECT key, value FROM settings ORDER BY key")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a create/update/delete for the activity log, in the caller's transaction.
pub fn log_activity(
    c: &Connection,
    actor_id: Option<i64>,
    action: &str,
    entity: &str,
    entity_id: Option<i64>,
    detail: &serde_json::Value,
    now: i64,
) -> DbResult<()> {
    c.execute(
        "INSERT INTO activity_log (at, actor_id, action, entity, entity_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now, actor_id, action, entity, entity_id, detail.to_string()],
    )?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ActivityRow {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<i64>,
    pub detail: String,
}

pub fn list_activity(
    c: &Connection,
    entity: Option<&str>,
    limit: i64,
    offset: i64,
) -> DbResult<Vec<ActivityRow>> {
    let mut st = c.prepare_cached(
        "SELECT a.id, a.at, u.username, a.action, a.entity, a.entity_id, a.detail
         FROM activity_log a LEFT JOIN users u ON u.id = a.actor_id
         WHERE (?1 IS NULL OR a.entity = ?1)
         ORDER BY a.at DESC, a.id DESC LIMIT ?2 OFFSET ?3",
    )?;
    let rows = st.query_map(params![entity, limit, offset], |r| {
        Ok(ActivityRow {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            entity: r.get(4)?,
            entity_id: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
