//! The activity log, filtered for the admin's page.

use rusqlite::{params, Connection};

use super::settings::ActivityRow;
use super::DbResult;

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
        |r| {
            Ok(ActivityRow {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                entity: r.get(4)?,
                entity_id: r.get(5)?,
                detail: r.get(6)?,
            })
        },
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
