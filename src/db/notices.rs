//! Admin broadcast notices.

use rusqlite::{params, Connection};

use super::DbResult;

pub fn insert(c: &Connection, author: Option<i64>, text: &str, at: i64) -> DbResult<i64> {
    c.execute(
        "INSERT INTO notices (at, author_id, text) VALUES (?1, ?2, ?3)",
        params![at, author, text],
    )?;
    Ok(c.last_insert_rowid())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Notice {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub author: Option<String>,
    pub text: String,
}

/// The latest notices, newest first, with their author's name.
pub fn recent(c: &Connection, limit: i64) -> DbResult<Vec<Notice>> {
    let mut st = c.prepare_cached(
        "SELECT n.id, n.at, u.display_name, n.text FROM notices n LEFT JOIN users u ON u.id = n.author_id
         ORDER BY n.at DESC, n.id DESC LIMIT ?1",
    )?;
    let rows = st.query_map([limit], |r| {
        Ok(Notice {
            id: r.get(0)?,
            at: r.get(1)?,
            author: r.get(2)?,
            text: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
