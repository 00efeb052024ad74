//! Runtime settings edited in the UI: a key/value table. Typed access lives in the domain.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

/// One setting read from the database file at `path` without the app's pool (for the
/// CLI's backup, beside a running server); None when the database has no such table yet.
pub fn get_from_file(path: &std::path::Path, key: &str) -> DbResult<Option<String>> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(get(&c, key).ok().flatten())
}

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

pub fn delete(c: &Connection, key: &str) -> DbResult<()> {
    c.execute("DELETE FROM settings WHERE key = ?1", [key])?;
    Ok(())
}
