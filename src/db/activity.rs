//! The activity log: one row per change, written by the unit of work
//! (`domain::work`) with the change it describes, filtered for the admin's page.

use rusqlite::{params, Connection, Row};

use super::DbResult;

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

impl ActivityRow {
    fn from_row(r: &Row) -> rusqlite::Result<ActivityRow> {
        Ok(ActivityRow {
            id: r.get("id")?,
            at: r.get("at")?,
            actor: r.get("username")?,
            action: r.get("action")?,
            entity: r.get("entity")?,
            entity_id: r.get("entity_id")?,
            detail: r.get("detail")?,
        })
    }
}

/// Records a change in the caller's transaction.
pub fn insert(
    c: &Connection,
    actor_id: Option<i64>,
    action: &str,
    entity: &str,
    entity_id: Option<i64>,
    detail: &serde_json::Value,
    now: i64,
) -> DbResult<()> {
    c.prepare_cached(
        "INSERT INTO activity_log (at, actor_id, action, entity, entity_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now, actor_id, action, entity, entity_id, detail.to_string()])?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct ActivityFilter {
    pub actor_id: Option<i64>,
    pub entity: Option<String>,
    pub action: Option<String>,
    /// Unix seconds, at or after.
    pub from: Option<i64>,
    /// Unix seconds, before.
    pub to: Option<i64>,
}

/// Matching rows, newest first.
pub fn list(
    c: &Connection,
    f: &ActivityFilter,
    limit: i64,
    offset: i64,
) -> DbResult<Vec<ActivityRow>> {
    let mut st = c.prepare_cached(
        "SELECT a.id, a.at, u.username, a.action, a.entity, a.entity_id, a.detail
         FROM activity_log a LEFT JOIN users u ON u.id = a.actor_id
         WHERE (?1 IS NULL OR a.actor_id = ?1) AND (?2 IS NULL OR a.entity = ?2)
           AND (?3 IS NULL OR a.action = ?3) AND (?4 IS NULL OR a.at >= ?4) AND (?5 IS NULL OR a.at < ?5)
         ORDER BY a.at DESC, a.id DESC LIMIT ?6 OFFSET ?7",
    )?;
    let rows = st.query_map(
        params![f.actor_id, f.entity, f.action, f.from, f.to, limit, offset],
        ActivityRow::from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The entity types and actions that occur, for the filter's choices.
pub fn kinds(c: &Connection) -> DbResult<(Vec<String>, Vec<String>)> {
    let col = |sql: &str| -> DbResult<Vec<String>> {
        let mut st = c.prepare_cached(sql)?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    Ok((
        col("SELECT DISTINCT entity FROM activity_log ORDER BY 1")?,
        col("SELECT DISTINCT action FROM activity_log ORDER BY 1")?,
    ))
}
