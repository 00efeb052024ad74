//! Segments (issue 18): saved customer filters, and the SQL that counts and lists them.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::DbResult;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SegmentRow {
    pub id: i64,
    pub name: String,
    /// The filter as JSON (`domain::segments::SegmentFilter`).
    pub filter: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<SegmentRow> {
    Ok(SegmentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        filter: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

pub fn list(c: &Connection) -> DbResult<Vec<SegmentRow>> {
    let mut st = c.prepare_cached(
        "SELECT id, name, filter, created_at, updated_at FROM segments ORDER BY name COLLATE NOCASE",
    )?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<SegmentRow>> {
    Ok(c.prepare_cached(
        "SELECT id, name, filter, created_at, updated_at FROM segments WHERE id = ?1",
    )?
    .query_row([id], from_row)
    .optional()?)
}

pub fn insert(
    c: &Connection,
    name: &str,
    filter: &str,
    by: Option<i64>,
    now: i64,
) -> DbResult<i64> {
    c.execute(
        "INSERT INTO segments (name, filter, created_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![name, filter, by, now],
    )?;
    Ok(c.last_insert_rowid())
}

pub fn update(c: &Connection, id: i64, name: &str, filter: &str, now: i64) -> DbResult<bool> {
    Ok(c.execute(
        "UPDATE segments SET name = ?2, filter = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, name, filter, now],
    )? == 1)
}

pub fn delete(c: &Connection, id: i64) -> DbResult<bool> {
    Ok(c.execute("DELETE FROM segments WHERE id = ?1", [id])? == 1)
}

/// A WHERE clause over `customers c` with its arguments, built by the domain.
pub struct Where {
    pub sql: String,
    pub args: Vec<Value>,
}

pub fn count(c: &Connection, w: &Where) -> DbResult<i64> {
    Ok(c.query_row(
        &format!("SELECT count(*) FROM customers c WHERE {}", w.sql),
        params_from_iter(w.args.iter()),
        |r| r.get(0),
    )?)
}

/// Member ids, newest customers first.
pub fn ids(c: &Connection, w: &Where, limit: i64, offset: i64) -> DbResult<Vec<i64>> {
    let mut args = w.args.clone();
    args.push(limit.into());
    args.push(offset.into());
    let n = args.len();
    let mut st = c.prepare(&format!(
        "SELECT c.id FROM customers c WHERE {} ORDER BY c.id DESC LIMIT ?{} OFFSET ?{n}",
        w.sql,
        n - 1
    ))?;
    let rows = st.query_map(params_from_iter(args.iter()), |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
