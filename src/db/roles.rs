//! The owner's own roles (issue 19): named sets of permission keys.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;
use crate::model::Role;

#[derive(Debug, Clone)]
pub struct RoleRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub base: Role,
    /// Permission keys separated by spaces.
    pub permissions: String,
    /// Users (active or not) who have the role.
    pub users: i64,
}

const COLS: &str = "r.id, r.key, r.name, r.base, r.permissions, \
     (SELECT count(*) FROM users u WHERE u.role_id = r.id)";

fn from_row(r: &Row) -> rusqlite::Result<RoleRow> {
    let base: String = r.get(3)?;
    Ok(RoleRow {
        id: r.get(0)?,
        key: r.get(1)?,
        name: r.get(2)?,
        // The CHECK constraint admits only known roles.
        base: base.parse().unwrap_or(Role::Master),
        permissions: r.get(4)?,
        users: r.get(5)?,
    })
}

pub fn list(c: &Connection) -> DbResult<Vec<RoleRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM roles r ORDER BY r.name COLLATE NOCASE, r.id"
    ))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(c: &Connection, id: i64) -> DbResult<Option<RoleRow>> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM roles r WHERE r.id = ?1"))?
            .query_row([id], from_row)
            .optional()?,
    )
}

pub fn by_key(c: &Connection, key: &str) -> DbResult<Option<RoleRow>> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM roles r WHERE r.key = ?1"))?
            .query_row([key], from_row)
            .optional()?,
    )
}

pub struct RoleFields<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub base: Role,
    pub permissions: &'a str,
}

pub fn insert(c: &Connection, f: &RoleFields, now: i64) -> DbResult<i64> {
    c.prepare_cached(
        "INSERT INTO roles (key, name, base, permissions, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![f.key, f.name, f.base.as_str(), f.permissions, now])?;
    Ok(c.last_insert_rowid())
}

/// Updates the role and moves its users' record scope to the new base. False when there
/// is no such role.
pub fn update(c: &Connection, id: i64, f: &RoleFields, now: i64) -> DbResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE roles SET key = ?2, name = ?3, base = ?4, permissions = ?5, updated_at = ?6
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            f.key,
            f.name,
            f.base.as_str(),
            f.permissions,
            now
        ])?;
    c.prepare_cached("UPDATE users SET role = ?2 WHERE role_id = ?1")?
        .execute(params![id, f.base.as_str()])?;
    Ok(n == 1)
}

/// The users who have the role.
pub fn user_ids(c: &Connection, id: i64) -> DbResult<Vec<i64>> {
    let mut st = c.prepare_cached("SELECT id FROM users WHERE role_id = ?1 ORDER BY id")?;
    let rows = st.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
