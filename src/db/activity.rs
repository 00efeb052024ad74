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

/// Matching rows, newest first. Only the filters given become conditions, so each query
/// is planned on the index it can use (by actor, by entity, by action, or by time) instead
/// of walking the whole log past `(?1 IS NULL OR …)` terms.
pub fn list(
    c: &Connection,
    f: &ActivityFilter,
    limit: i64,
    offset: i64,
) -> DbResult<Vec<ActivityRow>> {
    use rusqlite::types::Value;
    let mut w: Vec<String> = Vec::new();
    let mut p: Vec<Value> = Vec::new();
    let mut add = |cond: &str, v: Value| {
        p.push(v);
        w.push(cond.replace('?', &format!("?{}", p.len())));
    };
    if let Some(v) = f.actor_id {
        add("a.actor_id = ?", Value::Integer(v));
    }
    if let Some(v) = &f.entity {
        add("a.entity = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &f.action {
        add("a.action = ?", Value::Text(v.clone()));
    }
    if let Some(v) = f.from {
        add("a.at >= ?", Value::Integer(v));
    }
    if let Some(v) = f.to {
        add("a.at < ?", Value::Integer(v));
    }
    let wh = if w.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", w.join(" AND "))
    };
    p.push(Value::Integer(limit));
    p.push(Value::Integer(offset));
    let mut st = c.prepare_cached(&format!(
        "SELECT a.id, a.at, u.username, a.action, a.entity, a.entity_id, a.detail
         FROM activity_log a LEFT JOIN users u ON u.id = a.actor_id
         {wh} ORDER BY a.at DESC, a.id DESC LIMIT ?{} OFFSET ?{}",
        p.len() - 1,
        p.len()
    ))?;
    let rows = st.query_map(rusqlite::params_from_iter(p), ActivityRow::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The entity types and actions that occur, for the filter's choices. Each is a skip
/// over its index (one seek per distinct value), not a scan of the whole log.
pub fn kinds(c: &Connection) -> DbResult<(Vec<String>, Vec<String>)> {
    let col = |column: &str| -> DbResult<Vec<String>> {
        let mut st = c.prepare_cached(&format!(
            "WITH RECURSIVE k(v) AS (
                 SELECT min({column}) FROM activity_log
                 UNION ALL
                 SELECT (SELECT min({column}) FROM activity_log WHERE {column} > k.v) FROM k WHERE k.v IS NOT NULL)
             SELECT v FROM k WHERE v IS NOT NULL"
        ))?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    Ok((col("entity")?, col("action")?))
}
